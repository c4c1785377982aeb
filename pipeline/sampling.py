"""Which frames of a video to keep. Pure functions, no I/O."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.errors import UsageError


@dataclass(frozen=True)
class SamplingConfig:
    """Keep every `every`-th frame, or `frames` evenly spaced frames (exactly one of them is set)."""

    every: int | None = 10
    frames: int | None = None

    def __post_init__(self):
        if (self.every is None) == (self.frames is None):
            raise UsageError("choose exactly one of --every N and --frames K")
        value = self.every if self.every is not None else self.frames
        if value < 1:
            raise UsageError(f"frame sampling must be a positive number, got {value}")

    def describe(self) -> str:
        return f"every{self.every}" if self.every is not None else f"frames{self.frames}"


def sample_indices(frame_count: int, config: SamplingConfig) -> list[int]:
    """Frame indices to keep for a video of `frame_count` frames, ascending and unique.

    `--every N` keeps 0, N, 2N, ...; `--frames K` keeps K indices spread evenly over the
    whole video (first and last frame included), or every frame when the video is shorter.
    """
    if frame_count <= 0:
        return []
    if config.every is not None:
        return list(range(0, frame_count, config.every))
    if config.frames >= frame_count:
        return list(range(frame_count))
    if config.frames == 1:
        return [frame_count // 2]
    return np.unique(np.linspace(0, frame_count - 1, config.frames).round().astype(int)).tolist()
