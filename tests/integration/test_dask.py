"""extract and classify-* on a Dask cluster: a real `distributed.LocalCluster` of 2 worker processes, real MTCNN,
real DFDC clips from ../shared/data. The cluster's manifest must be the single-process one; a worker killed
mid-run must cost nothing but time; verdicts must be the plain command's."""
from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from cli import main
from pipeline import dask_cluster
from pipeline.dask_cluster import ClusterConfig, WorkersDied, dask_client, loaded_keys, run_each
from pipeline.extract import ExtractConfig, extract
from pipeline.faces import FaceConfig
from pipeline.sampling import SamplingConfig
from tests.conftest import shared_data

CLIPS = ("abofeumbvv.mp4", "brtujopkby.mp4", "lynaeydofd.mp4")  # 10 s 1080p; one REAL, two FAKE
FRAMES = 6  # sampled frames per clip: enough for several crops per clip, few enough to stay quick


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def clips() -> list[Path]:
    folder = shared_data("dfdc_videos")
    return [folder / name for name in CLIPS]


@pytest.fixture(scope="module")
def cluster():
    """One local cluster for the module (starting one costs seconds): 2 processes of one thread, Dask's
    defaults otherwise, as a cluster someone else started. Its nannies put variables for their workers
    (MALLOC_TRIM_THRESHOLD_, OMP_NUM_THREADS...) in this process's environment: taken out again after."""
    from distributed import LocalCluster

    environment = dict(os.environ)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as local:
        yield local
    os.environ.clear()
    os.environ.update(environment)


@pytest.fixture
def watcher(cluster):
    """A second client of the cluster, to look at and kill its workers."""
    from distributed import Client

    with Client(cluster.scheduler_address, set_as_default=False) as client:
        yield client


@pytest.fixture(scope="module")
def single_process(clips, tmp_path_factory) -> Path:
    """The reference: the clips extracted in this process, without Dask."""
    out = tmp_path_factory.mktemp("single")
    result = run_cli("extract", *clips, "--frames", FRAMES, "--out", out, "--workers", "1", "--quiet")
    assert result.exit_code == 0, result.output
    return out


def cache_of(out: Path) -> tuple[Path, pd.DataFrame, pd.DataFrame, dict[str, bytes]]:
    """(cache dir, manifest, inputs.csv without timings, {crop path: JPEG bytes} of every crop on disk)."""
    [cache_dir] = [d for d in out.iterdir() if d.is_dir()]
    manifest = pd.read_csv(cache_dir / "manifest.csv", dtype={"video_id": str})
    inputs = pd.read_csv(cache_dir / "inputs.csv", dtype={"video_id": str}).drop(columns="seconds")
    crops = {p.relative_to(cache_dir).as_posix(): p.read_bytes() for p in cache_dir.rglob("*.jpg")}
    return cache_dir, manifest, inputs, crops


def assert_same_cache(out: Path, reference: Path) -> None:
    cache_dir, manifest, inputs, crops = cache_of(out)
    ref_dir, ref_manifest, ref_inputs, ref_crops = cache_of(reference)
    assert cache_dir.name == ref_dir.name
    pd.testing.assert_frame_equal(manifest, ref_manifest)
    pd.testing.assert_frame_equal(inputs, ref_inputs)
    assert not manifest.duplicated(["video_id", "frame_index", "face_index"]).any()
    assert set(crops) == set(manifest["crop_path"])  # every crop named once, no stray crop of a redone input
    assert crops == ref_crops  # byte for byte: the same pixels, the same JPEG


# -- extract --------------------------------------------------------------------------------------
def test_two_dask_workers_give_the_single_process_manifest(clips, cluster, single_process, tmp_path):
    result = run_cli("extract", *clips, "--frames", FRAMES, "--out", tmp_path, "--scheduler",
                     cluster.scheduler_address, "--quiet")
    assert result.exit_code == 0, result.output
    assert f"inputs: {len(clips)} ok, 0 no face, 0 failed" in result.output
    assert_same_cache(tmp_path, single_process)


