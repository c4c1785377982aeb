"""The false-alarm budget: a decision threshold at which at most a set share of real videos is called FAKE.

A FAKE verdict accuses someone, so the threshold answers to the reals, not to the equal error rate. It is
chosen on two sets read together: the members' DFDC validation faces (scored as build-ensemble scores them)
and the real files of a labelled development set (e.g. ../shared/data/selection_dev), classified end to end
exactly as `classify-video` does, track members (mouth motion, still background) included. The threshold is the
lowest at which neither set has more than `max_fpr` of its reals at or above it, so it catches as many fakes as
the budget allows.

A track member (mouth motion, still background) flags a track when its measure lies below the member's
calibrated quantile, whatever the threshold, so the reals it flags count against the budget at every threshold;
if they alone exceed it no threshold can meet the budget and `set_threshold` says so (recalibrate the member
or drop it).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ensembles.build import score_members, shared_split
from ensembles.classify import classify_paths
from ensembles.ensemble import Ensemble, EnsembleConfig, track_p_fake
from ensembles.explain import confidence_band
from ensembles.verdict import TrackScore, VideoVerdict
from models.checkpoint import load_checkpoint
from models.data import labelled_faces, labels_of, load_crops
from models.metrics import binary_metrics, video_scores
from pipeline.cache import load_manifest
from pipeline.errors import DataError, UsageError
from pipeline.labels import read_labelled_set

log = logging.getLogger(__name__)

DEFAULT_MAX_FPR = 0.05


@dataclass(frozen=True)
class BudgetConfig:
    ensemble: Path  # the ensemble file to set the threshold of
    faces: Path  # the members' training cache (its validation groups are scored)
    dev_set: Path  # a folder with labels.csv (file,label[,family]); its reals are classified end to end
    out: Path
    max_fpr: float = DEFAULT_MAX_FPR
    device: str | None = None

    def __post_init__(self):
        if not 0.0 <= self.max_fpr < 1.0:
            raise UsageError(f"--max-fpr must lie in [0, 1), got {self.max_fpr}")


def read_dev_labels(dev_set: Path) -> pd.DataFrame:
    """The set's labels.csv (file, label, family; pipeline.labels.read_labelled_set), with at least one REAL."""
    labels = read_labelled_set(dev_set)
    if (labels["label"] == "REAL").sum() == 0:
        raise DataError(f"{Path(dev_set) / 'labels.csv'}: no REAL file, so it cannot measure false alarms")
    return labels


def p_fake_at(verdict: VideoVerdict, threshold: float, ensemble: Ensemble) -> float | None:
    """The verdict's p_fake had the ensemble decided at `threshold`: the nets' track scores do not depend on it,
    the track members' mappings and their cap do (None: no face, or an error)."""
    if verdict.p_fake is None:
        return None
    counted = [t for t in verdict.tracks if t.counted]

    def track_score(track: TrackScore) -> float:
        p_nets = track.p_nets if track.p_nets is not None else track.p_fake
        return track_p_fake(p_nets, ensemble.track_members_at(track, threshold), threshold)

    scores = [track_score(t) for t in counted]
    if ensemble.config.track_policy == "max":
        return max(scores)
    return float(np.average(scores, weights=[t.n_faces for t in counted]))


def lowest_threshold_within(budget: float, val_reals: np.ndarray, dev_reals: list[VideoVerdict],
                            ensemble: Ensemble) -> float | None:
    """The lowest threshold at which at most `budget` of the validation reals' scores and of the set's real
    files are called FAKE (None: none is, as when a track member alone flags too many reals)."""
    candidates = np.unique(np.concatenate([
        val_reals, [t.p_nets for v in dev_reals for t in v.tracks if t.p_nets is not None],
        [v.p_fake for v in dev_reals if v.p_fake is not None], [1e-4]]))
    candidates = np.clip(np.unique(np.concatenate([candidates, candidates + 1e-6])), 1e-4, 1 - 1e-4)
    sorted_val = np.sort(val_reals)
    for threshold in candidates:  # false alarms only fall as the threshold rises: the first that fits wins
        if _rate(sorted_val, threshold) > budget:
            continue
        if false_alarms(dev_reals, threshold, ensemble)[0] <= budget:
            return float(threshold)
    return None


def _rate(sorted_scores: np.ndarray, threshold: float) -> float:
    """Share of the scores >= threshold."""
    return float(len(sorted_scores) - np.searchsorted(sorted_scores, threshold, side="left")) / max(1, len(sorted_scores))


def false_alarms(reals: list[VideoVerdict], threshold: float, ensemble: Ensemble) -> tuple[float, list[str]]:
    """Share of the real files called FAKE at `threshold` (files without a face are not called FAKE), and them."""
    flagged = [v.file_name for v in reals if (p := p_fake_at(v, threshold, ensemble)) is not None and p >= threshold]
    return len(flagged) / max(1, len(reals)), flagged


