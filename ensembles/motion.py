"""A track-level signal for whole-face synthesis: how much a face's mouth moves over its track.

Frame-level nets score one-photo talking heads (SadTalker, EDTalk...) as more real than real: every frame is a
clean, well-lit face. What gives them away is time: the animated face barely opens and closes its mouth
compared with a person talking. The measure, from the five MTCNN landmarks of each face of a track:

* `mouth_opening`: the distance from the eyes' midpoint to the mouth corners' midpoint, in inter-eye distances
  (scale-free, so face size, zoom and the detector's resolution drop out);
* `mouth_spread`: its standard deviation over the track's faces (stray boxes left out).

`MouthMotion` turns a spread into a p_fake by comparing it with real people talking: a log-normal fitted to
the spreads of real tracks (`fit_mouth_motion`, on ../shared/data/real_talking and the real DFDC clip, never on
crosssource_dev), shifted so that a real track reaches the decision threshold with probability `alpha`.
It only ever argues FAKE: a track whose mouth moves normally gets a small p_fake and leaves the nets' verdict
alone (the ensemble takes the larger of the two). Still images and short tracks get None (abstains).

`speech_only` (ensembles calibrated since 2026-11-23): a still mouth is evidence only while someone speaks, so
only the faces sampled during speech in the file's audio (pipeline/audio.py) are judged, and a file without
speech gets None. Without it a person listening, or a streamer between sentences, looked like an animated
photo.
"""
from __future__ import annotations

from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.stats import norm

from ensembles.tracks import (Box, Landmarks, box_travel, link_tracks, median_face_size, shape_spread,
                              without_stray_boxes)
from pipeline.audio import during_speech, speech_spans
from pipeline.media import MediaReader

MIN_MOTION_FACES = 12  # faces with landmarks a track needs before its mouth motion is judged (about 4 s at every
# 10th frame): over 8 faces (3 s) the spread of real talkers came out too low too often (bench/mouth_motion.py)


def mouth_opening(landmarks: Landmarks) -> float | None:
    """Eyes-to-mouth distance in inter-eye distances, from MTCNN's five points (eyes, nose, mouth corners)."""
    points = np.asarray(landmarks, dtype=float)
    if points.shape != (5, 2):
        return None
    eyes = (points[0] + points[1]) / 2
    mouth = (points[3] + points[4]) / 2
    inter_eye = float(np.linalg.norm(points[1] - points[0]))
    return float(np.linalg.norm(mouth - eyes) / inter_eye) if inter_eye > 0 else None


def mouth_spread(boxes: list[Box], landmarks: list[Landmarks | None], min_faces: int = MIN_MOTION_FACES) -> float | None:
    """Standard deviation of `mouth_opening` over a track's faces (boxes more than 1.5x off the track's median size
    left out); None with fewer than `min_faces` such faces."""
    return spread_of_openings(boxes, mouth_openings(landmarks), min_faces)


def spread_of_openings(boxes: list[Box], openings: list[float | None], min_faces: int = MIN_MOTION_FACES
                       ) -> float | None:
    """Standard deviation of per-face mouth openings (any measure; None: not measured) over a track's faces, stray
    boxes left out; None with fewer than `min_faces` measured faces."""
    kept = [openings[i] for i in without_stray_boxes(boxes) if openings[i] is not None]
    if len(kept) < max(3, min_faces):
        return None
    return float(np.std(kept))


