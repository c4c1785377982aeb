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
from ensembles.combine import STACK_WEIGHTS, Combiner, fit_stacked
from ensembles.ensemble import EnsembleConfig
from models.checkpoint import load_checkpoint
from models.data import (Preprocess, cache_crop_size, labelled_faces, labels_of, landmarks_of, load_crops,
                         picture_boxes_of)
from models.metrics import binary_metrics, frame_and_video_metrics, video_scores
from pipeline.cache import load_manifest
from pipeline.detectors import resolve_device
from pipeline.errors import DataError, UsageError

log = logging.getLogger(__name__)

AUTO_CANDIDATES = ("mean", "logit_mean", "stacked")
# what picks the combiner: the validation video ROC-AUC alone, or its mean with the ROC-AUC of the validation
# REAL faces against self-blends of them (pseudo-fakes of no particular tool: a proxy for fakes unlike DFDC's)
SELECTIONS = ("validation", "validation+self-blends")
SELF_BLEND_SEED = 12345  # the check's pseudo-fakes: fixed, and unlike any training epoch's (train seeds 0, 1...)


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
    selection: str = "validation"  # one of SELECTIONS
    tta: str = "none"  # test-time augmentation of every member (models.nets.fake_logits)
    stack_weights: str = "non-negative"  # one of combine.STACK_WEIGHTS: may a stacked combiner weigh a member < 0?

    def __post_init__(self):
        if self.selection not in SELECTIONS:
            raise UsageError(f"unknown selection {self.selection!r}; choose one of: {', '.join(SELECTIONS)}")
        if self.stack_weights not in STACK_WEIGHTS:
            raise UsageError(f"unknown stack weights {self.stack_weights!r}; choose one of: {', '.join(STACK_WEIGHTS)}")


def score_members(checkpoints, load, device: str | torch.device | None = "cpu", batch_size: int = 256,
                  tta: str = "none") -> np.ndarray:
    """P(FAKE) of each member for each crop: (n_crops, n_members), scored as `evaluate` scores them (with test-time
    augmentation `tta`). `load(preprocess)` gives the crops as that member's uint8 input batch (e.g. `load_crops`)."""
    from models.train import evaluate

    device = resolve_device(device)
    columns = []
    for checkpoint in checkpoints:
        model = checkpoint.inference_model(device)
        columns.append(evaluate(model, load(checkpoint.preprocess), checkpoint.preprocess, device, batch_size, tta))
    return np.column_stack(columns)


def self_blend_crops(rows, cache_dir: Path, threads: int, seed: int = SELF_BLEND_SEED) -> list:
    """One self-blend of each REAL face of `rows` (models/selfblend.py, as `train --fakes self-blend` makes
    them, here on the whole crop so that every member sees the same pseudo-fake), as BGR crops in the order
    of those faces. DataError when the faces have no landmarks."""
    import cv2

    from models.train import self_blend_set

    reals = rows[labels_of(rows) == 0]
    whole = Preprocess(input_size=cache_crop_size(cache_dir), face_fraction=1.0)
    images = load_crops(reals["crop_file"].tolist(), whole, threads=threads)
    both, labels = self_blend_set(images, np.zeros(len(reals), dtype=np.float32),
                                  landmarks_of(reals, cache_dir, whole), seed,
                                  pictures=picture_boxes_of(reals, cache_dir, whole))
    return [cv2.cvtColor(np.ascontiguousarray(image.numpy().transpose(1, 2, 0)), cv2.COLOR_RGB2BGR)
            for image in both[torch.from_numpy(labels == 1)]]


def _stack_crops(crops: list):
    return lambda preprocess: torch.stack([preprocess.crop_resize(crop) for crop in crops])


def _video_auc(video_ids, labels, probs) -> float:
    videos = video_scores(video_ids, labels, probs)
    return binary_metrics(videos["label"], videos["p_fake"])["roc_auc"] or 0.0


def _cross_validated_stacked(probs: np.ndarray, labels: np.ndarray, groups: np.ndarray, weights: str) -> np.ndarray:
    """Out-of-fold predictions of a stacked combiner (up to 5 folds by group), for a fair comparison.
    UsageError when the validation set is too small for that (fewer than 2 groups, or a fold of one class)."""
    from sklearn.model_selection import GroupKFold

    folds = min(5, len(np.unique(groups)))
    if folds < 2:
        raise UsageError(f"a stacked combiner needs validation faces of at least 2 groups, got {folds}")
    out = np.zeros(len(labels))
    for train, held in GroupKFold(n_splits=folds).split(probs, labels, groups):
        out[held] = fit_stacked(probs[train], labels[train], weights=weights)(probs[held])
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


