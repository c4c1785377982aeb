"""Reading videos and images as a stream of sampled BGR frames.

`MediaReader` is a context manager; an image is a one-frame video. The kind of a file is decided
by decoding it, never by its extension, so an image named `.mp4` is read as an image.

A small file can decode to gigabytes (a 1 MB PNG of 20000x20000 pixels takes 1.2 GB as BGR), so the size
of an image or of a video's frames is read from the header first and a file over `max_pixels` is refused
(`MediaTooLarge`) before anything is decoded.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, TypeVar

# Decoded pixels allowed per image or video frame: 8K video (33 MP) and 50 MP phone photos pass.
DEFAULT_MAX_MEGAPIXELS = 64.0
DEFAULT_MAX_PIXELS = int(DEFAULT_MAX_MEGAPIXELS * 1e6)
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg quiet: failures are reported per file
# OpenCV's own cap (a gigapixel by default), for the rare image whose size Pillow cannot read from its header
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(DEFAULT_MAX_PIXELS))
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.errors import MediaError, MediaTooLarge
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


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's per-thread malloc arenas: with decode, prefetch and torch threads each growing an
    arena of freed frame buffers, memory otherwise creeps up with video length (bench/memory.py).
    A no-op where the C library is not glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError):
        log.debug("mallopt unavailable: malloc arenas left as they are")


def quiet_opencv() -> None:
    """Silence OpenCV's own decoder messages: every failure is reported per file by this project."""
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_FATAL)


def is_media_name(path: Path) -> bool:
    """True when the file name looks like a video or image (used only to choose files in a directory)."""
    return path.suffix.lower() in MEDIA_EXTENSIONS


@dataclass(frozen=True)
class Frame:
    """One sampled frame: its index in the video, its presentation time in seconds (from the stream's
    timestamps, so variable-rate video gets true times) and its BGR pixels. `change`, when asked for
    (`frames(..., changes=True)`): how the picture changes from this frame to the next (`frame_change`); None for
    an image, the last frame of a video, or when not asked for."""

    index: int
    timestamp: float
    image: np.ndarray
    change: np.ndarray | None = None


CHANGE_WIDTH = 320  # frame changes are measured on pictures shrunk to this width (noise and detail average out)


def change_scale(image: np.ndarray) -> float:
    """Pixels of a `frame_change` picture per pixel of `image` (at most 1: small frames are not enlarged)."""
    return min(1.0, CHANGE_WIDTH / image.shape[1])


def frame_change(image: np.ndarray, following: np.ndarray) -> np.ndarray:
    """The absolute difference in grey level (uint8) between two consecutive BGR frames, both shrunk by
    `change_scale` (area averaging) before they are compared."""
    scale = change_scale(image)
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))

    def grey(picture: np.ndarray) -> np.ndarray:
        small = picture if scale == 1.0 else cv2.resize(picture, size, interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)

    return cv2.absdiff(grey(image), grey(following))


def with_changes(decoded: Iterable[tuple[int, float, np.ndarray, bool]]) -> Iterator[Frame]:
    """The sampled frames among `decoded` (index, seconds, BGR image, sampled?: the sampled frames and the frame
    after each), each with its `frame_change` to the next frame where that frame was decoded."""
    pending: Frame | None = None
    for index, timestamp, image, sampled in decoded:
        if pending is not None:
            follows = index == pending.index + 1
            yield Frame(pending.index, pending.timestamp, pending.image,
                        frame_change(pending.image, image) if follows else None)
            pending = None
        if sampled:
            pending = Frame(index, round(timestamp, 4), image)
    if pending is not None:
        yield pending


@dataclass(frozen=True)
class MediaInfo:
    media_type: str  # "video" or "image"
    width: int
    height: int
    fps: float
    frame_count: int  # as the header announces it; 0 where it announces none (Matroska, WebM)
    duration: float | None = None  # seconds, from the stream's or the container's header (None: an image, or unknown)


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


def image_header_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of an image read from its header by Pillow, without decoding its pixels; None when
    Pillow cannot read it. A size past Pillow's decompression-bomb guard comes back as its pixel count's
    square root, as square (all that Pillow reports)."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return image.size
    except Image.DecompressionBombError as exc:
        import re

        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        side = int(int(pixels.group(1)) ** 0.5) if pixels else 2**16
        return side, side
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None


