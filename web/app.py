"""FastAPI application: the upload page, `POST /api/v1/classify`, `GET /api/v1/health`, `GET /api/v1/models`,
`GET /api/v1/limits` (what the page says before an upload) and `GET /model-card` (the loaded models' card).

Models are loaded once, at start-up. Uploads are streamed to server-named temporary files that are removed
after each request, errors included, in a folder of the server's own that goes at shutdown (and that the
next server sweeps away if this one was killed: `web.upload.UploadFolder`); at most `max_uploads` are
received at once, and one that stalls or crawls gets 408. Only a complete upload asks for an inference slot:
inference runs in a bounded pool of threads, and when every slot (running plus queued) is taken, requests
get 503 with Retry-After instead of piling up.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import logging
import socket
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ensembles.ensemble import Ensemble
from ensembles.explain import sampling_words
from ensembles.verdict import VideoVerdict
from pipeline.errors import MediaError, MediaTooLarge, UsageError
from pipeline.faces import FaceExtractor
from pipeline.media import DEFAULT_MAX_MEGAPIXELS, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, MediaReader
from web.upload import UploadError, UploadFolder, UploadLimits, receive_upload

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
API_VERSION = "v1"


@dataclass(frozen=True)
class ServerConfig:
    max_upload_mb: int = 200
    workers: int = 1  # inference threads
    queue_size: int = 4  # complete uploads that may wait for a worker before 503
    tmp_dir: Path | None = None  # where the server's own upload folder is made [default: the system temp dir]
    retry_after_seconds: int = 10
    max_uploads: int = 16  # uploads being received at once; beyond that the server answers 503
    upload_idle_seconds: float = 30.0  # an upload that sends nothing for this long gets 408
    upload_min_kb_per_second: float = 10.0  # ... and one slower than this on average, after the grace period
    upload_grace_seconds: float = 30.0
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS  # larger images and video frames get 413, never decoded
    header_seconds: float = 10.0  # a connection that has not sent a request's headers in this time is closed

    def upload_limits(self) -> UploadLimits:
        return UploadLimits(max_bytes=self.max_upload_mb * 2**20, idle_seconds=self.upload_idle_seconds or None,
                            min_bytes_per_second=self.upload_min_kb_per_second * 1024,
                            grace_seconds=self.upload_grace_seconds)


class Slots:
    """A fixed number of places, taken without waiting: a full set answers no."""

    def __init__(self, capacity: int):
        self.capacity = capacity
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


class InferencePool(Slots):
    """A fixed number of inference threads plus a bounded waiting line."""

    def __init__(self, ensemble: Ensemble, workers: int, queue_size: int, max_megapixels: float):
        super().__init__(workers + queue_size)
        self.ensemble = ensemble
        self.face_config = ensemble.face_config(max_megapixels=max_megapixels)
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inference")
        self._local = threading.local()

    def _extractor(self) -> FaceExtractor:
        """One face extractor per inference thread (OpenCV's DNN is not thread-safe)."""
        if not hasattr(self._local, "extractor"):
            self._local.extractor = FaceExtractor(self.face_config, device=str(self.ensemble.device))
        return self._local.extractor

    def classify(self, path: Path, thumbnails: bool):
        return self.ensemble.classify(path, self._extractor(), keep_thumbnails=thumbnails)

    async def run(self, path: Path, thumbnails: bool):
        return await self.call(self.classify, path, thumbnails)

    async def call(self, function, *args):
        """`function(*args)` on an inference thread (CPU work that must not outnumber the slots)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "message": message}}, status_code=status, headers=headers)


def is_media(path: Path, max_pixels: int) -> bool:
    """Decode the upload's header to be sure it is a video or an image (its name and type prove nothing);
    MediaTooLarge when its pictures are larger than `max_pixels`."""
    try:
        with MediaReader(path, max_pixels=max_pixels):
            return True
    except MediaTooLarge:
        raise
    except MediaError:
        return False


def public_message(verdict: VideoVerdict, path: Path, filename: str) -> str:
    """An ERROR verdict's message as the client may read it: a MediaError's words (written for users) with the
    client's filename for the server's path; an unexpected exception's class and text (`internal_error`) only
    in the server's log, and plain words for the client."""
    if not verdict.internal_error:
        return verdict.message.replace(str(path), filename)
    log.warning("classifying an upload (%s) failed: %s", filename, verdict.message)
    return f"{filename}: the file could not be analysed (the decoder or the face detector failed on it)"


def model_card(ensemble: Ensemble) -> Path | None:
    """The MODEL_CARD.md beside the loaded ensemble file (the shipped models have one), or None."""
    card = ensemble.source.parent / "MODEL_CARD.md" if ensemble.source else None
    return card if card is not None and card.is_file() else None


def limits_of(ensemble: Ensemble, config: ServerConfig) -> dict:
    """What the page tells a user before an upload: size limit, readable formats, sampling, the model card and
    the models' measured accuracy on held-out test faces (when the ensemble file records it)."""
    tested = ensemble.config.metrics.get("test_at_threshold", {})
    return {"max_upload_mb": config.max_upload_mb, "max_megapixels": config.max_megapixels,
            "video_formats": sorted(VIDEO_EXTENSIONS), "image_formats": sorted(IMAGE_EXTENSIONS),
            "sampling": sampling_words(ensemble.face_config().sampling),
            "uploads_kept": False, "model_card": "/model-card" if model_card(ensemble) else None,
            "test_accuracy": tested.get("accuracy"), "test_roc_auc": tested.get("roc_auc")}


def create_app(ensemble: Ensemble, config: ServerConfig = ServerConfig()) -> FastAPI:
    folder = UploadFolder(config.tmp_dir)  # sweeps the folders of servers killed before they could remove theirs

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        try:
            yield
        finally:
            folder.close()

    app = FastAPI(title="deepfake-detector", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Classify videos and images as REAL or FAKE with an ensemble of face classifiers.")
    app.state.header_seconds = config.header_seconds
    tmp_dir = folder.path
    pool = InferencePool(ensemble, config.workers, config.queue_size, config.max_megapixels)
    uploads = Slots(config.max_uploads)
    limits = config.upload_limits()
    app.state.pool, app.state.uploads, app.state.tmp_dir, app.state.config = pool, uploads, tmp_dir, config
    app.state.upload_folder = folder
    busy_headers = {"Retry-After": str(config.retry_after_seconds)}

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

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    @app.get("/docs", include_in_schema=False)
    async def docs():
        """Swagger UI from the assets of the `swagger-ui-py` package, served here: the page works offline."""
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title}: API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css", swagger_favicon_url="/favicon.ico")

    @app.get(f"/api/{API_VERSION}/health")
    async def health():
        """Liveness and load: models loaded, inference slots and upload slots in use and available."""
        return {"status": "ok", "models_loaded": True, "busy": pool.in_use, "capacity": pool.capacity,
                "uploads": uploads.in_use, "max_uploads": uploads.capacity}

    @app.get(f"/api/{API_VERSION}/models")
    async def models():
        """The loaded ensemble: members, combiner, aggregator, threshold and how it was chosen."""
        return ensemble.describe()

    @app.get(f"/api/{API_VERSION}/limits")
    async def limits_info():
        """Upload size limit (MB), readable formats, frame sampling, model card and measured accuracy."""
        return limits_of(ensemble, config)

    @app.get("/model-card", include_in_schema=False)
    async def card():
        path = model_card(ensemble)
        if path is None:
            return error(404, "the loaded ensemble has no model card (no MODEL_CARD.md beside its file)")
        return PlainTextResponse(path.read_text(encoding="utf-8"))

    @app.post(f"/api/{API_VERSION}/classify")
    async def classify(request: Request, thumbnails: bool = False, report: bool = False):
        """Classify an uploaded video or image (multipart field `file`); answers like `classify-video --json`.
        `thumbnails=true` adds the faces as JPEG data URLs, `report=true` the report PNG as `report_png`."""
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > limits.max_bytes + 64 * 1024:
            return error(413, f"upload larger than the {config.max_upload_mb} MB limit")
        if not uploads.try_acquire():
            return error(503, f"the server is receiving {uploads.capacity} uploads already: try again shortly",
                         headers=busy_headers)
        upload = None
        try:
            try:
                upload = await receive_upload(request.headers.get("content-type"), request.stream(), tmp_dir, limits)
            finally:
                uploads.release()
            try:
                readable = await asyncio.to_thread(is_media, upload.path, pool.face_config.max_pixels)
            except MediaTooLarge as exc:
                return error(413, exc.with_advice("this server's limit").replace(str(upload.path), upload.filename))
            if not readable:
                return error(415, f"{upload.filename}: not a readable video or image (the content could not be "
                                  "decoded, whatever its name or type says)")
            if not pool.try_acquire():  # only a complete upload takes an inference slot
                return error(503, "the server is busy: try again shortly", headers=busy_headers)
            try:
                verdict, thumbs = await pool.run(upload.path, thumbnails or report)
                if verdict.verdict == "ERROR":
                    return error(422, public_message(verdict, upload.path, upload.filename))
                verdict = _as_uploaded(verdict, str(upload.path), upload.filename)
                png = await pool.call(_report_data_url, verdict, thumbs, tmp_dir) if report else None
            finally:
                pool.release()
            body = _renamed(verdict.to_dict(), str(upload.path), upload.filename)
            if thumbnails:
                body["thumbnails"] = [_data_url(t) for t in thumbs]
            if report:
                body["report_png"] = png
            return body
        except UploadError as exc:
            return error(exc.status, exc.message)
        finally:
            if upload is not None:
                upload.path.unlink(missing_ok=True)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_assets()), name="docs-assets")
    return app


