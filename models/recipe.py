"""The recipe of the shipped weights, from ../shared/data on a CPU, resumable: `make weights`.

    .venv/bin/python -m models.recipe [--out runs/recipe] [--data ../shared/data] [--dry-run] [--check]

Every step is a `cli.py` command (the ones MODEL_CARD.md describes), run in order. A step whose output is
there is skipped, an interrupted training run goes on from its last epoch (`train --resume`), and extract
skips what it already cropped, so the same command picks up where a stopped session left off. What it makes
lands in OUT/weights/ (the shipped file names); models/weights/ is never written.

`--check` compares the ensemble files in OUT/weights/ with the shipped ones (validation and test ROC-AUC,
the threshold and what it calls FAKE) and exits 1 when a ROC-AUC differs by more than `--tolerance`.
`--dry-run` prints the commands without running them.

On the 2-core CPU it was made on the recipe takes about seven and a half hours (MiniVGG about 2.5, the
ResNet-18 about 1.2, the EfficientNet about 1.7, the SFace about 1.6); each step prints what it runs.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "weights"
DEFAULT_CACHE = "mtcnn-0463e6a4ab"  # what extract names a cache made with its default settings
RESNET18 = '{"input_size": 128, "depths": [2,2,2,2], "widths": [64,128,256,512], "dropout": 0.2}'
ENSEMBLES = ("ensemble.json", "ensemble_nets.json", "ensemble_efficientnet.json", "ensemble_sface.json")
TOLERANCE = 0.03  # ROC-AUC: seeds, thread timing and float16 export move a rebuilt ensemble by about 0.01


@dataclass
class Step:
    """One step: a cli.py command (`argv`), or a Python function (`call`); done when `done()` says so."""

    name: str
    argv: list[str] = field(default_factory=list)
    done: Callable[[], bool] = lambda: False
    call: Callable[[], None] | None = None
    run_dir: Path | None = None  # a training run: resumed from its last checkpoint when one is there

    def command(self) -> list[str]:
        if self.run_dir is not None and (self.run_dir / "checkpoint_last.pt").is_file():
            return ["train", "--resume", "--out", str(self.run_dir), "--threads", "2", "--quiet"]
        return self.argv


class Recipe:
    """The steps, in order, writing under `out`, reading `data` (../shared/data)."""

    def __init__(self, out: Path, data: Path):
        self.out, self.data = Path(out), Path(data)
        self.faces = self.out / "faces" / DEFAULT_CACHE  # DFDC's faces
        self.faces_rt = self.out / "faces-rt" / DEFAULT_CACHE  # DFDC's and real_talking's
        self.weights = self.out / "weights"
        self.split = self.out / "split.csv"  # DFDC groups: the shipped nets' split
        self.split_rt = self.out / "split_rt.csv"  # ... and every real_talking person in training
        self.rt_labels = self.out / "real_talking_labels.csv"

    def run_dir(self, name: str) -> Path:
        return self.out / "runs" / name

    def train(self, name: str, *options: str, faces: Path | None = None, split: Path | None = None) -> Step:
        run = self.run_dir(name)
        argv = ["train", *options, "--faces", str(faces or self.faces_rt), "--split-file", str(split or self.split_rt),
                "--threads", "2", "--quiet", "--out", str(run)]
        return Step(f"train {name}", argv, lambda: _finished(run), run_dir=run)

    def export(self, file: str, run_name: str) -> Step:
        """The run's best checkpoint as a shipped float16 weight file."""
        target = self.weights / file
        return Step(f"export {file}", ["export-checkpoint", str(self.run_dir(run_name) / "checkpoint_best.pt"),
                                       str(target), "--half"], done=target.is_file)

    def steps(self) -> list[Step]:
        data, weights = self.data, self.weights
        best = lambda name: str(self.run_dir(name) / "checkpoint_best.pt")  # noqa: E731
        steps = [
            Step("labels and splits", call=self.write_labels_and_splits,
                 done=lambda: self.split_rt.is_file() and self.rt_labels.is_file()),
            Step("extract DFDC faces", ["extract", str(data / "dfdc_faces"), "--out", str(self.faces.parent),
                                        "--labels", str(data / "dfdc_faces" / "metadata.csv"), "--workers", "2",
                                        "--quiet"], done=lambda: _extracted(self.faces, data / "dfdc_faces")),
            Step("link DFDC faces into the cache with real_talking", call=self.link_dfdc_faces,
                 done=lambda: (self.faces_rt / "manifest.csv").is_file()),
            Step("extract real_talking faces", ["extract", str(data / "real_talking"), "--out",
                                                str(self.faces_rt.parent), "--labels", str(self.rt_labels),
                                                "--workers", "2", "--quiet"],
                 done=lambda: _extracted(self.faces_rt, data / "dfdc_faces", data / "real_talking")),
            # LeNet (shipped for ensembles of one's own), MiniVGG and its fine-tuning rounds
            self.train("lenet", "--net", "lenet", "--epochs", "20", "--seed", "0", faces=self.faces, split=self.split),
            self.train("minivgg", "--net", "minivgg", "--epochs", "10", "--seed", "0", faces=self.faces,
                       split=self.split),
            self.train("minivgg-ft1", "--init-from", best("minivgg"), "--fakes", "both", "--epochs", "6",
                       "--patience", "3", "--lr", "3e-4", "--seed", "0", faces=self.faces, split=self.split),
        ]
        previous = "minivgg-ft1"
        for round_ in range(2, 11):  # nine rounds on DFDC plus real_talking, each from the one before
            steps.append(self.train(f"minivgg-ft{round_}", "--init-from", best(previous), "--fakes", "both",
                                    "--epochs", "6", "--patience", "3", "--lr", "2e-4", "--seed", str(round_ - 1)))
            previous = f"minivgg-ft{round_}"
        steps += [
            Step("copy lenet.pt and minivgg.pt", call=lambda: self.copy_weights(previous),
                 done=lambda: (weights / "minivgg.pt").is_file()),
            self.train("resnet18", "--net", "resnet", "--net-kwargs", RESNET18, "--fakes", "dataset", "--epochs", "20",
                       "--patience", "5", "--seed", "0", "--precision", "bf16"),
            self.train("resnet18-r2", "--init-from", best("resnet18"), "--fakes", "dataset", "--epochs", "6",
                       "--patience", "3", "--lr", "3e-4", "--seed", "1", "--precision", "bf16"),
            self.train("efficientnet", "--net", "efficientnet", "--fakes", "both", "--epochs", "4", "--patience", "4",
                       "--lr", "5e-4", "--seed", "0", "--precision", "bf16"),
            # SFace: two epochs on about 6000 faces, then three on all of them
            self.train("sface-r1", "--net", "sface", "--fakes", "both", "--lower-face-blends", "0.5", "--epochs", "2",
                       "--patience", "2", "--lr", "3e-4", "--seed", "0", "--precision", "bf16", "--limit", "6000"),
            self.train("sface", "--init-from", best("sface-r1"), "--fakes", "both", "--lower-face-blends", "0.5",
                       "--epochs", "3", "--patience", "3", "--lr", "2e-4", "--seed", "1", "--precision", "bf16"),
            self.export("resnet18.pt", "resnet18-r2"),
            self.export("efficientnet.pt", "efficientnet"),
            self.export("sface.pt", "sface"),
        ]
        motion = ["calibrate-motion", str(data / "real_talking"), str(data / "dfdc_videos" / "lynaeydofd.mp4"),
                  "--alpha", "0.0025"]
        # each combination of nets: (its nets, the face cache that chooses their combiner, build options, and
        # the shipped files made from it, each with or without the mouth-motion member)
        combinations = {
            "built_ensemble_nets.json": (("minivgg.pt", "resnet18.pt"), self.faces, ["--redetect-every", "2"],
                                         {"ensemble.json": True, "ensemble_nets.json": False}),
            "built_ensemble_efficientnet.json": (("efficientnet.pt", "minivgg.pt"), self.faces_rt, [],
                                                 {"ensemble_efficientnet.json": True}),
            "built_ensemble_sface.json": (("minivgg.pt", "resnet18.pt", "sface.pt"), self.faces_rt,
                                          ["--redetect-every", "2"], {"ensemble_sface.json": True}),
        }
        for built_name, (members, faces, extra, shipped) in combinations.items():
            built = weights / built_name
            steps.append(Step(f"build {built_name}", [
                "build-ensemble", *[a for m in members for a in ("--member", str(weights / m))],
                "--faces", str(faces), "--out", str(built), "--tta", "flip", *extra], done=built.is_file))
            for name, with_motion in shipped.items():
                source = built
                if with_motion:
                    source = weights / f"motion_{name}"
                    steps.append(Step(f"mouth motion into {name}", [*motion, "--ensemble", str(built), "--out",
                                                                     str(source)], done=source.is_file))
                steps.append(Step(f"threshold of {name}", [
                    "set-threshold", "--ensemble", str(source), "--faces", str(faces), "--dev-set",
                    str(data / "selection_dev"), "--out", str(weights / name)], done=(weights / name).is_file))
        return steps

    # -- the steps that are not cli.py commands ----------------------------------------------------------
    def write_labels_and_splits(self) -> None:
        """real_talking's labels (REAL, one group per person) and the split of the shipped nets: their DFDC groups
        as the shipped MiniVGG recorded them, with every real_talking person in training."""
        from models.checkpoint import load_checkpoint

        self.out.mkdir(parents=True, exist_ok=True)
        talking = pd.read_csv(self.data / "real_talking" / "labels.csv")
        labels = pd.DataFrame({"file": talking.file, "label": "REAL",
                               "group": "real_talking:" + talking.person.astype(str)})
        split = load_checkpoint(SHIPPED / "minivgg.pt").state["split"]
        dfdc = pd.DataFrame([(group, part) for part, groups in split.items() for group in groups
                             if not group.startswith("real_talking:")], columns=["group", "split"])
        extra = pd.DataFrame({"group": sorted(set(labels.group)), "split": "train"})
        _write_csv(labels, self.rt_labels)
        _write_csv(dfdc, self.split)
        _write_csv(pd.concat([dfdc, extra]), self.split_rt)

    def link_dfdc_faces(self) -> None:
        """The DFDC cache's crops hard-linked (not copied) into the second cache, its tables copied (extract
        rewrites those when it adds real_talking's faces)."""
        target = self.faces_rt
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(self.faces / "faces", staging / "faces", copy_function=os.link)
        for table in self.faces.iterdir():
            if table.is_file():
                shutil.copy2(table, staging / table.name)
        os.replace(staging, target)

    def copy_weights(self, minivgg_run: str) -> None:
        self.weights.mkdir(parents=True, exist_ok=True)
        for run, name in (("lenet", "lenet.pt"), (minivgg_run, "minivgg.pt")):
            shutil.copy2(self.run_dir(run) / "checkpoint_best.pt", self.weights / f".{name}.tmp")
            os.replace(self.weights / f".{name}.tmp", self.weights / name)

    # -- running ---------------------------------------------------------------------------------------
    def run(self, dry_run: bool = False) -> None:
        steps = self.steps()
        for number, step in enumerate(steps, 1):
            label = f"[{number}/{len(steps)}] {step.name}"
            if step.done():
                print(f"{label}: done", flush=True)
                continue
            if step.call is not None:
                print(label, flush=True)
                if not dry_run:
                    step.call()
                continue
            command = [sys.executable, str(ROOT / "cli.py"), *step.command()]
            print(f"{label}: {' '.join(_quoted(a) for a in command[1:])}", flush=True)
            if not dry_run:
                subprocess.run(command, cwd=ROOT, check=True)


