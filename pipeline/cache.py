"""The face cache: JPEG crops plus a manifest, keyed by the configuration that made them.

Layout of one cache (`FaceCache.dir` = OUT/<detector>-<config hash>/):

    config.json      the configuration (a different one gets a different directory)
    journal.jsonl    one line per processed input: its status record and its face rows (source of truth)
    manifest.csv     one row per face crop (snapshot of the journal, rewritten atomically)
    inputs.csv       one status row per input: ok / no_face / error / skipped, with the message
    <video_id>/f<frame>_<face>.jpg

Crashes: crops are written (atomically) before the journal line that names them; a torn last journal
line is dropped on the next open; snapshots are written to a temp file and `os.replace`d; crops that a
redone input no longer uses are deleted only after a snapshot that no longer names them.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from pipeline.errors import DataError, UsageError
from pipeline.faces import FaceConfig

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = [
    "video_id", "source_path", "source_size", "source_mtime_ns", "media_type", "label", "group",
    "label_source", "frame_index", "timestamp", "face_index", "x1", "y1", "x2", "y2", "score",
    "landmarks", "crop_x1", "crop_y1", "crop_x2", "crop_y2", "crop_path", "detector",
    "frame_width", "frame_height",
]
INPUT_COLUMNS = [
    "video_id", "source_path", "source_size", "source_mtime_ns", "media_type", "label", "group",
    "label_source", "status", "message", "n_frames", "n_faces", "frame_width", "frame_height", "fps",
    "frame_count", "seconds",
]
DONE_STATUSES = ("ok", "no_face")
SNAPSHOT_EVERY_SECONDS = 20.0


def config_key(fields: dict) -> str:
    """A short stable hash of a configuration dict."""
    text = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]


def cache_dir_name(config_fields: dict) -> str:
    """The name of the cache directory for a configuration: `<detector>-<config hash>`."""
    return f"{config_fields['detector']}-{config_key(config_fields)}"


DEFAULT_JPEG_QUALITY = 95  # of the crops a cache holds


def cache_fields(faces: FaceConfig, jpeg_quality: int = DEFAULT_JPEG_QUALITY) -> dict:
    """The settings that name a cache: how faces are found and cropped, and how the crops are stored."""
    return {**faces.cache_key_fields(), "jpeg_quality": jpeg_quality}


def default_cache_name() -> str:
    """The directory name `extract` gives the cache made with its default settings (e.g. `mtcnn-0463e6a4ab`)."""
    return cache_dir_name(cache_fields(FaceConfig()))


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never a torn one."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_jpeg_atomic(path: Path, image_bgr: np.ndarray, quality: int) -> None:
    ok, encoded = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise DataError(f"{path}: JPEG encoding failed")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, encoded.tobytes())


def crop_relpath(video_id: str, frame_index: int, face_index: int) -> str:
    """Where a crop lives inside its cache directory."""
    return f"{video_id}/f{frame_index:06d}_{face_index:02d}.jpg"


class FaceCache:
    """One configuration's crops and manifest. Use as a context manager (it holds a lock)."""

    def __init__(self, root: str | os.PathLike, config_fields: dict):
        self.root = Path(root)
        self.config_fields = config_fields
        self.dir = self.root / cache_dir_name(config_fields)
        self.entries: dict[str, dict] = {}
        self._lock_handle = None
        self._journal = None
        self._orphans: list[Path] = []
        self._last_snapshot = 0.0
        self._dirty = False

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> "FaceCache":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create the output directory {self.dir}: {exc.strerror}") from None
        self._lock_handle = open(self.dir / ".lock", "w")
        try:
            fcntl.flock(self._lock_handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"another extract is already writing to {self.dir}") from None
        config_path = self.dir / "config.json"
        if not config_path.exists():
            write_atomic(config_path, json.dumps(self.config_fields, indent=2, sort_keys=True, default=str).encode())
        self._remove_temp_files()
        self.entries = self._load_journal()
        self._rewrite_journal()
        self._journal = open(self.dir / "journal.jsonl", "a", encoding="utf-8")
        self.snapshot()

    def close(self) -> None:
        if self._journal is not None:
            self.snapshot()
            self._journal.close()
            self._journal = None
        if self._lock_handle is not None:
            fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None

    # -- queries -----------------------------------------------------------------------------
    def is_done(self, video_id: str, size: int, mtime_ns: int) -> bool:
        """True when `video_id` was processed (ok or no face) from a file of this size and mtime."""
        entry = self.entries.get(video_id)
        return (
            entry is not None
            and entry["input"]["status"] in DONE_STATUSES
            and entry["input"]["source_size"] == size
            and entry["input"]["source_mtime_ns"] == mtime_ns
        )

    def owner_of(self, video_id: str) -> str | None:
        entry = self.entries.get(video_id)
        return entry["input"]["source_path"] if entry else None

    # -- updates -----------------------------------------------------------------------------
    def record(self, entry: dict) -> None:
        """Journal one input's result: {"input": status record, "faces": [manifest rows]}."""
        video_id = entry["input"]["video_id"]
        old = self.entries.get(video_id)
        line = json.dumps(entry, ensure_ascii=False, default=_json_default)
        self._journal.write(line + "\n")
        self._journal.flush()
        os.fsync(self._journal.fileno())
        self.entries[video_id] = entry
        if old is not None:
            kept = {row["crop_path"] for row in entry["faces"]}
            self._orphans += [self.dir / row["crop_path"] for row in old["faces"] if row["crop_path"] not in kept]
        self._dirty = True
        if time.monotonic() - self._last_snapshot > SNAPSHOT_EVERY_SECONDS:
            self.snapshot()

    def snapshot(self) -> None:
        """Rewrite manifest.csv and inputs.csv from the journal, then delete crops nothing names."""
        faces = [row for entry in self.entries.values() for row in entry["faces"]]
        inputs = [entry["input"] for entry in self.entries.values()]
        manifest = pd.DataFrame(faces, columns=MANIFEST_COLUMNS)
        manifest = manifest.sort_values(["video_id", "frame_index", "face_index"], kind="stable")
        statuses = pd.DataFrame(inputs, columns=INPUT_COLUMNS).sort_values("video_id", kind="stable")
        write_atomic(self.dir / "manifest.csv", manifest.to_csv(index=False).encode("utf-8"))
        write_atomic(self.dir / "inputs.csv", statuses.to_csv(index=False).encode("utf-8"))
        for path in self._orphans:
            path.unlink(missing_ok=True)
        self._orphans = []
        self._last_snapshot = time.monotonic()
        self._dirty = False

    # -- internals ---------------------------------------------------------------------------
    def _load_journal(self) -> dict[str, dict]:
        """Latest entry per video id; torn lines and entries whose crops vanished are dropped."""
        path = self.dir / "journal.jsonl"
        entries: dict[str, dict] = {}
        if not path.exists():
            return entries
        with open(path, encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, start=1):
                try:
                    entry = json.loads(line)
                    video_id = entry["input"]["video_id"]
                except (ValueError, KeyError, TypeError):
                    log.warning("%s line %d: unreadable (interrupted write?), ignored", path, number)
                    continue
                entries[video_id] = entry
        for video_id, entry in list(entries.items()):
            if any(not (self.dir / row["crop_path"]).is_file() for row in entry["faces"]):
                log.warning("%s: crops are missing from the cache, it will be extracted again", video_id)
                del entries[video_id]
        return entries

    def _rewrite_journal(self) -> None:
        lines = "".join(json.dumps(e, ensure_ascii=False, default=_json_default) + "\n" for e in self.entries.values())
        write_atomic(self.dir / "journal.jsonl", lines.encode("utf-8"))

    def _remove_temp_files(self) -> None:
        for tmp in self.dir.rglob(".*.tmp*"):
            tmp.unlink(missing_ok=True)


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def find_cache_dir(path: str | os.PathLike) -> Path:
    """The cache directory holding manifest.csv: `path` itself, or one of its configuration subdirectories.

    When `path` holds several caches, the one made with extract's default settings is chosen (so
    `--faces data/faces` means the cache that `extract` makes by default); without it, which one is
    meant is ambiguous and the error lists them.
    """
    path = Path(path)
    if (path / "manifest.csv").is_file():
        return path
    if not path.is_dir():
        raise DataError(f"{path}: no such face cache directory (run `extract` first)")
    candidates = sorted(p.parent for p in path.glob("*/manifest.csv"))
    if not candidates:
        raise DataError(f"{path}: no manifest.csv here or in its subdirectories (run `extract` first)")
    if len(candidates) == 1:
        return candidates[0]
    default = path / default_cache_name()
    if default in candidates:
        log.warning("%s holds %d face caches; using %s, the one extract makes with its default settings "
                    "(name another with --faces)", path, len(candidates), default)
        return default
    listing = "\n".join(f"  {c}  ({_describe(c)})" for c in candidates)
    raise DataError(f"{path} holds several face caches and none made with extract's default settings "
                    f"({default.name}); choose one with --faces:\n{listing}")


def _describe(cache_dir: Path) -> str:
    try:
        config = json.loads((cache_dir / "config.json").read_text())
        return ", ".join(f"{k}={v}" for k, v in sorted(config.items()))
    except (OSError, ValueError):
        return "configuration unknown"


def load_manifest(path: str | os.PathLike) -> tuple[pd.DataFrame, Path]:
    """The manifest of a face cache as a DataFrame (crop_path made absolute in `crop_file`), and the cache dir."""
    cache_dir = find_cache_dir(path)
    try:
        manifest = pd.read_csv(cache_dir / "manifest.csv", dtype={"video_id": str, "group": str, "label": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{cache_dir / 'manifest.csv'}: unreadable manifest ({exc})") from None
    missing = [c for c in ("video_id", "label", "group", "crop_path") if c not in manifest.columns]
    if missing:
        raise DataError(f"{cache_dir / 'manifest.csv'}: not a face manifest (missing columns {', '.join(missing)})")
    manifest["crop_file"] = [str(cache_dir / p) for p in manifest["crop_path"]]
    return manifest, cache_dir