def swagger_ui_assets() -> Path:
    """The folder of Swagger UI's JavaScript and CSS inside the installed `swagger-ui-py` package."""
    import importlib.resources

    return Path(str(importlib.resources.files("swagger_ui") / "static"))


def _as_uploaded(verdict: VideoVerdict, server_path: str, filename: str) -> VideoVerdict:
    """The verdict naming the client's file, not the server's temporary one, in its names and sentences."""
    return replace(verdict, path=filename, video_id=Path(filename).stem, file_name=filename,
                   warnings=[w.replace(server_path, filename) for w in verdict.warnings],
                   explanation=verdict.explanation.replace(server_path, filename),
                   message=verdict.message.replace(server_path, filename))


def _report_data_url(verdict: VideoVerdict, thumbnails: list, tmp_dir: Path) -> str | None:
    """The report PNG (ensembles.report) as a data URL, drawn in a temporary folder that is then removed;
    None when it could not be drawn (the verdict stands without it)."""
    try:
        from ensembles.report import write_report  # matplotlib: imported only once a report is asked for

        with tempfile.TemporaryDirectory(prefix="report-", dir=tmp_dir) as folder:
            png = write_report(verdict, thumbnails, Path(folder), name="report.png").read_bytes()
    except Exception:
        log.exception("drawing the report of %s failed", verdict.file_name)
        return None
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _renamed(value, server_path: str, filename: str):
    """`value` (JSON-like) with the server's name of the upload replaced by the client's, in every string."""
    if isinstance(value, str):
        return value.replace(server_path, filename)
    if isinstance(value, dict):
        return {key: _renamed(item, server_path, filename) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_renamed(item, server_path, filename) for item in value]
    return value


