"""train and evaluate end to end on small real face caches (made by the real extract, MTCNN included)."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from cli import main
from models import model_names
from models.data import Preprocess, landmarks_of, points_to_input, read_crop
from models.train import TrainConfig, fit
from pipeline.cache import load_manifest
from pipeline.extract import ExtractConfig, extract
from pipeline.faces import FaceConfig, FaceExtractor
from tests.conftest import shared_data

RUN_FILES = {"checkpoint_best.pt", "checkpoint_last.pt", "metrics.json", "split.csv", "config.json", "curves.png",
             "roc_test.png"}


def cli(*args):
    """Run the CLI in-process; train and evaluate on one thread (small data; kinder to a shared machine)."""
    args = [str(a) for a in args]
    if args[0] in ("train", "evaluate"):
        args += ["--threads", "1"]
    return CliRunner().invoke(main, args, catch_exceptions=False)


def make_cache(images: dict[str, tuple[np.ndarray | Path, str, str]], folder: Path, min_ok: int | None = None) -> Path:
    """Extract `images` ({file name: (BGR image or a file to link, label, group)}) into a face cache."""
    inputs = folder / "inputs"
    inputs.mkdir(parents=True)
    for name, (image, _, _) in images.items():
        if isinstance(image, Path):
            (inputs / name).symlink_to(image)
        else:
            cv2.imwrite(str(inputs / name), image)
    labels = folder / "labels.csv"
    pd.DataFrame([(name, label, group) for name, (_, label, group) in images.items()],
                 columns=["file", "label", "group"]).to_csv(labels, index=False)
    summary = extract([inputs], ExtractConfig(out_dir=folder / "faces", workers=1, labels_csv=labels), progress=False)
    assert summary.ok >= (min_ok or len(images)), summary.lines()
    return summary.cache_dir


ASTRONAUT_FACE = (181, 62, 268, 172)  # where MTCNN finds the face in the 512x512 photo


def astronaut_variation(astronaut: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, tuple]:
    """A 256x256 window around the astronaut's face (shifted, zoomed, lit differently), and the face box in it."""
    side = int(rng.integers(260, 360))
    x, y = int(rng.integers(max(0, 288 - side), 162)), int(rng.integers(0, 43))
    scale = 256 / side
    image = cv2.resize(astronaut[y : y + side, x : x + side], (256, 256), interpolation=cv2.INTER_AREA)
    image = np.clip(image * rng.uniform(0.75, 1.2), 0, 255).astype(np.uint8)
    x1, y1, x2, y2 = ASTRONAUT_FACE
    return image, (int((x1 - x) * scale), int((y1 - y) * scale), int((x2 - x) * scale), int((y2 - y) * scale))


def crude_fake(image: np.ndarray, box: tuple) -> np.ndarray:
    """A crude manipulation: the face blurred and tinted."""
    x1, y1, x2, y2 = box
    fake = image.copy()
    face = cv2.GaussianBlur(fake[y1:y2, x1:x2], (0, 0), 2.5) * np.array([1.0, 0.9, 1.15])
    fake[y1:y2, x1:x2] = np.clip(face, 0, 255).astype(np.uint8)
    return fake


def astronaut_pairs(astronaut, rng, n_groups: int, number: str = "d") -> dict:
    """{file name: (image, label, group)}: per group a REAL variation of the astronaut and a crude FAKE of it."""
    images = {}
    for group in range(n_groups):
        real, face = astronaut_variation(astronaut, rng)
        images[f"g{group:{number}}_real.jpg"] = (real, "REAL", f"group{group:{number}}")
        images[f"g{group:{number}}_fake.jpg"] = (crude_fake(real, face), "FAKE", f"group{group:{number}}")
    return images


@pytest.fixture(scope="module")
def astronaut_faces(tmp_path_factory, astronaut) -> Path:
    """Always available: 12 groups, each a REAL variation of the astronaut and a crude FAKE of it."""
    images = astronaut_pairs(astronaut, np.random.default_rng(0), 12, "02d")
    return make_cache(images, tmp_path_factory.mktemp("astronaut"))


@pytest.fixture(scope="module")
def dfdc_faces(tmp_path_factory) -> Path:
    """Real DFDC face crops: 10 identity groups, each an original (REAL) and one of its fakes.

    MTCNN finds no face in a few percent of DFDC's crops (here: one of the 20), as in the full set.
    """
    source = shared_data("dfdc_faces")
    metadata = pd.read_csv(source / "metadata.csv").sort_values("file")
    fakes = metadata[metadata["label"] == "FAKE"].drop_duplicates("group").set_index("group")
    reals = metadata[(metadata["label"] == "REAL") & metadata["group"].isin(fakes.index)].head(10)
    images = {}
    for real in reals.itertuples():
        fake = fakes.loc[real.group]
        images[real.file] = (source / "faces" / real.file, "REAL", real.group)
        images[fake.file] = (source / "faces" / fake.file, "FAKE", real.group)
    return make_cache(images, tmp_path_factory.mktemp("dfdc"), min_ok=len(images) - 2)


