"""Binary detection metrics at frame and video level, from scikit-learn where it has them.

Labels are 1 for FAKE and 0 for REAL; scores are p_fake. Video level = the mean of a video's frame
probabilities. Metrics that need both classes (ROC-AUC, EER, average precision) are None when a set
holds one class only; a warning says so.
"""
from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
from scipy.stats import binomtest, rankdata
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (average_precision_score, confusion_matrix, log_loss, precision_recall_fscore_support,
                             roc_auc_score, roc_curve)

log = logging.getLogger(__name__)

THRESHOLD = 0.5


def equal_error_rate(y_true: np.ndarray, p_fake: np.ndarray) -> tuple[float, float]:
    """(EER, threshold): where the false positive rate meets the false negative rate on the ROC curve."""
    fpr, tpr, thresholds = roc_curve(y_true, p_fake)
    fnr = 1.0 - tpr
    index = int(np.nanargmin(np.abs(fnr - fpr)))
    return float((fpr[index] + fnr[index]) / 2.0), float(min(thresholds[index], 1.0))


def auc_interval(fake_scores, real_scores, confidence: float = 0.95, n_resamples: int = 2000,
                 seed: int = 0) -> tuple[float, float] | None:
    """A bootstrap confidence interval (percentile) for the ROC-AUC of fakes against reals: fakes and reals are
    resampled separately, so each resample keeps both classes and their counts. Seeded, hence reproducible.
    None with fewer than two fakes or two reals."""
    aucs = _bootstrap_aucs([(fake_scores, real_scores)], n_resamples, seed)
    return None if aucs is None else _percentile_interval(aucs[0], confidence)


def auc_difference_interval(fakes_a, reals_a, fakes_b, reals_b, confidence: float = 0.95, n_resamples: int = 2000,
                            seed: int = 0) -> tuple[float, float] | None:
    """A paired bootstrap interval for ROC-AUC(b) - ROC-AUC(a), two detectors' scores of the same files (fakes_a[i]
    and fakes_b[i] are one file's): each resample draws files, fakes and reals apart, and scores both detectors on
    them, so what the files share does not widen the interval. An interval that holds 0 does not tell them apart.
    None with fewer than two fakes or two reals."""
    aucs = _bootstrap_aucs([(fakes_a, reals_a), (fakes_b, reals_b)], n_resamples, seed)
    return None if aucs is None else _percentile_interval(aucs[1] - aucs[0], confidence)