def check_pixels(path: Path, width: int, height: int, max_pixels: int | None, what: str) -> None:
    """MediaTooLarge when `width` x `height` is over `max_pixels` (None: no limit)."""
    if max_pixels is not None and width * height > max_pixels:
        raise MediaTooLarge(f"{path}: {what} of {width}x{height} pixels ({width * height / 1e6:.0f} megapixels) is "
                            f"over the limit of {max_pixels / 1e6:g} megapixels")


# what a complete file of these formats ends with (trailing padding aside)
_IMAGE_ENDINGS = {b"\xff\xd8": (b"\xff\xd9", "JPEG", "end-of-image marker"),
                  b"\x89PNG": (b"IEND\xaeB`\x82", "PNG", "IEND chunk")}


def image_damage(path: Path) -> str:
    """A note when a JPEG or PNG file stops before its end marker (cut short: the decoder fills the rest with
    grey, or with the last row, and says so only on stderr), else ''."""
    with open(path, "rb") as handle:
        start = handle.read(4)
        handle.seek(max(0, path.stat().st_size - 64))
        tail = handle.read().rstrip(b"\0\r\n\t ")
    for magic, (ending, kind, marker) in _IMAGE_ENDINGS.items():
        if start.startswith(magic) and not tail.endswith(ending):
            return f"the {kind} file ends before its {marker}: cut short or damaged, part of the picture is missing"
    return ""


# Content often mistaken for media, by the first bytes: (signature, what it is, what to do instead)
_NOT_MEDIA = ((b"%PDF-", "a PDF document", "export its page as PNG or JPEG"),
              (b"<svg", "an SVG drawing (vector graphics)", "export it as PNG"),
              (b"PK\x03\x04", "a ZIP archive (or an Office document)", "unpack it and give the video or image inside"),
              (b"<!doctype html", "a web page (HTML)", "save the video or image itself, not the page"),
              (b"<html", "a web page (HTML)", "save the video or image itself, not the page"))


def not_media_note(path: Path) -> str:
    """What the file is when its first bytes show a well-known non-media format (whatever its name), else ''."""
    with open(path, "rb") as handle:
        head = handle.read(1024)
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<?xml") and b"<svg" in text:
        text = b"<svg"
    for signature, kind, advice in _NOT_MEDIA:
        if text.startswith(signature.lower()):
            return f"not a video or image: the content is {kind}, whatever its name says ({advice})"
    return ""


def _read_image(path: Path, max_pixels: int | None = None) -> np.ndarray | None:
    """Decode `path` as an image (EXIF orientation applied), or None when its content is not an image."""
    if not cv2.haveImageReader(str(path)):  # checks the file's signature, not its name
        return None
    size = image_header_size(path)
    if size is not None:
        check_pixels(path, *size, max_pixels, "an image")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None and (damage := image_damage(path)):
        raise MediaError(f"{path}: {damage}; it could not be decoded")
    return image


def _grid_time(index: int, fps: float) -> float:
    """Seconds of `index` frames at the nominal rate: a frame's time where its timestamp is missing, and
    (index 1) a frame's length. 0 without a rate."""
    return index / fps if fps > 0 else 0.0


class _OpenCVVideo:
    """Video decoding through OpenCV: grab() every frame, retrieve() only the kept ones."""

    name = "opencv"

    def __init__(self, path: Path):
        self.path = path
        capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        if not capture.isOpened():
            capture.release()
            raise MediaError(f"{path}: not a readable video or image (the decoder could not open it)")
        capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)  # upright portrait phone videos
        self._capture = capture
        self.width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.frame_count = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
        # OpenCV estimates a Matroska file's frame count from its duration; the length is what it knows
        self.duration = round(self.frame_count / self.fps, 3) if self.fps > 0 and self.frame_count > 0 else None
        self.frames_decoded = 0
        self.decoded_until = 0.0  # seconds: the end of the last decoded frame

    def decode(self, wanted, last: int | None) -> Iterator[tuple[int, float, np.ndarray]]:
        index = 0
        while last is None or index <= last:
            if not self._capture.grab():
                break
            timestamp = self._capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0  # this frame's presentation time
            if not np.isfinite(timestamp) or timestamp < 0:
                timestamp = _grid_time(index, self.fps)
            self.decoded_until = max(self.decoded_until, timestamp + _grid_time(1, self.fps))
            if wanted(index):
                ok, image = self._capture.retrieve()
                if ok and image is not None:
                    yield index, timestamp, image
                else:
                    log.warning("%s: frame %d could not be decoded, skipped", self.path, index)
            index += 1
        self.frames_decoded = index

    def count_frames(self) -> int:
        counter = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        count = 0
        while counter.grab():
            count += 1
        counter.release()
        return count

    def close(self) -> None:
        self._capture.release()