def shared_split(checkpoints, paths) -> dict:
    """The members' common validation and test groups. Members may differ in their training groups (one
    fine-tuned with extra real faces, say) but must share validation and test exactly, and none may have
    trained on them: UsageError otherwise."""
    split = checkpoints[0].state["split"]
    held_out = {name: sorted(map(str, split[name])) for name in ("val", "test")}
    for checkpoint, path in zip(checkpoints[1:], paths[1:]):
        other = checkpoint.state["split"]
        if any(sorted(map(str, other[name])) != groups for name, groups in held_out.items()):
            raise UsageError(f"{path} was validated or tested on other groups than {paths[0]}: the members must "
                             "share one split (train them with --split-file of the same split.csv)")
    for checkpoint, path in zip(checkpoints, paths):
        leaked = set(map(str, checkpoint.state["split"]["train"])) & {g for gs in held_out.values() for g in gs}
        if leaked:
            raise UsageError(f"{path} trained on {len(leaked)} validation or test group(s) of the ensemble, e.g. "
                             f"{sorted(leaked)[0]!r}: its validation figures would be a lie")
    return split


def _compare_combiners(choice: str, val: tuple, blends: tuple | None, stack_weights: str = "non-negative") -> dict:
    """Each candidate combiner (all of AUTO_CANDIDATES for `choice` "auto") with its validation video AUC,
    the frame AUC of the validation REAL faces against their self-blends when `blends` (the blends' member
    probabilities, the groups of their faces) are given, its `score` (the first, or the mean of both), the
    fitted combiner and its validation scores. A stacked combiner is fitted on the validation faces and,
    with `blends`, on the self-blends too (as FAKE); its AUCs are of out-of-fold predictions (folds by
    group, a self-blend with its face); `stack_weights` says whether its weights may be negative."""
    val_probs, val_labels, val_ids, val_groups = val
    candidates = AUTO_CANDIDATES if choice == "auto" else (choice,)
    results = {}
    for kind in candidates:
        blend_scores = None
        if kind == "stacked":
            probs, labels, groups = val_probs, val_labels, val_groups
            if blends is not None:  # one fit on both: the self-blends' groups are their validation faces'
                probs, labels = np.vstack([val_probs, blends[0]]), np.concatenate([val_labels, np.ones(len(blends[0]))])
                groups = np.concatenate([val_groups, blends[1]])
            try:
                out_of_fold = _cross_validated_stacked(probs, labels, groups, stack_weights)
            except UsageError as exc:
                if choice == "stacked":
                    raise UsageError(f"--combiner stacked: {exc} (the validation split is too small)") from None
                log.warning("stacked combiner left out of the choice: %s", exc)
                continue
            combined, blend_scores = out_of_fold[:len(val_labels)], out_of_fold[len(val_labels):]
            combiner = fit_stacked(probs, labels, weights=stack_weights)
        elif kind == "weighted":
            aucs = [max(_video_auc(val_ids, val_labels, val_probs[:, i]) - 0.5, 1e-3) for i in range(val_probs.shape[1])]
            combiner = Combiner("weighted", tuple(aucs))
            combined = combiner(val_probs)
        else:
            combiner = Combiner(kind)
            combined = combiner(val_probs)
        result = {"val_video_auc": _video_auc(val_ids, val_labels, combined), "combiner": combiner,
                  "combined": combined}
        result["score"] = result["val_video_auc"]
        if blends is not None:
            blend_scores = combiner(blends[0]) if blend_scores is None else blend_scores
            reals = combined[val_labels == 0]
            result["val_self_blend_auc"] = binary_metrics(
                np.concatenate([np.zeros(len(reals)), np.ones(len(blend_scores))]),
                np.concatenate([reals, blend_scores]))["roc_auc"] or 0.0
            result["score"] = (result["val_video_auc"] + result["val_self_blend_auc"]) / 2
        log.info("combiner %s: %s", kind, ", ".join(f"{k} {v:.4f}" for k, v in result.items()
                                                     if k in ("val_video_auc", "val_self_blend_auc")))
        results[kind] = result
    return results


