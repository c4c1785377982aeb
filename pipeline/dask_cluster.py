"""Per-file work on a Dask cluster: `--scheduler ADDRESS` (an existing cluster) or `--dask-workers N` (a local one).

Everything Dask lives here: which cluster (`ClusterConfig`), a client that is closed on every path
(`dask_client`), one task per item with results yielded as tasks complete (`run_each`), and what a worker
process loads once and keeps for the tasks that follow (`loaded_once`: a face extractor, an ensemble).

Dask does the distributing: scheduling, retrying the task of a worker that died (up to the scheduler's
`distributed.scheduler.allowed-failures`, then `KilledWorker`), restarting a local worker. The client stays
the single writer of whatever the results go into (the face cache's journal and manifest, the CLI's
output); workers only read inputs and write files named deterministically by their input (crops, reports),
so a retried task overwrites what its first attempt wrote and never adds to it. Remote workers see the
client's files through a filesystem every machine shares, at the same absolute paths.

`distributed` is imported only when a cluster is used: a run without these options never loads it.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from pipeline.errors import DeepfakeError, UsageError

log = logging.getLogger(__name__)

WORKER_SATURATION = 1.0  # tasks a worker holds per thread (see _local_cluster; set it on a scheduler you start)
CONNECT_TIMEOUT_SECONDS = 10.0  # how long to try reaching a scheduler before saying it cannot be reached
START_HINT = ("start one with `dask scheduler` (it prints the address, tcp://HOST:8786) and `dask worker "
              "tcp://HOST:8786 --nworkers N --nthreads 1` on each machine, or use --dask-workers N for a local cluster")


@dataclass(frozen=True)
class ClusterConfig:
    """Where the per-file work runs: an existing scheduler's address, or a local cluster of `n_workers`
    processes of one thread each (one torch thread per process is what this project's work wants)."""

    scheduler: str | None = None
    n_workers: int | None = None

    def __post_init__(self):
        if self.scheduler is not None and self.n_workers is not None:
            raise UsageError("--scheduler and --dask-workers cannot be used together: --scheduler joins an existing "
                             "Dask cluster, --dask-workers starts a local one")
        if self.scheduler is None and self.n_workers is None:
            raise UsageError("a Dask cluster needs --scheduler ADDRESS or --dask-workers N")
        if self.n_workers is not None and self.n_workers < 1:
            raise UsageError(f"--dask-workers must be 1 or more, got {self.n_workers}")
        if self.scheduler is not None and not self.scheduler.strip():
            raise UsageError("--scheduler needs an address, e.g. tcp://HOST:8786")

    @classmethod
    def from_options(cls, scheduler: str | None, dask_workers: int | None) -> "ClusterConfig | None":
        """The cluster the options name, or None when neither is given (then nothing uses Dask)."""
        if scheduler is None and dask_workers is None:
            return None
        return cls(scheduler=scheduler, n_workers=dask_workers)


@contextmanager
def dask_client(config: ClusterConfig, connect_timeout: float | None = None):
    """A `distributed.Client` of the cluster `config` names; the client (and a local cluster) are closed on
    every way out, Ctrl-C included. An unreachable scheduler is a UsageError naming the address, raised
    within `connect_timeout` seconds (default CONNECT_TIMEOUT_SECONDS)."""
    from distributed import Client

    timeout = CONNECT_TIMEOUT_SECONDS if connect_timeout is None else connect_timeout
    with _quiet_distributed():
        if config.scheduler is not None:
            with _connected(config.scheduler, timeout) as client:
                yield client
            return
        with _SlowExitUnsaid(), _local_cluster(config.n_workers) as cluster, \
                Client(cluster, set_as_default=False) as client:
            yield client


@contextmanager
def _local_cluster(n_workers: int):
    """A LocalCluster of `n_workers` processes of one thread (this project's work runs one torch thread per
    process), closed on the way out.

    Each worker holds only the task it runs (worker-saturation 1.0; Dask's default queues one more): when a
    worker dies, the scheduler counts the death against every task the worker held, and an input queued
    behind one that kills its reader must not be failed with it. The nannies set no MALLOC_TRIM_THRESHOLD_
    (see `_malloc_as_by_default`), and the variables they put in this process's environment to hand to the
    workers are taken out again at the end, so that later child processes of this one do not inherit them.
    The workers log errors only, unless -v (the nanny, in this process, still says when one died and is
    restarted); the HTTP server (with bokeh, a dashboard) takes any free port.
    """
    import dask
    from distributed import LocalCluster

    quiet = logging.ERROR if logging.getLogger().getEffectiveLevel() > logging.DEBUG else False
    settings = {"distributed.scheduler.worker-saturation": WORKER_SATURATION,
                "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
    environment = dict(os.environ)
    try:
        with dask.config.set(settings):
            cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                                   silence_logs=quiet)
        with cluster:
            yield cluster
    finally:
        for name in set(os.environ) - set(environment):
            del os.environ[name]
        os.environ.update(environment)


@contextmanager
def _connected(address: str, timeout: float):
    from distributed import Client

    _check_address(address)
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except (OSError, ValueError, TypeError) as exc:  # refused, timed out, unreachable host
        raise UsageError(f"--scheduler {address}: cannot reach a Dask scheduler there within {timeout:g} s "
                         f"({exc}); {START_HINT}") from None
    try:
        _warn_without_workers(client, address, timeout)
        yield client
    finally:
        client.close()


@contextmanager
def _quiet_distributed():
    """Dask's own INFO lines (scheduler and worker start and stop) kept out of a command's output, unless the
    command runs with -v: warnings (a worker restarted after it died, ...) still show."""
    logger = logging.getLogger("distributed")
    old = logger.level
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logger.setLevel(max(old, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(old)


class _SlowExitUnsaid(logging.Filter):
    """Drops the nanny's "Worker process still alive after 4.0 seconds, killing" while a local cluster closes:
    a worker that has imported torch can take that long to exit on a busy machine, and with every task done,
    killing it loses nothing (a worker that died mid-run is still reported: "Restarting worker")."""

    MESSAGE = "Worker process still alive after"

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.MESSAGE)

    def __enter__(self):
        logging.getLogger("distributed.nanny").addFilter(self)
        return self

    def __exit__(self, *exc):
        logging.getLogger("distributed.nanny").removeFilter(self)


def _check_address(address: str) -> None:
    """A UsageError for an address no Dask client could use (before a Client is made: a half-made one hangs on exit)."""
    from distributed.comm.addressing import parse_address
    from distributed.comm.registry import get_backend

    try:
        scheme, location = parse_address(address)
        get_backend(scheme)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"--scheduler {address}: not a Dask scheduler address ({exc}); "
                         f"expected e.g. tcp://HOST:8786") from None
    if not location:
        raise UsageError(f"--scheduler {address}: no host in the address; expected e.g. tcp://HOST:8786")


def _warn_without_workers(client, address: str, timeout: float) -> None:
    try:
        client.wait_for_workers(1, timeout=timeout)
    except (TimeoutError, OSError):
        log.warning("the Dask scheduler at %s has no workers yet: the tasks wait until one joins "
                    "(`dask worker %s --nthreads 1` on a machine that sees the same files)", address, address)


class WorkersDied(DeepfakeError):
    """Every Dask worker that ran one item's task died (the scheduler gave up on it: `KilledWorker`)."""

    def __init__(self, tries: int, last_worker: str):
        self.tries, self.last_worker = tries, last_worker
        super().__init__(f"the Dask worker reading it died, {tries} times (the last one: {last_worker}); "
                         f"the input itself may kill its reader (a decoder crash, or memory)")


def run_each(client, function: Callable, items: Iterable, name: str, **kwargs) -> Iterator[tuple[object, object]]:
    """`function(item, **kwargs)` as one task per item on the cluster; (item, result) as tasks complete.

    A task whose workers all died gives (item, WorkersDied) and the others go on; any other task error is
    raised here (a DeepfakeError as it is, e.g. a bad --device; anything else, e.g. a worker that cannot
    import this project, as a DeepfakeError naming the item). Tasks are handed to the scheduler a window at a
    time (see `_window`), and each result is let go of once yielded, so that a batch of 100,000 inputs holds
    neither the scheduler's memory nor the workers'. Closing the generator (an interrupt, an error) cancels
    the tasks not yet done.
    """
    from distributed import as_completed

    queue = deque(enumerate(items))
    token = uuid.uuid4().hex[:8]
    pending: dict = {}  # future -> item
    completed = as_completed(loop=client.loop)
    window, window_checked = _window(client), time.monotonic()

    def submit() -> None:
        batch = [queue.popleft() for _ in range(min(len(queue), window - len(pending)))]
        if batch:  # keys grouped under `name` on Dask's dashboard
            futures = client.map(function, [item for _, item in batch], key=[f"{name}-{token}-{i}" for i, _ in batch],
                                 pure=False, **kwargs)
            pending.update(zip(futures, (item for _, item in batch)))
            completed.update(futures)

    try:
        submit()
        for done in completed.batches():  # what finished since the last look: its results in one round trip
            finished = [future for future in done if future.status == "finished"]
            results = dict(zip(finished, client.gather(finished))) if finished else {}
            if time.monotonic() - window_checked > WINDOW_CHECK_SECONDS:  # workers come and go
                window, window_checked = _window(client), time.monotonic()
            outcomes = []
            for future in done:
                item = pending.pop(future)
                outcomes.append((item, results[future] if future in results else _failure(future, item)))
            del done, finished, results, future  # let go: the scheduler drops their results from the workers
            submit()
            yield from outcomes
    finally:
        if pending:
            client.cancel(list(pending), force=True)


def _failure(future, item) -> WorkersDied:
    """WorkersDied for a task the scheduler gave up on; any other failure raised (see `run_each`)."""
    label = getattr(item, "path", item)
    if future.status != "error":  # cancelled: the scheduler went away or restarted under us
        raise DeepfakeError(f"the Dask cluster dropped the task of {label} ({future.status}); what was recorded "
                            f"stays: run the same command again to go on")
    exc = future.exception()
    if type(exc).__name__ == "KilledWorker":
        return WorkersDied(_tries(exc), _address(exc))
    if isinstance(exc, DeepfakeError):
        raise exc.with_traceback(future.traceback())
    raise DeepfakeError(f"a Dask worker failed on {label}: {type(exc).__name__}: {exc} (every worker machine needs "
                        f"this project installed, e.g. `pip install -e .`)") from exc


WINDOW_PER_THREAD = 4  # tasks handed to the scheduler per worker thread...
MIN_WINDOW = 256  # ...and at least this many: enough for workers that join later
WINDOW_CHECK_SECONDS = 10.0


def _window(client) -> int:
    """How many tasks to keep at the scheduler: several per worker thread, so that no worker waits for work."""
    try:
        threads = sum(client.nthreads().values())
    except (OSError, TimeoutError):
        threads = 0
    return max(MIN_WINDOW, WINDOW_PER_THREAD * threads)


def _tries(exc) -> int:
    try:
        return int(exc.allowed_failures) + 1
    except (AttributeError, IndexError, TypeError, ValueError):
        return 0


def _address(exc) -> str:
    try:
        worker = exc.last_worker
    except (AttributeError, IndexError):
        return "unknown"
    return str(getattr(worker, "address", worker))


# -- in the worker processes -----------------------------------------------------------------------
_LOADED: dict = {}
_LOADED_LOCK = threading.Lock()


def loaded_once(key, load: Callable):
    """`load()`'s result, made once per worker process and thread for `key`, then reused by the tasks that follow
    (a task runs in a thread of a long-lived worker process: the first task of a worker pays for loading models,
    the others do not). Per thread, so that a worker started with --nthreads above 1 never shares a model
    between concurrent tasks. The first load in a process also undoes the nanny's malloc setting (see
    `_malloc_as_by_default`)."""
    slot = (key, threading.get_ident())
    with _LOADED_LOCK:
        if not _LOADED:
            _malloc_as_by_default()
        if slot not in _LOADED:
            log.debug("process %d loads %r", os.getpid(), key)
            _LOADED[slot] = load()
        return _LOADED[slot]


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
MMAP_THRESHOLD_MAX = 32 * 2**20  # the highest mmap threshold glibc's own adjustment reaches on 64-bit


def _malloc_as_by_default() -> None:
    """Undo the MALLOC_TRIM_THRESHOLD_=65536 a Dask nanny gives its workers by default.

    Setting it freezes glibc's malloc thresholds: every decoded frame (6 MB at 1080p) is then a fresh mmap,
    page-faulted and zeroed, and freed memory is handed back at once. Extracting a DFDC clip took twice the CPU
    time in such a worker (measured: 5.3-5.7 s against 2.3-2.8 s). Thresholds as high as glibc's own adjustment
    would take them give the time back. A no-op without that variable, or where the C library is not glibc.
    """
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        return
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)
        libc.mallopt(M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD_MAX)
    except (OSError, AttributeError):
        log.debug("mallopt unavailable: malloc thresholds left as they are")


def loaded_keys() -> list:
    """The keys of what this process has loaded (for tests and debugging: `client.run(loaded_keys)`)."""
    with _LOADED_LOCK:
        return [key for key, _ in _LOADED]
