"""Sampled frames -> detected faces -> square crops: the one path shared by `extract` and `classify-*`.

Detection runs on a downscaled copy of each frame (fast) and the crop is cut from the full-resolution
frame (sharp). Frames where nothing is found at the small size are searched again at a larger size.
Still images get a black border before detection: MTCNN misplaces faces that fill the whole picture
(tight face crops such as DFDC's), and finds them correctly once they have some space around them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterator

import cv2
import numpy as np

from pipeline.crops import cut_square, square_crop_box
from pipeline.detectors import Detection, FaceDetector, create_detector
from pipeline.errors import UsageError
from pipeline.media import DEFAULT_MAX_MEGAPIXELS, Frame, MediaReader, prefetch
from pipeline.sampling import SamplingConfig


@dataclass(frozen=True)
class FaceConfig:
    """Everything that decides which faces are found and how they are cropped."""

    detector: str = "mtcnn"
    sampling: SamplingConfig = SamplingConfig()
    min_face_size: int = 40  # pixels in the original frame
    score_threshold: float | None = None  # None: the detector's own default
    largest_only: bool = False
    margin: float = 0.3
    crop_size: int = 224
    detect_size: int = 640  # longer side of the frame copy the detector sees (see bench/extract_speed.py)
    batch_size: int = 8
    image_pad: float = 0.25  # border added around still images before detection, fraction of the longer side
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS  # larger images and video frames are refused, never decoded
    redetect_every: int = 2  # full detection on every Nth sampled video frame; in between, faces are re-found
    #                          where they were in the previous sampled frame (1: full detection everywhere)

    def __post_init__(self):
        if self.min_face_size < 1:
            raise UsageError(f"--min-face-size must be at least 1 pixel, got {self.min_face_size}")
        if self.score_threshold is not None and not 0.0 <= self.score_threshold <= 1.0:
            raise UsageError(f"--min-score must lie in [0, 1], got {self.score_threshold}")
        if not 0.0 <= self.margin <= 3.0:
            raise UsageError(f"--margin must lie in [0, 3], got {self.margin}")
        if not 16 <= self.crop_size <= 1024:
            raise UsageError(f"--size must lie in [16, 1024], got {self.crop_size}")
        if self.detect_size < 64:
            raise UsageError(f"--detect-size must be at least 64 pixels, got {self.detect_size}")
        if self.max_megapixels <= 0:
            raise UsageError(f"--max-megapixels must be positive, got {self.max_megapixels}")
        if not 1 <= self.redetect_every <= 100:
            raise UsageError(f"--redetect-every must lie in [1, 100], got {self.redetect_every}")

    @property
    def max_pixels(self) -> int:
        return int(self.max_megapixels * 1e6)

    def cache_key_fields(self) -> dict:
        """The fields that change the crops (batch size does not). Fields added after caches existed enter
        only when set away from the behaviour they reproduce when absent, so older caches keep their names."""
        fields = asdict(self)
        fields.pop("batch_size")
        fields.pop("max_megapixels")
        for name, old_behaviour in FIELDS_ADDED_LATER.items():
            if fields[name] == old_behaviour:
                fields.pop(name)
        fields["sampling"] = self.sampling.describe()
        return fields


# fields added after caches and ensemble files existed: the value that reproduces what files written
# without the field did (such files name a configuration that behaved this way)
FIELDS_ADDED_LATER = {"redetect_every": 1}


@dataclass(frozen=True)
class FaceCrop:
    """One face found in one sampled frame, with its crop (BGR, crop_size x crop_size)."""

    frame_index: int
    timestamp: float
    face_index: int
    detection: Detection
    crop_box: tuple[int, int, int, int]
    crop: np.ndarray


class FaceExtractor:
    """Find and crop the faces of a video or image according to a `FaceConfig`."""

    def __init__(self, config: FaceConfig, detector: FaceDetector | None = None, device: str | None = None):
        self.config = config
        self.detector = detector or create_detector(config.detector, device=device)
        self.score_threshold = (
            config.score_threshold if config.score_threshold is not None else self.detector.default_score_threshold
        )

    def faces_in_file(self, reader: MediaReader, changes: bool = False) -> Iterator[tuple[Frame, list[FaceCrop]]]:
        """Yield each sampled frame with its face crops (possibly none), in frame order; `changes`: each video
        frame with its change to the next (`MediaReader.frames`).

        Frames are decoded in a background thread. However this generator ends (exhausted, an exception in
        detection, or closed by the caller), that thread is stopped and joined before control returns, so
        the caller may close `reader` at once: close this generator (e.g. `contextlib.closing`) before
        closing the reader when leaving it early.
        """
        pad = self.config.image_pad if reader.info.media_type == "image" else 0.0
        frames = prefetch(reader.frames(self.config.sampling, changes=changes), depth=2 * self.config.batch_size)
        tracking = (reader.info.media_type == "video" and self.config.redetect_every > 1
                    and hasattr(self.detector, "refine"))
        try:
            if tracking:
                yield from self._track(frames)
                return
            batch: list[Frame] = []
            for frame in frames:
                batch.append(frame)
                if len(batch) == self.config.batch_size:
                    yield from self._crop_batch(batch, pad)
                    batch = []
            if batch:
                yield from self._crop_batch(batch, pad)
        finally:
            frames.close()  # stops and joins the decoding thread (an exception would otherwise keep it running)

    def detect(self, images_bgr: list[np.ndarray], pad: float = 0.0) -> list[list[Detection]]:
        """Detections in full-resolution coordinates for equal-size BGR frames, filtered and ordered.

        `pad` adds a black border of that fraction of the longer side before detection.
        """
        scale = self._scale(images_bgr[0], pad)
        found = self._detect_at(images_bgr, scale, pad)
        if scale < 1.0:
            retry = [i for i, dets in enumerate(found) if not dets]
            if retry:
                again = self._detect_at([images_bgr[i] for i in retry], min(1.0, scale * 2.0), pad)
                for i, dets in zip(retry, again):
                    found[i] = dets
        return found

    def _track(self, frames: Iterator[Frame]) -> Iterator[tuple[Frame, list[FaceCrop]]]:
        """Full detection on every `redetect_every`-th sampled frame, on any frame after a faceless one, and
        on any frame where a face of the previous one is not re-found near its last box; in between, only
        the detector's `refine` runs. (Skipping the search after faceless frames lost faces that only the
        search at twice the detection size finds: bench/extract_speed.py recall fell from 98.3% to 97.9%.)"""
        previous: list[Detection] = []
        for position, frame in enumerate(frames):
            full = position % self.config.redetect_every == 0
            detections = self._refind(frame.image, previous) if previous and not full else None
            if detections is None:
                detections = self.detect([frame.image])[0]
            previous = detections
            yield frame, self._cut(frame, detections)

    def _refind(self, image_bgr: np.ndarray, previous: list[Detection]) -> list[Detection] | None:
        """The faces of `previous` re-found in this frame, or None when any of them is not."""
        scale = self._scale(image_bgr)
        boxes = [d.mapped(scale).box for d in previous]
        found = self.detector.refine(_to_rgb(image_bgr, scale), boxes)
        found = self._select([d.mapped(1.0 / scale) for d in found])
        return found if len(found) >= len(previous) else None

    def _scale(self, image_bgr: np.ndarray, pad: float = 0.0) -> float:
        """The factor that brings a frame (with its border) to the detector's size."""
        height, width = image_bgr.shape[:2]
        return min(1.0, self.config.detect_size / (max(height, width) * (1 + 2 * pad)))

    def _detect_at(self, images_bgr: list[np.ndarray], scale: float, pad: float) -> list[list[Detection]]:
        small = [_to_rgb(image, scale) for image in images_bgr]
        border = int(round(pad * max(small[0].shape[:2])))
        if border:
            small = [cv2.copyMakeBorder(im, border, border, border, border, cv2.BORDER_CONSTANT, value=0) for im in small]
        raw = self.detector.detect(small)
        return [self._select([d.mapped(1.0 / scale, shift=border) for d in dets]) for dets in raw]

    def _select(self, detections: list[Detection]) -> list[Detection]:
        kept = [
            d
            for d in detections
            if d.score >= self.score_threshold and max(d.width, d.height) >= self.config.min_face_size
        ]
        kept.sort(key=lambda d: (-(d.width * d.height), d.box[0]))  # largest face first
        return kept[:1] if self.config.largest_only else kept

    def _crop_batch(self, frames: list[Frame], pad: float) -> Iterator[tuple[Frame, list[FaceCrop]]]:
        for frame, detections in zip(frames, self.detect([f.image for f in frames], pad)):
            yield frame, self._cut(frame, detections)

    def _cut(self, frame: Frame, detections: list[Detection]) -> list[FaceCrop]:
        crops = []
        for face_index, detection in enumerate(detections):
            crop_box = square_crop_box(_rounded(detection.box), self.config.margin)
            crop = cut_square(frame.image, crop_box, self.config.crop_size)
            crops.append(FaceCrop(frame.index, frame.timestamp, face_index, detection, crop_box, crop))
        return crops


def _rounded(box: tuple[float, ...]) -> tuple[float, ...]:
    """Boxes rounded to 1/100 px, so that crops do not depend on float noise between thread counts."""
    return tuple(round(v, 2) for v in box)


def _to_rgb(image_bgr: np.ndarray, scale: float) -> np.ndarray:
    if scale < 1.0:
        height, width = image_bgr.shape[:2]
        size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
        image_bgr = cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