class _PyAVVideo:
    """Video decoding through PyAV (FFmpeg). Frames nobody asked for are not decoded at all when the
    codec allows it (non-reference frames are skipped); the kept frames are pixel-identical to OpenCV's.
    """

    name = "pyav"

    def __init__(self, path: Path):
        import av

        self.path = path
        try:
            self._container = av.open(str(path))
            streams = self._container.streams.video
            if not streams:
                self._container.close()
                raise MediaError(f"{path}: the file holds no video stream")
        except av.error.FFmpegError:
            raise MediaError(f"{path}: not a readable video or image (the decoder could not open it)") from None
        self._stream = streams[0]
        context = self._stream.codec_context
        self.width, self.height = int(context.width), int(context.height)
        self.fps = float(self._stream.average_rate or self._stream.guessed_rate or 0.0)
        self.frame_count = int(self._stream.frames or 0)
        self._base = self._stream.start_time or 0
        if self._stream.duration:
            self.duration = round(float(self._stream.duration * self._stream.time_base), 3)
        elif self._container.duration:  # Matroska and WebM state the length only for the whole file
            self.duration = round(self._container.duration / av.time_base, 3)
        else:
            self.duration = round(self.frame_count / self.fps, 3) if self.fps > 0 and self.frame_count > 0 else None
        self.frames_decoded = 0
        self.decoded_until = 0.0  # seconds: the end of the last decoded frame

    def _time(self, pts) -> float | None:
        return None if pts is None else float((pts - self._base) * self._stream.time_base)

    def _index(self, pts) -> int | None:
        """The frame's number on the stream's frame grid (its position, in constant-rate video)."""
        if pts is None or not self.fps:
            return None
        return int(round(self._time(pts) * self.fps))

    def decode(self, wanted, last: int | None) -> Iterator[tuple[int, float, np.ndarray]]:
        import av

        context = self._stream.codec_context
        counted = 0  # fallback index when timestamps are missing
        done: set[int] = set()
        try:
            for packet in self._container.demux(self._stream):
                index = self._index(packet.pts)
                # let the decoder drop what nobody needs (reference frames are always decoded)
                context.skip_frame = "DEFAULT" if index is None or wanted(index) else "NONREF"
                for frame in packet.decode():
                    index = self._index(frame.pts)
                    index = counted if index is None else index
                    timestamp = self._time(frame.pts)
                    timestamp = _grid_time(index, self.fps) if timestamp is None else timestamp
                    counted += 1
                    self.frames_decoded = max(self.frames_decoded, index + 1)
                    self.decoded_until = max(self.decoded_until, timestamp + _grid_time(1, self.fps))
                    if last is not None and index > last:
                        return
                    if wanted(index) and index not in done:
                        done.add(index)
                        yield index, timestamp, _upright(frame.to_ndarray(format="bgr24"), frame.rotation)
        except av.error.FFmpegError as exc:  # damaged data: keep what was decoded
            log.warning("%s: decoding stopped early (%s)", self.path, exc)

    def count_frames(self) -> int:
        return self.frame_count or _OpenCVVideo(self.path).count_frames()

    def close(self) -> None:
        self._container.close()