def _finished(run: Path) -> bool:
    """A training run that reached its end (its metrics include the test split)."""
    try:
        return "test" in json.loads((run / "metrics.json").read_text())
    except (OSError, ValueError):
        return False


def _extracted(cache: Path, *sources: Path) -> bool:
    """The cache lists as many inputs as the source folders hold video and image files."""
    from pipeline.media import is_media_name

    wanted = sum(1 for source in sources for file in source.rglob("*") if is_media_name(file))
    try:
        return len(pd.read_csv(cache / "inputs.csv")) >= wanted
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return False


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    frame.to_csv(temporary, index=False)
    os.replace(temporary, path)


def _quoted(argument: str) -> str:
    return f"'{argument}'" if any(c in argument for c in " {}\"") else argument


# -- --check ---------------------------------------------------------------------------------------------
def ensemble_figures(path: Path) -> dict[str, float]:
    """The figures an ensemble file records: validation and test ROC-AUC, the threshold, and the share of
    fakes and reals it calls FAKE on DFDC validation and selection_dev (its false-alarm budget)."""
    data = json.loads(Path(path).read_text())
    metrics = data.get("metrics", {})
    figures = {"threshold": data["threshold"]}
    selection = metrics.get("selection", {})
    if selection:
        figures["val ROC-AUC"] = max(v["val_video_auc"] for v in selection.values())
    if "test" in metrics:
        figures["test ROC-AUC"] = metrics["test"]["video"]["roc_auc"]
    for name, result in metrics.get("false_alarm_budget", {}).items():
        if isinstance(result, dict):
            for rate in ("tpr", "fpr"):
                if rate in result:
                    figures[f"{name} {rate.upper()}"] = result[rate]
    return figures


