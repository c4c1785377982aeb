"""The result of classifying one video or image, with its JSON form."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

FAKE, REAL, NO_FACE, ERROR = "FAKE", "REAL", "NO_FACE", "ERROR"

# A video verdict resting on fewer scored faces of the deciding person than this is flagged low-evidence.
# A still image is never flagged for its count: a photo holds one face per person by nature, so its verdict
# is always a single-frame (frame-level) judgement, and the README says so.
MIN_EVIDENCE_FACES = 5


def low_evidence_note(media_type: str, deciding_faces: int, sampling=None) -> str:
    """A warning when a video's verdict rests on fewer than MIN_EVIDENCE_FACES faces of the deciding person, else
    ''. It suggests denser sampling than `sampling` (a pipeline.sampling.SamplingConfig; None: the default)."""
    if media_type != "video" or deciding_faces >= MIN_EVIDENCE_FACES:
        return ""
    faces = f"{deciding_faces} scored face" + ("" if deciding_faces == 1 else "s")
    every = 10 if sampling is None else sampling.every
    if every is None:
        denser = f", as does denser sampling with classify-video --frames {2 * sampling.frames}"
    elif every > 1:
        denser = f", as does denser sampling with classify-video --every {max(1, every // 2)}"
    else:
        denser = ""  # every frame was read already
    return (f"low evidence: the verdict rests on {faces} of the deciding person ({MIN_EVIDENCE_FACES} or more wanted;"
            f" a longer clip gives more{denser})")


@dataclass(frozen=True)
class FaceScore:
    """One face in one sampled frame: where it is and what each net and the ensemble say."""

    frame_index: int
    timestamp: float
    track: int
    box: tuple[float, float, float, float]
    p_fake: float
    per_model: dict[str, float]
    detector_score: float | None = None  # the face detector's confidence
    low_confidence: bool = False  # a detection in the lowest part of the detector's range: maybe not a face


@dataclass(frozen=True)
class TrackScore:
    """One face track (one person). `counted`: it takes part in the verdict. `excluded`: why it does not, or
    None: "short" (too few faces), "static" (its face never changes shape: a photo in the frame) or "small"
    (far smaller than the main faces). When no track passes those rules the longest one decides: it is
    counted, not excluded, and a warning says so. `face_size`: median face size in pixels; `shape_spread`: how
    much its face changes shape (landmark motion after aligning out the face's own motion, detector pixels);
    `box_travel`: how far its box wanders, in face sizes (both None: too few faces to tell).
    `p_nets`: the nets' score of the track; `p_fake` is the higher of it and `p_motion`, the mouth-motion
    member's score (ensembles/motion.py) from `mouth_spread`, how much the mouth opens and closes (both None
    without that member or for a track too short to judge), and `p_still`, the still-background member's
    (ensembles/stillness.py) from `background_ratio`, how much the background changes between frames against
    the face (None: too few frames with background beside the face; `p_still` also None without that member).
    `label`: the person's name in words ("person 1": the most-seen face first), `frame_share`: the share of
    sampled frames it has a face in, `description`: one line saying both, its score and its part in the verdict
    (ensembles/explain.py)."""

    track: int
    p_fake: float
    n_faces: int
    first_frame: int
    last_frame: int
    counted: bool
    excluded: str | None = None
    face_size: float = 0.0
    shape_spread: float | None = None
    box_travel: float | None = None
    p_nets: float | None = None
    mouth_spread: float | None = None
    p_motion: float | None = None
    background_ratio: float | None = None
    p_still: float | None = None
    label: str = ""
    frame_share: float | None = None
    description: str = ""


@dataclass(frozen=True)
class VideoVerdict:
    """What the ensemble concluded about one file. `p_fake` is None when no face was found.

    `damaged`: fewer frames could be decoded than the file announced (truncated or corrupt), so the verdict
    rests on part of it. `internal_error`: an ERROR that is not the file's fault but an exception nobody
    expected (its class and text are in `message`, for logs, not for an upload's client). `low_evidence`: the verdict rests on very few faces (see MIN_EVIDENCE_FACES).
    `deciding_track`: the track whose score is the verdict's (track policy "max"; with "mean", the one voting
    track, or None when several decided together).
    `warnings`: human sentences saying both, shown under the verdict line. `report`: the PNG written for
    this file, when reports were asked for.
    In words (ensembles/explain.py): `band` ("borderline", "likely fake", ...; None without a score),
    `decided_by` (the deciding person, e.g. "person 1 (62% of sampled frames)"), `evidence` (faces, sampled
    frames, clip length) and `explanation` (the verdict in a sentence or two). `file_name` and `duration`
    (seconds; None for an image or when unknown) say which file it was and how long.
    """

    path: str
    video_id: str
    verdict: str  # FAKE, REAL, NO_FACE or ERROR
    p_fake: float | None
    threshold: float
    per_model: dict[str, float | None]
    tracks: list[TrackScore]
    n_frames: int
    n_faces: int
    media_type: str
    aggregator: str
    combiner: str
    timings: dict[str, float]
    faces: list[FaceScore] = field(default_factory=list)
    deciding_track: int | None = None
    message: str = ""
    damaged: bool = False
    internal_error: bool = False
    low_evidence: bool = False
    warnings: list[str] = field(default_factory=list)
    report: str | None = None
    file_name: str = ""
    duration: float | None = None
    band: str | None = None
    decided_by: str | None = None
    evidence: str = ""
    explanation: str = ""

    def to_dict(self, with_faces: bool = True) -> dict:
        data = asdict(self)
        if not with_faces:
            data.pop("faces")
        return data

    def to_json(self, with_faces: bool = True) -> str:
        return json.dumps(self.to_dict(with_faces), ensure_ascii=False)

    @property
    def complete(self) -> bool:
        """False for an ERROR or a damaged file (classify-* and evaluate-ensemble then exit with status 1)."""
        return self.verdict != ERROR and not self.damaged

    def _tracks_words(self) -> str:
        """'tracks=3', or 'tracks=8 (5 counted)' when some persons did not vote: the JSON lists them all."""
        counted = sum(t.counted for t in self.tracks)
        return f"tracks={len(self.tracks)}" + (f" ({counted} counted)" if counted != len(self.tracks) else "")

    def summary_line(self) -> str:
        """The verdict line, then one indented `warning:` line per warning."""
        seconds = self.timings.get("total", 0.0)
        if self.verdict == ERROR:
            return f"ERROR    {self.message}"
        if self.p_fake is None:
            line = f"NO_FACE  {self.path}  frames={self.n_frames}  {seconds:.1f}s"
        else:
            band = f", {self.band}" if self.band else ""
            line = (f"{self.verdict:<8} {self.path}  p_fake={self.p_fake:.3f} (threshold {self.threshold:.3f}{band})"
                    f"  faces={self.n_faces}  {self._tracks_words()}  {seconds:.1f}s")
        return "\n".join([line, *(f"  warning: {warning}" for warning in self.warnings)])
