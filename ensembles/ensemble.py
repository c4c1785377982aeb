"""An ensemble of trained nets that turns a video or image into a `VideoVerdict`.

The ensemble's configuration lives in a small JSON file next to the member checkpoints: members,
combiner, frame aggregator, track policy, decision threshold (chosen on validation data) and the face
configuration (detector, sampling, crop geometry) of the cache the members were trained on, so that
inference crops are made exactly like training crops.
"""
from __future__ import annotations

import json
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from ensembles.aggregate import Aggregator
from ensembles.combine import Combiner
from ensembles.explain import MEMBER_ALONE_BAND, band_range, explained, low_confidence_floor, name_tracks
from ensembles.motion import MouthMotion, mouth_openings, track_mouth_spread
from ensembles.stillness import MIN_STILLNESS_FACES, BackgroundStillness, background_ratio, frame_changes
from ensembles.tracks import TrackConfig, link_tracks, rule_tracks
from ensembles.verdict import ERROR, FAKE, NO_FACE, REAL, FaceScore, TrackScore, VideoVerdict, low_evidence_note
from models.nets import check_tta, fake_logits
from pipeline.audio import during_speech, speech_spans
from pipeline.cache import write_atomic
from pipeline.errors import DataError, MediaError, UsageError
from pipeline.faces import FIELDS_ADDED_LATER, FaceConfig, FaceExtractor
from pipeline.media import ArrayReader, MediaReader, change_scale
from pipeline.sampling import SamplingConfig

log = logging.getLogger(__name__)

FORMAT = "deepfake-detector-ensemble"
MOUTH_MOTION = "mouth motion"  # the mouth-motion member's name among the per-model scores
STILL_BACKGROUND = "still background"  # the still-background member's name among them
DEFAULT_ENSEMBLE = Path(__file__).resolve().parents[1] / "models" / "weights" / "ensemble.json"
TRACK_POLICIES = ("max", "mean")
PRECISIONS = ("auto", "fp32", "bf16")  # the nets' arithmetic when scoring; see scoring_precision


def face_config_from_dict(fields: dict) -> FaceConfig:
    """A FaceConfig from the dict stored in a cache's config.json or an ensemble file."""
    known = {k: v for k, v in fields.items() if k in FaceConfig.__dataclass_fields__ and k != "sampling"}
    known = {**FIELDS_ADDED_LATER, **known}
    sampling = str(fields.get("sampling", "every10"))
    if sampling.startswith("every"):
        known["sampling"] = SamplingConfig(every=int(sampling[5:]))
    elif sampling.startswith("frames"):
        known["sampling"] = SamplingConfig(every=None, frames=int(sampling[6:]))
    return FaceConfig(**known)


def member_alone(p_nets: float, p_member: float, threshold: float) -> float:
    """What a track member (mouth motion, still background) may make of a track on its own evidence: where the
    nets call it REAL (below `threshold`), at most the top of MEMBER_ALONE_BAND ("likely fake"), never "very
    likely fake"; where the nets agree it is FAKE, its own p_fake."""
    if p_nets >= threshold:
        return p_member
    return min(p_member, round(band_range(MEMBER_ALONE_BAND, threshold)[1] - 1e-4, 4))


def track_p_fake(p_nets: float, member_scores: list[float | None], threshold: float) -> float:
    """A track's p_fake: its nets' score, or a track member's (None: not judged) where higher, as `member_alone`
    allows it."""
    return max([p_nets] + [member_alone(p_nets, p, threshold) for p in member_scores if p is not None])


def face_config_to_dict(config: FaceConfig) -> dict:
    return config.cache_key_fields()


