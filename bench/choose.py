"""Score candidate nets on a labelled, extracted face cache, per family: the quick way to choose between them.

    .venv/bin/python -m bench.choose --data ../shared/data/selection_dev CHECKPOINT [CHECKPOINT ...] [--csv scores.csv]

End-to-end classification (`bench.crosssource`) detects faces anew for every candidate; this crops the set's
faces once (the same detector, sampling and crop geometry as classification) into a scoring cache of its own
under `runs/choose/` (never `data/faces`: nothing trains on it), reused by later runs, so trying ten checkpoints
costs ten forward passes over a few thousand crops. A video's score is the mean p_fake of its
crops (flip-averaged, as the ensembles score). Per candidate it prints the pooled ROC-AUC and the ROC-AUC of
each family's fakes against all the reals, the DFDC validation ROC-AUC stored in the checkpoint, and how many
fakes score above the highest-scoring 5% of the reals (TPR at FPR 5% on this set). `--csv` keeps every
video's score per candidate, to try combiners and thresholds on without scoring again.

A set scored here is one to choose on (selection_dev): never train on it. crosssource_dev is for reporting
only: use `bench.crosssource` on the finished ensemble for it.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from bench.common import table
from models.checkpoint import load_checkpoint
from models.data import load_crops
from models.metrics import auc_interval, format_interval
from models.nets import fake_logits
from pipeline.cache import load_manifest
from pipeline.extract import ExtractConfig, extract

FPR_BUDGET = 0.05
SCORING_CACHES = Path("runs/choose")


def scoring_cache(data: Path, labels_csv: Path, cache_root: Path = SCORING_CACHES) -> Path:
    """The labelled set's faces, cropped as classify-video crops them, in a cache of their own under
    `cache_root` (kept: a later run reuses it). For scoring only; never a training cache."""
    labels = pd.read_csv(labels_csv, dtype=str, keep_default_na=False)
    summary = extract([data / name for name in labels["file"]],
                      ExtractConfig(out_dir=cache_root / data.resolve().name, labels_csv=labels_csv, workers=1),
                      progress=False)
    if summary.failed:
        raise SystemExit(f"{data}: {summary.failed} file(s) could not be read: {summary.failures[:3]}")
    return summary.cache_dir


def video_table(cache: Path, labels_csv: Path, root: Path | None = None) -> tuple[pd.DataFrame, Path]:
    """One row per crop of the cache (`crop_file` absolute), with the labels file's `file`, `label`, `family` and
    `group` of its video (`file` relative to `root`, by default the labels file's folder)."""
    manifest, cache_dir = load_manifest(cache)
    labels = pd.read_csv(labels_csv, dtype=str, keep_default_na=False)
    root = labels_csv.parent if root is None else root
    labels["source_path"] = [str((root / file).resolve()) for file in labels["file"]]
    manifest["source_path"] = [str(Path(path).resolve()) for path in manifest["source_path"]]
    rows = manifest.merge(labels[["source_path", "file", "label", "family", "group"]].rename(
        columns={"label": "true_label", "group": "identity"}), on="source_path", how="inner")
    if rows.empty:
        raise SystemExit(f"{cache}: none of its crops comes from a file of {labels_csv}")
    return rows, cache_dir


@torch.no_grad()
def crop_scores(checkpoint_path: Path, rows: pd.DataFrame, tta: str) -> np.ndarray:
    """p_fake of every crop by the checkpoint's net."""
    checkpoint = load_checkpoint(checkpoint_path)
    model = checkpoint.inference_model()
    images = load_crops(rows["crop_file"].tolist(), checkpoint.preprocess, threads=2)
    scores = [torch.sigmoid(fake_logits(model, checkpoint.preprocess.normalize(images[start:start + 128]), tta))
              for start in range(0, len(images), 128)]
    return torch.cat(scores).numpy()


def tpr_at_fpr(fakes: np.ndarray, reals: np.ndarray, fpr: float = FPR_BUDGET) -> tuple[float, float]:
    """(TPR, threshold): the share of fakes above the lowest threshold that at most `fpr` of the reals exceed."""
    threshold = float(np.quantile(reals, 1 - fpr, method="higher"))
    return float((fakes > threshold).mean()), threshold


def summary(videos: pd.DataFrame, column: str) -> dict:
    """Pooled and per-family ROC-AUC of a per-video score column, with TPR at 5% FPR."""
    reals = videos.loc[videos["true_label"] == "REAL", column].to_numpy()
    fake_rows = videos[videos["true_label"] == "FAKE"]
    out = {"pooled": roc_auc_score(videos["true_label"] == "FAKE", videos[column]),
           "pooled_ci": auc_interval(fake_rows[column].to_numpy(), reals)}
    for family, group in fake_rows.groupby("family"):
        out[family] = roc_auc_score(np.r_[np.zeros(len(reals)), np.ones(len(group))],
                                    np.r_[reals, group[column].to_numpy()])
    out["tpr_at_5"], out["threshold_5"] = tpr_at_fpr(fake_rows[column].to_numpy(), reals)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="the labelled set's folder")
    parser.add_argument("--labels", type=Path, default=None,
                        help="its labels (file,label,family,group; files relative to --data) [default: DATA/labels.csv]")
    parser.add_argument("--cache-dir", type=Path, default=SCORING_CACHES,
                        help=f"where the set's scoring cache is kept [default: {SCORING_CACHES}]")
    parser.add_argument("--tta", choices=["none", "flip"], default="flip")
    parser.add_argument("--csv", type=Path, default=None, help="write every video's score per candidate here")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)

    labels = args.labels or args.data / "labels.csv"
    cache = scoring_cache(args.data, labels, args.cache_dir)
    rows, _ = video_table(cache, labels, args.data)
    for path in args.checkpoints:
        rows[str(path)] = crop_scores(path, rows, args.tta)
    columns = [str(path) for path in args.checkpoints]
    videos = rows.groupby(["file", "true_label", "family", "identity"], as_index=False)[columns].mean()
    families = sorted(videos.loc[videos["true_label"] == "FAKE", "family"].unique())
    lines = []
    for path, column in zip(args.checkpoints, columns):
        result = summary(videos, column)
        val = load_checkpoint(path).state.get("val_metrics", {}).get("video", {}).get("roc_auc")
        lines.append([str(path), "-" if val is None else f"{val:.3f}",
                      f"{result['pooled']:.3f} {format_interval(result['pooled_ci'])}",
                      *[f"{result.get(family, float('nan')):.3f}" for family in families],
                      f"{result['tpr_at_5']:.2f}"])
    n_real, n_fake = int((videos["true_label"] == "REAL").sum()), int((videos["true_label"] == "FAKE").sum())
    print(f"{args.data}: {n_real} real and {n_fake} fake files with a face; video score = mean crop p_fake "
          f"(tta {args.tta})")
    print(table(lines, ["checkpoint", "DFDC val AUC", "pooled AUC (95% CI)", *families, "TPR at FPR 5%"]))
    if args.csv:
        videos.to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