def test_a_worker_killed_mid_input_costs_only_time(clips, cluster, watcher, single_process, tmp_path):
    """SIGKILL to the worker process reading an input, once that input has crops on disk but no journal line:
    Dask runs the task again, its crops are overwritten (not added to), and the run completes."""
    config = ExtractConfig(faces=FaceConfig(sampling=SamplingConfig(every=None, frames=FRAMES)), out_dir=tmp_path,
                           cluster=ClusterConfig(scheduler=cluster.scheduler_address))
    pids = watcher.run(os.getpid)  # worker address -> pid
    outcome: dict = {}

    def run():
        try:
            outcome["summary"] = extract(clips, config, progress=False)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    victim = None
    deadline = time.monotonic() + 90
    while victim is None and runner.is_alive() and time.monotonic() < deadline:
        half_done = _inputs_with_crops_but_no_journal_line(tmp_path)
        busy = [address for address, keys in watcher.processing().items() if keys]
        if half_done and busy:
            victim = busy[0]
            os.kill(pids[victim], signal.SIGKILL)
        time.sleep(0.05)
    assert victim is not None, "no input was caught half done: the test did not kill anything"
    runner.join(timeout=180)
    assert not runner.is_alive(), "the run did not complete after a worker was killed"
    assert "error" not in outcome, outcome.get("error")
    summary = outcome["summary"]
    assert (summary.ok, summary.failed) == (len(clips), 0), summary.lines()
    assert pids[victim] not in watcher.run(os.getpid).values()  # that process is gone (the nanny started another)
    assert_same_cache(tmp_path, single_process)


def _inputs_with_crops_but_no_journal_line(out: Path) -> list[str]:
    caches = [d for d in out.iterdir() if d.is_dir()] if out.is_dir() else []
    if not caches:
        return []
    journal = caches[0] / "journal.jsonl"
    done = {json.loads(line)["input"]["video_id"] for line in journal.read_text().splitlines() if line.strip()} \
        if journal.is_file() else set()
    return [d.name for d in caches[0].iterdir() if d.is_dir() and d.name not in done and any(d.glob("*.jpg"))]


def test_the_scheduler_gives_up_on_an_input_that_kills_every_worker(monkeypatch):
    """After `allowed-failures` deaths the scheduler gives up on that task alone: (item, WorkersDied), the
    others complete (here handed out one at a time, as a window of one)."""
    import dask

    monkeypatch.setattr(dask_cluster, "MIN_WINDOW", 1)
    monkeypatch.setattr(dask_cluster, "WINDOW_PER_THREAD", 1)
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}), \
            dask_client(ClusterConfig(n_workers=1)) as client:
        outcomes = list(run_each(client, _square_or_die, [1, 2, 3], "test"))
    assert [item for item, _ in outcomes] == [1, 2, 3]
    outcomes = dict(outcomes)
    assert outcomes[1] == 1 and outcomes[3] == 9
    assert isinstance(outcomes[2], WorkersDied) and outcomes[2].tries == 2
    assert "died, 2 times" in str(outcomes[2])


def _square_or_die(x: int) -> int:
    if x == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return x * x


def test_local_cluster_form_reports_per_input_errors_and_resumes(face_clip, tmp_path):
    missing = tmp_path / "nothere.mp4"
    result = run_cli("extract", face_clip, missing, "--out", tmp_path / "out", "--dask-workers", "2", "--quiet")
    assert result.exit_code == 1, result.output  # as without Dask: an input that does not exist fails the run
    assert "inputs: 1 ok, 0 no face, 1 failed" in result.output
    assert f"FAILED {missing}: does not exist" in result.output
    _, manifest, _, crops = cache_of(tmp_path / "out")
    assert manifest["frame_index"].tolist() == [0, 10, 20] and set(crops) == set(manifest["crop_path"])

    again = run_cli("extract", face_clip, "--out", tmp_path / "out", "--dask-workers", "2", "--quiet")
    assert again.exit_code == 0 and "(1 reused from the cache" in again.output


