"""Stream a multipart upload's `file` field into a server-named temporary file, within limits.

The client's filename is only ever used for display; it never becomes a path. An upload is refused with
413 past its size limit and with 408 when it stalls (nothing arrives for `idle_seconds`) or, once its grace
period is over, when its average rate falls below `min_bytes_per_second`; the partial file is removed.

Uploads live in one `UploadFolder` per server, which the server holds locked while it runs and removes when
it stops; a server killed outright (SIGKILL, power loss) cannot remove it, so every server sweeps the unlocked
folders of dead ones when it starts.
"""
from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import shutil
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

log = logging.getLogger(__name__)

# python-multipart allows 4 KiB per part header by default: a filename of a few thousand characters (the
# display name keeps 200 of them) would fail as a "malformed" body. The headers stay bounded all the same.
MAX_PART_HEADER_BYTES = 64 * 1024


UPLOAD_FOLDER_PREFIX = "deepfake-uploads-"
OWNER_LOCK = ".owner.lock"  # held (flock) by the live server that owns the folder
UNLOCKED_GRACE_SECONDS = 60.0  # a folder without a lock file this old is a dead server's (or an older version's)


class UploadFolder:
    """A server's own folder for uploads under `parent` (default: the system temp dir), locked while it lives.

    Made at start-up after sweeping the folders of servers that died without removing theirs; removed by
    `close()` (at shutdown), or at interpreter exit at the latest.
    """

    def __init__(self, parent: Path | None = None):
        parent = Path(parent) if parent is not None else Path(tempfile.gettempdir())
        parent.mkdir(parents=True, exist_ok=True)
        self.swept = sweep_dead_upload_folders(parent)
        self.path = Path(tempfile.mkdtemp(prefix=UPLOAD_FOLDER_PREFIX, dir=parent))
        self._lock = open(self.path / OWNER_LOCK, "w")
        _try_lock(self._lock)
        self._finalizer = weakref.finalize(self, _remove, self.path, self._lock)

    def close(self) -> None:
        """Remove the folder and everything in it."""
        self._finalizer()


def _remove(path: Path, lock) -> None:
    shutil.rmtree(path, ignore_errors=True)
    lock.close()


def _try_lock(handle) -> bool:
    """Take an exclusive lock on the open file without waiting: False when another process holds it."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def sweep_dead_upload_folders(parent: Path) -> list[Path]:
    """Remove the upload folders under `parent` that no live server holds; return them. A folder whose owner
    lock is free belongs to a server that died; one with no lock file at all, to a server that died while
    making it (or an older version), once it is a minute old. Other users' folders are left alone."""
    removed = []
    for folder in parent.glob(UPLOAD_FOLDER_PREFIX + "*"):
        try:
            if not folder.is_dir() or folder.is_symlink():
                continue
            lock_file = folder / OWNER_LOCK
            if lock_file.exists():
                with open(lock_file) as handle:
                    if not _try_lock(handle):
                        continue  # a live server's
            elif time.time() - folder.stat().st_mtime < UNLOCKED_GRACE_SECONDS:
                continue
            shutil.rmtree(folder)
        except OSError as exc:  # someone else's, or gone meanwhile
            log.debug("left %s: %s", folder, exc)
            continue
        removed.append(folder)
        log.info("removed %s, left by a server that stopped without removing it", folder)
    return removed


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int
    idle_seconds: float | None = 30.0  # longest wait for the next chunk; None: no limit
    min_bytes_per_second: float = 0.0  # average rate required once grace_seconds have passed; 0: no limit
    grace_seconds: float = 30.0

    def next_deadline(self, received: int, elapsed: float) -> tuple[float | None, str]:
        """Seconds the next chunk may take, and the 408 message if it takes longer: the idle timeout, or less
        where `received` bytes would no longer make the minimum average rate once the grace period is over."""
        seconds, message = None, ""
        if self.idle_seconds:
            seconds = self.idle_seconds
            message = (f"upload timed out: nothing arrived for {self.idle_seconds:g} s (after {received} bytes); "
                       "the partial upload was discarded")
        if self.min_bytes_per_second > 0:
            until = max(self.grace_seconds, received / self.min_bytes_per_second)
            if seconds is None or until - elapsed < seconds:
                seconds = until - elapsed
                message = (f"upload too slow: {received / 1024:.1f} KB in {until:.0f} s, below the server's minimum "
                           f"of {self.min_bytes_per_second / 1024:g} KB/s on average; the partial upload was discarded")
        return (None if seconds is None else max(0.0, seconds)), message


