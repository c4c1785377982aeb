"""The `extract` stage: inputs -> sampled frames -> faces -> cached crops and manifest."""
from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import pickle
import select
import signal
import socket
import sys
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED
from concurrent.futures import wait as futures_wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import closing
from dataclasses import dataclass, field, replace
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

from pebble import ProcessExpired, ProcessPool
from tqdm import tqdm

from pipeline.cache import DEFAULT_JPEG_QUALITY, FaceCache, cache_fields, crop_relpath, write_jpeg_atomic
from pipeline.dask_cluster import ClusterConfig
from pipeline.detectors import cuda_expected
from pipeline.errors import DataError, DeepfakeError, MediaError, UsageError
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
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    cluster: ClusterConfig | None = None  # None: this machine's process pool (`workers`); else a Dask cluster

    def __post_init__(self):
        if self.workers < 0:
            raise UsageError(f"--workers must be 0 (one per core) or more, got {self.workers}")
        if self.cluster is not None and self.workers:
            raise UsageError(f"--workers {self.workers} sets this machine's process pool; on a Dask cluster its "
                             f"workers do the work (--dask-workers N, or `dask worker --nworkers N`)")
        if not 50 <= self.jpeg_quality <= 100:
            raise UsageError(f"--jpeg-quality must lie in [50, 100], got {self.jpeg_quality}")

    def cache_fields(self) -> dict:
        return cache_fields(self.faces, self.jpeg_quality)


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
            for file in _files_under(path):
                if is_media_name(file):
                    found.append((path, file))
                elif file.name not in LABEL_FILE_NAMES:
                    skipped.append(file)
        else:
            missing.append(path)
    return CollectedInputs(found, skipped, missing)


def _files_under(folder: Path) -> list[Path]:
    """The files under `folder`, sorted, hidden files and folders left out. Symlinked folders are followed,
    each real folder once (a link back up the tree is not walked again); a broken link is listed (its read
    then says it is missing)."""
    files, walked = [], set()
    for current, folders, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(current)
        if real in walked:
            folders[:] = []
            continue
        walked.add(real)
        folders[:] = [name for name in folders if not name.startswith(".")]
        files += [Path(current, name) for name in names if not name.startswith(".")]
    return sorted(files)


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
        with MediaReader(job.path, max_pixels=extractor.config.max_pixels) as reader:
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
        record["message"] = _without_path(str(exc), job.path)
        faces = []
    except Exception as exc:  # a decoder or library failure on one file must not stop the batch
        log.debug("unexpected failure on %s", job.path, exc_info=True)
        record["message"] = _without_path(f"{type(exc).__name__}: {exc}", job.path)
        faces = []
    record["seconds"] = round(time.perf_counter() - started, 3)
    return {"input": record, "faces": faces}


def _without_path(message: str, path: Path) -> str:
    """`message` without a leading "<path>: ": the record (and the failure line) names the path already."""
    for prefix in (f"{path}: ", f"{os.path.abspath(path)}: "):
        if message.startswith(prefix):
            return message[len(prefix):]
    return message


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
    _WORKER.update(extractor=_worker_extractor(face_config, device), cache_dir=cache_dir, quality=jpeg_quality)


def _worker_extractor(face_config: FaceConfig, device: str | None) -> FaceExtractor:
    """This process set up as a worker (one torch and one OpenCV thread, quiet decoders), and its extractor."""
    import torch

    torch.set_num_threads(1)  # one per process: several processes, or decoding beside, beat 2-thread torch
    import cv2

    cv2.setNumThreads(1)
    quiet_opencv()
    limit_malloc_arenas()
    return FaceExtractor(face_config, device=device)


def _run_job(job: InputJob) -> dict:
    if "failed" in _WORKER:
        raise _WORKER["failed"]
    return process_input(job, _WORKER["extractor"], _WORKER["cache_dir"], _WORKER["quality"])


