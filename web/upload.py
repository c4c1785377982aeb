"""Stream a multipart upload's `file` field into a server-named temporary file, with a size limit.

The client's filename is only ever used for display; it never becomes a path.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

from python_multipart.multipart import MultipartParser, parse_options_header


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


async def receive_upload(content_type: str | None, body: AsyncIterator[bytes], tmp_dir: Path, max_bytes: int,
                         field: str = "file") -> Upload:
    """Write the `field` part of a multipart body to a new file in `tmp_dir`; 413 past `max_bytes`."""
    mime, options = parse_options_header(content_type or "")
    if mime != b"multipart/form-data" or b"boundary" not in options:
        raise UploadError(422, f"send the file as multipart/form-data with a field named '{field}'")
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

    parser = MultipartParser(options[b"boundary"], {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
    })
    try:
        async for chunk in body:
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
        raise UploadError(400, f"malformed multipart body ({type(exc).__name__})") from None
    return Upload(path, display_name(state["filename"]), state["size"])