def held_out_scores(ensemble_path: Path, ensemble: Ensemble, faces: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per split ("val", and "test" where the cache holds it): the video p_fake of the members' held-out DFDC
    faces, combined as the ensemble combines them, and their labels (1 FAKE)."""
    paths = [ensemble_path.parent / member for member in ensemble.config.members]
    checkpoints = [load_checkpoint(path) for path in paths]
    split = shared_split(checkpoints, paths)
    manifest, cache_dir = load_manifest(faces)
    faces_all, _ = labelled_faces(manifest, str(cache_dir / "manifest.csv"))
    out = {}
    for name in ("val", "test"):
        rows = faces_all[faces_all["group"].astype(str).isin(set(map(str, split[name])))]
        if rows.empty:
            continue
        files = rows["crop_file"].tolist()
        probs = score_members(checkpoints, lambda p, f=files: load_crops(f, p, os.cpu_count() or 1), ensemble.device,
                              tta=ensemble.config.tta)
        videos = video_scores(rows["video_id"].to_numpy(), labels_of(rows), ensemble.config.combiner(probs))
        out[name] = (videos["p_fake"].to_numpy(), videos["label"].to_numpy())
    if "val" not in out:
        raise DataError(f"{cache_dir}: no face of the members' validation groups (is this their training cache?)")
    return out


def set_threshold(config: BudgetConfig) -> tuple[EnsembleConfig, dict]:
    """Choose the ensemble's threshold within the false-alarm budget and write the ensemble to `config.out`;
    returns it and a report (rates on both sets, the files flagged, reals in "very likely fake")."""
    # float32, whatever the CPU: the file's threshold and rates are then the same on every machine
    ensemble = Ensemble.load(config.ensemble, device=config.device, torch_threads=None, precision="fp32")
    labels = read_dev_labels(config.dev_set)
    held_out = held_out_scores(Path(config.ensemble), ensemble, config.faces)
    val_scores, val_labels = held_out["val"]
    paths = [Path(config.dev_set) / name for name in labels["file"]]
    by_path = {Path(v.path).resolve(): v for v in classify_paths(paths, ensemble)}
    verdicts = [by_path[path.resolve()] for path in paths]
    is_real = (labels["label"] == "REAL").to_numpy()
    dev_reals = [v for v, real in zip(verdicts, is_real) if real]
    dev_fakes = [v for v, real in zip(verdicts, is_real) if not real]
    threshold = lowest_threshold_within(config.max_fpr, val_scores[val_labels == 0], dev_reals, ensemble)
    if threshold is None:
        _, flagged = false_alarms(dev_reals, 1 - 1e-4, ensemble)
        raise DataError(f"no threshold keeps the false alarms within {config.max_fpr:.0%}: at the highest one "
                        f"{len(flagged)} of {len(dev_reals)} reals of {config.dev_set} are still called FAKE "
                        f"({', '.join(flagged[:5])}), by a track member alone; recalibrate it or drop it")
    dev_fpr, flagged = false_alarms(dev_reals, threshold, ensemble)
    fake_scores = [p_fake_at(v, threshold, ensemble) for v in dev_fakes]
    caught = sum(p is not None and p >= threshold for p in fake_scores)
    val_fpr = _rate(np.sort(val_scores[val_labels == 0]), threshold)
    val_tpr = _rate(np.sort(val_scores[val_labels == 1]), threshold)
    accused = [v.file_name for v in dev_reals
               if confidence_band(p_fake_at(v, threshold, ensemble), threshold) == "very likely fake"]
    name = Path(config.dev_set).name
    report = {
        "max_fpr": config.max_fpr, "threshold": round(threshold, 6),
        "dfdc_validation": {"n_real": int((val_labels == 0).sum()), "n_fake": int((val_labels == 1).sum()),
                            "fpr": round(val_fpr, 4), "tpr": round(val_tpr, 4)},
        name: {"n_real": len(dev_reals), "n_fake": len(dev_fakes), "fpr": round(dev_fpr, 4),
               "tpr": round(caught / max(1, len(dev_fakes)), 4), "reals_called_fake": flagged,
               "reals_very_likely_fake": accused},
    }
    rule = (f"lowest threshold with at most {config.max_fpr:.0%} of reals called FAKE on DFDC validation (FPR "
            f"{val_fpr:.3f}, TPR {val_tpr:.3f}) and on {name}'s {len(dev_reals)} reals (FPR {dev_fpr:.3f}, TPR "
            f"{caught / max(1, len(dev_fakes)):.3f})")
    out = Path(config.out)
    members = tuple(os.path.relpath((Path(config.ensemble).parent / m).resolve(), out.resolve().parent)
                    for m in ensemble.config.members)  # relative to the file written
    metrics = {**ensemble.config.metrics, "false_alarm_budget": report}
    if "test" in held_out:  # what the page quotes ("right N% of the time") holds at the new threshold
        metrics["test_at_threshold"] = binary_metrics(held_out["test"][1], held_out["test"][0], threshold=threshold)
    updated = replace(ensemble.config, members=members, threshold=threshold, threshold_rule=rule, metrics=metrics)
    updated.save(out)
    return updated, report