@dataclass(frozen=True)
class EnsembleConfig:
    """What an ensemble file holds. Member paths are relative to the file's directory."""

    members: tuple[str, ...]
    combiner: Combiner = Combiner("mean")
    aggregator: Aggregator = Aggregator("confident")
    threshold: float = 0.5
    threshold_rule: str = "fixed 0.5"
    track_policy: str = "max"
    min_track_fraction: float = 0.2  # tracks shorter than this fraction of the longest one do not vote
    # A face that never changes shape and stays in place (a photo in the frame) or one far smaller than the main
    # faces does not vote either (ensembles.tracks.rule_tracks). bench/track_motion.py measured shape spread
    # 1.38-8.95 detector px on the 36 real talking tracks (real_talking, lynaeydofd), 0.40-0.44 on the photo in
    # yhffcuhhjy: 0.75 sits 1.8x under the stillest real face and 1.7x over the photo. Box travel: photo
    # 0.04-0.06 face sizes, the slowest walker of multi_face/crowd.mp4 0.38 (whose small face measures 0.64 px).
    min_size_fraction: float = 0.3  # median face size under this fraction of the largest live track's: "small"
    min_shape_spread: float = 0.75  # landmark shape change (tracks.shape_spread, detector px) under this ...
    max_static_travel: float = 0.15  # ... and box travel (tracks.box_travel, face sizes) at most this: "static"
    min_static_faces: int = 5  # faces with landmarks a track needs before it can be called static
    tracks: TrackConfig = TrackConfig()
    # a track-level member for one-photo talking heads (ensembles/motion.py); None: the nets alone decide
    mouth_motion: MouthMotion | None = None
    # a track-level member for a photo brought to life: a face moving before a still background
    # (ensembles/stillness.py); None: not judged (no shipped file holds it: docs/experiments.md says why)
    background_stillness: BackgroundStillness | None = None
    faces: dict = field(default_factory=lambda: face_config_to_dict(FaceConfig()))
    jpeg_quality: int = 95  # crops are JPEG round-tripped like the cached training crops
    # test-time augmentation of every member (models.nets.fake_logits): "flip" averages each face's logits with
    # its mirror image's (the nets' share of the time doubles; validation chose it, see build-ensemble --tta)
    tta: str = "none"
    metrics: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.members:
            raise UsageError("an ensemble needs at least one member checkpoint")
        if self.track_policy not in TRACK_POLICIES:
            raise UsageError(f"unknown track policy {self.track_policy!r}; choose one of: {', '.join(TRACK_POLICIES)}")
        if not 0.0 < self.threshold < 1.0:
            raise UsageError(f"the decision threshold must lie in (0, 1), got {self.threshold}")
        if not 0.0 <= self.min_size_fraction < 1.0:
            raise UsageError(f"min_size_fraction must lie in [0, 1), got {self.min_size_fraction}")
        check_tta(self.tta)
        if self.min_shape_spread < 0.0 or self.max_static_travel < 0.0 or self.min_static_faces < 2:
            raise UsageError(f"min_shape_spread and max_static_travel must be >= 0 and min_static_faces >= 2, got"
                             f" {self.min_shape_spread}, {self.max_static_travel} and {self.min_static_faces}")

    def to_dict(self) -> dict:
        return {
            "format": FORMAT, "members": list(self.members), "combiner": self.combiner.to_dict(),
            "aggregator": self.aggregator.to_dict(), "threshold": self.threshold,
            "threshold_rule": self.threshold_rule, "track_policy": self.track_policy,
            "min_track_fraction": self.min_track_fraction, "min_size_fraction": self.min_size_fraction,
            "min_shape_spread": self.min_shape_spread, "max_static_travel": self.max_static_travel,
            "min_static_faces": self.min_static_faces,
            "tracks": vars(self.tracks).copy(),
            "mouth_motion": self.mouth_motion.to_dict() if self.mouth_motion else None,
            "background_stillness": self.background_stillness.to_dict() if self.background_stillness else None,
            "faces": self.faces, "jpeg_quality": self.jpeg_quality, "tta": self.tta, "metrics": self.metrics,
        }

    def save(self, path: Path) -> None:
        """Write the file atomically, making its folder when it does not exist yet."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(Path(path), json.dumps(self.to_dict(), indent=2).encode("utf-8"))

    @classmethod
    def load(cls, path: Path) -> "EnsembleConfig":
        path = Path(path)
        if not path.is_file():
            raise UsageError(f"ensemble file {path} not found")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as exc:
            raise DataError(f"{path}: unreadable ensemble file ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise DataError(f"{path}: not an ensemble file of this project (no '{FORMAT}' format tag)")
        try:
            return cls(
                members=tuple(data["members"]), combiner=Combiner.from_dict(data.get("combiner", {})),
                aggregator=Aggregator.from_dict(data.get("aggregator", {})), threshold=float(data["threshold"]),
                threshold_rule=data.get("threshold_rule", ""), track_policy=data.get("track_policy", "max"),
                min_track_fraction=float(data.get("min_track_fraction", 0.2)),
                # track rules added later (issue 11): an older file gets today's defaults
                min_size_fraction=float(data.get("min_size_fraction", cls.min_size_fraction)),
                min_shape_spread=float(data.get("min_shape_spread", cls.min_shape_spread)),
                max_static_travel=float(data.get("max_static_travel", cls.max_static_travel)),
                min_static_faces=int(data.get("min_static_faces", cls.min_static_faces)),
                tracks=TrackConfig(**data.get("tracks", {})),
                mouth_motion=MouthMotion.from_dict(data.get("mouth_motion")),
                background_stillness=BackgroundStillness.from_dict(data.get("background_stillness")),
                faces=data.get("faces", {}),
                jpeg_quality=int(data.get("jpeg_quality", 95)), tta=data.get("tta", "none"),
                metrics=data.get("metrics", {}),
            )
        except (KeyError, TypeError, ValueError, UsageError) as exc:
            raise DataError(f"{path}: malformed ensemble file ({type(exc).__name__}: {exc})") from None


SCORE_EVERY = 16  # crops scored together, in a thread of their own, while later frames are decoded and searched
SCORES_PENDING = 4  # batches that may wait for the scoring thread before the search waits for it


@dataclass(frozen=True)
class Member:
    name: str
    model: torch.nn.Module
    preprocess: object


def native_bfloat16(device: torch.device) -> bool:
    """Whether `device` is a CPU that computes bfloat16 in hardware (AVX512-BF16 or AMX), by torch's own
    private checks (a torch without them: no, and the nets keep float32)."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return device.type == "cpu" and any(check() for check in checks if check is not None)


