"""A short sample clip made from a real face photo that ships inside scikit-image (NASA's astronaut).

Used by the quick start (no user file needed) and by the tests.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pipeline.errors import UsageError


def astronaut_bgr() -> np.ndarray:
    """scikit-image's `data.astronaut()` (512x512, a public-domain NASA portrait) as BGR uint8."""
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def sample_frames(n_frames: int, width: int, height: int, face: np.ndarray | None = None):
    """Frames of `face` (default: the astronaut) drifting slowly across a plain background."""
    face = astronaut_bgr() if face is None else face
    side = int(min(width, height) * 0.8)
    portrait = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    background = np.full((height, width, 3), (60, 70, 80), dtype=np.uint8)
    travel = max(0, width - side)
    for i in range(n_frames):
        frame = background.copy()
        x = int(travel * (0.3 + 0.2 * i / max(1, n_frames - 1)))
        y = (height - side) // 2
        frame[y : y + side, x : x + side] = portrait
        yield frame


def write_sample_clip(path: str | Path, seconds: float = 3.0, fps: int = 15, width: int = 640,
                      height: int = 360, face: np.ndarray | None = None) -> Path:
    """Write an MPEG-4 clip of the drifting face to `path` and return the path."""
    path = Path(path)
    if path.suffix.lower() not in (".mp4", ".avi", ".mov", ".mkv"):
        raise UsageError(f"{path}: choose a video name ending in .mp4, .avi, .mov or .mkv")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise UsageError(f"{path}: OpenCV cannot write a video here")
    for frame in sample_frames(int(seconds * fps), width, height, face):
        writer.write(frame)
    writer.release()
    return path
