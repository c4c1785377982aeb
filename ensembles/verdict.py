"""The result of classifying one video or image, with its JSON form."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

FAKE, REAL, NO_FACE, ERROR = "FAKE", "REAL", "NO_FACE", "ERROR"


@dataclass(frozen=True)
class FaceScore:
    """One face in one sampled frame: where it is and what each net and the ensemble say."""

    frame_index: int
    timestamp: float
    track: int
    box: tuple[float, float, float, float]
    p_fake: float
    per_model: dict[str, float]


@dataclass(frozen=True)
class TrackScore:
    track: int
    p_fake: float
    n_faces: int
    first_frame: int
    last_frame: int
    counted: bool  # long enough to take part in the verdict


@dataclass(frozen=True)
class VideoVerdict:
    """What the ensemble concluded about one file. `p_fake` is None when no face was found."""

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
    message: str = ""

    def to_dict(self, with_faces: bool = True) -> dict:
        data = asdict(self)
        if not with_faces:
            data.pop("faces")
        return data

    def to_json(self, with_faces: bool = True) -> str:
        return json.dumps(self.to_dict(with_faces), ensure_ascii=False)

    def summary_line(self) -> str:
        seconds = self.timings.get("total", 0.0)
        if self.verdict == ERROR:
            return f"ERROR    {self.message}"
        if self.p_fake is None:
            return f"NO_FACE  {self.path}  frames={self.n_frames}  {seconds:.1f}s"
        return (f"{self.verdict:<8} {self.path}  p_fake={self.p_fake:.3f} (threshold {self.threshold:.3f})"
                f"  faces={self.n_faces}  tracks={sum(t.counted for t in self.tracks)}  {seconds:.1f}s")
