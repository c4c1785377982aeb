"""The JSON API with real uploads, and the upload page in a real headless browser."""
from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from ensembles.ensemble import Ensemble
from pipeline.errors import MediaError
from pipeline.faces import FaceExtractor
from tests.conftest import ROOT, shared_data, write_png_bomb, write_video
from web.app import ServerConfig, create_app, listen, uvicorn_server
from web.upload import OWNER_LOCK, UPLOAD_FOLDER_PREFIX

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def ensemble(small_ensemble):
    return Ensemble.load(small_ensemble, device="cpu")


@pytest.fixture()
def server(ensemble, tmp_path):
    """(TestClient, its upload temp dir) for a server with a 2 MB upload limit."""
    uploads = tmp_path / "uploads"
    app = create_app(ensemble, ServerConfig(max_upload_mb=2, tmp_dir=uploads))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, uploads


def left_in(uploads: Path) -> list[Path]:
    """What is under a server's --upload-dir besides its own (locked) upload folder: uploads, reports."""
    return [p for p in uploads.rglob("*") if p.name != OWNER_LOCK
            and not (p.parent == uploads and p.is_dir() and p.name.startswith(UPLOAD_FOLDER_PREFIX))]


def post(client, path: Path, filename: str | None = None, content_type: str = "video/mp4", **params):
    with open(path, "rb") as handle:
        return client.post("/api/v1/classify", params=params,
                           files={"file": (filename or path.name, handle, content_type)})


def test_health_models_and_openapi(server):
    client, _ = server
    assert client.get("/api/v1/health").json()["status"] == "ok"
    models = client.get("/api/v1/models").json()
    assert models["members"] == ["lenet", "minivgg"] and 0 < models["threshold"] < 1
    assert "/api/v1/classify" in client.get("/openapi.json").json()["paths"]


def test_classify_returns_the_cli_json(server, face_clip):
    client, uploads = server
    response = post(client, face_clip, thumbnails="true")
    assert response.status_code == 200, response.text
    body = response.json()
    assert {"path", "verdict", "p_fake", "per_model", "tracks", "n_frames", "n_faces"} <= set(body)
    assert body["path"] == body["file_name"] == "astronaut.mp4" and body["verdict"] in ("REAL", "FAKE")
    assert body["n_faces"] == 3 and body["band"] and body["explanation"] and "report_png" not in body
    assert len(body["thumbnails"]) == 3 and body["thumbnails"][0].startswith("data:image/jpeg;base64,")
    assert left_in(uploads) == []