def check(weights: Path, shipped: Path = SHIPPED, tolerance: float = TOLERANCE) -> list[str]:
    """A table comparing each rebuilt ensemble file with the shipped one; returns the lines that break the
    tolerance (a ROC-AUC further than `tolerance` from the shipped one, or a missing file)."""
    failures = []
    for name in ENSEMBLES:
        rebuilt_path = Path(weights) / name
        if not rebuilt_path.is_file():
            failures.append(f"{name}: not built yet ({rebuilt_path})")
            continue
        rebuilt, reference = ensemble_figures(rebuilt_path), ensemble_figures(Path(shipped) / name)
        print(f"\n{name}")
        print(f"  {'figure':<30}{'shipped':>10}{'rebuilt':>10}{'change':>10}")
        for key, value in reference.items():
            new = rebuilt.get(key)
            change = "" if new is None else f"{new - value:+.3f}"
            print(f"  {key:<30}{value:>10.3f}{'–' if new is None else f'{new:.3f}':>10}{change:>10}")
            if "ROC-AUC" in key and (new is None or abs(new - value) > tolerance):
                failures.append(f"{name}: {key} {new} against the shipped {value:.3f} (tolerance {tolerance})")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "recipe", help="where everything is written")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="../shared/data")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--check", action="store_true", help="compare OUT/weights with models/weights; run nothing")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE, help="largest ROC-AUC change --check accepts")
    args = parser.parse_args(argv)
    recipe = Recipe(args.out, args.data)
    if args.check:
        failures = check(recipe.weights, tolerance=args.tolerance)
        for line in failures:
            print(f"FAILED {line}")
        return 1 if failures else 0
    if not (args.data / "dfdc_faces" / "metadata.csv").is_file():
        print(f"{args.data}: no dfdc_faces/metadata.csv here; give the shared data folder with --data",
              file=sys.stderr)
        return 2
    try:
        recipe.run(dry_run=args.dry_run)
    except subprocess.CalledProcessError as exc:
        print(f"step failed (exit {exc.returncode}); fix it and run the same command again: done steps are kept",
              file=sys.stderr)
        return 1
    if not args.dry_run:
        print(f"weights in {recipe.weights}; compare them with the shipped ones: python -m models.recipe --check")
    return 0


if __name__ == "__main__":
    sys.exit(main())