def _bootstrap_aucs(detectors: list[tuple], n_resamples: int, seed: int) -> np.ndarray | None:
    """ROC-AUCs, shape (detectors, n_resamples), of the same seeded resamples of files (fakes and reals drawn apart)
    for each detector's (fake scores, real scores); None with fewer than two of a class."""
    scored = [(np.asarray(f, dtype=float), np.asarray(r, dtype=float)) for f, r in detectors]
    n_fake, n_real = len(scored[0][0]), len(scored[0][1])
    if any((len(f), len(r)) != (n_fake, n_real) for f, r in scored):
        raise ValueError("paired scores: every detector must score the same files")
    if n_fake < 2 or n_real < 2:
        return None
    rng = np.random.default_rng(seed)
    batch = max(1, int(2e7 // (n_fake + n_real)))  # resamples ranked at once: memory stays bounded
    aucs = []
    for start in range(0, n_resamples, batch):
        size = min(batch, n_resamples - start)
        f, r = rng.integers(0, n_fake, (size, n_fake)), rng.integers(0, n_real, (size, n_real))
        aucs.append([_auc_by_ranks(fakes[f], reals[r]) for fakes, reals in scored])
    return np.concatenate(aucs, axis=1)


def _auc_by_ranks(fakes: np.ndarray, reals: np.ndarray) -> np.ndarray:
    """ROC-AUC along the last axis (Mann-Whitney: the fakes' mean rank among all, ties averaged)."""
    ranks = rankdata(np.concatenate([fakes, reals], axis=-1), axis=-1)[..., :fakes.shape[-1]]
    n_fake, n_real = fakes.shape[-1], reals.shape[-1]
    return (ranks.sum(axis=-1) - n_fake * (n_fake + 1) / 2) / (n_fake * n_real)


def format_interval(interval, digits: int = 3) -> str:
    """' (95% CI 0.873-0.895)', or '' where there is no interval: what follows a figure in a printed line."""
    return "" if interval is None else f" (95% CI {interval[0]:.{digits}f}-{interval[1]:.{digits}f})"


def _percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def rate_interval(hits: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a rate (a TPR or FPR: `hits` of `total`)."""
    if total <= 0:
        raise ValueError("a rate interval needs at least one trial")
    interval = binomtest(int(hits), int(total)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


def binary_metrics(y_true, p_fake, threshold: float = THRESHOLD, name: str = "", interval: bool = False) -> dict:
    """Accuracy, precision, recall, F1, specificity (at `threshold`), ROC-AUC, EER, AP, log loss, confusion matrix;
    with `interval`, also the ROC-AUC's 95% bootstrap interval (`roc_auc_ci`; None with fewer than two of a class)."""
    y_true = np.asarray(y_true, dtype=int)
    p_fake = np.asarray(p_fake, dtype=float)
    if len(y_true) == 0:
        raise ValueError("no samples to score")
    y_pred = (p_fake >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y_true, y_pred, labels=[0, 1]).ravel().tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # precision with no positive prediction: 0
        precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, average="binary", zero_division=0)
    both_classes = 0 < y_true.sum() < len(y_true)
    if both_classes:
        auc = float(roc_auc_score(y_true, p_fake))
        eer, eer_threshold = equal_error_rate(y_true, p_fake)
        average_precision = float(average_precision_score(y_true, p_fake))
    else:
        log.warning("%s: only one class (%s) among %d samples: ROC-AUC, EER and average precision are undefined",
                    name or "metrics", "FAKE" if y_true[0] else "REAL", len(y_true))
        auc = eer = eer_threshold = average_precision = None
    return {
        "n": len(y_true), "n_real": int((y_true == 0).sum()), "n_fake": int((y_true == 1).sum()),
        "accuracy": float((tp + tn) / len(y_true)),
        "precision": float(precision), "recall": float(recall), "f1": float(f1),
        "specificity": float(tn / (tn + fp)) if tn + fp else None,
        "roc_auc": auc, **({"roc_auc_ci": _auc_interval_list(y_true, p_fake)} if interval else {}),
        "eer": eer, "eer_threshold": eer_threshold, "average_precision": average_precision,
        "log_loss": float(log_loss(y_true, np.clip(p_fake, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "threshold": threshold,
        "confusion_matrix": [[tn, fp], [fn, tp]],  # rows: true REAL, FAKE; columns: predicted REAL, FAKE
    }


def _auc_interval_list(y_true: np.ndarray, p_fake: np.ndarray) -> list[float] | None:
    interval = auc_interval(p_fake[y_true == 1], p_fake[y_true == 0])
    return None if interval is None else list(interval)


def video_scores(video_ids, y_true, p_fake) -> pd.DataFrame:
    """One row per video: `video_id`, `label` (1 FAKE), `p_fake` = mean of its frame probabilities, `n_frames`."""
    frames = pd.DataFrame({"video_id": np.asarray(video_ids), "label": np.asarray(y_true, dtype=int),
                           "p_fake": np.asarray(p_fake, dtype=float)})
    videos = frames.groupby("video_id", sort=True).agg(label=("label", "max"), label_min=("label", "min"),
                                                        p_fake=("p_fake", "mean"), n_frames=("p_fake", "size"))
    if (videos["label"] != videos["label_min"]).any():
        raise ValueError("a video holds frames of both labels")
    return videos.drop(columns="label_min").reset_index()


def frame_and_video_metrics(video_ids, y_true, p_fake, name: str = "", interval: bool = False) -> dict:
    """{"frame": metrics over faces, "video": metrics over videos (mean p_fake per video)}; `interval`: as for
    `binary_metrics`."""
    videos = video_scores(video_ids, y_true, p_fake)
    return {
        "frame": binary_metrics(y_true, p_fake, name=f"{name} frames".strip(), interval=interval),
        "video": binary_metrics(videos["label"], videos["p_fake"], name=f"{name} videos".strip(), interval=interval),
    }


def describe(metrics: dict) -> str:
    """One line: AUC, accuracy, F1, EER, log loss and counts of a `binary_metrics` dict."""

    def value(key):
        return "n/a" if metrics[key] is None else f"{metrics[key]:.3f}"

    return (f"AUC {value('roc_auc')}{format_interval(metrics.get('roc_auc_ci'))}  acc {value('accuracy')}  F1 {value('f1')}  EER {value('eer')}  "
            f"AP {value('average_precision')}  log loss {value('log_loss')}  "
            f"(n={metrics['n']}: {metrics['n_real']} REAL, {metrics['n_fake']} FAKE)")