def scoring_precision(precision: str, device: torch.device) -> str:
    """The nets' arithmetic when scoring faces: "fp32", or "bf16" (bfloat16 autocast, about twice as fast on a
    CPU that computes it in hardware; a face's p_fake moves by 0.03 at most, ROC-AUCs by 0.0001). "auto": bf16
    on such a CPU, fp32 everywhere else."""
    if precision not in PRECISIONS:
        raise UsageError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if native_bfloat16(device) else "fp32"
    return precision


class Ensemble:
    """Loaded member nets plus the rules that turn their scores into a verdict."""

    def __init__(self, config: EnsembleConfig, members: list[Member], device: torch.device, source: Path | None = None,
                 precision: str = "fp32"):
        self.config = config
        self.members = members
        self.device = device
        self.source = source
        self.precision = scoring_precision(precision, device)

    @classmethod
    def load(cls, path: str | Path | None = None, device: str | None = None,
             torch_threads: int | None = 1, precision: str = "auto") -> "Ensemble":
        """Load an ensemble file (default: the shipped one) and its member checkpoints, offline.

        `precision`: the nets' arithmetic when scoring (`scoring_precision`; "auto": bfloat16 on a CPU that
        computes it in hardware, float32 elsewhere).

        `torch_threads`: torch's intra-op threads for this process. Classification decodes in a thread of
        its own beside detection and scoring, and one torch thread per inference thread beats two threads
        fighting the decoder for the cores (bench/classify_speed.py). None leaves torch's setting alone.
        """
        from models.checkpoint import load_checkpoint
        from pipeline.detectors import resolve_device

        if torch_threads is not None:
            torch.set_num_threads(torch_threads)

        path = Path(path) if path else DEFAULT_ENSEMBLE
        config = EnsembleConfig.load(path)
        torch_device = resolve_device(device)  # cuda when available; a UsageError for a device not present
        members, names = [], set()
        for relative in config.members:
            checkpoint = load_checkpoint(path.parent / relative)
            name = checkpoint.net if checkpoint.net not in names else Path(relative).stem
            names.add(name)
            members.append(Member(name, checkpoint.inference_model(torch_device), checkpoint.preprocess))
        return cls(config, members, torch_device, path, precision)

    @property
    def member_names(self) -> list[str]:
        return [m.name for m in self.members]

    @property
    def score_names(self) -> list[str]:
        """The names of the per-model scores of a verdict: the nets, then the track members it has."""
        return (self.member_names + ([MOUTH_MOTION] if self.config.mouth_motion is not None else [])
                + ([STILL_BACKGROUND] if self.config.background_stillness is not None else []))

    def face_config(self, **overrides) -> FaceConfig:
        """The face configuration the members were trained with, optionally with sampling etc. overridden."""
        fields = {**self.config.faces, **{k: v for k, v in overrides.items() if v is not None}}
        return face_config_from_dict(fields)

    def describe(self) -> dict:
        return {"source": self.source.name if self.source else None, "members": self.member_names,
                "precision": self.precision,
                **{k: v for k, v in self.config.to_dict().items() if k not in ("format", "members")}}

    # -- scoring -----------------------------------------------------------------------------
    def score_crops(self, crops_bgr: list[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """P(FAKE) of each member for each crop: array (n_crops, n_members)."""
        if not crops_bgr:
            return np.zeros((0, len(self.members)))
        crops = [self._as_cached(crop) for crop in crops_bgr]
        columns = []
        with torch.inference_mode(), torch.autocast(self.device.type, torch.bfloat16, enabled=self.precision == "bf16"):
            for member in self.members:
                scores = []
                for start in range(0, len(crops), batch_size):
                    batch = member.preprocess(crops[start : start + batch_size], device=self.device)
                    scores.append(torch.sigmoid(fake_logits(member.model, batch, self.config.tta)).cpu().numpy())
                columns.append(np.concatenate(scores))
        return np.column_stack(columns)

    def _as_cached(self, crop: np.ndarray) -> np.ndarray:
        """The crop as the training cache stored it (JPEG at the cache's quality)."""
        ok, encoded = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality])
        return cv2.imdecode(encoded, cv2.IMREAD_COLOR) if ok else crop

    # -- judging -----------------------------------------------------------------------------
    def video_score(self, positions: list[int], boxes: list, probs: np.ndarray, landmarks: list | None = None,
                    detect_scale: float = 1.0) -> tuple[float, list[TrackScore], list[int]]:
        """Video p_fake from per-face probabilities, judged per face track; also the tracks and track ids.

        `landmarks` (per face, or None) and `detect_scale` (detector pixels per frame pixel) let the track rules
        tell a face that never changes shape; without them no track is called static."""
        track_ids = link_tracks(positions, boxes, self.config.tracks)
        facts = self.rule_tracks(track_ids, boxes, landmarks, detect_scale)
        motion = self.mouth_motion(track_ids, boxes, landmarks)
        score, tracks, _, _ = self._judge_tracks(track_ids, positions, probs, facts, motion)
        return score, tracks, track_ids

    def mouth_motion(self, track_ids: list[int], boxes: list, landmarks: list | None,
                     speaking: list[bool] | None = None) -> dict[int, tuple]:
        """Per track, (mouth spread, the mouth-motion member's p_fake or None when the track is too short to
        judge); empty when the ensemble has no such member or the faces have no landmarks. `speaking` (per
        face: sampled during speech?) limits a speech-only member to those faces; None: all faces."""
        motion = self.config.mouth_motion
        if motion is None or landmarks is None:
            return {}
        ids, openings = np.asarray(track_ids), mouth_openings(landmarks)
        scores = {}
        for track in sorted(set(ids.tolist())):
            spread = track_mouth_spread(np.flatnonzero(ids == track), boxes, openings,
                                        speaking if motion.speech_only else None, motion.min_faces)
            scores[track] = (spread, motion.p_fake(spread, self.config.threshold))
        return scores

    @property
    def judges_speech(self) -> bool:
        """Whether verdicts need the file's speech spans (a speech-only mouth-motion member)."""
        return self.config.mouth_motion is not None and self.config.mouth_motion.speech_only

    def rule_tracks(self, track_ids: list[int], boxes: list, landmarks: list | None, detect_scale: float = 1.0) -> dict:
        """Which tracks vote, by this ensemble's rules (ensembles.tracks.rule_tracks)."""
        return rule_tracks(track_ids, boxes, landmarks, min_track_fraction=self.config.min_track_fraction,
                           min_size_fraction=self.config.min_size_fraction,
                           min_shape_spread=self.config.min_shape_spread,
                           max_static_travel=self.config.max_static_travel, min_static_faces=self.config.min_static_faces, detect_scale=detect_scale)

    def _judge_tracks(self, track_ids, positions, probs, facts, motion: dict | None = None,
                      stillness: dict | None = None) -> tuple[float, list[TrackScore], int | None, str]:
        """The video score, the tracks, the deciding track (None: several tracks decided together, policy
        "mean") and a warning ('' unless no track passed the rules and the longest one had to decide).

        A track's p_fake is its nets' (the aggregated frame scores), or a track member's when that is higher
        (`motion`: per track, (mouth spread, p_fake or None), see `mouth_motion`; `stillness`: per track,
        (background ratio, p_fake or None), see `background_stillness`), as `track_p_fake` allows it."""
        ids, positions = np.asarray(track_ids), np.asarray(positions)
        fallback, note = None, ""
        if all(f.excluded is not None for f in facts.values()):
            # every long-enough track is static (the longest is never short, the largest live one never small):
            # a photo or a still image alone. Rather than no verdict, the longest track decides (the most faces,
            # then the larger), and a warning says so
            fallback = max(facts, key=lambda t: (facts[t].n_faces, facts[t].face_size, -t))
            reasons = ", ".join(f"#{t} {f.excluded}" for t, f in facts.items())
            note = (f"no face track passed the track rules ({reasons}), so the longest, #{fallback}, decides; a face"
                    f" that barely changes shape may be a photo or a still image (or a very still person filmed"
                    f" small or in dim light)")
        tracks = []
        for track, fact in facts.items():
            mask = ids == track
            p_nets = self.config.aggregator(probs[mask])
            spread, p_motion = (motion or {}).get(track, (None, None))
            ratio, p_still = (stillness or {}).get(track, (None, None))
            p_track = track_p_fake(p_nets, [p_motion, p_still], self.config.threshold)
            tracks.append(TrackScore(
                track=int(track), p_fake=round(float(p_track), 4),
                p_nets=round(float(p_nets), 4), n_faces=fact.n_faces,
                first_frame=int(positions[mask].min()), last_frame=int(positions[mask].max()),
                counted=fact.excluded is None or track == fallback,
                excluded=None if track == fallback else fact.excluded, face_size=round(fact.face_size, 1),
                shape_spread=None if fact.shape_spread is None else round(fact.shape_spread, 4),
                box_travel=None if fact.travel is None else round(fact.travel, 4),
                mouth_spread=None if spread is None else round(spread, 4),
                p_motion=None if p_motion is None else round(p_motion, 4),
                background_ratio=None if ratio is None else round(ratio, 4),
                p_still=None if p_still is None else round(p_still, 4),
            ))
        voting = [t for t in tracks if t.counted]
        if self.config.track_policy == "max":
            decider = max(voting, key=lambda t: (t.p_fake, -t.track))
            return decider.p_fake, tracks, decider.track, note
        score = float(np.average([t.p_fake for t in voting], weights=[t.n_faces for t in voting]))
        return score, tracks, voting[0].track if len(voting) == 1 else None, note

    def _member_score(self, tracks: list[TrackScore], field_name: str) -> float | None:
        """A track member's video score: its p_fake (the TrackScore field `field_name`, "p_motion" or "p_still") of
        the counted tracks, by the track policy (None: no counted track it could judge)."""
        judged = [(getattr(t, field_name), t.n_faces) for t in tracks if t.counted and getattr(t, field_name) is not None]
        if not judged:
            return None
        scores, weights = zip(*judged)
        if self.config.track_policy == "max":
            return max(scores)
        return round(float(np.average(scores, weights=weights)), 4)

    def track_members_at(self, track: TrackScore, threshold: float) -> list[float | None]:
        """The track members' p_fake of `track` had the ensemble decided at `threshold` (their mapping depends on
        it): the mouth-motion member's, then the still-background member's (None: not judged)."""
        motion, still = self.config.mouth_motion, self.config.background_stillness
        return [None if motion is None else motion.p_fake(track.mouth_spread, threshold),
                None if still is None else still.p_fake(track.background_ratio, threshold)]

    def background_stillness(self, track_ids: list[int], changes: list[tuple] | None) -> dict[int, tuple]:
        """Per track, (background ratio, the still-background member's p_fake, or None without that member or for
        a track it cannot judge); `changes`: per face, (background change, face change) of its frame (None: not
        measured, as in a still image). The ratio is given with or without the member where changes were measured
        (`classify(..., measure_background=True)`: calibration reads it)."""
        if not changes:
            return {}
        still, ids = self.config.background_stillness, np.asarray(track_ids)
        scores = {}
        for track in sorted(set(ids.tolist())):
            members = np.flatnonzero(ids == track)
            ratio = background_ratio([changes[i][0] for i in members], [changes[i][1] for i in members],
                                     still.min_faces if still is not None else MIN_STILLNESS_FACES)
            scores[track] = (ratio, None if still is None else still.p_fake(ratio, self.config.threshold))
        return scores

    def with_threshold(self, threshold: float) -> "Ensemble":
        """The same ensemble deciding at another threshold."""
        config = replace(self.config, threshold=threshold, threshold_rule=f"set by the user to {threshold}")
        return Ensemble(config, self.members, self.device, self.source, self.precision)

    def classify(self, source: str | Path | ArrayReader, extractor: FaceExtractor | None = None,
                 keep_thumbnails: bool = False, expected_type: str | None = None, measure_background: bool = False):
        """Classify one video or image: a file, or pictures in memory (an `ArrayReader`). Returns (VideoVerdict,
        thumbnails); never raises on a bad file.

        `expected_type` given ("image" or "video"): a file of the other kind is an ERROR verdict.
        `measure_background`: measure each track's background ratio (ensembles/stillness.py) even without the
        still-background member (its calibration does); with the member it is always measured.
        """
        in_memory = isinstance(source, ArrayReader)
        path = source.path if in_memory else Path(source)
        started = time.perf_counter()
        extractor = extractor or FaceExtractor(self.face_config(), device=str(self.device))
        frames, faces_meta, crops, thumbnails, changes = 0, [], [], [], []
        scorer = ThreadPoolExecutor(1, thread_name_prefix="score")  # scores while the next frames are searched
        scored: list[Future] = []
        media_type, damage, detect_scale, duration, speech = "", "", 1.0, None, None
        try:
            with source if in_memory else MediaReader(path, max_pixels=extractor.config.max_pixels) as reader:
                if expected_type is not None and reader.info.media_type != expected_type:
                    raise MediaError(f"{path}: is a {reader.info.media_type}, not an {expected_type}"
                                     f" (use classify-{reader.info.media_type})")
                media_type = reader.info.media_type
                duration = reader.info.duration
                if self.judges_speech and media_type == "video" and not in_memory:  # before crops reach the scorer
                    speech = scorer.submit(speech_spans, path, None if duration is None else duration + 1.0)
                background_judged = measure_background or self.config.background_stillness is not None
                found = extractor.faces_in_file(reader, changes=media_type == "video" and background_judged)
                with closing(found):  # on every path its decoding thread is joined before the reader closes
                    for position, (frame, frame_crops) in enumerate(found):
                        frames += 1
                        if frames == 1:  # the track rules measure landmark motion in the detector's pixels
                            detect_scale = min(1.0, extractor.config.detect_size / max(frame.image.shape[:2]))
                        background, face_changes = frame_changes(
                            frame.change, change_scale(frame.image), [crop.detection.box for crop in frame_crops])
                        for crop, face_change in zip(frame_crops, face_changes):
                            faces_meta.append((position, frame.index, frame.timestamp, crop.detection))
                            changes.append((background, face_change))
                            crops.append(crop.crop)
                            if keep_thumbnails:
                                thumbnails.append(cv2.resize(crop.crop, (96, 96), interpolation=cv2.INTER_AREA))
                        if len(crops) >= SCORE_EVERY:  # score as we go: overlaps decoding, memory stays flat
                            if len(scored) >= SCORES_PENDING:
                                scored[-SCORES_PENDING].result()  # the scorer lags: wait, do not pile up crops
                            scored.append(scorer.submit(self.score_crops, crops))
                            crops = []
                damage = reader.truncation_note()  # fewer frames decoded than announced: say so in the verdict
            scored.append(scorer.submit(self.score_crops, crops))
            searched = time.perf_counter()
            probs_parts = [future.result() for future in scored]
            spans = speech.result() if speech is not None else None
        except MediaError as exc:
            return self._error(path, str(exc), started), []
        except Exception as exc:  # a decoder failure on one file must not stop a batch
            log.debug("unexpected failure on %s", path, exc_info=True)
            return replace(self._error(path, f"{path}: {type(exc).__name__}: {exc}", started), internal_error=True), []
        finally:
            scorer.shutdown(wait=True, cancel_futures=True)
        per_model_probs = np.concatenate(probs_parts) if probs_parts else np.zeros((0, len(self.members)))
        total = time.perf_counter() - started
        # decoding, detection and cropping (with scoring running beside them), then the scoring left over
        timings = {"total": round(total, 3), "decode_and_detect": round(searched - started, 3),
                   "score": round(total - (searched - started), 3)}
        verdict = self._verdict(path, media_type, frames, faces_meta, per_model_probs, timings, damage, detect_scale,
                                low_confidence_floor(extractor.score_threshold), spans, extractor.config.sampling,
                                changes)
        return explained(replace(verdict, duration=duration), extractor.config.sampling), thumbnails

    def _verdict(self, path, media_type, n_frames, faces_meta, member_probs, timings, damage: str = "",
                 detect_scale: float = 1.0, low_confidence_below: float = 0.0,
                 speech: list[tuple[float, float]] | None = None, sampling=None,
                 changes: list[tuple] | None = None) -> VideoVerdict:
        """The verdict of one file; `damage` (a truncation note, or '') marks it damaged and becomes a warning;
        `detect_scale`: detector pixels per frame pixel (for the track rules); detections scoring below
        `low_confidence_below` are marked low-confidence; `speech`: the file's speech spans in seconds (None: no
        audio track, or not asked for); `sampling`: how frames were sampled (the low-evidence advice); `changes`: per
        face, (background change, face change) of its frame (the still-background member; None: not measured)."""
        common = dict(path=str(path), video_id=path.stem, file_name=path.name, threshold=self.config.threshold,
                      n_frames=n_frames,
                      n_faces=len(faces_meta), media_type=media_type, aggregator=self.config.aggregator.kind,
                      combiner=self.config.combiner.kind, timings=timings, damaged=bool(damage))
        if not faces_meta:
            return VideoVerdict(verdict=NO_FACE, p_fake=None, per_model={m: None for m in self.score_names},
                                tracks=[], message="no face found in any sampled frame",
                                warnings=[damage] if damage else [], **common)
        positions = [meta[0] for meta in faces_meta]
        boxes = [tuple(round(v, 1) for v in meta[3].box) for meta in faces_meta]
        landmarks = [meta[3].landmarks for meta in faces_meta]
        probs = self.config.combiner(member_probs)
        track_ids = link_tracks(positions, boxes, self.config.tracks)
        facts = self.rule_tracks(track_ids, boxes, landmarks, detect_scale)  # who votes: the faces, not the nets
        speaking = during_speech([meta[2] for meta in faces_meta], speech or [])
        motion = self.mouth_motion(track_ids, boxes, landmarks, speaking)
        stillness = self.background_stillness(track_ids, changes)
        p_fake, tracks, deciding, fallback_note = self._judge_tracks(track_ids, positions, probs, facts, motion,
                                                                     stillness)
        per_model = {
            name: round(self._judge_tracks(track_ids, positions, member_probs[:, i], facts)[0], 4)
            for i, name in enumerate(self.member_names)
        }
        if self.config.mouth_motion is not None:
            per_model[MOUTH_MOTION] = self._member_score(tracks, "p_motion")
        if self.config.background_stillness is not None:
            per_model[STILL_BACKGROUND] = self._member_score(tracks, "p_still")
        faces = [
            FaceScore(frame_index=meta[1], timestamp=meta[2], track=int(track), box=box, p_fake=round(float(p), 4),
                      per_model={n: round(float(member_probs[k, i]), 4) for i, n in enumerate(self.member_names)},
                      detector_score=round(float(meta[3].score), 4),
                      low_confidence=bool(meta[3].score < low_confidence_below))
            for k, (meta, track, box, p) in enumerate(zip(faces_meta, track_ids, boxes, probs))
        ]
        # the faces behind the decision: the deciding person's, or every voting person's ("mean", several voting)
        deciding_faces = (next(t.n_faces for t in tracks if t.track == deciding) if deciding is not None
                          else sum(t.n_faces for t in tracks if t.counted))
        thin = low_evidence_note(media_type, deciding_faces, sampling)
        tracks = name_tracks(tracks, n_frames, {t: len({p for p, k in zip(positions, track_ids) if k == t})
                                                for t in set(track_ids)})
        verdict = FAKE if p_fake >= self.config.threshold else REAL
        return VideoVerdict(verdict=verdict, p_fake=round(p_fake, 4), per_model=per_model, tracks=tracks,
                            deciding_track=deciding, faces=faces, low_evidence=bool(thin),
                            warnings=[w for w in (damage, fallback_note, thin) if w], **common)

    def _error(self, path: Path, message: str, started: float) -> VideoVerdict:
        return self.error_verdict(path, message, time.perf_counter() - started)

    def error_verdict(self, path: str | Path, message: str, seconds: float = 0.0) -> VideoVerdict:
        """An ERROR verdict for `path` (unreadable, missing, or a folder without media); `message` names the path."""
        path = Path(path)
        return VideoVerdict(path=str(path), video_id=path.stem, file_name=path.name, verdict=ERROR, p_fake=None,
                            threshold=self.config.threshold, per_model={m: None for m in self.score_names},
                            tracks=[], n_frames=0, n_faces=0, media_type="", aggregator=self.config.aggregator.kind,
                            combiner=self.config.combiner.kind, timings={"total": round(seconds, 3)}, message=message,
                            explanation=message)