def _start_worker(parent_pid: int, init_args: tuple) -> None:
    """The pool's initializer, in each worker process: end with the parent, then set up.

    A setup error (e.g. a bad --device) is kept and raised by the worker's first input, so that the parent
    raises it, as it would without workers: pebble would only log it and start another worker, forever.
    """
    _end_with_parent(parent_pid)
    try:
        _init_worker(*init_args)
    except Exception as exc:
        _WORKER["failed"] = _picklable(exc)


def _picklable(exc: Exception) -> Exception:
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return DeepfakeError(f"a worker process could not start: {type(exc).__name__}: {exc}")


PR_SET_PDEATHSIG = 1


def _end_with_parent(parent_pid: int) -> None:
    """End this worker as soon as the process running `extract` is gone, even after `kill -9`.

    A worker is a child of the fork server, not of that process, and the fork server stays up as long as
    any worker does; so the kernel's parent-death signal (set too: it covers a killed fork server, and the
    parent itself under the spawn method) is not enough. A thread waits for the parent's pidfd to become
    readable (the parent has exited) and ends the process; crops are written atomically, so nothing is torn.
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            log.debug("prctl(PR_SET_PDEATHSIG) unavailable")
    try:
        pidfd = os.pidfd_open(parent_pid)
    except ProcessLookupError:
        os._exit(1)  # gone already
    except (AttributeError, OSError):  # not Linux, or an old kernel: poll instead
        pidfd = None
    threading.Thread(target=_exit_when_gone, args=(parent_pid, pidfd), name="end-with-parent", daemon=True).start()


def _exit_when_gone(parent_pid: int, pidfd: int | None) -> None:
    if pidfd is not None:
        select.select([pidfd], [], [])
    else:
        while True:
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                break
            except PermissionError:
                pass  # alive (a pid taken by someone else's process would look the same: the pidfd avoids that)
            time.sleep(0.5)
    os._exit(1)


def _death_cause(exitcode: int | None) -> str:
    """How a worker process ended, in words: "signal 9 SIGKILL ...", "exit code 1"."""
    if exitcode is None:
        return "exit status unknown"
    if exitcode >= 0:
        return f"exit code {exitcode}"
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        return f"signal {-exitcode}"
    if -exitcode == signal.SIGKILL:
        return f"signal {-exitcode} {name}: killed, e.g. by the kernel when memory ran out"
    return f"signal {-exitcode} {name}"


MAX_POOL_BREAKS = 3  # pools in a row whose workers all died before reading anything: something is wrong with all


def _pool_results(todo: list[InputJob], workers: int, init_args: tuple, initializer=_start_worker):
    """Journal entries of `todo`, in completion order, from a pebble pool of `workers` processes.

    With ProcessPoolExecutor, one dead worker (a decoder's segfault, the out-of-memory killer) breaks the
    pool and fails every input not yet finished. A pebble pool fails only the input the dead worker was
    reading (ProcessExpired) and starts a new worker. That input is read once more; it fails if its worker
    dies again. Every other input goes on. At most `workers` inputs are in flight, so a rerun is not queued
    behind the whole batch. A worker error (e.g. a bad --device) is raised here; closing the generator (an
    interrupt) ends the workers at once (pebble's stop: SIGTERM, which they exit on, then SIGKILL after 3 s).
    """
    # fresh interpreters (torch is not fork-safe once used); with a fork server, an 8-clip run of
    # `cli.py extract` ended about 1 s sooner than with spawned workers (README, Performance). The fork
    # server is itself a fresh interpreter, so workers may initialise CUDA even when this process has
    # (the parent never needs to: it only decides the worker count, with `cuda_expected`).
    context = get_context("forkserver" if "forkserver" in get_all_start_methods() else "spawn")
    queue, running = deque(todo), {}  # running: future -> job
    first_death: dict[str, str] = {}  # video id -> how the worker reading it died
    pool, breaks = None, 0
    try:
        while queue or running:
            if pool is None:
                pool = ProcessPool(workers, initializer=initializer, initargs=(os.getpid(), init_args), context=context)
            broken = False
            try:
                while queue and len(running) < workers:
                    future = pool.schedule(_run_job, (queue[0],))
                    running[future] = queue.popleft()
            except RuntimeError:  # the pool broke (below) before a future said so
                broken = True
            done = () if broken else futures_wait(running, return_when=FIRST_COMPLETED).done
            for future in done:
                job = running.pop(future)
                try:
                    entry = future.result()  # an error other than a death is the worker's own: raised here
                except BrokenProcessPool:
                    queue.appendleft(job)
                    broken = True
                    continue
                except ProcessExpired as exc:
                    cause = _death_cause(exc.exitcode)
                    if job.video_id in first_death:
                        first = first_death[job.video_id]
                        causes = cause if cause == first else f"{first}, then {cause}"
                        message = f"the worker process died while reading it, and again when read again ({causes})"
                        yield {"input": _input_record(job, "error", message), "faces": []}
                    else:
                        first_death[job.video_id] = cause
                        log.warning("%s: the worker process died while reading it (%s); reading it again",
                                    job.path, cause)
                        queue.appendleft(job)
                    continue
                breaks = 0
                if job.video_id in first_death:
                    _add_note(entry["input"], f"read again: the worker process reading it first died "
                                              f"({first_death[job.video_id]})")
                yield entry
            if broken:  # pebble gives up when a worker dies while no input is being read (e.g. at start-up):
                pool.stop()  # nothing in flight was being read, so it all goes back in the queue, for a new pool
                pool.join()
                pool, breaks = None, breaks + 1
                if breaks >= MAX_POOL_BREAKS:
                    raise DeepfakeError("worker processes keep dying before reading anything")
                log.warning("a worker process died before reading anything; starting the workers again")
                queue.extendleft(reversed(list(running.values())))
                running.clear()
    finally:  # normal end, error or interrupt: workers stopped now, inputs being read are not waited for
        if pool is not None:
            pool.stop()
            pool.join()


def _add_note(record: dict, note: str) -> None:
    record["message"] = "; ".join(m for m in (record["message"], note) if m)


# Default worker count on CUDA: each worker holds its own CUDA context (~0.5 GB of GPU memory before any
# tensor) and the GPU runs their detections one after another anyway; what more workers add is decoding,
# which stays on the CPU. Four keep a GPU fed while others decode, and fit in a 4 GB card. `--workers N`
# overrides; bench/gpu_check.py measures one worker against this default on a GPU.
CUDA_DEFAULT_WORKERS = 4


def resolve_workers(requested: int, n_jobs: int, device: str | None = "cpu") -> int:
    """`requested` processes (0: one per core, at most CUDA_DEFAULT_WORKERS on CUDA), never more than jobs."""
    default = os.cpu_count() or 1
    if cuda_expected(device):
        default = min(default, CUDA_DEFAULT_WORKERS)
    return max(1, min(requested or default, n_jobs))


def extract(paths: list[str | os.PathLike], config: ExtractConfig, progress: bool = True) -> ExtractSummary:
    """Extract the faces of every input into the cache for `config`; resumable and safe to interrupt."""
    started = time.perf_counter()
    collected = collect_inputs(paths)
    found, skipped = collected.found, collected.skipped
    if not found:
        raise DataError(_nothing_found(collected, paths))
    if config.labels_csv is not None:  # the labels file is an input of its own, not a skipped one
        skipped = [p for p in skipped if p.resolve() != Path(config.labels_csv).resolve()]
    labels = LabelResolver(config.labels_csv)
    with FaceCache(config.out_dir, config.cache_fields()) as cache:
        summary = ExtractSummary(cache.dir, skipped=len(skipped), skipped_files=[str(p) for p in skipped])
        for path in collected.missing:  # reported with the failures; everything else is still extracted
            summary.failed += 1
            summary.failures.append((str(path), "does not exist"))
        jobs = make_jobs(found, cache, labels)
        todo = []
        for job in jobs:
            if cache.is_done(job.video_id, job.size, job.mtime_ns):
                summary.cached += 1
                _count(summary, cache.entries[job.video_id])
            else:
                todo.append(job)
        workers = resolve_workers(config.workers, len(todo), config.device)
        bar = tqdm(total=len(todo), desc="extract", unit="input", disable=not progress or not todo)
        results = _results(todo, config, cache.dir, workers)
        try:
            for entry in results:
                cache.record(entry)
                _count(summary, entry)
                bar.set_postfix(faces=summary.faces, failed=summary.failed, refresh=False)
                bar.update()
        finally:  # on an interrupt or an error: workers killed now, what is recorded stays (snapshot on close)
            results.close()
            bar.close()
    summary.seconds = time.perf_counter() - started
    return summary


def _results(todo: list[InputJob], config: ExtractConfig, cache_dir: Path, workers: int):
    """Journal entries of `todo`, in completion order, from `workers` processes (or this one)."""
    if not todo:
        return
    if config.cluster is not None:
        yield from _dask_results(todo, config, cache_dir)
        return
    init_args = (config.faces, config.device, cache_dir, config.jpeg_quality)
    if workers == 1:
        _init_worker(*init_args)  # one: decoding has the other core
        for job in todo:
            yield _run_job(job)
        return
    yield from _pool_results(todo, workers, init_args)


def _dask_results(todo: list[InputJob], config: ExtractConfig, cache_dir: Path):
    """Journal entries of `todo`, in completion order, from one Dask task per input (pipeline/dask_cluster.py).

    Workers get absolute paths (a remote worker sees the inputs and the cache on a shared filesystem, at the
    same paths) and write the crops; the records come back here, to the one process that journals them. A
    task whose worker dies is run again by Dask on another worker: crop names are fixed by the input, so the
    second attempt overwrites what the first wrote. Only when the scheduler gives up on it (every worker that
    tried died) is the input recorded as failed.
    """
    from pipeline.dask_cluster import WorkersDied, dask_client, run_each

    jobs = [replace(job, path=Path(os.path.abspath(job.path))) for job in todo]
    setup = (config.faces, config.device, Path(os.path.abspath(cache_dir)), config.jpeg_quality)
    with dask_client(config.cluster) as client, closing(run_each(client, _dask_job, jobs, "extract", setup=setup)) \
            as results:
        for job, outcome in results:
            if isinstance(outcome, WorkersDied):
                yield {"input": _input_record(job, "error", str(outcome)), "faces": []}
            else:
                yield outcome


def _dask_job(job: InputJob, setup: tuple) -> dict:
    """One input, in a Dask worker: its extractor is made by the worker's first task and kept for the others."""
    from pipeline.dask_cluster import loaded_once

    face_config, device, cache_dir, jpeg_quality = setup
    if not (cache_dir / "config.json").is_file():  # written by the client when it opened the cache
        raise UsageError(f"the Dask worker on {socket.gethostname()} does not see the output directory {cache_dir}: "
                         f"it must be on a filesystem every machine shares, mounted at the same path")
    extractor = loaded_once(("extract", face_config, device), lambda: _worker_extractor(face_config, device))
    return process_input(job, extractor, cache_dir, jpeg_quality)


def _nothing_found(collected: CollectedInputs, paths: list) -> str:
    """Why a run has nothing to extract: no media file in the named paths (and which of them do not exist)."""
    missing = ", ".join(str(p) for p in collected.missing) + (" does" if len(collected.missing) == 1 else " do")
    if len(collected.missing) == len(paths):
        return f"{missing} not exist"
    message = collected.nothing_found_message(list(paths))
    if collected.missing:
        message += f" ({missing} not exist)"
    if collected.skipped:
        message += (f"; {len(collected.skipped)} other file{'s' if len(collected.skipped) > 1 else ''} skipped, "
                    f"e.g. {collected.skipped[0].name} (not a video or image name)")
    return message


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