# -- classify ---------------------------------------------------------------------------------------
def test_classify_video_on_a_cluster_gives_the_plain_verdicts(small_ensemble, face_clip, clips, cluster, watcher,
                                                              tmp_path):
    paths = [face_clip, clips[0], tmp_path / "nothere.mp4"]
    common = ["--ensemble", small_ensemble, "--json", "--frames", "4"]
    plain = run_cli("classify-video", *paths, *common, "--report", tmp_path / "plain")
    dask = run_cli("classify-video", *paths, *common, "--report", tmp_path / "dask",
                   "--scheduler", cluster.scheduler_address)
    assert plain.exit_code == dask.exit_code == 1  # the missing path, as without Dask
    by_path = {}
    for name, output in (("plain", plain.output), ("dask", dask.output)):
        verdicts = {}
        for verdict in json_lines(output):
            verdict.pop("timings")
            if verdict["report"]:
                assert Path(verdict["report"]).is_file()
                verdict["report"] = Path(verdict["report"]).relative_to(tmp_path / name).as_posix()
            verdicts[verdict["path"]] = verdict
        by_path[name] = verdicts
    assert set(by_path["dask"]) == {str(p) for p in paths}
    assert by_path["dask"] == by_path["plain"]
    assert [v["verdict"] for v in by_path["dask"].values()].count("ERROR") == 1
    # each worker that classified loaded the ensemble once, whatever number of files it took
    ensembles = [[k for k in keys if k[0] == "ensemble"] for keys in watcher.run(loaded_keys).values()]
    assert all(len(loaded) <= 1 for loaded in ensembles) and any(ensembles)


def test_classify_image_on_a_cluster(small_ensemble, astronaut, face_clip, cluster, tmp_path):
    """The same verdicts as without Dask, in the arithmetic the command asked for: the one `auto` does not
    pick on this machine, so workers that fell back to `auto` would score differently."""
    import cv2
    import torch

    from ensembles.ensemble import native_bfloat16

    cv2.imwrite(str(tmp_path / "photo.png"), astronaut)
    precision = "fp32" if native_bfloat16(torch.device("cpu")) else "bf16"
    args = [tmp_path / "photo.png", face_clip, "--ensemble", small_ensemble, "--json", "--precision", precision]
    plain = json_lines(run_cli("classify-image", *args).output)
    dask = run_cli("classify-image", *args, "--scheduler", cluster.scheduler_address)
    assert dask.exit_code == 1  # the video is an ERROR for classify-image, as without Dask
    verdicts = {v["path"]: v for v in json_lines(dask.output)}
    for verdict in plain:
        verdict.pop("timings")
        assert {k: v for k, v in verdicts[verdict["path"]].items() if k != "timings"} == verdict
    assert "use classify-video" in verdicts[str(face_clip)]["message"]


# -- usage errors -----------------------------------------------------------------------------------
def closed_port_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


@pytest.mark.parametrize("command", ["extract", "classify-video"])
def test_unreachable_scheduler_is_a_usage_error_within_the_timeout(command, face_clip, small_ensemble, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setattr(dask_cluster, "CONNECT_TIMEOUT_SECONDS", 2.0)
    address = closed_port_address()
    extra = ["--out", tmp_path] if command == "extract" else ["--ensemble", small_ensemble]
    started = time.monotonic()
    result = run_cli(command, face_clip, *extra, "--scheduler", address)
    assert result.exit_code == 2, result.output
    assert f"--scheduler {address}: cannot reach a Dask scheduler there within 2 s" in result.output
    assert "dask scheduler" in result.output and "--dask-workers" in result.output  # the hint
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("args, message", [
    (["--scheduler", "tcp://127.0.0.1:8786", "--dask-workers", "2"], "cannot be used together"),
    (["--scheduler", "gopher://somewhere"], "not a Dask scheduler address"),
    (["--workers", "2", "--dask-workers", "2"], "--workers 2 sets this machine's process pool"),
    (["--dask-workers", "0"], "0 is not in the range x>=1"),
])
def test_usage_errors(args, message, face_clip, tmp_path):
    result = run_cli("extract", face_clip, "--out", tmp_path, *args)
    assert result.exit_code == 2 and message in result.output, result.output
