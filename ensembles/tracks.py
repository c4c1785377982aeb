"""Link faces across sampled frames into tracks, so that each person in a video is judged separately."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Box = tuple[float, float, float, float]


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _near(a: Box, b: Box, max_shift: float) -> float:
    """A match score in (0, 1] when the centres are within `max_shift` face sizes, else 0."""
    size = max(a[2] - a[0], a[3] - a[1], b[2] - b[0], b[3] - b[1], 1e-6)
    shift = np.hypot((a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2) / size
    return float(max(0.0, 1.0 - shift / max_shift)) if shift < max_shift else 0.0


@dataclass(frozen=True)
class TrackConfig:
    min_iou: float = 0.25
    max_shift: float = 1.0  # a face may move this many face sizes between sampled frames and keep its track
    max_gap: int = 3  # sampled frames a track may miss before it ends


def link_tracks(frame_positions: list[int], boxes: list[Box], config: TrackConfig = TrackConfig()) -> list[int]:
    """A track id for each face; faces are given by their sampled-frame position (0, 1, 2...) and box.

    Greedy association, frame by frame: best-overlapping pairs first, then nearest centres.
    Track ids are numbered in order of first appearance.
    """
    order = sorted(range(len(boxes)), key=lambda i: frame_positions[i])
    track_of = [-1] * len(boxes)
    last_box: dict[int, Box] = {}
    last_seen: dict[int, int] = {}
    next_id = 0
    position_groups: dict[int, list[int]] = {}
    for i in order:
        position_groups.setdefault(frame_positions[i], []).append(i)
    for position in sorted(position_groups):
        faces = position_groups[position]
        active = [t for t in last_box if position - last_seen[t] <= config.max_gap and last_seen[t] < position]
        pairs = []
        for face in faces:
            for track in active:
                overlap = iou(boxes[face], last_box[track])
                score = 1.0 + overlap if overlap >= config.min_iou else _near(boxes[face], last_box[track], config.max_shift)
                if score > 0:
                    pairs.append((score, face, track))
        used_faces, used_tracks = set(), set()
        for _, face, track in sorted(pairs, key=lambda p: (-p[0], p[1], p[2])):
            if face not in used_faces and track not in used_tracks:
                track_of[face] = track
                used_faces.add(face)
                used_tracks.add(track)
        for face in faces:
            if track_of[face] < 0:
                track_of[face] = next_id
                next_id += 1
            last_box[track_of[face]] = boxes[face]
            last_seen[track_of[face]] = position
    # renumber by first appearance so ids are stable and readable
    first_seen: dict[int, int] = {}
    for i in order:
        first_seen.setdefault(track_of[i], len(first_seen))
    return [first_seen[t] for t in track_of]