class UploadError(Exception):
    """An upload the server refuses; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Upload:
    path: Path  # server-chosen temporary file
    filename: str  # the client's name, sanitised, for display only
    size: int


def display_name(raw: str | None) -> str:
    """The last component of a client-supplied filename, without control characters, at most 200 chars."""
    name = (raw or "").replace("\\", "/").split("/")[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip() or "upload"
    return name[-200:]


async def receive_upload(content_type: str | None, body: AsyncIterator[bytes], tmp_dir: Path,
                         limits: UploadLimits, field: str = "file") -> Upload:
    """Write the `field` part of a multipart body to a new file in `tmp_dir`; UploadError past the limits."""
    mime, options = parse_options_header(content_type or "")
    if mime != b"multipart/form-data" or b"boundary" not in options:
        raise UploadError(422, f"send the file as multipart/form-data with a field named '{field}'")
    max_bytes = limits.max_bytes
    handle, name = tempfile.mkstemp(prefix="upload-", suffix=".bin", dir=tmp_dir)
    path = Path(name)
    state = {"headers": {}, "field": "", "key": b"", "value": b"", "in_file": False, "found": False,
             "filename": None, "size": 0}
    out = os.fdopen(handle, "wb")

    def on_part_begin():
        state.update(headers={}, key=b"", value=b"", in_file=False)

    def on_header_field(data, start, end):
        state["key"] += data[start:end]

    def on_header_value(data, start, end):
        state["value"] += data[start:end]

    def on_header_end():
        state["headers"][state["key"].decode("latin-1").lower()] = state["value"]
        state.update(key=b"", value=b"")

    def on_headers_finished():
        _, disposition = parse_options_header(state["headers"].get("content-disposition", b""))
        is_target = disposition.get(b"name", b"").decode("utf-8", "replace") == field and not state["found"]
        state["in_file"] = is_target
        if is_target:
            state["found"] = True
            raw = disposition.get(b"filename")
            state["filename"] = raw.decode("utf-8", "replace") if raw is not None else None

    def on_part_data(data, start, end):
        if state["in_file"]:
            state["size"] += end - start
            if state["size"] > max_bytes:
                raise UploadError(413, f"upload larger than the {max_bytes // 2**20} MB limit")
            out.write(data[start:end])

    callbacks = {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
    }
    chunks = aiter(body)
    started, received = time.monotonic(), 0
    try:
        parser = MultipartParser(options[b"boundary"], callbacks, max_header_size=MAX_PART_HEADER_BYTES)
        while True:
            # `async for` would wait for ever on a client that sends nothing: every chunk gets a deadline
            seconds, too_late = limits.next_deadline(received, time.monotonic() - started)
            try:
                chunk = await asyncio.wait_for(anext(chunks), seconds)
            except StopAsyncIteration:
                break
            except asyncio.TimeoutError:
                raise UploadError(408, too_late) from None
            received += len(chunk)
            parser.write(chunk)
        parser.finalize()
        out.close()
        if not state["found"]:
            raise UploadError(422, f"the form has no '{field}' field")
        if state["size"] == 0:
            raise UploadError(422, "the uploaded file is empty")
    except BaseException as exc:
        out.close()
        path.unlink(missing_ok=True)
        if isinstance(exc, UploadError) or not isinstance(exc, Exception):
            raise
        raise _refusal(exc) from None
    return Upload(path, display_name(state["filename"]), state["size"])


def _refusal(exc: Exception) -> UploadError:
    """The 400 for a body that could not be parsed, in words for the client (the parser's own text is logged)."""
    if isinstance(exc, ClientDisconnect):
        return UploadError(400, "the client closed the connection before the upload was complete")
    log.info("unparseable multipart body: %s: %s", type(exc).__name__, exc)
    text = str(exc)
    if isinstance(exc, MultipartParseError) and "header size" in text:
        return UploadError(400, f"a part header of the form is longer than {MAX_PART_HEADER_BYTES // 1024} KiB "
                                "(is the filename that long?)")
    if isinstance(exc, MultipartParseError) and "header count" in text:
        return UploadError(400, "a part of the form has too many headers")
    return UploadError(400, "malformed multipart body: the form could not be parsed (is the boundary in the "
                            "content-type header the one the body uses?)")
