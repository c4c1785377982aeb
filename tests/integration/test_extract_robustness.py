"""`extract` survives what happens to its processes: a dead worker, a killed or terminated parent, and
batches with missing paths or nothing to read. Real clips, the CLI run as a subprocess where signals are
involved, and waits on conditions (crops appearing, the journal growing) rather than fixed sleeps."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from pipeline.extract import InputJob, _pool_results
from pipeline.faces import FaceConfig
from pipeline.labels import LabelResolver
from pipeline.sample import write_sample_clip
from tests.conftest import ROOT
from tests.integration.test_extract import assert_consistent, run_cli

N_CLIPS = 4
CROPS_PER_CLIP = 30  # 4 s at 15 fps, every 2nd frame: about a second of work per clip here
# detection at 320 px keeps the file short while leaving time to act mid-run
FAST = ["--every", "2", "--detect-size", "320", "--quiet"]
WAIT = 120  # generous: the machine is shared


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    for i in range(N_CLIPS):
        write_sample_clip(folder / f"clip{i}.mp4", seconds=4, fps=15)
    return folder


def extract_command(clips: Path, out: Path, workers: int = 2) -> list[str]:
    return [sys.executable, str(ROOT / "cli.py"), "extract", str(clips), "--out", str(out),
            "--workers", str(workers), *FAST]


def crops_per_clip(out: Path) -> dict[str, int]:
    return assert_consistent(out).groupby("video_id").size().to_dict()


@pytest.fixture
def start():
    """Run a command in a session of its own, as a terminal would (Ctrl-C reaches its whole process
    group), with Ctrl-C's default action even when the tests themselves were started in the background
    (a shell starts background jobs with SIGINT ignored, and children inherit that); whatever is left of
    that group when the test ends (it failed) is killed."""
    processes = []

    def run(command: list[str]) -> subprocess.Popen:
        processes.append(subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True, start_new_session=True,
                                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)))
        return processes[-1]

    yield run
    for process in processes:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.communicate()


def wait_for(condition, what: str, process: subprocess.Popen | None = None, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            pytest.fail(f"extract ended (status {process.returncode}) before {what}: {process.stderr.read()}")
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def journaled(out: Path) -> set[str]:
    """Video ids with a complete journal line."""
    ids = set()
    for journal in out.glob("*/journal.jsonl"):
        for line in journal.read_text().splitlines():
            try:
                ids.add(json.loads(line)["input"]["video_id"])
            except (ValueError, KeyError):
                pass  # a line being written
    return ids


def crops_of(out: Path, video_id: str) -> int:
    return len(list(out.glob(f"*/{video_id}/*.jpg")))


def started(out: Path) -> set[str]:
    """Video ids whose crops have begun to appear."""
    return {d.name for d in out.glob("*/clip*") if any(d.glob("*.jpg"))}


# -- processes, found through /proc ------------------------------------------------------------
def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # state, ppid, ..., starttime at [19]


def children(pid: int) -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit() and (_stat(int(d)) or [0, 0])[1] == str(pid)]


def descendants(pid: int) -> dict[int, str]:
    """Every process below `pid`, with its start time (so that a reused pid is not mistaken for it)."""
    found = {}
    for child in children(pid):
        stat = _stat(child)
        if stat:
            found[child] = stat[19]
            found.update(descendants(child))
    return found


def running(processes: dict[int, str]) -> list[int]:
    """Those still running (a zombie has ended: an init that never reaps leaves them behind)."""
    return [pid for pid, start in processes.items() if (s := _stat(pid)) and s[19] == start and s[0] != "Z"]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def workers_of(main_pid: int) -> list[int]:
    """The worker processes of an extract: children of its fork server."""
    servers = [p for p in children(main_pid) if "multiprocessing.forkserver" in cmdline(p)]
    return [p for server in servers for p in children(server) if "multiprocessing" in cmdline(p)]


def open_clips(pid: int) -> list[str]:
    """Names (without suffix) of the clip*.mp4 files the process has open."""
    try:
        links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
    except OSError:
        return []
    return [Path(link).stem for link in links if Path(link).name.startswith("clip") and link.endswith(".mp4")]


def worker_early_in_a_clip(main_pid: int, out: Path) -> tuple[int, str] | None:
    """A worker of the run with a clip open whose crops are fewer than half of what it will write, and the clip."""
    for worker in workers_of(main_pid):
        for clip in open_clips(worker):
            if clip not in journaled(out) and crops_of(out, clip) < CROPS_PER_CLIP // 2:
                return worker, clip
    return None


def assert_all_gone(processes: dict[int, str]) -> None:
    assert processes, "the run had no child processes to check"
    wait_for(lambda: not running(processes), "every process of the run to end")


def inputs_csv(out: Path) -> pd.DataFrame:
    return pd.read_csv(next(out.glob("*/inputs.csv"))).set_index("video_id")


# -- a worker dies -----------------------------------------------------------------------------
def test_a_killed_worker_fails_nothing_its_input_is_read_again(start, clips, tmp_path):
    out = tmp_path / "out"
    process = start(extract_command(clips, out))
    # a worker caught with a clip open and more than half of its crops still to come (a worker killed
    # between inputs, or as it writes its last crop, has nothing in flight to read again)
    victim, clip = wait_for(lambda: worker_early_in_a_clip(process.pid, out), "a worker early in a clip", process)
    os.kill(victim, signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=WAIT)
    assert process.returncode == 0, stdout + stderr
    assert f"{N_CLIPS} ok, 0 no face, 0 failed" in stdout
    assert f"{clip}.mp4: the worker process died while reading it (signal 9 SIGKILL" in stderr
    status = inputs_csv(out)
    assert (status["status"] == "ok").all()
    assert status["message"].fillna("").str.contains("read again").sum() == 1
    assert crops_per_clip(out) == {f"clip{i}": CROPS_PER_CLIP for i in range(N_CLIPS)}


def start_worker_dying_on_crash_inputs(parent_pid, init_args):
    """The real worker start-up, after which an input named crash* ends its process with a segmentation fault
    (a null pointer read, as a decoder's bug would)."""
    import ctypes
    import resource

    import pipeline.extract as extract_module

    extract_module._start_worker(parent_pid, init_args)
    run_job = extract_module._run_job

    def run(job):
        if job.path.name.startswith("crash"):
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file in the working tree
            ctypes.string_at(0)
        return run_job(job)

    extract_module._run_job = run  # what the pool's inputs, pickled by name, call in this process


def test_an_input_that_kills_its_worker_twice_fails_alone_and_the_others_are_read(face_clip, tmp_path):
    jobs = []
    for name in ("good0", "crash", "good1", "good2"):
        path = Path(shutil.copy(face_clip, tmp_path / f"{name}.mp4"))
        jobs.append(InputJob(name, path, LabelResolver(None).resolve(path), path.stat().st_size, 0))
    results = _pool_results(jobs, 2, (FaceConfig(), None, tmp_path / "crops", 95),
                            initializer=start_worker_dying_on_crash_inputs)
    records = {entry["input"]["video_id"]: entry["input"] for entry in results}
    assert records["crash"]["status"] == "error"
    assert records["crash"]["message"] == ("the worker process died while reading it, and again when read again "
                                           "(signal 11 SIGSEGV)")
    assert [records[f"good{i}"]["status"] for i in range(3)] == ["ok"] * 3


# -- the parent is killed or terminated --------------------------------------------------------
@pytest.mark.parametrize("engine", ["process pool", "Dask local cluster"])
def test_kill_minus_nine_leaves_no_process_behind_and_a_rerun_completes(engine, start, clips, tmp_path):
    """The command is killed with SIGKILL while its workers (a process pool, or a local Dask cluster: issue 12)
    write crops; every process of the run ends with it, the cache stays consistent, and a rerun completes it."""
    out = tmp_path / "out"
    if engine == "process pool":
        process = start(extract_command(clips, out))
        wait_for(lambda: len(workers_of(process.pid)) == 2 and started(out), "the workers to write crops", process)
    else:
        process = start([sys.executable, str(ROOT / "cli.py"), "extract", str(clips), "--out", str(out),
                         "--dask-workers", "2", *FAST])
        wait_for(lambda: started(out), "the Dask workers to write crops", process)
    processes = descendants(process.pid)  # resource tracker, fork server, workers (or scheduler, nannies, workers)
    process.kill()
    process.wait(timeout=WAIT)  # not communicate(): workers that outlive it would hold its pipes open
    assert_all_gone(processes)
    assert_consistent(out)
    rerun = subprocess.run(extract_command(clips, out, workers=1), cwd=ROOT, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{N_CLIPS} ok" in rerun.stdout
    assert crops_per_clip(out) == {f"clip{i}": CROPS_PER_CLIP for i in range(N_CLIPS)}


def state(pid: int) -> str | None:
    """The process's state letter ("T" stopped, "Z" ended), None once it is gone."""
    stat = _stat(pid)
    return stat[0] if stat else None


def sigterm_pending(pid: int) -> bool:
    """Whether a SIGTERM waits to be delivered to the process (a stopped one takes it when continued)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return False
    pending = [int(line.split()[1], 16) for line in lines if line.startswith(("SigPnd:", "ShdPnd:"))]
    return any(mask & (1 << (signal.SIGTERM - 1)) for mask in pending)


def freeze(pids: list[int]) -> None:
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    wait_for(lambda: all(state(pid) in ("T", "Z", None) for pid in pids), "the workers to stop")


def resume_each_when_terminated(pids: list[int], parent: subprocess.Popen) -> None:
    """Continue each frozen worker once a SIGTERM waits for it (or its parent has ended), until all are gone:
    what it does before it exits is then what it does after being told to stop, however loaded the machine."""
    def all_gone():
        for pid in pids:
            if state(pid) == "T" and (sigterm_pending(pid) or parent.poll() is not None):
                os.kill(pid, signal.SIGCONT)
        return all(state(pid) in ("Z", None) for pid in pids)

    wait_for(all_gone, "every worker to end")


@pytest.mark.parametrize("interrupt", ["SIGTERM to the parent", "Ctrl-C"])
def test_an_interrupt_ends_every_process_at_once_and_the_rerun_resumes(interrupt, start, clips, tmp_path):
    out = tmp_path / "out"
    process = start(extract_command(clips, out))
    workers = wait_for(lambda: (found := workers_of(process.pid)) and len(found) == 2 and found, "the two workers",
                       process)
    # one input recorded, another being read with more than half of its crops still to come
    wait_for(lambda: journaled(out) and any(crops_of(out, v) < CROPS_PER_CLIP // 2
                                            for v in started(out) - journaled(out)),
             "an input done and one begun", process)
    # The workers are frozen before the interrupt and continued only once told to stop, so the crops an
    # input has at the freeze are those it had when the interrupt came, on a fast or a loaded machine alike.
    freeze(workers)
    at_interrupt = {v: crops_of(out, v) for v in started(out) - journaled(out)}
    processes = descendants(process.pid)
    if interrupt == "Ctrl-C":  # a terminal sends SIGINT to the whole foreground process group, workers included
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.send_signal(signal.SIGTERM)
    resume_each_when_terminated(workers, process)
    stdout, stderr = process.communicate(timeout=WAIT)
    assert process.returncode == 130, stdout + stderr
    assert stderr.strip().endswith("interrupted") and "Traceback" not in stderr
    assert_all_gone(processes)
    # the inputs being read were stopped, not waited for: at most the crop being written when the interrupt
    # came is finished, and an input caught early stays incomplete (its crops are redone by the rerun)
    done = journaled(out)
    stopped = {v: n for v, n in at_interrupt.items() if v not in done}
    assert any(n < CROPS_PER_CLIP for n in stopped.values()), at_interrupt
    after = {v: crops_of(out, v) for v in stopped}
    assert all(stopped[v] <= after[v] <= stopped[v] + 1 for v in stopped), (stopped, after)
    assert_consistent(out)
    rerun = subprocess.run(extract_command(clips, out, workers=1), cwd=ROOT, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{N_CLIPS} ok" in rerun.stdout and f"({len(done)} reused from the cache" in rerun.stdout
    assert crops_per_clip(out) == {f"clip{i}": CROPS_PER_CLIP for i in range(N_CLIPS)}


# -- the batch rule: report what is missing, extract the rest; nothing at all is a failure ----------
def test_a_missing_path_fails_alone_and_the_rest_is_extracted(face_clip, tmp_path):
    missing = tmp_path / "nope.mp4"
    result = run_cli("extract", missing, face_clip, "--out", tmp_path / "out", "--workers", "1", "--quiet")
    assert result.exit_code == 1, result.output
    assert "1 ok, 0 no face, 1 failed" in result.output
    assert f"FAILED {missing}: does not exist" in result.output
    assert set(assert_consistent(tmp_path / "out")["video_id"]) == {"astronaut"}


@pytest.mark.parametrize("content", [{}, {"notes.txt": "not media", "sub/readme.md": "# nothing"}],
                         ids=["empty folder", "only non-media files"])
def test_a_folder_without_media_is_a_failure_with_a_message(content, tmp_path):
    folder = tmp_path / "inputs"
    folder.mkdir()
    for name, text in content.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    result = run_cli("extract", folder, "--out", tmp_path / "out", "--quiet")
    assert result.exit_code == 1, result.output
    assert f"no video or image files found in {folder}" in result.output
    if content:
        assert "2 other files skipped" in result.output
    assert not (tmp_path / "out").exists()  # no empty cache made


def test_a_failure_line_names_the_path_once(tmp_path):
    bad = tmp_path / "text.mp4"
    bad.write_text("this is not a video\n" * 50)
    result = run_cli("extract", bad, "--out", tmp_path / "out", "--workers", "1", "--quiet")
    assert result.exit_code == 1
    line = next(line for line in result.output.splitlines() if line.startswith("FAILED"))
    assert line.startswith(f"FAILED {bad}: not a readable video") and line.count(str(bad)) == 1
    assert str(bad) not in inputs_csv(tmp_path / "out").loc["text", "message"]