def test_report_flag_returns_the_report_png_and_keeps_no_file(server, face_clip):
    client, uploads = server
    body = post(client, face_clip, filename="mine.mp4", report="true").json()
    assert body["file_name"] == "mine.mp4" and "thumbnails" not in body
    assert body["report_png"].startswith("data:image/png;base64,")
    png = cv2.imdecode(np.frombuffer(base64.b64decode(body["report_png"].split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
    assert png is not None and png.shape[1] >= 800
    assert left_in(uploads) == []  # neither the upload nor the report's temporary folder is left


def test_limits_and_model_card(server, tmp_path):
    client, _ = server
    limits = client.get("/api/v1/limits").json()
    assert limits["max_upload_mb"] == 2 and ".mp4" in limits["video_formats"] and ".png" in limits["image_formats"]
    assert limits["sampling"] == "every 10th frame" and limits["uploads_kept"] is False
    assert limits["model_card"] is None  # the test ensemble has no card beside it
    assert client.get("/model-card").status_code == 404
    shipped = create_app(Ensemble.load(device="cpu"), ServerConfig(tmp_dir=tmp_path / "u"))
    with TestClient(shipped) as shipped_client:
        assert shipped_client.get("/api/v1/limits").json()["model_card"] == "/model-card"
        card = shipped_client.get("/model-card")
        assert card.status_code == 200 and card.headers["content-type"].startswith("text/plain")
        assert card.text == (ROOT / "models" / "weights" / "MODEL_CARD.md").read_text(encoding="utf-8")


def test_no_face(server, faceless_clip):
    client, _ = server
    body = post(client, faceless_clip).json()
    assert body["verdict"] == "NO_FACE" and body["p_fake"] is None


def test_image_upload(server, astronaut, tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "face.jpg"), astronaut)
    body = post(client := server[0], tmp_path / "face.jpg", content_type="image/jpeg").json()
    assert body["media_type"] == "image" and body["n_faces"] == 1
    del client


def test_oversize_upload_is_413_and_leaves_nothing(server, tmp_path):
    client, uploads = server
    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(3 * 2**20))
    response = post(client, big)
    assert response.status_code == 413 and "limit" in response.json()["error"]["message"]
    assert left_in(uploads) == []


def test_oversize_without_content_length_is_cut_while_streaming(server):
    client, uploads = server
    boundary = "xyz"

    def body():
        yield f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\n'.encode()
        for _ in range(40):
            yield b"\0" * 2**17  # 5 MB in all, sent chunked
        yield f"\r\n--{boundary}--\r\n".encode()

    response = client.post("/api/v1/classify", content=body(),
                           headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 413
    assert left_in(uploads) == []


def test_text_named_mp4_is_415(server, tmp_path):
    client, uploads = server
    fake = tmp_path / "clip.mp4"
    fake.write_text("just text, not a video\n" * 100)
    response = post(client, fake)
    assert response.status_code == 415
    assert "not a readable video or image" in response.json()["error"]["message"]
    assert left_in(uploads) == []


def test_an_image_that_decodes_huge_is_413_before_it_is_decoded(server, tmp_path):
    client, uploads = server
    response = post(client, write_png_bomb(tmp_path / "bomb.png"), filename="holiday.png", content_type="image/png")
    assert response.status_code == 413, response.text
    message = response.json()["error"]["message"]
    assert message.startswith("holiday.png: an image of 20000x20000 pixels") and "limit of 64 megapixels" in message
    assert str(tmp_path) not in message and "--max-megapixels" not in message
    assert client.get("/api/v1/limits").json()["max_megapixels"] == 64
    assert left_in(uploads) == []


@pytest.mark.parametrize("request_kwargs, status", [
    ({"data": {"nothing": "here"}}, 422),
    ({"files": {"other": ("a.mp4", b"abc", "video/mp4")}}, 422),
    ({"files": {"file": ("empty.mp4", b"", "video/mp4")}}, 422),
])
def test_malformed_requests_get_json_errors(server, request_kwargs, status):
    client, _ = server
    response = client.post("/api/v1/classify", **request_kwargs)
    assert response.status_code == status and "message" in response.json()["error"]
    assert "Traceback" not in response.text


@pytest.mark.parametrize("filename", ["../../escape.mp4", "/tmp/abs.mp4", "..\\..\\win.mp4", "a/../../b.mp4"])
def test_traversal_shaped_filenames_never_become_paths(server, face_clip, tmp_path, filename):
    client, uploads = server
    base = tmp_path.parent.parent  # pytest's base temp dir: every test's files live under it
    before = set(base.rglob("*"))
    response = post(client, face_clip, filename=filename)
    assert response.status_code == 200
    name = response.json()["path"]
    assert "/" not in name and "\\" not in name and ".." not in name.replace(".mp4", "")
    # nothing named after the upload appeared anywhere (other pytest sessions may write under `base` meanwhile)
    created = set(base.rglob("*")) - before
    assert not [p for p in created if p.name in (name, filename.replace("\\", "/").split("/")[-1])
                or p.name.startswith("upload-")]
    assert not Path("/tmp/abs.mp4").exists() and not Path("escape.mp4").exists()
    assert left_in(uploads) == []


def test_full_queue_answers_503_with_retry_after(ensemble, face_clip, tmp_path):
    app = create_app(ensemble, ServerConfig(workers=1, queue_size=0, tmp_dir=tmp_path / "u"))
    with TestClient(app) as client:
        assert app.state.pool.try_acquire()  # the only slot is busy
        response = post(client, face_clip)
        app.state.pool.release()
        assert response.status_code == 503 and response.headers["retry-after"].isdigit()
        assert post(client, face_clip).status_code == 200


def test_full_upload_slots_answer_503_with_retry_after(ensemble, face_clip, tmp_path):
    app = create_app(ensemble, ServerConfig(max_uploads=1, tmp_dir=tmp_path / "u"))
    with TestClient(app) as client:
        assert app.state.uploads.try_acquire()  # the only upload slot is taken
        response = post(client, face_clip)
        app.state.uploads.release()
        assert response.status_code == 503 and response.headers["retry-after"].isdigit()
        assert "uploads" in response.json()["error"]["message"]
        assert post(client, face_clip).status_code == 200


def test_a_5000_character_filename_is_accepted_and_shortened(server, astronaut, tmp_path):
    client, uploads = server
    cv2.imwrite(str(tmp_path / "face.jpg"), astronaut)
    name = "x" * 5000 + ".jpg"  # python-multipart's default limit of 4 KiB per part header refused this
    response = post(client, tmp_path / "face.jpg", filename=name, content_type="image/jpeg")
    assert response.status_code == 200, response.text
    assert response.json()["path"] == name[-200:]
    assert left_in(uploads) == []


def test_an_absurdly_long_part_header_gets_a_specific_400(server, tmp_path):
    client, uploads = server
    (tmp_path / "a.jpg").write_bytes(b"not read")
    response = post(client, tmp_path / "a.jpg", filename="x" * 70_000 + ".jpg", content_type="image/jpeg")
    assert response.status_code == 400
    assert "longer than 64 KiB" in response.json()["error"]["message"]
    assert left_in(uploads) == []


@pytest.mark.parametrize("failure, shown", [
    (lambda path: RuntimeError(f"torch.cat(): expected a non-empty list of Tensors ({path})"), False),
    (lambda path: MediaError(f"{path}: no frame could be decoded (corrupt or truncated video)"), True),
])
def test_internal_exception_text_never_reaches_the_client(server, face_clip, monkeypatch, failure, shown):
    """An unexpected exception inside classification (injected here) is answered in plain words; a MediaError's
    message, written for users, is passed on with the client's filename in place of the server's path."""
    client, uploads = server

    def broken_search(self, reader, changes=False):
        raise failure(reader.path)
        yield  # a generator, like the real one

    monkeypatch.setattr(FaceExtractor, "faces_in_file", broken_search)
    response = post(client, face_clip, filename="mine.mp4")
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert message.startswith("mine.mp4: ") and "upload-" not in message and "Error" not in message
    assert ("no frame could be decoded" in message) == shown
    assert "torch" not in message and "Tensors" not in message
    assert left_in(uploads) == []


def test_an_unexpected_failure_in_the_server_is_a_plain_500(server, face_clip, monkeypatch):
    client, uploads = server

    async def broken_run(self, path, thumbnails):
        raise KeyError("secret internal detail")

    monkeypatch.setattr("web.app.InferencePool.run", broken_run)
    response = post(client, face_clip)
    assert response.status_code == 500
    assert "secret" not in response.text and "KeyError" not in response.text and "Traceback" not in response.text
    assert left_in(uploads) == []


def test_dfdc_clip_upload(server):
    clip = shared_data("dfdc_videos", "lynaeydofd.mp4")
    client, _ = server
    app_limit_mb = 2
    if clip.stat().st_size > app_limit_mb * 2**20:
        bigger = create_app(client.app.state.pool.ensemble, ServerConfig(max_upload_mb=20))
        with TestClient(bigger) as big_client:
            body = post(big_client, clip).json()
    else:
        body = post(client, clip).json()
    assert body["verdict"] in ("REAL", "FAKE") and body["n_faces"] > 10


# -- a real server on a loopback port -------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running(app):
    """Serve `app` with uvicorn in a thread, on a socket from web.app.listen; yields the base URL."""
    sock = listen("127.0.0.1", 0)
    server = uvicorn_server(app, sock)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, "the server to start")
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def wait_for(condition, what: str, seconds: float = 120.0) -> None:
    """Wait (generously) until `condition()` holds; fail naming `what` otherwise."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {seconds:.0f} s for {what}")
        time.sleep(0.05)


@pytest.fixture()
def live_server(ensemble, tmp_path):
    with running(create_app(ensemble, ServerConfig(tmp_dir=tmp_path / "uploads"))) as url:
        yield url, tmp_path / "uploads"


class RawUpload:
    """A multipart upload over a plain socket, whose body the test sends at the pace it chooses."""

    BOUNDARY = "raw-upload-boundary"

    def __init__(self, url: str, file_size: int, filename: str = "slow.mp4"):
        head = (f'--{self.BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                "Content-Type: video/mp4\r\n\r\n").encode()
        length = len(head) + file_size + len(f"\r\n--{self.BOUNDARY}--\r\n")
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=120)
        self.sock.sendall(f"POST /api/v1/classify HTTP/1.1\r\nHost: {host}\r\nContent-Length: {length}\r\n"
                          f"Content-Type: multipart/form-data; boundary={self.BOUNDARY}\r\n\r\n".encode() + head)
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def trickle(self, chunk: int, pause: float) -> "RawUpload":
        """Send `chunk` bytes every `pause` seconds in a thread, until stopped or refused."""
        def send():
            while not self.stop.is_set():
                try:
                    self.sock.sendall(b"\0" * chunk)
                except OSError:
                    return
                self.stop.wait(pause)

        self.thread = threading.Thread(target=send, daemon=True)
        self.thread.start()
        return self

    def response(self) -> tuple[int, dict]:
        """The status and JSON body the server answers with (read until complete, closed or reset)."""
        data = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := self.sock.recv(65536):
                data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length: *(\d+)", head)
                if length and len(body) >= int(length.group(1)):
                    break
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), json.loads(body)

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=30)
        self.sock.close()


def test_slow_uploads_hold_no_inference_slot(ensemble, face_clip, tmp_path):
    """Five uploads crawling in at 20 KB/s while one worker and no queue: a normal upload still gets 200."""
    uploads = tmp_path / "uploads"
    app = create_app(ensemble, ServerConfig(workers=1, queue_size=0, tmp_dir=uploads, upload_min_kb_per_second=0))
    with running(app) as url:
        slow = [RawUpload(url, file_size=10 * 2**20).trickle(chunk=1024, pause=0.05) for _ in range(5)]
        try:
            wait_for(lambda: httpx.get(f"{url}/api/v1/health").json()["uploads"] == 5, "five uploads in progress")
            assert httpx.get(f"{url}/api/v1/health").json()["busy"] == 0
            with open(face_clip, "rb") as handle:
                response = httpx.post(f"{url}/api/v1/classify", files={"file": ("now.mp4", handle, "video/mp4")},
                                      timeout=300)
            assert response.status_code == 200, response.text
            assert response.json()["verdict"] in ("REAL", "FAKE")
            assert httpx.get(f"{url}/api/v1/health").json()["uploads"] == 5  # still crawling
        finally:
            for upload in slow:
                upload.close()  # the clients give up: their partial files must go
        wait_for(lambda: httpx.get(f"{url}/api/v1/health").json()["uploads"] == 0, "the upload slots to free")
        wait_for(lambda: not left_in(uploads), "the partial uploads to be removed")


def test_a_stalled_upload_gets_408_and_leaves_nothing(ensemble, tmp_path):
    uploads = tmp_path / "uploads"
    with running(create_app(ensemble, ServerConfig(tmp_dir=uploads, upload_idle_seconds=1))) as url:
        upload = RawUpload(url, file_size=2**20)
        upload.sock.sendall(b"\0" * 1000)  # then nothing: `async for` over the stream would wait for ever
        try:
            status, body = upload.response()
        finally:
            upload.close()
        assert status == 408 and "nothing arrived for 1 s" in body["error"]["message"]
        assert left_in(uploads) == []
        assert httpx.get(f"{url}/api/v1/health").json()["uploads"] == 0


def test_a_crawling_upload_gets_408_after_its_grace_period(ensemble, tmp_path):
    uploads = tmp_path / "uploads"
    config = ServerConfig(tmp_dir=uploads, upload_min_kb_per_second=4, upload_grace_seconds=1)
    with running(create_app(ensemble, config)) as url:
        upload = RawUpload(url, file_size=2**20).trickle(chunk=50, pause=0.2)  # 0.25 KB/s, never idle
        try:
            status, body = upload.response()
        finally:
            upload.close()
        assert status == 408 and "too slow" in body["error"]["message"] and "4 KB/s" in body["error"]["message"]
        assert left_in(uploads) == []



def test_connections_dribbling_headers_are_closed_and_the_server_still_answers(ensemble, tmp_path):
    """40 connections sending a request's headers a byte at a time: each is closed once its headers are
    `header_seconds` late (uvicorn alone kept them open past 60 s); a whole request is answered as before."""
    with running(create_app(ensemble, ServerConfig(tmp_dir=tmp_path / "u", header_seconds=1))) as url:
        host, port = url.removeprefix("http://").split(":")
        dribbling = [socket.create_connection((host, int(port)), timeout=10) for _ in range(40)]
        for sock in dribbling:
            sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")
            sock.setblocking(False)
        started, still_open = time.monotonic(), set(dribbling)
        while still_open and time.monotonic() - started < 15:
            for sock in list(still_open):
                try:
                    closed = sock.recv(1024) == b""
                except BlockingIOError:
                    closed = False
                except OSError:
                    closed = True
                if not closed:
                    with contextlib.suppress(OSError):
                        sock.sendall(b"X")
                else:
                    still_open.discard(sock)
            time.sleep(0.1)
        closed_after = time.monotonic() - started
        for sock in dribbling:
            sock.close()
        assert not still_open, f"{len(still_open)} of 40 dribbling connections still open after 15 s"
        assert closed_after < 10
        assert httpx.get(f"{url}/api/v1/health", timeout=30).json()["status"] == "ok"


def test_the_api_docs_and_the_favicon_come_from_this_server(server):
    """/docs loaded Swagger UI from a CDN (a blank page offline); the page had no favicon (a 404 on every load)."""
    client, _ = server
    page = client.get("/docs")
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text) + re.findall(r"url: '([^']+)'", page.text)
    assert len(assets) >= 3 and all(asset.startswith("/") for asset in assets), assets
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
    assert "SwaggerUIBundle" in client.get("/docs-assets/swagger-ui-bundle.js").text
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert 'rel="icon"' in client.get("/").text

# -- `cli.py serve` in a subprocess ------------------------------------------------------------------
def start_serve(ensemble_file: Path, folder: Path, port: int) -> tuple[subprocess.Popen, str]:
    """Start `cli.py serve`; return the process and the first line it printed (or '' if it printed none)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "stderr.txt", "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "cli.py"), "serve", "--port", str(port), "--ensemble", str(ensemble_file),
             "--upload-dir", str(folder / "uploads")],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True)
    ready, _, _ = select.select([process.stdout], [], [], 300)
    return process, process.stdout.readline() if ready else ""


