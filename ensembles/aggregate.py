"""Aggregate the per-frame P(FAKE) of one face track (or one video) into a single score."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.errors import UsageError


@dataclass(frozen=True)
class Aggregator:
    """`mean`, `median`, `confident` or `confidence_weighted`, applied to clipped probabilities.

    `confident` is the rule of the DFDC winner (Seferbekov): when many frames are confidently fake
    (more than `confident_fraction` of them and at least `confident_min_count`), average only those;
    when nearly all (`real_fraction`) are confidently real, average only those; otherwise the mean.
    `confidence_weighted` weights each frame by its distance from 0.5.
    Probabilities are clipped to [clip, 1 - clip] first, so one extreme frame cannot dominate.
    """

    kind: str = "confident"
    clip: float = 0.01
    fake_threshold: float = 0.8
    real_threshold: float = 0.2
    confident_fraction: float = 0.4
    confident_min_count: int = 11
    real_fraction: float = 0.9

    KINDS = ("mean", "median", "confident", "confidence_weighted")

    def __post_init__(self):
        if self.kind not in self.KINDS:
            raise UsageError(f"unknown aggregator {self.kind!r}; choose one of: {', '.join(self.KINDS)}")
        if not 0.0 <= self.clip < 0.5:
            raise UsageError(f"aggregator clip must lie in [0, 0.5), got {self.clip}")

    def __call__(self, probs) -> float:
        p = np.clip(np.asarray(probs, dtype=np.float64).ravel(), self.clip, 1.0 - self.clip)
        if p.size == 0:
            raise ValueError("cannot aggregate zero frames")
        if self.kind == "mean":
            return float(p.mean())
        if self.kind == "median":
            return float(np.median(p))
        if self.kind == "confidence_weighted":
            weights = np.abs(p - 0.5) * 2.0 + 1e-3
            return float(np.sum(weights * p) / np.sum(weights))
        fakes = p[p > self.fake_threshold]
        if fakes.size > self.confident_fraction * p.size and fakes.size >= self.confident_min_count:
            return float(fakes.mean())
        reals = p[p < self.real_threshold]
        if reals.size > self.real_fraction * p.size:
            return float(reals.mean())
        return float(p.mean())

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict) -> "Aggregator":
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
