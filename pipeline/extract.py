"""The `extract` stage: inputs -> sampled frames -> faces -> cached crops and manifest."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

from tqdm import tqdm

from pipeline.cache import FaceCache, crop_relpath, write_jpeg_atomic
from pipeline.errors import MediaError, UsageError
from pipeline.faces import FaceConfig, FaceExtractor
from pipeline.labels import LABEL_FILE_NAMES, LabelInfo, LabelResolver
from pipeline.media import VIDEO_EXTENSIONS, MediaReader, is_media_name, limit_malloc_arenas, quiet_opencv

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractConfig:
    faces: FaceConfig = FaceConfig()
    out_dir: Path = Path("data/faces")
    workers: int = 0  # 0: one per CPU core
    labels_csv: Path | None = None
    device: str | None = None
    jpeg_quality: int = 95

    def __post_init__(self):
        if self.workers < 0:
            raise UsageError(f"--workers must be 0 (one per core) or more, got {self.workers}")
        if not 50 <= self.jpeg_quality <= 100:
            raise UsageError(f"--jpeg-quality must lie in [50, 100], got {self.jpeg_quality}")

    def cache_fields(self) -> dict:
        return {**self.faces.cache_key_fields(), "jpeg_quality": self.jpeg_quality}


@dataclass(frozen=True)
class InputJob:
    """One input file and what is known about it before decoding."""

    video_id: str
    path: Path
    label: LabelInfo
    size: int
    mtime_ns: int


@dataclass
class ExtractSummary:
    cache_dir: Path
    ok: int = 0
    no_face: int = 0
    failed: int = 0
    cached: int = 0
    skipped: int = 0
    frames: int = 0
    faces: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)
    skipped_files: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [
            f"inputs: {self.ok} ok, {self.no_face} no face, {self.failed} failed"
            f" ({self.cached} reused from the cache, {self.skipped} non-media files skipped)",
            f"frames sampled: {self.frames}, faces cropped: {self.faces}, time: {self.seconds:.1f} s",
            f"cache: {self.cache_dir} (manifest.csv, inputs.csv)",
        ]
        out += [f"skipped (not a video or image name): {name}" for name in self.skipped_files]
        out += [f"FAILED {path}: {message}" for path, message in self.failures]
        return out


@dataclass(frozen=True)
class CollectedInputs:
    """What the paths a user named hold: media files to process, files skipped, and paths that do not exist."""

    found: list[tuple[Path, Path]]  # (root, file) pairs, in order
    skipped: list[Path]  # non-media files met while walking directories
    missing: list[Path]  # named paths that do not exist

    def nothing_found_message(self, named: list) -> str:
        """Why there is nothing to process, naming the paths (for a run that found no media file at all)."""
        shown = ", ".join(str(p) for p in named[:5]) + (" ..." if len(named) > 5 else "")
        return f"no video or image files found in {shown}"


def collect_inputs(paths: list[str | os.PathLike]) -> CollectedInputs:
    """Every media file under `paths` as (root, file) pairs, the non-media files skipped, the missing paths.

    A file given by name is always tried (its content decides); a directory is walked recursively
    and keeps files with video or image names. A missing path is reported, never raised: batch work
    processes what exists and reports the rest.
    """
    found: list[tuple[Path, Path]] = []
    skipped: list[Path] = []
    missing: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file() or path.is_symlink() and not path.is_dir():
            found.append((path.parent, path))
        elif path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file() or p.is_symlink()):
                if any(part.startswith(".") for part in file.relative_to(path).parts):
                    continue  # hidden files and folders
                if is_media_name(file):
                    found.append((path, file))
                elif file.name not in LABEL_FILE_NAMES:
                    skipped.append(file)
        else:
            missing.append(path)
    return CollectedInputs(found, skipped, missing)


def _preferred_id(root: Path, file: Path) -> str:
    return file.relative_to(root).with_suffix("").as_posix()


def make_jobs(found: list[tuple[Path, Path]], cache: FaceCache, labels: LabelResolver) -> list[InputJob]:
    """One job per distinct file, with a video id unique in this run and in the cache."""
    jobs: list[InputJob] = []
    seen_files: set[str] = set()
    used_ids: set[str] = set()
    for root, file in found:
        source = str(file.resolve())
        if source in seen_files:
            continue
        seen_files.add(source)
        video_id = _preferred_id(root, file)
        owner = cache.owner_of(video_id)
        if video_id in used_ids or (owner is not None and owner != os.path.abspath(file)):
            video_id = f"{video_id}~{hashlib.sha1(source.encode()).hexdigest()[:8]}"
        used_ids.add(video_id)
        try:
            stat = file.stat()
            size, mtime_ns = stat.st_size, stat.st_mtime_ns
        except OSError:
            size, mtime_ns = -1, -1
        jobs.append(InputJob(video_id, file, labels.resolve(file), size, mtime_ns))
    return jobs


def process_input(job: InputJob, extractor: FaceExtractor, cache_dir: Path, jpeg_quality: int) -> dict:
    """Decode, detect and crop one input; write its crops; return its journal entry. Never raises."""
    started = time.perf_counter()
    record = _input_record(job)
    faces: list[dict] = []
    try:
        with MediaReader(job.path) as reader:
            info = reader.info
            record.update(media_type=info.media_type, frame_width=info.width, frame_height=info.height,
                          fps=info.fps, frame_count=info.frame_count)
            for frame, crops in extractor.faces_in_file(reader):
                record["n_frames"] += 1
                height, width = frame.image.shape[:2]
                record.update(frame_width=width, frame_height=height)  # after rotation
                for crop in crops:
                    relpath = crop_relpath(job.video_id, crop.frame_index, crop.face_index)
                    write_jpeg_atomic(cache_dir / relpath, crop.crop, jpeg_quality)
                    faces.append(_face_row(record, crop, relpath, extractor.detector.name, width, height))
            notes = [reader.truncation_note()]
        if job.path.suffix.lower() in VIDEO_EXTENSIONS and info.media_type == "image":
            notes.append(f"content is an image despite the {job.path.suffix} name; read as one frame")
        record["n_faces"] = len(faces)
        record["status"] = "ok" if faces else "no_face"
        record["message"] = "; ".join(n for n in notes if n) or ("" if faces else "no face found in any sampled frame")
    except MediaError as exc:
        record["message"] = str(exc)
        faces = []
    except Exception as exc:  # a decoder or library failure on one file must not stop the batch
        log.debug("unexpected failure on %s", job.path, exc_info=True)
        record["message"] = f"{job.path}: {type(exc).__name__}: {exc}"
        faces = []
    record["seconds"] = round(time.perf_counter() - started, 3)
    return {"input": record, "faces": faces}


def _face_row(record: dict, crop, relpath: str, detector: str, width: int, height: int) -> dict:
    det = crop.detection
    marks = json.dumps([[round(x, 2), round(y, 2)] for x, y in det.landmarks]) if det.landmarks else ""
    return {
        **{k: record[k] for k in ("video_id", "source_path", "source_size", "source_mtime_ns", "media_type",
                                  "label", "group", "label_source")},
        "frame_index": crop.frame_index, "timestamp": crop.timestamp, "face_index": crop.face_index,
        "x1": round(det.box[0], 2), "y1": round(det.box[1], 2), "x2": round(det.box[2], 2), "y2": round(det.box[3], 2),
        "score": round(det.score, 5), "landmarks": marks,
        "crop_x1": crop.crop_box[0], "crop_y1": crop.crop_box[1], "crop_x2": crop.crop_box[2], "crop_y2": crop.crop_box[3],
        "crop_path": relpath, "detector": detector, "frame_width": width, "frame_height": height,
    }


# -- worker processes ------------------------------------------------------------------------
_WORKER: dict = {}


def _init_worker(face_config: FaceConfig, device: str | None, cache_dir: Path, jpeg_quality: int) -> None:
    import torch

    torch.set_num_threads(1)  # one per process: several processes, or decoding beside, beat 2-thread torch
    import cv2

    cv2.setNumThreads(1)
    quiet_opencv()
    limit_malloc_arenas()
    _WORKER.update(extractor=FaceExtractor(face_config, device=device), cache_dir=cache_dir, quality=jpeg_quality)


def _run_job(job: InputJob) -> dict:
    return process_input(job, _WORKER["extractor"], _WORKER["cache_dir"], _WORKER["quality"])


def resolve_workers(requested: int, n_jobs: int) -> int:
    return max(1, min(requested or os.cpu_count() or 1, n_jobs))


def extract(paths: list[str | os.PathLike], config: ExtractConfig, progress: bool = True) -> ExtractSummary:
    """Extract the faces of every input into the cache for `config`; resumable and safe to interrupt."""
    started = time.perf_counter()
    collected = collect_inputs(paths)
    found, skipped = collected.found, collected.skipped
    if collected.missing:  # TODO(batch rule): report missing paths as failures and go on
        raise UsageError(f"input {collected.missing[0]} does not exist")
    if config.labels_csv is not None:  # the labels file is an input of its own, not a skipped one
        skipped = [p for p in skipped if p.resolve() != Path(config.labels_csv).resolve()]
    labels = LabelResolver(config.labels_csv)
    with FaceCache(config.out_dir, config.cache_fields()) as cache:
        summary = ExtractSummary(cache.dir, skipped=len(skipped), skipped_files=[str(p) for p in skipped])
        jobs = make_jobs(found, cache, labels)
        todo = []
        for job in jobs:
            if cache.is_done(job.video_id, job.size, job.mtime_ns):
                summary.cached += 1
                _count(summary, cache.entries[job.video_id])
            else:
                todo.append(job)
        workers = resolve_workers(config.workers, len(todo))
        bar = tqdm(total=len(todo), desc="extract", unit="input", disable=not progress or not todo)
        try:
            for entry in _results(todo, config, cache.dir, workers):
                cache.record(entry)
                _count(summary, entry)
                bar.set_postfix(faces=summary.faces, failed=summary.failed, refresh=False)
                bar.update()
        finally:
            bar.close()
    summary.seconds = time.perf_counter() - started
    return summary


def _results(todo: list[InputJob], config: ExtractConfig, cache_dir: Path, workers: int):
    """Journal entries of `todo`, in completion order, from `workers` processes (or this one)."""
    if not todo:
        return
    if workers == 1:
        _init_worker(config.faces, config.device, cache_dir, config.jpeg_quality)  # one: decoding has the other core
        for job in todo:
            yield _run_job(job)
        return
    # fresh interpreters (torch is not fork-safe once used); with a fork server, an 8-clip run of
    # `cli.py extract` ended about 1 s sooner than with spawned workers (README, Performance)
    context = get_context("forkserver" if "forkserver" in get_all_start_methods() else "spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(config.faces, config.device, cache_dir, config.jpeg_quality)) as pool:
        futures = {pool.submit(_run_job, job): job for job in todo}
        try:
            for future in as_completed(futures):
                try:
                    yield future.result()
                except Exception as exc:  # a worker died (e.g. out of memory): report, keep the rest
                    job = futures[future]
                    message = f"worker process failed: {type(exc).__name__}: {exc}"
                    yield {"input": _input_record(job, "error", message), "faces": []}
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _input_record(job: InputJob, status: str = "error", message: str = "") -> dict:
    """The status record of one input, before (or instead of) processing it."""
    return {
        "video_id": job.video_id, "source_path": os.path.abspath(job.path), "source_size": job.size,
        "source_mtime_ns": job.mtime_ns, "media_type": "", "label": job.label.label, "group": job.label.group,
        "label_source": job.label.source, "status": status, "message": message, "n_frames": 0, "n_faces": 0,
        "frame_width": 0, "frame_height": 0, "fps": 0.0, "frame_count": 0, "seconds": 0.0,
    }


def _count(summary: ExtractSummary, entry: dict) -> None:
    record = entry["input"]
    if record["status"] == "ok":
        summary.ok += 1
    elif record["status"] == "no_face":
        summary.no_face += 1
    else:
        summary.failed += 1
        summary.failures.append((record["source_path"], record["message"]))
    summary.frames += record["n_frames"]
    summary.faces += record["n_faces"]