@dataclass(frozen=True)
class RealsLogNormal:
    """A one-class track member: p_fake of a track from one measure of it, by comparing it with real tracks.
    Reals' log measure ~ N(mu, sigma) (fitted on real tracks); a track reaches the ensemble's decision
    `threshold` exactly at the reals' `alpha` quantile, and higher the lower its measure. It only ever argues
    FAKE. The mouth-motion member (mouth spread) and the still-background member (ensembles/stillness.py,
    background change over face change) are two."""

    mu: float
    sigma: float
    alpha: float
    min_faces: int = MIN_MOTION_FACES
    calibration: str = ""

    def __post_init__(self):
        if not (0.0 < self.alpha < 0.5 and self.sigma > 0 and self.min_faces >= 3):
            raise ValueError(f"a track member needs 0 < alpha < 0.5, sigma > 0 and min_faces >= 3, got {self}")

    def p_fake(self, measure: float | None, threshold: float) -> float | None:
        """None for a track too short to judge (`measure` None)."""
        if measure is None:
            return None
        z = (np.log(max(measure, 1e-6)) - self.mu) / self.sigma  # reals: standard normal
        shift = norm.ppf(self.alpha) + norm.ppf(threshold)  # z at the alpha quantile maps to the threshold
        return float(norm.cdf(shift - z))

    @property
    def flagged_below(self) -> float:
        """The measure under which a track alone reaches the threshold (the reals' alpha quantile)."""
        return float(np.exp(self.mu + self.sigma * norm.ppf(self.alpha)))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None):
        return cls(**data) if data else None

    @classmethod
    def fit(cls, real_measures: list[float], alpha: float, calibration: str, **fields):
        """The member fitted on the measures of real tracks (at least 10; None values are left out)."""
        logs = np.log(np.maximum(np.asarray([m for m in real_measures if m is not None], dtype=float), 1e-6))
        if len(logs) < 10:
            raise ValueError(f"fitting a track member needs at least 10 real tracks, got {len(logs)}")
        return cls(mu=float(logs.mean()), sigma=float(logs.std(ddof=1)), alpha=alpha, calibration=calibration,
                   **fields)


@dataclass(frozen=True)
class MouthMotion(RealsLogNormal):
    """p_fake of a track from its mouth spread (`RealsLogNormal`): the stiller its mouth, the higher."""

    speech_only: bool = False  # judge only faces sampled during speech (ensemble files before 2026-11-23: False)


def fit_mouth_motion(real_spreads: list[float], alpha: float, calibration: str,
                     min_faces: int = MIN_MOTION_FACES, speech_only: bool = False) -> MouthMotion:
    """A MouthMotion from the mouth spreads of real tracks (at least 10)."""
    return MouthMotion.fit(real_spreads, alpha, calibration, min_faces=min_faces, speech_only=speech_only)


def speaking_faces(path: Path, timestamps: list[float], media_type: str) -> list[bool]:
    """Per face (by its frame's timestamp), whether it was sampled while someone speaks in `path`'s audio; all
    False for a still image or a file without an audio track."""
    return during_speech(timestamps, (speech_spans(path) if media_type == "video" else None) or [])


def mouth_openings(landmarks: list[Landmarks | None]) -> list[float | None]:
    """`mouth_opening` per face (None where a face has no landmarks)."""
    return [None if mark is None else mouth_opening(mark) for mark in landmarks]


def track_mouth_spread(members, boxes: list, openings: list[float | None], speaking: list[bool] | None,
                       min_faces: int = MIN_MOTION_FACES) -> float | None:
    """`spread_of_openings` of one track's faces (`members`: their indices; `openings`: per face of the file),
    only those sampled during speech when `speaking` (per face) is given."""
    if speaking is not None:
        members = [i for i in members if speaking[i]]
    return spread_of_openings([boxes[i] for i in members], [openings[i] for i in members], min_faces)


