"""Training curves and ROC curves as PNG files (matplotlib's object API: no pyplot, no display needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve


def plot_curves(history: list[dict], path: Path, title: str = "") -> None:
    """Loss, accuracy and ROC-AUC per epoch, train vs validation (frame level).

    Train values come from the epoch's own (augmented) batches, as the weights changed; validation
    values from the weights at the end of the epoch.
    """
    epochs = [entry["epoch"] for entry in history]
    figure = Figure(figsize=(12, 3.6), layout="constrained")
    panels = [("log_loss", "loss (binary cross-entropy)"), ("accuracy", "accuracy"), ("roc_auc", "ROC-AUC")]
    for axes, (key, label) in zip(figure.subplots(1, 3), panels):
        train = [_value(entry["train"][key]) for entry in history]
        val = [_value(entry["val"]["frame"][key]) for entry in history]
        axes.plot(epochs, train, "o-", label="train")
        axes.plot(epochs, val, "o-", label="validation")
        axes.set_xlabel("epoch")
        axes.set_title(label)
        axes.grid(alpha=0.3)
        axes.legend()
    if title:
        figure.suptitle(title)
    figure.savefig(path, dpi=100)


def _value(number):
    return np.nan if number is None else number


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str = "") -> None:
    """ROC curves, one per entry of `curves` ({"frame": (y_true, p_fake), "video": ...}) with their AUC."""
    from sklearn.metrics import roc_auc_score

    figure = Figure(figsize=(5, 5), layout="constrained")
    axes = figure.subplots()
    for name, (y_true, p_fake) in curves.items():
        if 0 < np.sum(y_true) < len(y_true):
            fpr, tpr, _ = roc_curve(y_true, p_fake)
            axes.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y_true, p_fake):.3f}, n={len(y_true)})")
    axes.plot([0, 1], [0, 1], "--", color="grey", label="chance")
    axes.set_xlabel("false positive rate (REAL called FAKE)")
    axes.set_ylabel("true positive rate (FAKE caught)")
    axes.set_title(title or "ROC")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.savefig(path, dpi=100)
