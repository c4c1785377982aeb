"""Build an ensemble file from trained member checkpoints: combiner and threshold chosen on validation."""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ensembles.aggregate import Aggregator
from ensembles.combine import Combiner, fit_stacked
from ensembles.ensemble import EnsembleConfig
from models.checkpoint import load_checkpoint
from models.data import labelled_faces, labels_of, load_crops
from models.metrics import binary_metrics, frame_and_video_metrics, video_scores
from pipeline.cache import load_manifest
from pipeline.detectors import resolve_device
from pipeline.errors import DataError, UsageError

log = logging.getLogger(__name__)

AUTO_CANDIDATES = ("mean", "logit_mean", "stacked")


@dataclass(frozen=True)
class BuildConfig:
    members: tuple[Path, ...]
    faces: Path
    out: Path
    combiner: str = "auto"
    aggregator: str = "confident"
    target_fpr: float | None = None  # None: threshold at the validation EER
    detect_size: int | None = None  # None: as in the training cache (it changes speed, not crop geometry)
    redetect_every: int | None = None  # None: as in the training cache (speed; see FaceConfig.redetect_every)
    threads: int = 0
    device: str | None = None  # None: cuda when available (as train and evaluate)


def score_members(checkpoints, files: list[str], threads: int, device: str | torch.device | None = "cpu",
                  batch_size: int = 256) -> np.ndarray:
    """P(FAKE) of each member for each crop file: (n_files, n_members), scored as `evaluate` scores them."""
    from models.train import evaluate

    device = resolve_device(device)
    columns = []
    for checkpoint in checkpoints:
        model = checkpoint.build_model().to(device, memory_format=torch.channels_last)
        images = load_crops(files, checkpoint.preprocess, threads=threads)
        columns.append(evaluate(model, images, checkpoint.preprocess, device, batch_size))
    return np.column_stack(columns)


def _video_auc(video_ids, labels, probs) -> float:
    videos = video_scores(video_ids, labels, probs)
    return binary_metrics(videos["label"], videos["p_fake"])["roc_auc"] or 0.0