@pytest.fixture(scope="module")
def lenet_run(astronaut_faces, tmp_path_factory) -> Path:
    """A finished two-epoch LeNet run on the astronaut cache."""
    run_dir = tmp_path_factory.mktemp("runs") / "lenet"
    result = cli("train", "--net", "lenet", "--faces", astronaut_faces, "--out", run_dir, "--epochs", 2,
                 "--batch-size", 8, "--quiet")
    assert result.exit_code == 0, result.output
    return run_dir


def fingerprint(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


# -- training writes what it promises ----------------------------------------------------------------
@pytest.mark.parametrize("net", model_names())
def test_one_epoch_on_real_dfdc_faces(net, dfdc_faces, tmp_path):
    run_dir = tmp_path / "run"
    result = cli("train", "--net", net, "--faces", dfdc_faces, "--out", run_dir, "--epochs", 1, "--batch-size", 8,
                 "--quiet")
    assert result.exit_code == 0, result.output
    assert RUN_FILES <= {p.name for p in run_dir.iterdir()}
    lines = result.output.splitlines()
    assert lines[0].startswith("epoch 1/1: train loss")
    assert any(line.startswith("train (") for line in lines) and any(line.startswith("val   (") for line in lines)
    assert any(line.startswith("test  (") for line in lines)

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["net"] == net and [e["epoch"] for e in metrics["epochs"]] == [1] and metrics["best_epoch"] == 1
    for level in ("frame", "video"):
        test = metrics["test"][level]
        assert {"accuracy", "precision", "recall", "f1", "specificity", "roc_auc", "eer", "average_precision",
                "log_loss", "confusion_matrix"} <= set(test)
        assert test["n"] == sum(map(sum, test["confusion_matrix"])) == test["n_real"] + test["n_fake"] > 0
        assert test["roc_auc"] is None or 0.0 <= test["roc_auc"] <= 1.0
    assert metrics["test"]["frame"]["n"] == metrics["split_sizes"]["test"]["faces"]

    best = torch.load(run_dir / "checkpoint_best.pt", weights_only=True)
    assert best["net"] == net and best["classes"] == ["REAL", "FAKE"] and best["epoch"] == 1
    assert best["input_size"] == {"lenet": 64, "minivgg": 96, "resnet": 112, "efficientnet": 160, "sface": 112}[net]
    assert set(best["preprocess"]) == {"input_size", "face_fraction", "mean", "std"}
    # each net's own normalisation: the pretrained nets' own ([-1, 1]), ImageNet statistics for the others
    assert best["preprocess"]["mean"] == {"efficientnet": [0.5] * 3, "sface": [127.5 / 255] * 3}.get(
        net, [0.485, 0.456, 0.406])
    assert best["train_config"]["epochs"] == 1 and best["val_metrics"]["frame"]["n"] > 0
    assert sum(map(len, best["split"].values())) == metrics["split_sizes"]["train"]["groups"] + \
        metrics["split_sizes"]["val"]["groups"] + metrics["split_sizes"]["test"]["groups"] == 10
    assert "optimizer" not in best and "optimizer" in torch.load(run_dir / "checkpoint_last.pt", weights_only=True)
    for plot in ("curves.png", "roc_test.png"):
        image = cv2.imread(str(run_dir / plot))
        assert image is not None and image.shape[0] > 300 and image.std() > 10


def test_the_split_is_disjoint_by_group(lenet_run, astronaut_faces):
    manifest, _ = load_manifest(astronaut_faces)
    split = pd.read_csv(lenet_run / "split.csv", dtype=str)
    assert split["group"].is_unique and set(split["split"]) == {"train", "val", "test"}
    manifest["split"] = manifest["group"].map(dict(zip(split["group"], split["split"])))
    assert manifest["split"].notna().all()
    groups = {name: set(manifest.loc[manifest["split"] == name, "group"]) for name in ("train", "val", "test")}
    assert not (groups["train"] & groups["val"] or groups["train"] & groups["test"] or groups["val"] & groups["test"])
    assert (manifest.groupby("video_id")["split"].nunique() == 1).all()
    checkpoint = torch.load(lenet_run / "checkpoint_best.pt", weights_only=True)
    assert {name: set(members) for name, members in checkpoint["split"].items()} == groups


def test_evaluate_reproduces_the_test_metrics_of_the_run(lenet_run, astronaut_faces):
    result = cli("evaluate", "--checkpoint", lenet_run / "checkpoint_best.pt", "--faces", astronaut_faces,
                 "--split", "test", "--json", "--quiet")
    assert result.exit_code == 0, result.output
    scored = json.loads(result.output)
    expected = json.loads((lenet_run / "metrics.json").read_text())["test"]
    for level in ("frame", "video"):
        assert scored[level].keys() == expected[level].keys()
        for key, value in expected[level].items():
            assert scored[level][key] == (value if value is None or isinstance(value, list) else pytest.approx(value))

    everything = cli("evaluate", "--checkpoint", lenet_run / "checkpoint_best.pt", "--faces", astronaut_faces,
                     "--quiet")
    assert everything.exit_code == 0, everything.output
    assert "frame level: AUC" in everything.output and "video level: AUC" in everything.output
    assert "(95% CI " in everything.output  # the AUC's bootstrap interval
    for level in ("frame", "video"):
        low, high = scored[level]["roc_auc_ci"]
        assert low <= scored[level]["roc_auc"] <= high
    assert "not a held-out estimate" in everything.output  # most of these faces were trained on


def test_resume_continues_from_the_saved_epoch(lenet_run, astronaut_faces, tmp_path):
    run_dir = tmp_path / "interrupted"
    config = TrainConfig(net="lenet", faces=astronaut_faces, run_dir=run_dir, epochs=2, batch_size=8, threads=1)

    def interrupt_after_epoch_1(line):
        if line.startswith("epoch 1/"):
            raise KeyboardInterrupt  # as Ctrl-C right after the epoch's checkpoint

    with pytest.raises(KeyboardInterrupt):
        fit(config, progress=False, report=interrupt_after_epoch_1)
    assert torch.load(run_dir / "checkpoint_last.pt", weights_only=True)["epoch"] == 1

    result = cli("train", "--resume", "--out", run_dir, "--quiet")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"resuming {run_dir} after epoch 1"
    assert result.output.splitlines()[1].startswith("epoch 2/2:")

    resumed = json.loads((run_dir / "metrics.json").read_text())
    straight = json.loads((lenet_run / "metrics.json").read_text())  # the same run, never interrupted
    assert [e["epoch"] for e in resumed["epochs"]] == [1, 2]
    assert [e["val"]["frame"]["log_loss"] for e in resumed["epochs"]] == \
        pytest.approx([e["val"]["frame"]["log_loss"] for e in straight["epochs"]], rel=1e-6)
    weights = torch.load(run_dir / "checkpoint_last.pt", weights_only=True)["model"]
    reference = torch.load(lenet_run / "checkpoint_last.pt", weights_only=True)["model"]
    assert all(torch.allclose(weights[key], reference[key], atol=1e-6) for key in reference)


def test_bf16_training_is_noted_saves_float32_weights_and_resumes_in_another_precision(astronaut_faces, tmp_path):
    run_dir = tmp_path / "bf16"
    result = cli("train", "--net", "lenet", "--faces", astronaut_faces, "--out", run_dir, "--epochs", 1,
                 "--batch-size", 8, "--precision", "bf16", "--device", "cpu", "--quiet")
    assert result.exit_code == 0, result.output
    assert "note: mixed precision: bfloat16 on cpu (--precision bf16)" in result.output
    checkpoint = torch.load(run_dir / "checkpoint_best.pt", weights_only=True)
    assert checkpoint["train_config"]["precision"] == "bf16"
    assert all(t.dtype == torch.float32 for t in checkpoint["model"].values() if t.is_floating_point())

    kept = cli("train", "--resume", "--out", run_dir, "--epochs", 2, "--quiet")  # the run's own precision
    assert kept.exit_code == 0, kept.output
    assert "note: mixed precision: bfloat16" in kept.output

    result = cli("train", "--resume", "--out", run_dir, "--epochs", 3, "--precision", "fp32", "--quiet")
    assert result.exit_code == 0, result.output
    assert "mixed precision" not in result.output
    assert torch.load(run_dir / "checkpoint_last.pt", weights_only=True)["train_config"]["precision"] == "fp32"


# -- bad input: a clear message, a non-zero exit, nothing written -------------------------------------
def broken_copy(cache_dir: Path, folder: Path, how: str) -> tuple[Path, str]:
    """A copy of the cache broken in one way, and the message expected."""
    copy = folder / "faces"
    shutil.copytree(cache_dir, copy)
    manifest = pd.read_csv(copy / "manifest.csv", dtype=str)
    if how == "empty":
        manifest.iloc[:0].to_csv(copy / "manifest.csv", index=False)
        return copy, "the manifest lists no faces"
    if how == "one class":
        manifest.assign(label="REAL").to_csv(copy / "manifest.csv", index=False)
        return copy, "are REAL; training needs REAL and FAKE faces"
    if how == "unlabelled":
        manifest.assign(label="unknown").to_csv(copy / "manifest.csv", index=False)
        return copy, "none of its 24 faces has a REAL/FAKE label"
    victim = copy / manifest["crop_path"].iloc[5]
    if how == "missing crop":
        victim.unlink()
        return copy, f"{victim}: crop file is missing"
    victim.write_bytes(b"not a jpeg at all")
    return copy, f"{victim}: crop file is corrupt"


@pytest.mark.parametrize("how", ["empty", "one class", "unlabelled", "missing crop", "corrupt crop"])
def test_bad_manifests_fail_clearly_and_write_nothing(how, astronaut_faces, tmp_path):
    faces, message = broken_copy(astronaut_faces, tmp_path, how)
    result = cli("train", "--net", "lenet", "--faces", faces, "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_unknown_net_lists_the_known_ones(astronaut_faces, tmp_path):
    result = cli("train", "--net", "alexnet", "--faces", astronaut_faces, "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert "unknown net 'alexnet'; choose one of: efficientnet, lenet, minivgg, resnet" in result.output
    assert not (tmp_path / "run").exists()


def test_an_existing_run_is_never_overwritten(lenet_run, astronaut_faces):
    before = fingerprint(lenet_run)
    again = cli("train", "--net", "lenet", "--faces", astronaut_faces, "--out", lenet_run, "--quiet")
    assert again.exit_code == 2 and "already holds a run" in again.output and "--resume" in again.output
    other_net = cli("train", "--net", "resnet", "--resume", "--out", lenet_run, "--quiet")
    assert other_net.exit_code == 2 and "holds a lenet net, not resnet" in other_net.output
    assert fingerprint(lenet_run) == before


def test_a_split_file_of_another_manifest_is_refused(astronaut_faces, tmp_path):
    (tmp_path / "split.csv").write_text("group,split\nsomeone,train\nelse,val\nentirely,test\n")
    result = cli("train", "--net", "lenet", "--faces", astronaut_faces, "--out", tmp_path / "run",
                 "--split-file", tmp_path / "split.csv", "--quiet")
    assert result.exit_code == 1 and "12 group(s) of the manifest have no split" in result.output
    assert not (tmp_path / "run").exists()


def test_evaluate_refuses_bad_checkpoints(lenet_run, astronaut_faces, tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes((lenet_run / "checkpoint_best.pt").read_bytes()[:3000])
    result = cli("evaluate", "--checkpoint", corrupt, "--faces", astronaut_faces)
    assert result.exit_code == 1 and "corrupt or not a PyTorch checkpoint" in result.output

    missing = cli("evaluate", "--checkpoint", tmp_path / "missing.pt", "--faces", astronaut_faces)
    assert missing.exit_code == 2 and "not found" in missing.output

    state = torch.load(lenet_run / "checkpoint_best.pt", weights_only=True)
    state["net"], state["net_kwargs"] = "minivgg", {}  # LeNet weights presented as a MiniVGG
    torch.save(state, tmp_path / "renamed.pt")
    renamed = cli("evaluate", "--checkpoint", tmp_path / "renamed.pt", "--faces", astronaut_faces)
    assert renamed.exit_code == 1 and "its weights do not fit a minivgg net" in renamed.output


def test_export_checkpoint_drops_resume_state_and_halves_the_weights(lenet_run, astronaut_faces, tmp_path):
    exported = tmp_path / "weights" / "lenet-half.pt"  # a folder that does not exist yet: made
    result = cli("export-checkpoint", lenet_run / "checkpoint_last.pt", exported, "--half")
    assert result.exit_code == 0, result.output
    state = torch.load(exported, weights_only=True)
    assert "optimizer" not in state and "history" not in state and state["stored_as"] == "float16"
    floats = [t for t in state["model"].values() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float16 for t in floats)
    full = torch.load(lenet_run / "checkpoint_last.pt", weights_only=True)
    assert exported.stat().st_size < 0.6 * sum(t.numel() * 4 for t in full["model"].values())

    def scores(checkpoint: Path) -> dict:
        out = cli("evaluate", "--checkpoint", checkpoint, "--faces", astronaut_faces, "--json", "--quiet")
        assert out.exit_code == 0, out.output
        return json.loads(out.output)["frame"]

    half, single = scores(exported), scores(lenet_run / "checkpoint_last.pt")  # float16 weights, float32 net
    assert half["log_loss"] == pytest.approx(single["log_loss"], abs=2e-3)
    assert half["roc_auc"] == pytest.approx(single["roc_auc"], abs=0.02)

    onto_itself = cli("export-checkpoint", exported, exported)
    assert onto_itself.exit_code == 2 and "overwrite its own source" in onto_itself.output
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(exported.read_bytes()[:2000])
    refused = cli("export-checkpoint", corrupt, tmp_path / "out.pt")
    assert refused.exit_code == 1 and "corrupt" in refused.output and not (tmp_path / "out.pt").exists()


def test_export_checkpoint_records_the_run_s_whole_split_file(lenet_run, tmp_path):
    """A run on part of its groups (as on a packed cache) ships with its whole split file's groups."""
    table = pd.read_csv(lenet_run / "split.csv", dtype=str)
    whole = pd.concat([table, pd.DataFrame({"group": ["elsewhere-1", "elsewhere-2"], "split": ["test", "train"]})])
    whole.to_csv(tmp_path / "whole.csv", index=False)
    exported = tmp_path / "lenet.pt"
    result = cli("export-checkpoint", lenet_run / "checkpoint_best.pt", exported, "--split-file", tmp_path / "whole.csv")
    assert result.exit_code == 0, result.output
    recorded = torch.load(exported, weights_only=True)["split"]
    assert "elsewhere-1" in recorded["test"] and "elsewhere-2" in recorded["train"]
    assert set(recorded["val"]) == set(table.loc[table["split"] == "val", "group"])

    swapped = table.copy()  # a training group of the run presented as a test group: refused, nothing written
    swapped.loc[swapped.index[swapped["split"] == "train"][0], "split"] = "test"
    swapped.to_csv(tmp_path / "swapped.csv", index=False)
    refused = cli("export-checkpoint", lenet_run / "checkpoint_best.pt", tmp_path / "no.pt", "--split-file",
                  tmp_path / "swapped.csv")
    assert refused.exit_code == 2 and "train group(s) of the run are not train there" in refused.output
    assert not (tmp_path / "no.pt").exists()


# -- self-blended fakes (--fakes) ------------------------------------------------------------------------
def train_reals(run_dir: Path, cache_dir: Path, split: str) -> int:
    """How many REAL faces of the cache fell in `split` of the run."""
    manifest, _ = load_manifest(cache_dir)
    table = pd.read_csv(run_dir / "split.csv", dtype=str)
    groups = set(table.loc[table["split"] == split, "group"])
    return int(((manifest["label"] == "REAL") & manifest["group"].isin(groups)).sum())


@pytest.fixture(scope="module")
def self_blend_run(astronaut_faces, tmp_path_factory) -> Path:
    """A finished two-epoch LeNet run on REAL astronaut faces and their self-blends."""
    run_dir = tmp_path_factory.mktemp("runs") / "self_blend"
    result = cli("train", "--net", "lenet", "--faces", astronaut_faces, "--out", run_dir, "--epochs", 2,
                 "--batch-size", 8, "--fakes", "self-blend", "--quiet")
    assert result.exit_code == 0, result.output
    return run_dir


def test_self_blend_training_records_its_fakes(self_blend_run, astronaut_faces):
    assert RUN_FILES <= {p.name for p in self_blend_run.iterdir()}
    metrics = json.loads((self_blend_run / "metrics.json").read_text())
    n_train, n_val = (train_reals(self_blend_run, astronaut_faces, split) for split in ("train", "val"))
    assert metrics["fakes"] == "self-blend" and n_train > 0 and n_val > 0
    assert any(f"{n_train} REAL train faces, each also self-blended" in note for note in metrics["notes"])
    for epoch in metrics["epochs"]:
        assert epoch["train"]["n_real"] == epoch["train"]["n_fake"] == n_train  # a real and its blend, no cache fake
        assert epoch["val_self_blend"]["n_real"] == epoch["val_self_blend"]["n_fake"] == n_val
        assert epoch["val_lower_face_blend"]["n_real"] == epoch["val_lower_face_blend"]["n_fake"] == n_val
        assert epoch["val"]["frame"]["n_fake"] > 0  # validation is still the cache's own REAL and FAKE faces
    assert json.loads((self_blend_run / "config.json").read_text())["fakes"] == "self-blend"
    for name in ("checkpoint_best.pt", "checkpoint_last.pt"):
        assert torch.load(self_blend_run / name, weights_only=True)["train_config"]["fakes"] == "self-blend"


def test_resume_keeps_self_blend_and_makes_the_same_pseudo_fakes(self_blend_run, astronaut_faces, tmp_path):
    run_dir = tmp_path / "interrupted"
    config = TrainConfig(net="lenet", faces=astronaut_faces, run_dir=run_dir, epochs=2, batch_size=8, threads=1,
                         fakes="self-blend")

    def interrupt_after_epoch_1(line):
        if line.startswith("epoch 1/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(config, progress=False, report=interrupt_after_epoch_1)
    resumed = cli("train", "--resume", "--out", run_dir, "--quiet")  # no --fakes: the run's own is kept
    assert resumed.exit_code == 0, resumed.output
    assert resumed.output.splitlines()[1].startswith("epoch 2/2:") and "val self-blend AUC" in resumed.output
    assert torch.load(run_dir / "checkpoint_last.pt", weights_only=True)["train_config"]["fakes"] == "self-blend"

    again = json.loads((run_dir / "metrics.json").read_text())["epochs"]
    straight = json.loads((self_blend_run / "metrics.json").read_text())["epochs"]  # same seed, never interrupted
    for key in ("train", "val_self_blend"):
        assert [e[key]["log_loss"] for e in again] == pytest.approx([e[key]["log_loss"] for e in straight], rel=1e-6)


def test_both_trains_on_the_cache_fakes_and_self_blends(astronaut_faces, tmp_path):
    run_dir = tmp_path / "both"
    result = cli("train", "--net", "lenet", "--faces", astronaut_faces, "--out", run_dir, "--epochs", 1,
                 "--batch-size", 4, "--fakes", "both", "--quiet")
    assert result.exit_code == 0, result.output
    metrics = json.loads((run_dir / "metrics.json").read_text())
    n_real = train_reals(run_dir, astronaut_faces, "train")
    n_fake = metrics["split_sizes"]["train"]["faces"] - n_real
    assert metrics["fakes"] == "both" and "val_self_blend" in metrics["epochs"][0]
    assert f"fakes: both: {n_real} REAL, {n_fake} FAKE and {n_real} self-blended" in result.output
    train = metrics["epochs"][0]["train"]
    assert train["n_real"] + train["n_fake"] == (2 * n_real + n_fake) // 4 * 4  # whole batches of 4
    assert train["n_fake"] > n_fake  # the cache's fakes and self-blends
    assert torch.load(run_dir / "checkpoint_best.pt", weights_only=True)["train_config"]["fakes"] == "both"


def test_lower_face_blends_are_recorded_and_refused_without_self_blends(astronaut_faces, tmp_path):
    run_dir = tmp_path / "lower"
    result = cli("train", "--net", "lenet", "--faces", astronaut_faces, "--out", run_dir, "--epochs", 1,
                 "--batch-size", 4, "--fakes", "both", "--lower-face-blends", 0.5, "--quiet")
    assert result.exit_code == 0, result.output
    note = "lower-face blends: 50% of the self-blends (drawn per face and epoch) are blended through the lower face only"
    assert note in result.output and note in json.loads((run_dir / "metrics.json").read_text())["notes"]
    assert "its REAL faces vs lower-face blends: AUC" in result.output
    assert json.loads((run_dir / "config.json").read_text())["lower_face_blends"] == 0.5
    assert torch.load(run_dir / "checkpoint_best.pt", weights_only=True)["train_config"]["lower_face_blends"] == 0.5

    without_blends = cli("train", "--net", "lenet", "--faces", astronaut_faces, "--out", tmp_path / "refused",
                         "--lower-face-blends", 0.5)
    assert without_blends.exit_code == 2 and "--fakes self-blend or both" in without_blends.output
    too_many = cli("train", "--net", "lenet", "--faces", astronaut_faces, "--out", tmp_path / "refused",
                   "--fakes", "both", "--lower-face-blends", 1.5)
    assert too_many.exit_code == 2 and "--lower-face-blends" in too_many.output
    assert not (tmp_path / "refused").exists()

    grid = cli("self-blend-grid", "--faces", astronaut_faces, "--lower-face-blends", 1, "--out", tmp_path / "grid.png",
               "--n", 2, "--size", 64)
    assert grid.exit_code == 0 and (tmp_path / "grid.png").is_file(), grid.output


@pytest.fixture(scope="module")
def faces_without_landmarks(tmp_path_factory, astronaut) -> Path:
    """A real cache made by the opencv-dnn detector (boxes only, no landmarks)."""
    images = astronaut_pairs(astronaut, np.random.default_rng(1), 3)
    folder = tmp_path_factory.mktemp("opencv")
    inputs = folder / "inputs"
    inputs.mkdir()
    for name, (image, _, _) in images.items():
        cv2.imwrite(str(inputs / name), image)
    pd.DataFrame([(n, label, group) for n, (_, label, group) in images.items()],
                 columns=["file", "label", "group"]).to_csv(folder / "labels.csv", index=False)
    result = cli("extract", inputs, "--out", folder / "faces", "--labels", folder / "labels.csv",
                 "--detector", "opencv-dnn", "--workers", 1, "--quiet")
    assert result.exit_code == 0, result.output
    return load_manifest(folder / "faces")[1]


@pytest.mark.parametrize("fakes", ["self-blend", "both"])
def test_a_cache_without_landmarks_cannot_be_self_blended(fakes, faces_without_landmarks, tmp_path):
    result = cli("train", "--net", "lenet", "--faces", faces_without_landmarks, "--out", tmp_path / "run",
                 "--fakes", fakes, "--quiet")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert str(faces_without_landmarks / "manifest.csv") in result.output
    assert "have no landmarks (detector: opencv-dnn)" in result.output and "--detector mtcnn" in result.output
    assert not (tmp_path / "run").exists()

    grid = cli("self-blend-grid", "--faces", faces_without_landmarks, "--out", tmp_path / "grid.png")
    assert grid.exit_code == 1 and "have no landmarks (detector: opencv-dnn)" in grid.output
    assert not (tmp_path / "grid.png").exists()


def test_self_blend_trains_on_real_faces_only(astronaut_faces, tmp_path):
    """A cache of REAL faces alone (e.g. real talking-head clips) trains with self-blends; with no FAKE in
    validation, the epochs are compared on its REAL faces against their self-blends."""
    faces, _ = broken_copy(astronaut_faces, tmp_path, "one class")
    refused = cli("train", "--net", "lenet", "--faces", faces, "--out", tmp_path / "refused", "--quiet")
    assert refused.exit_code == 1 and "training needs REAL and FAKE faces" in refused.output

    result = cli("train", "--net", "lenet", "--faces", faces, "--out", tmp_path / "run", "--epochs", 1,
                 "--batch-size", 8, "--fakes", "self-blend", "--quiet")
    assert result.exit_code == 0, result.output
    epoch = json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"][0]
    assert epoch["val"]["frame"]["roc_auc"] is None and epoch["val_self_blend"]["roc_auc"] is not None
    assert epoch["monitor"] == epoch["val_self_blend"]["roc_auc"]


def test_balance_sampler_would_part_a_real_from_its_blend(astronaut_faces, tmp_path):
    result = cli("train", "--net", "lenet", "--faces", astronaut_faces, "--out", tmp_path / "run",
                 "--fakes", "self-blend", "--balance", "sampler")
    assert result.exit_code == 2 and "with --fakes self-blend use --balance loss or none" in result.output
    assert not (tmp_path / "run").exists()


def test_self_blend_grid_shows_reals_masks_and_blends(astronaut_faces, tmp_path):
    result = cli("self-blend-grid", "--faces", astronaut_faces, "--out", tmp_path / "grid.png", "--n", 3,
                 "--size", 64)
    assert result.exit_code == 0, result.output
    grid = cv2.imread(str(tmp_path / "grid.png"))
    assert grid is not None and min(grid.shape[:2]) > 400 and grid.std() > 20


def test_landmarks_land_on_the_eyes_of_real_crops(face_clip, tmp_path):
    """Landmarks of real crops (extract on a clip), mapped into the preprocessed image, agree with MTCNN run on
    that image itself, and sit where eyes, nose and mouth belong inside the face box mapped the same way."""
    result = cli("extract", face_clip, "--out", tmp_path / "faces", "--workers", 1, "--quiet")
    assert result.exit_code == 0, result.output
    manifest, cache_dir = load_manifest(tmp_path / "faces")
    preprocess = Preprocess(112)
    mapped = landmarks_of(manifest, cache_dir, preprocess)
    extractor = FaceExtractor(FaceConfig(min_face_size=20))
    assert len(manifest) >= 2
    for row, marks in zip(manifest.itertuples(), mapped):
        crop_box = (row.crop_x1, row.crop_y1, row.crop_x2, row.crop_y2)
        (x1, y1), (x2, y2) = points_to_input([(row.x1, row.y1), (row.x2, row.y2)], crop_box, 224, preprocess)
        assert ((marks >= (x1, y1)) & (marks <= (x2, y2))).all()
        left_eye, right_eye, nose, mouth = marks[0], marks[1], marks[2], marks[3:].mean(axis=0)
        assert left_eye[0] < nose[0] < right_eye[0]
        assert 0.3 < (right_eye[0] - left_eye[0]) / (x2 - x1) < 0.6
        assert max(left_eye[1], right_eye[1]) < nose[1] < mouth[1]

        image = cv2.cvtColor(read_crop(row.crop_file, preprocess).permute(1, 2, 0).numpy(), cv2.COLOR_RGB2BGR)
        found = extractor.detect([image], pad=0.25)[0]
        assert len(found) == 1
        assert np.abs(np.array(found[0].landmarks) - marks).max() < 3.5  # pixels of a 112-pixel image (MTCNN varies ~2)


# -- fine-tuning (--init-from) -----------------------------------------------------------------------
def test_init_from_starts_from_the_checkpoints_weights_and_net(lenet_run, astronaut_faces, tmp_path):
    start = lenet_run / "checkpoint_best.pt"
    result = cli("train", "--init-from", start, "--faces", astronaut_faces, "--out", tmp_path / "tuned",
                 "--split-file", lenet_run / "split.csv", "--epochs", 1, "--lr", 1e-12, "--augment", "none",
                 "--batch-size", 8, "--quiet")
    assert result.exit_code == 0, result.output
    assert f"note: started from the weights of {start} (epoch" in result.output
    tuned = torch.load(tmp_path / "tuned" / "checkpoint_best.pt", weights_only=True)
    original = torch.load(start, weights_only=True)
    assert tuned["net"] == "lenet" and tuned["net_kwargs"] == original["net_kwargs"]
    # a learning rate of 1e-12 leaves the weights where they started: the run began from them, not at random
    assert all(torch.allclose(tuned["model"][key].float(), original["model"][key].float(), atol=1e-6)
               for key in original["model"])


def test_init_from_refuses_a_split_that_validates_on_its_training_groups(lenet_run, astronaut_faces, tmp_path):
    result = cli("train", "--init-from", lenet_run / "checkpoint_best.pt", "--faces", astronaut_faces,
                 "--out", tmp_path / "tuned", "--seed", 7, "--quiet")
    assert result.exit_code == 2, result.output
    assert "validation/test group(s) of this run" in result.output and "--split-file" in result.output
    assert not (tmp_path / "tuned").exists()


def test_init_from_refuses_other_net_arguments(lenet_run, astronaut_faces, tmp_path):
    result = cli("train", "--init-from", lenet_run / "checkpoint_best.pt", "--faces", astronaut_faces,
                 "--out", tmp_path / "tuned", "--split-file", lenet_run / "split.csv",
                 "--net-kwargs", '{"input_size": 32}', "--quiet")
    assert result.exit_code == 2 and "differ from" in result.output, result.output
    assert not (tmp_path / "tuned").exists()


# -- dense blend outlines (--blend-outlines) -------------------------------------------------------------
def write_outlines_file(cache_dir: Path, path: Path, leave_out: int) -> set[str]:
    """An outlines file for the REAL crops of `cache_dir` but the first `leave_out` (made here, without the
    face mesh: the five landmarks' hull grown 2.2 times about its centre, in crop pixels, as the outlines
    step writes them). Returns the crop paths it lists."""
    manifest, _ = load_manifest(cache_dir)
    reals = manifest[manifest["label"] == "REAL"].iloc[leave_out:]
    crop_size = json.loads((cache_dir / "config.json").read_text())["crop_size"]
    in_crop = landmarks_of(reals, cache_dir, Preprocess(crop_size, face_fraction=1.0))
    centres = in_crop.mean(axis=1, keepdims=True)
    np.savez(path, crop_path=reals["crop_path"].to_numpy(str), points=centres + 2.2 * (in_crop - centres),
             cache=cache_dir.name)
    return set(reals["crop_path"])


def test_blend_outlines_shape_the_self_blends_and_survive_resume(astronaut_faces, tmp_path):
    outlines = tmp_path / "outlines.npz"
    listed = write_outlines_file(astronaut_faces, outlines, leave_out=3)
    run_dir = tmp_path / "mesh"
    result = cli("train", "--net", "lenet", "--faces", astronaut_faces, "--out", run_dir, "--epochs", 1,
                 "--batch-size", 8, "--fakes", "self-blend", "--blend-outlines", outlines, "--quiet")
    assert result.exit_code == 0, result.output

    manifest, _ = load_manifest(astronaut_faces)
    train_groups = set(pd.read_csv(run_dir / "split.csv", dtype=str).query("split == 'train'")["group"])
    train_reals = manifest[(manifest["label"] == "REAL") & manifest["group"].isin(train_groups)]
    n_dense = int(train_reals["crop_path"].isin(listed).sum())
    note = (f"blend masks: the dense outline of {outlines} for {n_dense} of the {len(train_reals)} self-blended "
            f"train faces, the 5-point hull for {len(train_reals) - n_dense} (no outline there)")
    assert note in result.output and note in json.loads((run_dir / "metrics.json").read_text())["notes"]
    assert json.loads((run_dir / "config.json").read_text())["blend_outlines"] == str(outlines)

    resumed = cli("train", "--resume", "--out", run_dir, "--epochs", 2, "--quiet")  # the run's outlines are kept
    assert resumed.exit_code == 0, resumed.output
    assert note in resumed.output
    saved = torch.load(run_dir / "checkpoint_last.pt", weights_only=True)["train_config"]
    assert saved["blend_outlines"] == str(outlines) and saved["epochs"] == 2

    grid = cli("self-blend-grid", "--faces", astronaut_faces, "--blend-outlines", outlines, "--out",
               tmp_path / "grid.png", "--n", 3, "--size", 64)
    assert grid.exit_code == 0 and (tmp_path / "grid.png").is_file(), grid.output


def test_blend_outlines_that_cannot_serve_are_refused_before_anything_is_written(astronaut_faces, tmp_path):
    train = ("train", "--net", "lenet", "--faces", astronaut_faces, "--out", tmp_path / "run", "--fakes", "both",
             "--quiet", "--blend-outlines")
    missing = cli(*train, tmp_path / "missing.npz")
    assert missing.exit_code == 2 and "missing.npz: no such file" in missing.output
    (tmp_path / "broken.npz").write_bytes(b"PK not really")
    broken = cli(*train, tmp_path / "broken.npz")
    assert broken.exit_code == 1 and "not a readable outlines file" in broken.output
    np.savez(tmp_path / "other.npz", crop_path=np.array(["faces/elsewhere/f000000_00.jpg"]),
             points=np.zeros((1, 5, 2), dtype=np.float32))
    unrelated = cli(*train, tmp_path / "other.npz")
    assert unrelated.exit_code == 1 and "no outline for any of the" in unrelated.output
    without_blends = cli("train", "--net", "lenet", "--faces", astronaut_faces, "--out", tmp_path / "run",
                         "--blend-outlines", tmp_path / "other.npz")
    assert without_blends.exit_code == 2 and "--fakes self-blend or both" in without_blends.output
    assert not (tmp_path / "run").exists()
