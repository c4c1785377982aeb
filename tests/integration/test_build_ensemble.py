"""build-ensemble end to end on a small real face cache, and how it picks a combiner (validation alone, or
validation and self-blends of its REAL faces)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from ensembles.build import _compare_combiners, self_blend_crops
from models.data import labelled_faces
from pipeline.cache import load_manifest
from tests.conftest import write_labelled_set
from tests.integration.test_train import astronaut_pairs, cli, make_cache


@pytest.fixture(scope="module")
def cache(tmp_path_factory, astronaut) -> Path:
    """16 groups, each a REAL variation of the astronaut and a crude FAKE of it."""
    return make_cache(astronaut_pairs(astronaut, np.random.default_rng(3), 16, "02d"), tmp_path_factory.mktemp("faces"))


@pytest.fixture(scope="module")
def members(cache, tmp_path_factory) -> list[Path]:
    """A LeNet and a MiniVGG trained one epoch each on one split (a 50/25/25 split, so validation has groups)."""
    runs = tmp_path_factory.mktemp("runs")
    paths = []
    for net in ("lenet", "minivgg"):
        extra = ["--split-file", runs / "lenet" / "split.csv"] if paths else ["--split", "0.5,0.25,0.25"]
        result = cli("train", "--net", net, "--faces", cache, "--out", runs / net, "--epochs", 1, "--batch-size", 8,
                     "--quiet", *extra)
        assert result.exit_code == 0, result.output
        paths.append(runs / net / "checkpoint_best.pt")
    return paths


def build(members, cache, out: Path, *extra):
    args = ["build-ensemble", "--faces", cache, "--out", out, "--device", "cpu", *extra]
    for member in members:
        args += ["--member", member]
    return cli(*args)


def test_self_blend_selection_scores_and_records_the_pseudo_fakes(members, cache, tmp_path):
    plain = build(members, cache, tmp_path / "plain.json")
    aware = build(members, cache, tmp_path / "aware.json", "--selection", "validation+self-blends")
    assert plain.exit_code == 0 and aware.exit_code == 0, plain.output + aware.output
    plain_metrics = json.loads((tmp_path / "plain.json").read_text())["metrics"]
    aware_metrics = json.loads((tmp_path / "aware.json").read_text())["metrics"]
    assert plain_metrics["selected_by"] == "validation" and "members_val_self_blend" not in plain_metrics
    assert all(set(v) == {"val_video_auc"} for v in plain_metrics["selection"].values())
    assert aware_metrics["selected_by"] == "validation+self-blends"
    assert set(aware_metrics["selection"]) == {"mean", "logit_mean", "stacked"}
    for figures in aware_metrics["selection"].values():
        assert set(figures) == {"val_video_auc", "val_self_blend_auc"} and 0 <= figures["val_self_blend_auc"] <= 1
    # every validation REAL face was self-blended once and scored by both members
    assert set(aware_metrics["members_val_self_blend"]) == {"lenet", "minivgg"}
    n_val_reals = aware_metrics["members_val"]["lenet"]["frame"]["n"] // 2  # one REAL and one FAKE per group
    assert aware_metrics["members_val_self_blend"]["lenet"]["n"] == 2 * n_val_reals
    assert "val self blend auc" in aware.output


def test_self_blends_differ_from_their_faces_and_are_reproducible(cache):
    manifest, cache_dir = load_manifest(cache)
    faces, _ = labelled_faces(manifest, "manifest")
    first, again = self_blend_crops(faces, cache_dir, threads=1), self_blend_crops(faces, cache_dir, threads=1)
    reals = faces[faces["label"] == "REAL"]
    assert len(first) == len(reals) and first[0].shape == (224, 224, 3)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    originals = [cv2.imread(f) for f in reals["crop_file"]]
    changed = [np.abs(a.astype(int) - o.astype(int)).mean() for a, o in zip(first, originals)]
    assert min(changed) > 0.5  # every pseudo-fake was actually blended


def test_a_cache_without_landmarks_is_refused_clearly(members, cache, tmp_path):
    manifest, cache_dir = load_manifest(cache)
    copy = tmp_path / cache_dir.name
    copy.mkdir()
    for item in cache_dir.iterdir():
        (copy / item.name).symlink_to(item)
    (copy / "manifest.csv").unlink()
    stripped = pd.read_csv(cache_dir / "manifest.csv")
    stripped["landmarks"] = np.nan
    stripped.to_csv(copy / "manifest.csv", index=False)
    result = build(members, copy, tmp_path / "e.json", "--selection", "validation+self-blends")
    assert result.exit_code != 0 and "landmarks" in result.output
    assert not (tmp_path / "e.json").exists()


def test_the_stack_weights_are_non_negative_unless_asked_and_recorded(members, cache, tmp_path):
    for extra, recorded in (((), "non-negative"), (("--stack-weights", "any"), "any")):
        result = build(members, cache, tmp_path / f"{recorded}.json", "--combiner", "stacked", *extra)
        assert result.exit_code == 0, result.output
        saved = json.loads((tmp_path / f"{recorded}.json").read_text())
        assert saved["combiner"]["kind"] == "stacked" and saved["metrics"]["stack_weights"] == recorded
    assert min(json.loads((tmp_path / "non-negative.json").read_text())["combiner"]["weights"]) >= 0.0
    bad = build(members, cache, tmp_path / "bad.json", "--stack-weights", "positive")
    assert bad.exit_code == 2 and "positive" in bad.output and not (tmp_path / "bad.json").exists()


def test_selection_with_self_blends_trusts_the_member_that_catches_them():
    """Member 0 separates the validation fakes but not self-blends; member 1 is weaker on validation but
    catches self-blends. Fitted on validation alone the stacked combiner leans on member 0; fitted on both,
    member 1 gains weight and the self-blend AUC rises, at some cost in validation AUC."""
    rng = np.random.default_rng(0)
    n = 400
    labels = np.repeat([0.0, 1.0], n)
    sharp = np.where(labels == 1, rng.normal(1.5, 1, 2 * n), rng.normal(-1.5, 1, 2 * n))
    weak = np.where(labels == 1, rng.normal(0.5, 1, 2 * n), rng.normal(-0.5, 1, 2 * n))
    blends = np.column_stack([sharp[:n] + rng.normal(0, 0.3, n), weak[:n] + 2.5])  # the reals, blended
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    groups = np.tile(np.arange(n), 2).astype(str)  # a fake shares its real's group
    val = (sigmoid(np.column_stack([sharp, weak])), labels, np.arange(2 * n).astype(str), groups)
    alone = _compare_combiners("stacked", val, None)["stacked"]
    aware = _compare_combiners("auto", val, (sigmoid(blends), groups[:n]))
    stacked = aware["stacked"]
    assert alone["combiner"].weights[0] > 2 * alone["combiner"].weights[1]
    assert stacked["combiner"].weights[1] > alone["combiner"].weights[1] + 0.5
    assert stacked["val_self_blend_auc"] > aware["mean"]["val_self_blend_auc"]
    assert stacked["val_self_blend_auc"] > 0.85 and stacked["val_video_auc"] < alone["val_video_auc"]
    assert stacked["score"] == pytest.approx((stacked["val_video_auc"] + stacked["val_self_blend_auc"]) / 2)
    assert "val_self_blend_auc" not in alone and alone["score"] == alone["val_video_auc"]


def test_flip_averaging_is_chosen_at_build_time_and_used_by_every_verdict(members, cache, tmp_path, astronaut):
    from ensembles.ensemble import Ensemble

    plain = build(members, cache, tmp_path / "plain.json")
    flipped = build(members, cache, tmp_path / "flip.json", "--tta", "flip")
    assert plain.exit_code == 0 and flipped.exit_code == 0, plain.output + flipped.output
    assert "test-time augmentation flip" in flipped.output
    assert "test video AUC" in plain.output and "(95% CI " in plain.output  # the held-out figure with its interval
    recorded = json.loads((tmp_path / "flip.json").read_text())
    assert recorded["tta"] == "flip" and recorded["metrics"]["tta"] == "flip"
    # validation was scored with the averaging: the members' figures differ from the plain build's
    assert recorded["metrics"]["members_val"] != json.loads((tmp_path / "plain.json").read_text())["metrics"]["members_val"]
    face = cv2.resize(astronaut, (224, 224), interpolation=cv2.INTER_AREA)  # its central part is pixel-symmetric
    crops = [face, np.ascontiguousarray(face[:, ::-1])]
    with_flip = Ensemble.load(tmp_path / "flip.json", device="cpu").score_crops(crops)
    without = Ensemble.load(tmp_path / "plain.json", device="cpu").score_crops(crops)
    np.testing.assert_allclose(with_flip[0], with_flip[1], atol=1e-3)  # a face and its mirror image alike
    assert np.abs(without[0] - without[1]).max() > 1e-3


def test_an_ensemble_file_with_an_unknown_augmentation_is_refused(members, cache, tmp_path):
    from ensembles.ensemble import EnsembleConfig
    from pipeline.errors import DataError

    assert build(members, cache, tmp_path / "e.json").exit_code == 0
    data = json.loads((tmp_path / "e.json").read_text())
    (tmp_path / "e.json").write_text(json.dumps({**data, "tta": "rotate"}))
    with pytest.raises(DataError, match="rotate"):
        EnsembleConfig.load(tmp_path / "e.json")


def test_unknown_selection_is_a_usage_error(members, cache, tmp_path):
    result = build(members, cache, tmp_path / "x.json", "--selection", "crosssource")
    assert result.exit_code == 2 and "validation+self-blends" in result.output


def test_members_may_differ_in_training_groups_but_not_in_what_they_are_judged_on():
    from types import SimpleNamespace

    from ensembles.build import shared_split
    from pipeline.errors import UsageError

    def member(train, val=("v1", "v2"), test=("t1",)):
        return SimpleNamespace(state={"split": {"train": list(train), "val": list(val), "test": list(test)}})

    base, extra = member(["a", "b"]), member(["a", "b", "real_talking:M003"])  # fine-tuned with extra reals
    assert shared_split([base, extra], ["base.pt", "extra.pt"])["val"] == ["v1", "v2"]
    with pytest.raises(UsageError, match="other.pt was validated or tested on other groups"):
        shared_split([base, member(["a"], val=("v1",))], ["base.pt", "other.pt"])
    with pytest.raises(UsageError, match="leaky.pt trained on 1 validation or test group"):
        shared_split([base, member(["a", "t1"])], ["base.pt", "leaky.pt"])


def test_set_threshold_keeps_the_dev_sets_reals_within_the_budget(members, cache, tmp_path, face_clip, astronaut):
    """set-threshold end to end: validation faces and a labelled folder's files classified as classify-video does;
    with a budget of 0 no real of either set is called FAKE at the threshold written, and the file says why."""
    from ensembles.budget import read_dev_labels
    from ensembles.classify import classify_paths
    from ensembles.ensemble import Ensemble

    assert build(members, cache, tmp_path / "nets" / "ensemble.json").exit_code == 0
    dev = write_labelled_set(tmp_path / "dev", face_clip, astronaut, {"photo": cv2.GaussianBlur(astronaut, (0, 0), 3)},
                             "file,label\nreal/clip.mp4,REAL\nreal/photo.jpg,REAL\nfake/photo.jpg,FAKE\n")
    out = tmp_path / "elsewhere" / "ensemble.json"
    result = cli("set-threshold", "--ensemble", tmp_path / "nets" / "ensemble.json", "--faces", cache,
                 "--dev-set", dev, "--max-fpr", 0, "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text())
    budget = written["metrics"]["false_alarm_budget"]
    assert budget["max_fpr"] == 0 and budget["dfdc_validation"]["fpr"] == 0 and budget["dev"]["fpr"] == 0
    assert budget["dev"]["n_real"] == 2 and budget["dev"]["reals_called_fake"] == []
    assert written["threshold_rule"].startswith("lowest threshold with at most 0% of reals called FAKE")
    assert written["metrics"]["test_at_threshold"]["threshold"] == written["threshold"]  # re-measured there
    ensemble = Ensemble.load(out, device="cpu")  # the members found from the new file's folder
    labels = read_dev_labels(dev)
    verdicts = list(classify_paths([dev / f for f in labels["file"][labels["label"] == "REAL"]], ensemble))
    assert [v.verdict for v in verdicts] == ["REAL", "REAL"]
    missing = cli("set-threshold", "--faces", cache, "--dev-set", tmp_path, "--out", out)
    assert missing.exit_code == 2 and "labels.csv not found" in missing.output