def _cross_validated_stacked(probs: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Out-of-fold predictions of a stacked combiner (up to 5 folds by group), for a fair comparison.
    UsageError when the validation set is too small for that (fewer than 2 groups, or a fold of one class)."""
    from sklearn.model_selection import GroupKFold

    folds = min(5, len(np.unique(groups)))
    if folds < 2:
        raise UsageError(f"a stacked combiner needs validation faces of at least 2 groups, got {folds}")
    out = np.zeros(len(labels))
    for train, held in GroupKFold(n_splits=folds).split(probs, labels, groups):
        out[held] = fit_stacked(probs[train], labels[train])(probs[held])
    return out


def choose_threshold(labels, scores, target_fpr: float | None) -> tuple[float, str]:
    """The decision threshold on validation scores: at the EER, or at the highest rate <= target FPR."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(labels, scores)
    if target_fpr is None:
        index = int(np.nanargmin(np.abs((1 - tpr) - fpr)))
        rule = f"equal error rate on validation (FPR {fpr[index]:.3f}, TPR {tpr[index]:.3f})"
    else:
        allowed = np.where(fpr <= target_fpr)[0]
        index = int(allowed[-1])
        rule = f"false-positive rate <= {target_fpr} on validation (FPR {fpr[index]:.3f}, TPR {tpr[index]:.3f})"
    return float(np.clip(thresholds[index], 1e-4, 1 - 1e-4)), rule


def build_ensemble(config: BuildConfig) -> EnsembleConfig:
    """Score validation faces with every member, pick the combiner and threshold, write the ensemble file."""
    if not config.members:
        raise UsageError("give at least one --member checkpoint")
    checkpoints = [load_checkpoint(path) for path in config.members]
    splits = {json.dumps(c.state["split"], sort_keys=True) for c in checkpoints}
    if len(splits) != 1:
        raise UsageError("the members were trained on different splits: their validation sets differ")
    split = checkpoints[0].state["split"]
    manifest, cache_dir = load_manifest(config.faces)
    faces, dropped = labelled_faces(manifest, str(cache_dir / "manifest.csv"))
    sets = {name: faces[faces["group"].astype(str).isin(set(map(str, split[name])))] for name in ("val", "test")}
    if sets["val"].empty:
        raise DataError(f"{cache_dir}: no face of the members' validation groups (is this their training cache?)")
    threads = config.threads or os.cpu_count() or 1
    device = resolve_device(config.device)
    scored = {name: (rows, score_members(checkpoints, rows["crop_file"].tolist(), threads, device), labels_of(rows))
              for name, rows in sets.items() if not rows.empty}
    val_rows, val_probs, val_labels = scored["val"]
    val_ids, val_groups = val_rows["video_id"].to_numpy(), val_rows["group"].astype(str).to_numpy()
    candidates = AUTO_CANDIDATES if config.combiner == "auto" else (config.combiner,)
    results = {}
    for kind in candidates:
        if kind == "stacked":
            try:
                combined = _cross_validated_stacked(val_probs, val_labels, val_groups)
            except UsageError as exc:
                if config.combiner == "stacked":
                    raise UsageError(f"--combiner stacked: {exc} (the validation split is too small)") from None
                log.warning("stacked combiner left out of the choice: %s", exc)
                continue
            combiner = fit_stacked(val_probs, val_labels)
        elif kind == "weighted":
            aucs = [max(_video_auc(val_ids, val_labels, val_probs[:, i]) - 0.5, 1e-3) for i in range(val_probs.shape[1])]
            combiner = Combiner("weighted", tuple(aucs))
            combined = combiner(val_probs)
        else:
            combiner = Combiner(kind)
            combined = combiner(val_probs)
        results[kind] = (_video_auc(val_ids, val_labels, combined), combiner, combined)
        log.info("combiner %s: validation video AUC %.4f", kind, results[kind][0])
    best = max(results, key=lambda k: results[k][0])
    _, combiner, combined = results[best]
    videos = video_scores(val_ids, val_labels, combined)
    threshold, rule = choose_threshold(videos["label"], videos["p_fake"], config.target_fpr)
    metrics = {
        "selection": {k: {"val_video_auc": round(v[0], 4)} for k, v in results.items()},
        "members_val": {c.net: frame_and_video_metrics(val_ids, val_labels, val_probs[:, i])
                        for i, c in enumerate(checkpoints)},
    }
    if "test" in scored:
        test_rows, test_probs, test_labels = scored["test"]
        test_ids = test_rows["video_id"].to_numpy()
        metrics["test"] = frame_and_video_metrics(test_ids, test_labels, combiner(test_probs))
        metrics["test_at_threshold"] = binary_metrics(
            video_scores(test_ids, test_labels, combiner(test_probs))["label"],
            video_scores(test_ids, test_labels, combiner(test_probs))["p_fake"], threshold=threshold)
        metrics["members_test"] = {c.net: frame_and_video_metrics(test_ids, test_labels, test_probs[:, i])
                                   for i, c in enumerate(checkpoints)}
    cache_config = json.loads((cache_dir / "config.json").read_text())
    ensemble = EnsembleConfig(
        members=tuple(os.path.relpath(Path(p).resolve(), config.out.resolve().parent) for p in config.members),
        combiner=combiner, aggregator=Aggregator(config.aggregator), threshold=threshold, threshold_rule=rule,
        faces={**{k: v for k, v in cache_config.items() if k != "jpeg_quality"},
               **{k: v for k, v in (("detect_size", config.detect_size), ("redetect_every", config.redetect_every))
                  if v is not None}},
        jpeg_quality=int(cache_config.get("jpeg_quality", 95)), metrics=metrics,
    )
    config.out.parent.mkdir(parents=True, exist_ok=True)
    ensemble.save(config.out)
    return ensemble
