"""The evaluate stage: score any face manifest with a checkpoint, frame and video level."""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from models.checkpoint import load_checkpoint
from models.data import labelled_faces, labels_of, load_crops
from models.metrics import describe, frame_and_video_metrics
from models.split import SPLITS
from models.train import evaluate
from pipeline.cache import load_manifest
from pipeline.detectors import resolve_device
from pipeline.errors import DataError, UsageError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluateConfig:
    checkpoint: Path
    faces: Path = Path("data/faces")
    split: str = "all"  # all faces, or only those of the checkpoint's train / val / test groups
    batch_size: int = 256
    threads: int | None = None
    device: str | None = None

    def __post_init__(self):
        if self.split not in ("all", *SPLITS):
            raise UsageError(f"--split {self.split!r}: choose one of all, {', '.join(SPLITS)}")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1, got {self.batch_size}")


@dataclass
class EvaluationResult:
    checkpoint: Path
    net: str
    cache_dir: Path
    split: str
    metrics: dict  # {"frame": ..., "video": ...}
    seconds: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"checkpoint": str(self.checkpoint), "net": self.net, "faces": str(self.cache_dir),
                "split": self.split, "seconds": round(self.seconds, 2), "notes": self.notes, **self.metrics}

    def lines(self) -> list[str]:
        out = [f"{self.net} ({self.checkpoint}) on {self.cache_dir}, faces: {self.split}, {self.seconds:.1f} s"]
        out += [f"  note: {note}" for note in self.notes]
        for level in ("frame", "video"):
            metrics = self.metrics[level]
            (tn, fp), (fn, tp) = metrics["confusion_matrix"]
            out.append(f"{level} level: {describe(metrics)}")
            out.append(f"  at p_fake >= {metrics['threshold']}: precision {metrics['precision']:.3f}  recall "
                       f"{metrics['recall']:.3f}  specificity "
                       f"{'n/a' if metrics['specificity'] is None else format(metrics['specificity'], '.3f')}  "
                       f"confusion [[TN {tn}, FP {fp}], [FN {fn}, TP {tp}]]"
                       + ("" if metrics["eer_threshold"] is None else f"  EER threshold {metrics['eer_threshold']:.3f}"))
        return out


def evaluate_checkpoint(config: EvaluateConfig, progress: bool = True) -> EvaluationResult:
    """Metrics of `config.checkpoint` on the labelled faces of `config.faces` (all, or one split of its run)."""
    started = time.perf_counter()
    threads = config.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    device = resolve_device(config.device)
    checkpoint = load_checkpoint(config.checkpoint)
    model = checkpoint.inference_model(device)
    manifest, cache_dir = load_manifest(config.faces)
    rows, n_unknown = labelled_faces(manifest, str(cache_dir / "manifest.csv"))
    notes = [f"{n_unknown} face(s) with an unknown label left out"] if n_unknown else []
    split = {name: set(groups) for name, groups in checkpoint.state.get("split", {}).items()}
    if config.split != "all":
        rows = rows[rows["group"].isin(split.get(config.split, set()))]
        if rows.empty:
            raise DataError(f"none of the faces in {cache_dir} belong to the {config.split} split of "
                            f"{config.checkpoint} (another manifest?)")
    else:
        seen = int(rows["group"].isin(split.get("train", set()) | split.get("val", set())).sum())
        if seen:
            notes.append(f"{seen} of {len(rows)} faces belong to groups this net was trained or selected on: "
                         "these metrics are not a held-out estimate (use --split test)")
    images = load_crops(rows["crop_file"].tolist(), checkpoint.preprocess, threads=threads, progress=progress)
    p_fake = evaluate(model, images, checkpoint.preprocess, device, config.batch_size)
    metrics = frame_and_video_metrics(rows["video_id"], labels_of(rows), p_fake, name=str(cache_dir), interval=True)
    return EvaluationResult(checkpoint=config.checkpoint, net=checkpoint.net, cache_dir=cache_dir, split=config.split,
                            metrics=metrics, seconds=time.perf_counter() - started, notes=notes)