def track_rows(path: Path, ensemble, extractor, speech_only: bool = False, opening=None) -> list[dict]:
    """One row per face track of `path`: faces, median size, size fraction, shape spread, travel and mouth spread
    (over the faces sampled during speech only, with `speech_only`; then also `speech_faces`). `opening`
    (frame BGR image, Detection) -> float or None measures a face's mouth opening another way than
    `mouth_opening` (bench/mouth_motion.py compares measures)."""
    positions, times, boxes, marks, openings, scale = [], [], [], [], [], 1.0
    with MediaReader(path, max_pixels=extractor.config.max_pixels) as reader:
        media_type = reader.info.media_type
        with closing(extractor.faces_in_file(reader)) as found:
            for position, (frame, crops) in enumerate(found):
                scale = min(1.0, extractor.config.detect_size / max(frame.image.shape[:2]))  # as Ensemble.classify
                for crop in crops:
                    positions.append(position)
                    times.append(frame.timestamp)
                    boxes.append(tuple(crop.detection.box))
                    marks.append(crop.detection.landmarks)
                    openings.append(mouth_opening(crop.detection.landmarks) if opening is None else
                                    opening(frame.image, crop.detection))
    if not boxes:
        return []
    speaking = speaking_faces(path, times, media_type) if speech_only else None
    ids = np.asarray(link_tracks(positions, boxes, ensemble.config.tracks))
    longest = np.bincount(ids).max()
    rows = []
    for track in sorted(set(ids.tolist())):
        members = np.flatnonzero(ids == track)
        rows.append({"clip": path.name, "track": track, "faces": len(members),
                     "short": bool(len(members) < ensemble.config.min_track_fraction * longest),
                     "size": median_face_size([boxes[i] for i in members]),
                     "spread": shape_spread([boxes[i] for i in members], [marks[i] for i in members],
                                            ensemble.config.min_static_faces, scale),
                     "travel": box_travel([boxes[i] for i in members], ensemble.config.min_static_faces),
                     "mouth": track_mouth_spread(members, boxes, openings, speaking),
                     "speech_faces": None if speaking is None else int(sum(speaking[i] for i in members))})
    reference = max((r["size"] for r in rows if not r["short"]), default=0.0)
    for row in rows:
        row["size_fraction"] = row["size"] / reference if reference else float("nan")
    return rows


@dataclass(frozen=True)
class MotionCalibration:
    """A track member's fit (mouth motion, or the still background of ensembles/stillness.py) and what it rests
    on: real tracks and clips measured, the files that failed, and how many clips a fit without them would flag
    at the threshold (leave-one-clip-out)."""

    model: RealsLogNormal
    tracks: int
    clips: int
    held_out_flagged: int
    failed: list[str]


def calibrate_mouth_motion(paths: list, ensemble, alpha: float, progress: bool = True,
                           speech_only: bool = True) -> MotionCalibration:
    """Fit the mouth-motion member on REAL videos of people talking: every long-enough track (faces found as
    `classify-video` finds them) long enough to judge; with `speech_only`, its faces sampled during speech.
    Unreadable files are reported in `failed`, not raised."""
    from tqdm import tqdm

    from pipeline.errors import MediaError, UsageError
    from pipeline.extract import collect_inputs
    from pipeline.faces import FaceExtractor

    collected = collect_inputs(paths)
    failed = [f"{path}: file not found" for path in collected.missing]
    extractor = FaceExtractor(ensemble.face_config(), device=str(ensemble.device))
    spreads: dict[str, list[float]] = {}
    for _, path in tqdm(collected.found, desc="real clips", unit="clip", disable=not progress):
        try:
            rows = track_rows(path, ensemble, extractor, speech_only)
        except MediaError as exc:
            failed.append(str(exc))
            continue
        judged = [r["mouth"] for r in rows if not r["short"] and r["mouth"] is not None]
        if judged:
            spreads[str(path)] = judged
    every = [s for clip in spreads.values() for s in clip]
    if len(every) < 10:
        during = " sampled during speech" if speech_only else ""
        raise UsageError(f"calibrating mouth motion needs at least 10 tracks of {MIN_MOTION_FACES}+ faces{during}"
                         f" from real videos; these paths gave {len(every)} (clips of a few seconds or more, one"
                         f" person talking{', with sound,' if speech_only else ''} are what it needs)")
    name = (f"{len(every)} real tracks of {len(spreads)} clips, at least {MIN_MOTION_FACES} faces each"
            + (" sampled during speech" if speech_only else ""))
    model = fit_mouth_motion(every, alpha, name, speech_only=speech_only)
    threshold = ensemble.config.threshold
    held_out_flagged = 0
    for clip, own in spreads.items():
        others = [s for other, values in spreads.items() if other != clip for s in values]
        if len(others) >= 10:
            fit = fit_mouth_motion(others, alpha, "")
            held_out_flagged += any(fit.p_fake(s, threshold) >= threshold for s in own)
    return MotionCalibration(model, len(every), len(spreads), held_out_flagged, failed)
