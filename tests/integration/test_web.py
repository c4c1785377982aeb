"""The JSON API with real uploads, and the upload page in a real headless browser."""
from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ensembles.ensemble import Ensemble
from tests.conftest import shared_data
from web.app import ServerConfig, create_app

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
    assert body["path"] == "astronaut.mp4" and body["verdict"] in ("REAL", "FAKE") and body["n_faces"] == 3
    assert len(body["thumbnails"]) == 3 and body["thumbnails"][0].startswith("data:image/jpeg;base64,")
    assert list(uploads.iterdir()) == []


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
    assert list(uploads.iterdir()) == []


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
    assert list(uploads.iterdir()) == []


def test_text_named_mp4_is_415(server, tmp_path):
    client, uploads = server
    fake = tmp_path / "clip.mp4"
    fake.write_text("just text, not a video\n" * 100)
    response = post(client, fake)
    assert response.status_code == 415
    assert "not a readable video or image" in response.json()["error"]["message"]
    assert list(uploads.iterdir()) == []


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
    assert set(base.rglob("*")) == before
    assert not Path("/tmp/abs.mp4").exists() and not Path("escape.mp4").exists()
    assert list(uploads.iterdir()) == []


def test_full_queue_answers_503_with_retry_after(ensemble, face_clip, tmp_path):
    app = create_app(ensemble, ServerConfig(workers=1, queue_size=0, tmp_dir=tmp_path / "u"))
    with TestClient(app) as client:
        assert app.state.pool.try_acquire()  # the only slot is busy
        response = post(client, face_clip)
        app.state.pool.release()
        assert response.status_code == 503 and response.headers["retry-after"].isdigit()
        assert post(client, face_clip).status_code == 200


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


# -- a real browser ----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def live_server(ensemble, tmp_path):
    import uvicorn

    port = free_port()
    app = create_app(ensemble, ServerConfig(tmp_dir=tmp_path / "uploads"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", tmp_path / "uploads"
    server.should_exit = True
    thread.join(timeout=10)


def test_upload_page_in_headless_chromium(live_server, face_clip, tmp_path):
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        pytest.skip("no chromium on this machine (.ci/run installs it with apt-get)")
    playwright = pytest.importorskip("playwright.sync_api")
    url, uploads = live_server
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page()
        page.goto(url)
        assert page.title() == "Deepfake detector"
        page.set_input_files("#file-input", str(face_clip))
        page.click("#submit")
        page.wait_for_selector("#result:not([hidden])", timeout=90_000)
        assert page.inner_text("#verdict") in ("REAL", "FAKE")
        assert "p_fake" in page.inner_text("#p-fake")
        assert page.locator("#faces img").count() == 3
        assert page.locator("#timeline svg polyline").count() >= 1
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        browser.close()
    assert list(uploads.iterdir()) == []
