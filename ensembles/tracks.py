"""Link faces across sampled frames into tracks, so that each person in a video is judged separately, and
the rules that decide which tracks vote (a stray detection, a photo in the frame, a face far in the background
do not)."""
from __future__ import annotations

from dataclasses import dataclass, replace

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


def _jump(a: Box, b: Box, config: "TrackConfig") -> float:
    """A match score in (0, 1] for a long jump between boxes of closely agreeing sizes, else 0."""
    sizes = max(face_size(a), 1e-6), max(face_size(b), 1e-6)
    if max(sizes) / min(sizes) > config.jump_size_ratio:
        return 0.0
    return _near(a, b, config.max_jump)


@dataclass(frozen=True)
class TrackConfig:
    min_iou: float = 0.25
    max_shift: float = 1.0  # a face may move this many face sizes between sampled frames and keep its track
    max_gap: int = 3  # sampled frames a track may miss before it ends
    # a face does not halve or double in size between sampled frames: a box that does is another face (or a
    # stray detection) and starts its own track, instead of replacing the track's last box
    max_size_ratio: float = 2.0
    # A face that crosses the frame fast (someone walking past the camera) jumps several face sizes between
    # sampled frames. A face left over by the pairing above still joins a track left over too when it is
    # within `max_jump` face sizes and the two sizes agree within `jump_size_ratio` (sizes, unlike places,
    # barely change between sampled frames; a stranger of the same size that close is rare).
    max_jump: float = 4.0
    jump_size_ratio: float = 1.25


def link_tracks(frame_positions: list[int], boxes: list[Box], config: TrackConfig = TrackConfig()) -> list[int]:
    """A track id for each face; faces are given by their sampled-frame position (0, 1, 2...) and box.

    Greedy association, frame by frame: best-overlapping pairs first, then nearest centres; never a pair whose
    sizes differ by more than `config.max_size_ratio`. Then the faces and tracks left over pair by the longer
    jumps of fast motion, where their sizes agree closely (`config.max_jump`). Track ids are numbered in order
    of first appearance.
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
                sizes = max(face_size(boxes[face]), 1e-6), max(face_size(last_box[track]), 1e-6)
                if max(sizes) / min(sizes) > config.max_size_ratio:
                    continue
                overlap = iou(boxes[face], last_box[track])
                score = 1.0 + overlap if overlap >= config.min_iou else _near(boxes[face], last_box[track], config.max_shift)
                if score > 0:
                    pairs.append((score, face, track))
        used_faces, used_tracks = set(), set()
        jumps = [(score, face, track) for face in faces for track in active
                 if (score := _jump(boxes[face], last_box[track], config)) > 0]
        for candidates in (pairs, jumps):  # the long jumps only for what the near pairs left over
            for _, face, track in sorted(candidates, key=lambda p: (-p[0], p[1], p[2])):
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


# -- what a track looks like over time: how big its face is, and whether its face ever changes shape -----
Landmarks = tuple[tuple[float, float], ...]


def face_size(box: Box) -> float:
    """A face's size in pixels: the geometric mean of its box's width and height."""
    return float(np.sqrt(max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])))


def median_face_size(boxes: list[Box]) -> float:
    """The median size of a track's faces (see `face_size`)."""
    return float(np.median([face_size(box) for box in boxes])) if boxes else 0.0


def without_stray_boxes(boxes: list[Box]) -> list[int]:
    """Indices of the boxes within 1.5x of the track's median size (a stray box linked into a track is left out)."""
    sizes = np.array([face_size(box) for box in boxes])
    median = float(np.median(sizes)) if len(sizes) else 0.0
    if median <= 0:
        return []
    return [i for i, size in enumerate(sizes) if abs(np.log(max(size, 1e-6) / median)) <= np.log(1.5)]


