"""A track-level signal for a photo brought to life: a face that moves in front of a background that does not.

One-photo talking-head tools (Loopy, AniTalker, SadTalker, Sonic...) animate the face of a single picture; the
rest of the picture stays as it was, pixel for pixel, or nearly. A handheld or webcam camera's background
changes a little every frame (noise, light, shake). The frame nets call these renders more real than real
(clean, sharp faces), the mouth-motion member catches those whose mouth barely moves; this one catches those
whose background never moves. But a tripod camera filming a still scene, compressed hard, freezes its
background too (the encoder repeats unchanged blocks): measured on crosssource_dev it called such a real studio
recording FAKE, so no shipped ensemble holds this member (docs/experiments.md, "Still-background member"); fit
it on reals filmed as the footage you screen is. The measure, per face track:

* per sampled frame, the mean absolute change in grey level from that frame to the next (pictures shrunk to
  `pipeline.media.CHANGE_WIDTH`) inside the face's box, and over the background: the frame outside every
  person (each face's box widened by `SIDE_MARGIN` face widths, raised by `TOP_MARGIN` face heights, down to the
  frame's bottom, where the body is); a frame whose background is under `MIN_BACKGROUND_SHARE` of it has none;
* `background_ratio`: (median background change + FLOOR) / (median face change + FLOOR) over the track's frames
  (FLOOR, in grey levels, keeps a still face in a still frame from dividing by nothing).

`BackgroundStillness` turns a ratio into a p_fake as the mouth-motion member does (`RealsLogNormal`: fitted on
real tracks, never on a set it is measured on; `calibrate-background`). A track
with a moving background gets a small p_fake and leaves the nets' verdict alone; a still image, a close-up with
no background, or a track with fewer than `MIN_STILLNESS_FACES` measured frames gets None (abstains).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ensembles.motion import MotionCalibration, RealsLogNormal
from ensembles.tracks import Box

SIDE_MARGIN = 0.3  # a person's region: the face box widened by this many face widths on each side ...
TOP_MARGIN = 0.35  # ... raised by this many face heights (hair), and down to the bottom of the frame (the body)
MIN_BACKGROUND_SHARE = 0.04  # a frame whose background is a smaller share of it has no background to measure
FLOOR = 0.05  # grey levels added to both changes of the ratio
MIN_STILLNESS_FACES = 8  # measured frames a track needs before its background is judged (about 3 s at every 10th)


def frame_changes(change: np.ndarray | None, scale: float, boxes: list[Box]) -> tuple[float | None, list[float | None]]:
    """(background change, face change per box) of one frame: `change` is its `pipeline.media.frame_change`
    (None: not measured), `scale` that picture's pixels per frame pixel, `boxes` every face found in the frame
    (frame pixels). The background is None where it covers less than MIN_BACKGROUND_SHARE of the frame."""
    if change is None:
        return None, [None] * len(boxes)
    height, width = change.shape
    background = np.ones((height, width), dtype=bool)
    faces = []
    for box in boxes:
        x1, y1, x2, y2 = (float(v) * scale for v in box)
        face_w, face_h = x2 - x1, y2 - y1
        background[max(0, int(y1 - TOP_MARGIN * face_h)):, max(0, int(x1 - SIDE_MARGIN * face_w)):
                   max(0, int(np.ceil(x2 + SIDE_MARGIN * face_w)))] = False
        region = change[max(0, int(y1)):max(0, int(np.ceil(y2))), max(0, int(x1)):max(0, int(np.ceil(x2)))]
        faces.append(float(region.mean()) if region.size else None)
    kept = background.mean() >= MIN_BACKGROUND_SHARE
    return (float(change[background].mean()) if kept else None), faces


def background_ratio(background: list[float | None], face: list[float | None],
                     min_faces: int = MIN_STILLNESS_FACES) -> float | None:
    """A track's (median background change + FLOOR) / (median face change + FLOOR) over its frames where both
    were measured; None with fewer than `min_faces` such frames."""
    pairs = [(b, f) for b, f in zip(background, face) if b is not None and f is not None]
    if len(pairs) < max(3, min_faces):
        return None
    backgrounds, faces = zip(*pairs)
    return float((np.median(backgrounds) + FLOOR) / (np.median(faces) + FLOOR))


@dataclass(frozen=True)
class BackgroundStillness(RealsLogNormal):
    """p_fake of a track from its `background_ratio` (`RealsLogNormal`): the stiller the background behind a
    moving face, the higher."""

    min_faces: int = MIN_STILLNESS_FACES


def calibrate_background_stillness(paths: list, ensemble, alpha: float, progress: bool = True) -> MotionCalibration:
    """Fit the still-background member on REAL videos: the `background_ratio` of every counted track, measured by
    `ensemble.classify` as every verdict measures it. Unreadable files are reported in `failed`, not raised."""
    from tqdm import tqdm

    from pipeline.errors import UsageError
    from pipeline.extract import collect_inputs
    from pipeline.faces import FaceExtractor

    collected = collect_inputs(paths)
    failed = [f"{path}: file not found" for path in collected.missing]
    extractor = FaceExtractor(ensemble.face_config(), device=str(ensemble.device))
    ratios: dict[str, list[float]] = {}
    for _, path in tqdm(collected.found, desc="real clips", unit="clip", disable=not progress):
        verdict, _ = ensemble.classify(path, extractor, measure_background=True)
        if verdict.verdict == "ERROR":
            failed.append(verdict.message)
            continue
        judged = [t.background_ratio for t in verdict.tracks if t.counted and t.background_ratio is not None]
        if judged:
            ratios[str(path)] = judged
    every = [r for clip in ratios.values() for r in clip]
    if len(every) < 10:
        raise UsageError(f"calibrating the still-background member needs at least 10 tracks of"
                         f" {MIN_STILLNESS_FACES}+ faces with background beside them, from real videos; these paths"
                         f" gave {len(every)} (clips of a few seconds or more, not close-ups filling the frame)")
    name = f"{len(every)} real tracks of {len(ratios)} clips, at least {MIN_STILLNESS_FACES} measured frames each"
    model = BackgroundStillness.fit(every, alpha, name)
    threshold = ensemble.config.threshold
    held_out_flagged = 0
    for clip, own in ratios.items():
        others = [r for other, values in ratios.items() if other != clip for r in values]
        if len(others) >= 10:
            fit = BackgroundStillness.fit(others, alpha, "")
            held_out_flagged += any(fit.p_fake(r, threshold) >= threshold for r in own)
    return MotionCalibration(model, len(every), len(ratios), held_out_flagged, failed)