def _data_url(image_bgr) -> str:
    ok, encoded = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii") if ok else ""


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on host:port, or UsageError saying why not (the port is taken, ...)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise UsageError(f"cannot listen on {host}: not a host name or address known here ({exc.strerror}); "
                         "choose another with --host") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: no wait after a restart
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"port {port} on {host} is already in use; choose another with --port") from None
        if exc.errno == errno.EACCES:
            raise UsageError(f"no permission to listen on port {port} on {host} (ports below 1024 need root); "
                             "choose another with --port") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise UsageError(f"cannot listen on {host}: not an address of this machine; choose another with --host") \
                from None
        raise UsageError(f"cannot listen on port {port} on {host}: {exc.strerror}") from None
    return sock


def uvicorn_server(app: FastAPI, sock: socket.socket, log_level: str = "warning"):
    """A uvicorn Server for `app` on `sock` whose connections must send each request's headers within the
    app's `header_seconds` (uvicorn has no such limit: a client dribbling headers holds a connection for ever)."""
    import uvicorn
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderDeadline(H11Protocol):
        """uvicorn's h11 protocol, closing a connection whose request headers are not complete in time."""

        seconds = app.state.header_seconds
        _deadline = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            import h11

            if self.conn.their_state is h11.IDLE:  # (the start of) a request's headers
                self._arm()
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:  # the headers are complete
                self._disarm()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._deadline is None and self.seconds:
                self._deadline = self.loop.call_later(self.seconds, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                log.info("closed a connection that sent no complete request headers in %g s", self.seconds)
                self.transport.close()

    host, port = sock.getsockname()[:2]
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, http=HeaderDeadline))


def run_server(app: FastAPI, sock: socket.socket, log_level: str = "warning") -> None:
    """Serve `app` on a socket from `listen` until interrupted (Ctrl-C or SIGTERM)."""
    uvicorn_server(app, sock, log_level).run(sockets=[sock])