@pytest.fixture(scope="module")
def served(small_ensemble, tmp_path_factory):
    """A function giving a running `cli.py serve` (url, upload dir, process), restarted if it died."""
    state: dict = {}

    def get():
        if "process" not in state or state["process"].poll() is not None:
            folder, port = tmp_path_factory.mktemp("serve"), free_port()
            process, line = start_serve(small_ensemble, folder, port)
            state.update(process=process, url=f"http://127.0.0.1:{port}", uploads=folder / "uploads")
            assert line.startswith(f"serving on http://127.0.0.1:{port}/"), \
                line + (folder / "stderr.txt").read_text()[-3000:]
            # printed only once listening: the first request is answered, without waiting or retrying
            assert httpx.get(f"{state['url']}/api/v1/health", timeout=60).json()["status"] == "ok"
        return state["url"], state["uploads"], state["process"]

    yield get
    if "process" in state:
        state["process"].terminate()
        state["process"].wait(timeout=60)


def tiny_media(folder: Path, name: str, side: int) -> Path:
    rng = np.random.default_rng(side)
    if name.endswith(".mp4"):
        return write_video(folder / name, [rng.integers(0, 255, (side, side, 3), dtype=np.uint8) for _ in range(20)])
    cv2.imwrite(str(folder / name), rng.integers(0, 255, (side, side, 3), dtype=np.uint8))
    return folder / name


