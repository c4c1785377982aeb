"""Reading videos and images as a stream of sampled BGR frames.

`MediaReader` is a context manager; an image is a one-frame video. The kind of a file is decided
by decoding it, never by its extension, so an image named `.mp4` is read as an image.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, TypeVar

os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg quiet: failures are reported per file
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.errors import MediaError
from pipeline.sampling import SamplingConfig, sample_indices

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts"}
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".jp2", ".pgm", ".ppm"}
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | IMAGE_EXTENSIONS


T = TypeVar("T")
_DONE = object()


def prefetch(items: Iterable[T], depth: int = 8) -> Iterator[T]:
    """Iterate `items` in a background thread, `depth` ahead, so that decoding overlaps detection.

    Exceptions raised by `items` reach the consumer; stopping early stops the thread.
    """
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_DONE, None))
        except BaseException as exc:  # handed to the consumer, raised there
            put((_DONE, exc))

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = buffer.get()
            if item is _DONE:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        thread.join()


def quiet_opencv() -> None:
    """Silence OpenCV's own decoder messages: every failure is reported per file by this project."""
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_FATAL)


def is_media_name(path: Path) -> bool:
    """True when the file name looks like a video or image (used only to choose files in a directory)."""
    return path.suffix.lower() in MEDIA_EXTENSIONS


@dataclass(frozen=True)
class Frame:
    """One sampled frame: its index in the video, its timestamp in seconds and its BGR pixels."""

    index: int
    timestamp: float
    image: np.ndarray


@dataclass(frozen=True)
class MediaInfo:
    media_type: str  # "video" or "image"
    width: int
    height: int
    fps: float
    frame_count: int


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise MediaError(f"{path}: file not found")
    if not path.is_file():
        raise MediaError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: empty file (0 bytes)")
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except PermissionError:
        raise MediaError(f"{path}: permission denied") from None
    except OSError as exc:
        raise MediaError(f"{path}: cannot be read ({exc.strerror})") from None


def _read_image(path: Path) -> np.ndarray | None:
    """Decode `path` as an image (EXIF orientation applied), or None when its content is not an image."""
    if not cv2.haveImageReader(str(path)):  # checks the file's signature, not its name
        return None
    return cv2.imread(str(path), cv2.IMREAD_COLOR)


class MediaReader:
    """Open a video or image file and yield its sampled frames.

    Videos are stepped with `grab()` and only kept frames are decoded with `retrieve()` (no seeking).
    Rotation metadata is honoured, so portrait phone videos come out upright.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._capture = None
        self._image = None
        _check_readable(self.path)
        image = _read_image(self.path)
        if image is not None:
            self._image = image
            height, width = image.shape[:2]
            self.info = MediaInfo("image", width, height, 0.0, 1)
            return
        capture = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not capture.isOpened():
            capture.release()
            raise MediaError(f"{self.path}: not a readable video or image (the decoder could not open it)")
        capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)  # upright portrait phone videos
        self._capture = capture
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        frame_count = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
        if width <= 0 or height <= 0:
            self.close()
            raise MediaError(f"{self.path}: the video has no decodable picture stream")
        self.info = MediaInfo("video", width, height, fps, frame_count)
        self.frames_decoded = 0

    def __enter__(self) -> "MediaReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def frames(self, sampling: SamplingConfig) -> Iterator[Frame]:
        """Yield the sampled frames in order. Raises MediaError when no frame at all can be decoded."""
        if self._image is not None:
            yield Frame(0, 0.0, self._image)
            return
        if sampling.every is not None:
            keep = None
            last = None
        else:
            keep = set(sample_indices(self._count_frames(), sampling))
            last = max(keep) if keep else -1
        index = 0
        yielded = 0
        while last is None or index <= last:
            if not self._capture.grab():
                break
            wanted = index % sampling.every == 0 if keep is None else index in keep
            if wanted:
                ok, image = self._capture.retrieve()
                if ok and image is not None:
                    yielded += 1
                    yield Frame(index, self._timestamp(index), image)
                else:
                    log.warning("%s: frame %d could not be decoded, skipped", self.path, index)
            index += 1
        self.frames_decoded = index
        if yielded == 0:
            raise MediaError(f"{self.path}: no frame could be decoded (corrupt or truncated video)")

    def truncation_note(self) -> str:
        """A message when fewer frames were decoded than the container announced, else ''."""
        expected = self.info.frame_count
        if self._image is None and expected > 0 and self.frames_decoded < 0.9 * expected:
            return f"decoded {self.frames_decoded} of {expected} announced frames (truncated or damaged video?)"
        return ""

    def _timestamp(self, index: int) -> float:
        if self.info.fps > 0:
            return round(index / self.info.fps, 4)
        return round(float(self._capture.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0, 4)

    def _count_frames(self) -> int:
        """The announced frame count, or a counting pass with grab() when the container has none."""
        if self.info.frame_count > 0:
            return self.info.frame_count
        counter = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        count = 0
        while counter.grab():
            count += 1
        counter.release()
        return count