def build_ensemble(config: BuildConfig) -> EnsembleConfig:
    """Score validation faces with every member, pick the combiner and threshold, write the ensemble file."""
    if not config.members:
        raise UsageError("give at least one --member checkpoint")
    checkpoints = [load_checkpoint(path) for path in config.members]
    split = shared_split(checkpoints, config.members)
    manifest, cache_dir = load_manifest(config.faces)
    faces, dropped = labelled_faces(manifest, str(cache_dir / "manifest.csv"))
    sets = {name: faces[faces["group"].astype(str).isin(set(map(str, split[name])))] for name in ("val", "test")}
    if sets["val"].empty:
        raise DataError(f"{cache_dir}: no face of the members' validation groups (is this their training cache?)")
    threads = config.threads or os.cpu_count() or 1
    device = resolve_device(config.device)
    scored = {name: (rows, score_members(checkpoints, lambda p, f=rows["crop_file"].tolist(): load_crops(f, p, threads),
                                         device, tta=config.tta), labels_of(rows))
              for name, rows in sets.items() if not rows.empty}
    val_rows, val_probs, val_labels = scored["val"]
    val_ids, val_groups = val_rows["video_id"].to_numpy(), val_rows["group"].astype(str).to_numpy()
    blends = None
    if config.selection == "validation+self-blends":
        crops = self_blend_crops(val_rows, cache_dir, threads)
        if not crops:
            raise DataError(f"{cache_dir}: the validation split holds no REAL face to self-blend")
        blends = (score_members(checkpoints, _stack_crops(crops), device, tta=config.tta), val_groups[val_labels == 0])
    results = _compare_combiners(config.combiner, (val_probs, val_labels, val_ids, val_groups), blends,
                                 config.stack_weights)
    best = max(results, key=lambda k: results[k]["score"])
    combiner, combined = results[best]["combiner"], results[best]["combined"]
    videos = video_scores(val_ids, val_labels, combined)
    threshold, rule = choose_threshold(videos["label"], videos["p_fake"], config.target_fpr)
    metrics = {
        "selection": {k: {key: round(v[key], 4) for key in ("val_video_auc", "val_self_blend_auc") if key in v}
                      for k, v in results.items()},
        "selected_by": config.selection,
        "stack_weights": config.stack_weights,
        "tta": config.tta,
        "members_val": {c.net: frame_and_video_metrics(val_ids, val_labels, val_probs[:, i])
                        for i, c in enumerate(checkpoints)},
    }
    if blends is not None:
        real_probs = val_probs[val_labels == 0]
        blend_truth = np.concatenate([np.zeros(len(real_probs)), np.ones(len(blends[0]))])
        metrics["members_val_self_blend"] = {
            c.net: binary_metrics(blend_truth, np.concatenate([real_probs[:, i], blends[0][:, i]]))
            for i, c in enumerate(checkpoints)}
    if "test" in scored:
        test_rows, test_probs, test_labels = scored["test"]
        test_ids = test_rows["video_id"].to_numpy()
        metrics["test"] = frame_and_video_metrics(test_ids, test_labels, combiner(test_probs), interval=True)
        metrics["test_at_threshold"] = binary_metrics(
            video_scores(test_ids, test_labels, combiner(test_probs))["label"],
            video_scores(test_ids, test_labels, combiner(test_probs))["p_fake"], threshold=threshold)
        metrics["members_test"] = {c.net: frame_and_video_metrics(test_ids, test_labels, test_probs[:, i])
                                   for i, c in enumerate(checkpoints)}
    cache_config = json.loads((cache_dir / "config.json").read_text())
    ensemble = EnsembleConfig(
        members=tuple(os.path.relpath(Path(p).resolve(), config.out.resolve().parent) for p in config.members),
        combiner=combiner, aggregator=Aggregator(config.aggregator), threshold=threshold, threshold_rule=rule,
        tta=config.tta,
        faces={**{k: v for k, v in cache_config.items() if k != "jpeg_quality"},
               **{k: v for k, v in (("detect_size", config.detect_size), ("redetect_every", config.redetect_every))
                  if v is not None}},
        jpeg_quality=int(cache_config.get("jpeg_quality", 95)), metrics=metrics,
    )
    ensemble.save(config.out)
    return ensemble