def _upright(image: np.ndarray, rotation: int | float | None) -> np.ndarray:
    """Apply a display-matrix rotation (degrees, counter-clockwise) as OpenCV's auto-orientation does."""
    turns = int(round((rotation or 0) / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def _pyav_available() -> bool:
    return importlib.util.find_spec("av") is not None


class ArrayReader:
    """Frames already in memory, read as `MediaReader` reads a file: one picture is an image, a sequence of
    pictures a video at `fps` frames a second. Pictures are BGR uint8 arrays (H, W, 3), as OpenCV gives them,
    greyscale arrays (H, W), or PIL images; a video's frames all share one size."""

    def __init__(self, pictures, fps: float | None = None, name: str = "frames",
                 max_pixels: int | None = DEFAULT_MAX_PIXELS):
        self.path = Path(name)
        single = not isinstance(pictures, (list, tuple)) and not (isinstance(pictures, np.ndarray)
                                                                   and pictures.ndim == 4)
        self._pictures = [_as_bgr(p, self.path) for p in ([pictures] if single else list(pictures))]
        if not self._pictures:
            raise MediaError(f"{self.path}: no frames given")
        height, width = self._pictures[0].shape[:2]
        if any(p.shape[:2] != (height, width) for p in self._pictures):
            raise MediaError(f"{self.path}: the frames differ in size; a video's frames share one size")
        check_pixels(self.path, width, height, max_pixels, "frames" if not single else "an image")
        if single:
            self.info = MediaInfo("image", width, height, 0.0, 1)
            return
        if fps is None or fps <= 0:
            raise MediaError(f"{self.path}: give the frames' rate (fps) so that their times are known")
        count = len(self._pictures)
        self.info = MediaInfo("video", width, height, float(fps), count, round(count / fps, 3))

    def __enter__(self) -> "ArrayReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        pass

    def frames(self, sampling: SamplingConfig, changes: bool = False) -> Iterator[Frame]:
        """As `MediaReader.frames`."""
        if self.info.media_type == "image":
            yield Frame(0, 0.0, self._pictures[0])
            return
        pictures = self._pictures
        for index in sample_indices(len(pictures), sampling):
            change = frame_change(pictures[index], pictures[index + 1]) if changes and index + 1 < len(pictures) else None
            yield Frame(index, round(_grid_time(index, self.info.fps), 4), pictures[index], change)

    def truncation_note(self) -> str:
        return ""


def _as_bgr(picture, name: Path) -> np.ndarray:
    """A BGR uint8 (H, W, 3) array of a picture given as BGR/greyscale array or PIL image; MediaError otherwise."""
    if not isinstance(picture, np.ndarray) and hasattr(picture, "convert"):  # a PIL image (RGB order)
        return cv2.cvtColor(np.asarray(picture.convert("RGB")), cv2.COLOR_RGB2BGR)
    if not isinstance(picture, np.ndarray):
        raise MediaError(f"{name}: expected numpy arrays or PIL images, got {type(picture).__name__}")
    if picture.dtype != np.uint8:
        raise MediaError(f"{name}: expected uint8 pixels (0-255), got {picture.dtype}")
    if picture.ndim == 2:
        return cv2.cvtColor(picture, cv2.COLOR_GRAY2BGR)
    if picture.ndim != 3 or picture.shape[2] not in (3, 4):
        raise MediaError(f"{name}: expected (H, W, 3) BGR or (H, W) greyscale arrays, got shape {picture.shape}")
    return np.ascontiguousarray(picture[:, :, :3])


DECODERS = ("auto", "pyav", "opencv")


class MediaReader:
    """Open a video or image file and yield its sampled frames.

    Videos are stepped forward without seeking and only kept frames are converted to pixels; with PyAV
    (the default when installed) frames nobody needs are not even decoded when the codec allows it.
    Rotation metadata is honoured, so portrait phone videos come out upright.
    """

    def __init__(self, path: str | os.PathLike, decoder: str = "auto",
                 max_pixels: int | None = DEFAULT_MAX_PIXELS):
        self.path = Path(path)
        self._video = None
        self._image = None
        self._image_damage = ""
        self.frames_decoded = 0
        self.decoded_until = 0.0  # seconds of video decoded, to the end of the last frame
        self._read_to_end = False
        self._last_wanted: int | None = None  # decoding stops after this frame index (--frames K), else None
        # Frames may be decoded in another thread (`prefetch`) than the one that closes the reader. Closing a
        # decoder while it decodes crashes in C (a segfault, or a hang), so decoding steps and close() take
        # this lock, and a closed reader decodes nothing more.
        self._lock = threading.RLock()
        self._decoding: list = []  # suspended decoder generators, closed before the decoder itself
        self._closed = False
        if decoder not in DECODERS:
            raise ValueError(f"unknown decoder {decoder!r}; choose one of {DECODERS}")
        _check_readable(self.path)
        if note := not_media_note(self.path):
            raise MediaError(f"{self.path}: {note}")
        image = _read_image(self.path, max_pixels)
        if image is not None:
            self._image = image
            self._image_damage = image_damage(self.path)
            height, width = image.shape[:2]
            self.info = MediaInfo("image", width, height, 0.0, 1)
            return
        if decoder == "opencv" or (decoder == "auto" and not _pyav_available()):
            self._video = _OpenCVVideo(self.path)
        else:
            try:
                self._video = _PyAVVideo(self.path)
            except MediaError:
                if decoder == "pyav":
                    raise
                self._video = _OpenCVVideo(self.path)  # a second opinion before giving up
        video = self._video
        if video.width <= 0 or video.height <= 0:
            self.close()
            raise MediaError(f"{self.path}: the video has no decodable picture stream")
        try:
            check_pixels(self.path, video.width, video.height, max_pixels, "a video whose frames are")
        except MediaTooLarge:
            self.close()
            raise
        self.info = MediaInfo("video", video.width, video.height, video.fps, video.frame_count, video.duration)

    @property
    def decoder(self) -> str:
        return self._video.name if self._video is not None else "image"

    def __enter__(self) -> "MediaReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the decoder: waits for a frame being decoded in another thread, after which that thread's
        next frame raises MediaError instead of touching the released decoder."""
        with self._lock:
            self._closed = True
            for decoding in self._decoding:
                decoding.close()  # suspended, never running here: the lock is held around each step
            self._decoding = []
            if self._video is not None:
                self._video.close()
                self._video = None

    def frames(self, sampling: SamplingConfig, changes: bool = False) -> Iterator[Frame]:
        """Yield the sampled frames in order. Raises MediaError when no frame at all can be decoded.

        `changes`: also decode the frame after each sampled one and give each sampled frame its `frame_change`
        (ensembles/stillness.py compares a face's change with its background's)."""
        if self._image is not None:
            yield Frame(0, 0.0, self._image)
            return
        yielded = 0
        decoded = self._decoded(sampling, following=changes)
        if changes:
            frames = with_changes(decoded)
        else:
            frames = (Frame(index, round(timestamp, 4), image) for index, timestamp, image, _ in decoded)
        for frame in frames:
            yielded += 1
            yield frame
        if yielded == 0:
            raise MediaError(f"{self.path}: no frame could be decoded (corrupt or truncated video)")

    def _decoded(self, sampling: SamplingConfig, following: bool = False
                 ) -> Iterator[tuple[int, float, np.ndarray, bool]]:
        """(index, seconds, BGR image, sampled?) of the sampled video frames (and, `following`, of the frame after
        each, not sampled itself unless the sampling keeps it), each decoding step under the lock."""
        with self._lock:
            self._check_open()
            if sampling.every is not None:
                every = sampling.every

                def wanted(index: int) -> bool:
                    return index % every == 0

                last = None
            else:
                keep = set(sample_indices(self._count_frames(), sampling))
                wanted = keep.__contains__
                last = max(keep) if keep else -1
            self._last_wanted = last
            sampled = wanted
            if following:
                def wanted(index: int) -> bool:
                    return sampled(index) or sampled(index - 1)

                last = None if last is None else last + 1
            decoding = self._video.decode(wanted, last)
            self._decoding.append(decoding)
        while True:
            with self._lock:
                self._check_open()
                try:
                    item = next(decoding)
                except StopIteration:
                    self.frames_decoded = self._video.frames_decoded
                    self.decoded_until = self._video.decoded_until
                    self._read_to_end = last is None
                    self._decoding.remove(decoding)
                    return
            yield (*item, sampled(item[0]))

    def _check_open(self) -> None:
        if self._closed:
            raise MediaError(f"{self.path}: the reader was closed while its frames were being read")

    def truncation_note(self) -> str:
        """A message when the file is damaged, else '': an image cut short (`image_damage`); a video read to its
        end in a shorter time than the length its header states, or (its length unknown, or decoding stopped
        after the last sampled frame on purpose) with fewer frames than its header announced up to there.
        Time decides where it can: variable-rate video holds fewer frames than length x nominal rate, and
        OpenCV estimates a Matroska file's frame count that way."""
        if self._image is not None:
            return self._image_damage
        duration = self.info.duration
        if self._read_to_end and duration:
            if self.decoded_until < 0.9 * duration:
                return (f"decoded {self.decoded_until:.1f} s of the {duration:.1f} s the file announces "
                        "(truncated or damaged video?)")
            return ""
        expected = self.info.frame_count
        if self._last_wanted is not None:
            expected = min(expected, self._last_wanted + 1)
        if expected > 0 and self.frames_decoded < 0.9 * expected:
            return f"decoded {self.frames_decoded} of {expected} announced frames (truncated or damaged video?)"
        return ""

    def _count_frames(self) -> int:
        """The announced frame count, or a counting pass when the container has none."""
        return self.info.frame_count if self.info.frame_count > 0 else self._video.count_frames()