def box_travel(boxes: list[Box], min_faces: int = 5) -> float | None:
    """How far a track's face wanders in the frame: the median distance of its box centre from the centre's median
    position, in face sizes (stray boxes left out). About 0.04 for a photo on a wall filmed from a tripod (box
    jitter); a person walking across the frame goes far beyond. None with fewer than `min_faces` faces."""
    kept = [boxes[i] for i in without_stray_boxes(boxes)]
    if len(kept) < max(3, min_faces):
        return None
    centres = np.array([((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in kept])
    distance = np.linalg.norm(centres - np.median(centres, axis=0), axis=1)
    return float(np.median(distance) / median_face_size(kept))


def shape_spread(boxes: list[Box], landmarks: list[Landmarks | None], min_faces: int = 5,
                 detect_scale: float = 1.0) -> float | None:
    """How much a track's face changes shape, in the detector's pixels: each face's five landmarks are aligned
    onto the track's mean shape by a similarity transform (shift, scale, in-plane rotation; Procrustes), and
    the root mean square over the faces of what is left (the five points' distance to the mean shape) is
    given in pixels of the image the detector searched (`detect_scale`: detector pixels per frame pixel).

    The alignment removes whatever moves the face as a whole: the camera panning, shaking, zooming or rolling,
    the person walking, and the box's own jitter; what is left is the face itself changing (expression,
    blinks, mouth, head turning) plus the landmarks' noise, which is about constant in detector pixels. A
    photo in the frame keeps one shape, so only that noise is left. Faces whose box is more than 1.5x off the
    track's median size (a stray box linked into the track) are left out. None when fewer than `min_faces`
    faces have landmarks: too few to tell (or a detector without landmarks).
    """
    kept = [(box, marks) for box, marks in zip(boxes, landmarks) if marks is not None and len(marks) >= 3]
    if len(kept) < max(3, min_faces):
        return None
    kept = [kept[i] for i in without_stray_boxes([box for box, _ in kept])]
    if len(kept) < max(3, min_faces) or len({len(marks) for _, marks in kept}) != 1:
        return None
    points = np.array([[complex(x, y) for x, y in marks] for _, marks in kept])  # (faces, landmarks)
    points = points - points.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(points, axis=1)
    if np.any(norms <= 0):
        return None
    reference = points[0] / norms[0]
    for _ in range(3):  # generalised Procrustes: align to the mean shape, re-estimate it, align again
        fit = (points.conj() @ reference) / norms**2  # per face, the complex factor (scale and rotation)
        aligned = points * fit[:, None]
        reference = aligned.mean(axis=0)
        reference = reference / np.linalg.norm(reference)
    fit = (points.conj() @ reference) / norms**2
    residual = np.linalg.norm(points * fit[:, None] - reference, axis=1)  # in units of the shape's size
    return float(np.sqrt(np.mean(residual**2)) * np.median(norms) * detect_scale)


SHORT, STATIC, SMALL = "short", "static", "small"  # why a track does not vote


@dataclass(frozen=True)
class TrackFacts:
    """What the track rules saw of one track, and why it does not vote (`excluded`), or None when it does."""

    n_faces: int
    face_size: float  # median, pixels
    shape_spread: float | None  # None: too few faces with landmarks to tell
    travel: float | None  # box_travel; None: too few faces
    excluded: str | None


def rule_tracks(track_ids: list[int], boxes: list[Box], landmarks: list[Landmarks | None] | None, *,
                min_track_fraction: float, min_size_fraction: float, min_shape_spread: float,
                max_static_travel: float, min_static_faces: int, detect_scale: float = 1.0) -> dict[int, TrackFacts]:
    """Which tracks vote. In order, a track does not vote when it is
    * "short": fewer faces than `min_track_fraction` of the longest track's (a stray detection);
    * "static": its `shape_spread` is below `min_shape_spread` (a face that never changes shape: a photo or a
      poster in the frame) and its `box_travel` at most `max_static_travel` (it stays in place: a small face
      walking past measures little shape change only because it is small); a track with fewer than
      `min_static_faces` landmarked faces is never called static;
    * "small": its median face size is below `min_size_fraction` of the largest median size among the tracks
      still voting (a face far in the background), so a large photo does not make the live person "small".
    A lone long-enough track is never called static: the rule separates a still face from live ones beside
    it (a photo on the wall behind the person). A real person sitting very still measured a shape spread as
    low as 0.51 detector px (DFDC abofeumbvv, alone in its clip) against 0.41-0.44 for the photo in
    yhffcuhhjy, too close to judge a face on its own.
    """
    ids = np.asarray(track_ids)
    marks = list(landmarks) if landmarks is not None else [None] * len(boxes)
    longest = int(np.bincount(ids).max())
    facts: dict[int, TrackFacts] = {}
    for track in sorted(set(ids.tolist())):
        members = np.flatnonzero(ids == track)
        track_boxes = [boxes[i] for i in members]
        spread = shape_spread(track_boxes, [marks[i] for i in members], min_static_faces, detect_scale)
        travel = box_travel(track_boxes, min_static_faces)
        if len(members) < min_track_fraction * longest:
            why = SHORT
        elif spread is not None and spread < min_shape_spread and travel is not None and travel <= max_static_travel:
            why = STATIC
        else:
            why = None
        facts[track] = TrackFacts(len(members), median_face_size(track_boxes), spread, travel, why)
    long_enough = [t for t, f in facts.items() if f.excluded != SHORT]
    if len(long_enough) == 1 and facts[long_enough[0]].excluded == STATIC:
        facts[long_enough[0]] = replace(facts[long_enough[0]], excluded=None)
    reference = max((f.face_size for f in facts.values() if f.excluded is None), default=0.0)
    return {track: TrackFacts(f.n_faces, f.face_size, f.shape_spread, f.travel, SMALL)
            if f.excluded is None and f.face_size < min_size_fraction * reference else f
            for track, f in facts.items()}