@pytest.mark.parametrize("name, side", [("tiny.mp4", 16), ("dot.png", 1), ("speck.png", 10)])
def test_tiny_media_get_no_face_and_the_server_lives_on(served, tmp_path, name, side):
    """A 16x16 video once killed `serve` (a crash in C) and left its temp file; tiny images gave 422."""
    url, uploads, process = served()
    media = tiny_media(tmp_path, name, side)
    with open(media, "rb") as handle:
        response = httpx.post(f"{url}/api/v1/classify", files={"file": (name, handle, "application/octet-stream")},
                              timeout=300)
    assert response.status_code == 200, response.text
    assert response.json()["verdict"] == "NO_FACE" and response.json()["path"] == name
    assert httpx.get(f"{url}/api/v1/health", timeout=60).json()["status"] == "ok"
    assert process.poll() is None and left_in(uploads) == []


def test_serve_on_a_busy_port_says_so_and_exits_nonzero(small_ensemble, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process, line = start_serve(small_ensemble, tmp_path, port)
        process.wait(timeout=300)
    stderr = (tmp_path / "stderr.txt").read_text()
    assert process.returncode == 2, stderr
    assert f"port {port} on 127.0.0.1 is already in use; choose another with --port" in stderr
    assert "serving on" not in line + process.stdout.read() and "Traceback" not in stderr



def upload_files(uploads: Path) -> list[Path]:
    return [p for p in uploads.rglob("upload-*") if p.is_file()]


def test_a_killed_servers_upload_is_gone_once_a_server_starts_again(small_ensemble, tmp_path):
    """SIGKILL mid-upload leaves the partial file (no code runs); the next server sweeps it. A server stopped
    normally leaves nothing, not even its empty folder."""
    port = free_port()
    process, line = start_serve(small_ensemble, tmp_path, port)
    uploads = tmp_path / "uploads"
    try:
        assert line.startswith("serving on"), (tmp_path / "stderr.txt").read_text()[-3000:]
        upload = RawUpload(f"http://127.0.0.1:{port}", file_size=10 * 2**20).trickle(chunk=64 * 1024, pause=0.05)
        try:
            wait_for(lambda: any(p.stat().st_size > 100_000 for p in upload_files(uploads)), "the upload on disk")
            process.kill()  # SIGKILL: no shutdown code runs
            process.wait(timeout=60)
        finally:
            upload.close()
        assert upload_files(uploads), "the killed server's partial upload should still be on disk before a restart"
        port = free_port()
        process, line = start_serve(small_ensemble, tmp_path, port)
        assert line.startswith("serving on"), (tmp_path / "stderr.txt").read_text()[-3000:]
        assert upload_files(uploads) == []
        assert len(list(uploads.iterdir())) == 1  # the new server's own folder, and no other
    finally:
        process.terminate()
        process.wait(timeout=60)
    assert list(uploads.iterdir()) == []  # a normal stop removes the server's folder

# -- a real browser ----------------------------------------------------------------------------
BANDS = ("very likely fake", "likely fake", "borderline", "likely real", "very likely real")


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module's page tests."""
    executable = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if not executable:
        pytest.skip("no chromium on this machine (.ci/run installs it with apt-get)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    """Where the page tests put full-page screenshots: $WEB_SCREENSHOTS (to look at them), else a temp dir."""
    folder = Path(os.environ.get("WEB_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def eager_server(ensemble, tmp_path_factory):
    """The test ensemble deciding at threshold 0.01 (any face makes FAKE), with a 7 MB upload limit."""
    uploads = tmp_path_factory.mktemp("eager") / "uploads"
    with running(create_app(ensemble.with_threshold(0.01), ServerConfig(max_upload_mb=7, tmp_dir=uploads))) as url:
        yield url, uploads


@pytest.fixture(scope="module")
def shipped_server(tmp_path_factory):
    """The shipped models (models/weights), with their model card, and the default upload limit."""
    uploads = tmp_path_factory.mktemp("shipped") / "uploads"
    with running(create_app(Ensemble.load(device="cpu"), ServerConfig(tmp_dir=uploads))) as url:
        yield url, uploads


def analyse(browser, url: str, media: Path, name: str | None = None):
    """Open the page, upload `media` (as `name`), wait for the result or the error; (page, response JSON)."""
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(url)
    assert page.title() == "Deepfake detector"
    page.wait_for_function("document.getElementById('max-upload').textContent !== '…'")  # the limits arrived
    page.set_input_files("#file-input", str(media) if name is None else
                         {"name": name, "mimeType": "video/mp4", "buffer": media.read_bytes()})
    with page.expect_response("**/api/v1/classify*", timeout=300_000) as answer:
        page.click("#submit")
    page.wait_for_selector("#result:not([hidden]), #error:not([hidden])", timeout=60_000)
    return page, answer.value.json()


def downloaded_json(page) -> dict:
    with page.expect_download() as download:
        page.click("#download-json")
    return json.loads(Path(download.value.path()).read_text(encoding="utf-8"))


def downloaded_report(page) -> np.ndarray:
    href = page.get_attribute("#download-report", "href")
    assert href.startswith("data:image/png;base64,")
    with page.expect_download() as download:
        page.click("#download-report")
    png = Path(download.value.path()).read_bytes()
    assert png == base64.b64decode(href.split(",", 1)[1]) and download.value.suggested_filename.endswith(".png")
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)


def check_scored_page(page, body: dict) -> None:
    """What every FAKE or REAL page shows: verdict and band, file, explanation and evidence, a legend entry per
    person (its description) plus the threshold, a labelled time axis, the faces named, the downloads."""
    assert page.inner_text("#verdict") == body["verdict"] and page.inner_text("#band") == body["band"] in BANDS
    assert page.inner_text("#p-fake") == f"p_fake {body['p_fake']:.2f} · threshold {body['threshold']:.2f}"
    assert page.inner_text("#explain") == body["explanation"]
    assert body["evidence"] in page.inner_text("#evidence")
    if body["decided_by"]:
        assert f"Decided by {body['decided_by']}" in page.inner_text("#explain")
    legend = page.locator("#legend li").all_inner_texts()
    persons = sorted(body["tracks"], key=lambda t: int(t["label"].split()[-1]))
    assert legend[:len(persons)] == [t["description"] for t in persons]
    assert legend[len(persons)].startswith("right edge: a counted person's score over the whole clip")
    assert legend[len(persons) + 1].startswith(f"threshold {body['threshold']:.2f}")
    assert page.locator("#timeline .person-score").count() == sum(t["counted"] for t in body["tracks"])
    low = sum(f["low_confidence"] for f in body["faces"])
    assert (LOW in legend) == (low > 0) and page.locator("#timeline .low-confidence").count() == low
    decided = [t for t in body["tracks"] if t["track"] == body["deciding_track"]]
    assert page.locator("#legend li.decided").all_inner_texts() == [t["description"] for t in decided]
    svg = page.text_content("#timeline svg")
    assert "0 s" in svg and f"threshold {body['threshold']:.2f}" in svg and "time in the clip" in svg
    captions = page.locator("#faces figcaption").all_inner_texts()
    names = {t["track"]: t["label"] for t in body["tracks"]}
    assert captions == [f"{names[f['track']]}\n{f['timestamp']:.1f} s · {f['p_fake']:.2f}" for f in body["faces"]]
    assert page.locator("#faces .face.decided").count() == sum(
        f["track"] == body["deciding_track"] for f in body["faces"])
    assert page.locator("#faces img").count() == body["n_faces"]
    saved = downloaded_json(page)
    assert saved == {k: v for k, v in body.items() if k not in ("thumbnails", "report_png")}
    assert downloaded_report(page).shape[1] >= 800


LOW = "low-confidence detection (may not be a face)"


def finish(page, screenshot: Path, uploads: Path) -> None:
    """Keep a full-page screenshot to look at, close the page; the server kept nothing of the upload."""
    page.screenshot(path=str(screenshot), full_page=True)
    page.close()
    assert left_in(uploads) == []


def test_page_shows_a_fake_verdict_and_who_decided(browser, eager_server, face_clip, screenshots):
    url, uploads = eager_server
    page, body = analyse(browser, url, face_clip)
    assert body["verdict"] == "FAKE"
    check_scored_page(page, body)
    assert page.inner_text("#file-line") == "astronaut.mp4 · 2.0 s video"
    limits = page.inner_text("#limits")  # the server's own limit (7 MB here), formats, time, privacy
    assert "up to 7 MB" in limits and ".mp4" in limits and ".jpg" in limits and "3–5 s" in limits
    assert "deleted from the server as soon as it has been analysed" in limits
    assert not page.locator("#model-card-link").is_visible()  # the test ensemble has no model card
    assert page.locator("#warnings li").all_inner_texts() == body["warnings"]  # low evidence: 3 faces
    assert page.locator("#per-model td:first-child").all_inner_texts() == ["lenet", "minivgg"]
    finish(page, screenshots / "fake.png", uploads)


def test_page_shows_a_real_verdict_with_the_shipped_models(browser, shipped_server, face_clip, screenshots):
    url, uploads = shipped_server
    page, body = analyse(browser, url, face_clip)
    assert body["verdict"] == "REAL" and body["per_model"]["mouth motion"] is None  # 3 faces: too few to judge
    check_scored_page(page, body)
    rows = dict(zip(page.locator("#per-model td:first-child").all_inner_texts(),
                    page.locator("#per-model td:last-child").all_inner_texts()))
    assert rows["mouth motion"].startswith("abstained") and rows["minivgg"] == f"{body['per_model']['minivgg']:.3f}"
    tested = page.request.get(url + "/api/v1/limits").json()["test_accuracy"]  # from the shipped ensemble file
    assert 0.5 < tested < 1 and f"right {round(100 * tested)}% of the time" in page.inner_text("#limits")
    assert "up to 200 MB" in page.inner_text("#limits")
    card = page.locator("#model-card-link")
    assert card.is_visible()
    assert "# Model card" in page.request.get(url + card.get_attribute("href")).text()
    finish(page, screenshots / "real.png", uploads)


def test_page_shows_a_dfdc_fake_and_the_person_not_counted(browser, shipped_server, screenshots):
    clip = shared_data("dfdc_videos", "widuwuoiur.mp4")
    url, uploads = shipped_server
    page, body = analyse(browser, url, clip)
    assert body["verdict"] == "FAKE" and body["band"] in ("likely fake", "very likely fake")  # as the models score it
    check_scored_page(page, body)
    assert page.inner_text("#file-line") == "widuwuoiur.mp4 · 10.0 s video"
    not_counted = page.locator("#legend li.not-counted").all_inner_texts()
    assert len(not_counted) == 1 and "not counted: seen in too few sampled frames" in not_counted[0]
    assert page.locator("#faces .face.not-counted").count() == 1
    finish(page, screenshots / "fake_dfdc.png", uploads)


def test_page_shows_one_message_when_no_face_is_found(browser, eager_server, faceless_clip, screenshots):
    url, uploads = eager_server
    page, body = analyse(browser, url, faceless_clip)
    assert body["verdict"] == "NO_FACE"
    assert page.inner_text("#verdict") == "NO_FACE" and page.inner_text("#band") == ""
    message = page.locator("#explain")
    assert message.is_visible() and message.inner_text() == body["explanation"]
    assert message.inner_text().startswith("No face was found")
    for section in ("#timeline-section", "#faces-section", "#per-model-section", "#evidence"):
        assert not page.locator(section).is_visible(), section
    assert downloaded_json(page)["verdict"] == "NO_FACE"
    finish(page, screenshots / "no_face.png", uploads)


def test_page_shows_the_error_of_a_refused_upload(browser, eager_server, tmp_path, screenshots):
    url, uploads = eager_server
    text_file = tmp_path / "notes.txt"
    text_file.write_text("just text, not a video\n" * 100)
    page, body = analyse(browser, url, text_file, name="clip.mp4")
    assert body["error"]["status"] == 415
    assert page.locator("#error").is_visible() and not page.locator("#result").is_visible()
    assert page.inner_text("#error") == body["error"]["message"]
    assert page.inner_text("#error").startswith("clip.mp4: not a readable video or image")
    page.screenshot(path=str(screenshots / "error.png"), full_page=True)
    # a file over the server's limit is refused in the page, before any upload
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\0" * (8 * 2**20))
    page.set_input_files("#file-input", str(big))
    assert page.inner_text("#error") == "big.mp4 is 8 MB, over this server's 7 MB limit"
    assert page.locator("#submit").is_disabled()
    page.close()
    assert left_in(uploads) == []


def test_upload_page_in_headless_chromium(browser, live_server, face_clip):
    """The page on a server with the default settings: verdict, warnings, faces and timeline."""
    url, uploads = live_server
    page, body = analyse(browser, url, face_clip)
    assert page.inner_text("#verdict") in ("REAL", "FAKE")
    # the verdict's warnings (a 2-second clip gives few faces: low evidence) show under the verdict line
    assert page.locator("#warnings li").all_inner_texts() == body["warnings"]
    assert page.locator("#warnings").is_visible() == bool(body["warnings"])
    assert "p_fake" in page.inner_text("#p-fake")
    assert page.locator("#faces img").count() == 3
    assert page.locator("#timeline svg polyline").count() >= 1
    page.close()
    assert left_in(uploads) == []


def test_the_api_docs_render_offline_and_no_page_asks_for_a_missing_file(browser, live_server):
    """/docs drew a blank page without the internet (Swagger UI came from a CDN); every page load asked for a
    favicon that did not exist (a 404 in the console)."""
    url, _ = live_server
    context = browser.new_context()
    outside, failed = [], []
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(url)
                  else (outside.append(route.request.url), route.abort()))
    page = context.new_page()
    page.on("response", lambda response: failed.append(response.url) if response.status >= 400 else None)
    page.goto(url)
    page.wait_for_load_state("networkidle")
    page.goto(f"{url}/docs")
    page.wait_for_selector(".opblock", timeout=30_000)  # Swagger UI drew the operations
    assert page.locator(".opblock").count() >= 4 and "/api/v1/classify" in page.inner_text(".swagger-ui")
    context.close()
    assert outside == [] and failed == []
