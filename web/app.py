"""FastAPI application: the upload page, `POST /api/v1/classify`, `GET /api/v1/health`, `GET /api/v1/models`.

Models are loaded once, at start-up. Inference runs in a bounded pool of threads: when every slot
(running plus queued) is taken, requests get 503 with Retry-After instead of piling up. Uploads are
streamed to server-named temporary files that are removed after each request, errors included.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ensembles.ensemble import Ensemble
from pipeline.errors import MediaError
from pipeline.faces import FaceExtractor
from pipeline.media import MediaReader
from web.upload import UploadError, receive_upload

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
API_VERSION = "v1"


@dataclass(frozen=True)
class ServerConfig:
    max_upload_mb: int = 200
    workers: int = 1  # inference threads
    queue_size: int = 4  # requests that may wait for a worker before 503
    tmp_dir: Path | None = None  # default: a fresh directory under the system temp dir
    retry_after_seconds: int = 10


class InferencePool:
    """A fixed number of inference threads plus a bounded waiting line."""

    def __init__(self, ensemble: Ensemble, workers: int, queue_size: int):
        self.ensemble = ensemble
        self.capacity = workers + queue_size
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inference")
        self._local = threading.local()
        self._lock = threading.Lock()
        self.in_use = 0

    def try_acquire(self) -> bool:
        with self._lock:
            if self.in_use >= self.capacity:
                return False
            self.in_use += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.in_use -= 1

    def _extractor(self) -> FaceExtractor:
        """One face extractor per inference thread (OpenCV's DNN is not thread-safe)."""
        if not hasattr(self._local, "extractor"):
            self._local.extractor = FaceExtractor(self.ensemble.face_config(), device=str(self.ensemble.device))
        return self._local.extractor

    def classify(self, path: Path, thumbnails: bool):
        return self.ensemble.classify(path, self._extractor(), keep_thumbnails=thumbnails)

    async def run(self, path: Path, thumbnails: bool):
        return await asyncio.get_running_loop().run_in_executor(self.executor, self.classify, path, thumbnails)


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "message": message}}, status_code=status, headers=headers)


def check_media(path: Path) -> None:
    """Decode the upload's header to be sure it is a video or an image (its name and type prove nothing)."""
    with MediaReader(path):
        pass


def create_app(ensemble: Ensemble, config: ServerConfig = ServerConfig()) -> FastAPI:
    app = FastAPI(title="deepfake-detector", version="0.1.0",
                  description="Classify videos and images as REAL or FAKE with an ensemble of face classifiers.")
    tmp_dir = Path(config.tmp_dir) if config.tmp_dir else Path(tempfile.mkdtemp(prefix="deepfake-uploads-"))
    tmp_dir.mkdir(parents=True, exist_ok=True)
    pool = InferencePool(ensemble, config.workers, config.queue_size)
    max_bytes = config.max_upload_mb * 2**20
    app.state.pool, app.state.tmp_dir, app.state.config = pool, tmp_dir, config

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        return error(422, "; ".join(str(e.get("msg")) for e in exc.errors()) or "invalid request")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        log.exception("unexpected error on %s", request.url.path)
        return error(500, "internal error: the server could not handle this request")

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC / "index.html")

    @app.get(f"/api/{API_VERSION}/health")
    async def health():
        """Liveness and load: models loaded, inference slots in use and available."""
        return {"status": "ok", "models_loaded": True, "busy": pool.in_use, "capacity": pool.capacity}

    @app.get(f"/api/{API_VERSION}/models")
    async def models():
        """The loaded ensemble: members, combiner, aggregator, threshold and how it was chosen."""
        return ensemble.describe()

    @app.post(f"/api/{API_VERSION}/classify")
    async def classify(request: Request, thumbnails: bool = False):
        """Classify an uploaded video or image (multipart field `file`); answers like `classify-video --json`."""
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > max_bytes + 64 * 1024:
            return error(413, f"upload larger than the {config.max_upload_mb} MB limit")
        if not pool.try_acquire():
            return error(503, "the server is busy: try again shortly",
                         headers={"Retry-After": str(config.retry_after_seconds)})
        upload = None
        try:
            upload = await receive_upload(request.headers.get("content-type"), request.stream(), tmp_dir, max_bytes)
            try:
                check_media(upload.path)
            except MediaError:
                return error(415, f"{upload.filename}: not a readable video or image (the content could not be "
                                  "decoded, whatever its name or type says)")
            verdict, thumbs = await pool.run(upload.path, thumbnails)
            if verdict.verdict == "ERROR":
                return error(422, verdict.message.replace(str(upload.path), upload.filename))
            body = replace(verdict, path=upload.filename, video_id=Path(upload.filename).stem).to_dict()
            if thumbnails:
                body["thumbnails"] = [_data_url(t) for t in thumbs]
            return body
        except UploadError as exc:
            return error(exc.status, exc.message)
        finally:
            pool.release()
            if upload is not None:
                upload.path.unlink(missing_ok=True)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _data_url(image_bgr) -> str:
    ok, encoded = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii") if ok else ""
