"""train under torchrun: two real processes with DistributedDataParallel (gloo, one thread each) on a small
real face cache (astronaut REAL/FAKE pairs through the real extract), started as a user would."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli import main
from tests.integration.test_train import RUN_FILES, astronaut_pairs, broken_copy, make_cache

ROOT = Path(__file__).resolve().parents[2]
# a plain run: no augmentation, so that the loss of the epochs' own batches falls visibly within 4 epochs
TRAIN = ["--net", "lenet", "--batch-size", "4", "--augment", "none", "--patience", "10", "--threads", "1", "--quiet"]
TIMEOUT = 300  # seconds: a hung process group fails the test instead of the session


def torchrun(*args, processes: int = 2, launcher: tuple = ("--standalone",)) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc-per-node N cli.py ...` in a subprocess, as documented."""
    command = [sys.executable, "-m", "torch.distributed.run", *launcher, "--nproc-per-node", str(processes),
               str(ROOT / "cli.py"), *map(str, args)]
    env = {key: value for key, value in os.environ.items() if key not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT)


def succeeded(process: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert process.returncode == 0, f"exit {process.returncode}\n{process.stdout}\n{process.stderr[-4000:]}"
    return process


def metrics_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def without_timings(epochs: list[dict]) -> list[dict]:
    return [{key: value for key, value in entry.items() if key != "seconds"} for entry in epochs]


@pytest.fixture(scope="module")
def faces(tmp_path_factory, astronaut) -> Path:
    """16 groups, each a REAL variation of the astronaut and a crude FAKE of it: 32 faces."""
    return make_cache(astronaut_pairs(astronaut, np.random.default_rng(3), 16, "02d"), tmp_path_factory.mktemp("ddp"))


@pytest.fixture(scope="module")
def ddp_run(faces, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A finished 4-epoch LeNet run on two processes."""
    run_dir = tmp_path_factory.mktemp("runs") / "ddp"
    return run_dir, succeeded(torchrun("train", *TRAIN, "--faces", faces, "--out", run_dir, "--epochs", 4))


def test_two_processes_write_one_run(ddp_run):
    run_dir, process = ddp_run
    assert RUN_FILES <= {p.name for p in run_dir.iterdir()}
    lines = process.stdout.splitlines()
    assert [line.split(":")[0] for line in lines if line.startswith("epoch ")] == [f"epoch {k}/4" for k in range(1, 5)]
    assert sum(line.startswith("run ") for line in lines) == 1  # rank 0 reports; rank 1 prints nothing
    metrics = metrics_of(run_dir)
    assert "2 processes (torchrun, gloo), 4 faces each a step" in metrics["notes"]
    last = torch.load(run_dir / "checkpoint_last.pt", weights_only=True)
    assert last["epoch"] == 4 and "module." not in "".join(last["model"])  # the net itself, not the DDP wrapper
    assert torch.load(run_dir / "checkpoint_best.pt", weights_only=True)["net"] == "lenet"


def test_metrics_are_over_the_predictions_of_both_processes(ddp_run):
    run_dir, _ = ddp_run
    metrics = metrics_of(run_dir)
    sizes = metrics["split_sizes"]
    assert sizes["val"]["faces"] > 2 and sizes["test"]["faces"] > 2
    for epoch in metrics["epochs"]:
        assert epoch["val"]["frame"]["n"] == sizes["val"]["faces"]  # gathered, not rank 0's half
        assert epoch["val"]["video"]["n"] == sizes["val"]["videos"]
        assert epoch["train"]["n"] == sizes["train"]["faces"] // 8 * 8  # both processes' batches, whole steps of 2 x 4
    assert metrics["test"]["frame"]["n"] == sizes["test"]["faces"]


def test_the_training_loss_falls(ddp_run):
    losses = [epoch["train"]["log_loss"] for epoch in metrics_of(ddp_run[0])["epochs"]]
    assert losses[-1] < losses[0] - 0.1, losses
    val = [epoch["val"]["frame"]["log_loss"] for epoch in metrics_of(ddp_run[0])["epochs"]]
    assert val[-1] < val[0], val


def test_resume_under_torchrun_continues_from_the_saved_epoch(ddp_run, tmp_path):
    run_dir = tmp_path / "continued"
    shutil.copytree(ddp_run[0], run_dir)
    before = metrics_of(run_dir)["epochs"]
    process = succeeded(torchrun("train", "--resume", "--out", run_dir, "--epochs", 6, "--threads", 1, "--quiet"))
    lines = process.stdout.splitlines()
    assert lines[0] == f"resuming {run_dir} after epoch 4" and lines[1].startswith("epoch 5/6:")
    assert sum(line.startswith("resuming") for line in lines) == 1
    after = metrics_of(run_dir)["epochs"]
    assert [e["epoch"] for e in after] == [1, 2, 3, 4, 5, 6] and after[:4] == before
    assert torch.load(run_dir / "checkpoint_last.pt", weights_only=True)["epoch"] == 6
    assert after[-1]["train"]["log_loss"] < before[-1]["train"]["log_loss"]


def test_one_process_under_torchrun_is_the_plain_run(faces, tmp_path):
    """WORLD_SIZE 1: no process group, the very same run as without torchrun."""
    plain = CliRunner().invoke(main, ["train", *TRAIN, "--faces", str(faces), "--out", str(tmp_path / "plain"),
                                      "--epochs", "2"], catch_exceptions=False)
    assert plain.exit_code == 0, plain.output
    alone = succeeded(torchrun("train", *TRAIN, "--faces", faces, "--out", tmp_path / "alone", "--epochs", 2,
                               processes=1))
    assert "processes (torchrun" not in alone.stdout
    plain_metrics, alone_metrics = metrics_of(tmp_path / "plain"), metrics_of(tmp_path / "alone")
    assert without_timings(alone_metrics["epochs"]) == without_timings(plain_metrics["epochs"])
    assert alone_metrics["test"] == plain_metrics["test"] and alone_metrics["notes"] == plain_metrics["notes"]


def test_bad_input_ends_every_process_clearly(faces, tmp_path):
    broken, message = broken_copy(faces, tmp_path, "missing crop")
    process = torchrun("train", *TRAIN, "--faces", broken, "--out", tmp_path / "run", "--epochs", 2)
    assert process.returncode != 0 and message in process.stderr
    assert not (tmp_path / "run").exists()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_machines_meet_at_a_rendezvous_endpoint(faces, tmp_path):
    """--nnodes 2 with a c10d rendezvous, both "machines" on this one (the documented multi-machine command),
    with a ResNet: its BatchNorm statistics differ between the processes after training until rank 0's are
    sent, so `evaluate` of the checkpoint reproduces the validation metrics the two processes computed."""
    endpoint = f"127.0.0.1:{free_port()}"
    launcher = ("--nnodes", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", "ddp-test")
    args = ("train", *TRAIN, "--net", "resnet", "--faces", faces, "--out", tmp_path / "run", "--epochs", 1,
            "--fakes", "both")
    command = [sys.executable, "-m", "torch.distributed.run", *launcher, "--nproc-per-node", "1", str(ROOT / "cli.py"),
               *map(str, args)]
    machines = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
    outputs = [machine.communicate(timeout=TIMEOUT) for machine in machines]
    assert [machine.returncode for machine in machines] == [0, 0], outputs
    assert sum(stdout.count("epoch 1/1:") for stdout, _ in outputs) == 1
    metrics = metrics_of(tmp_path / "run")
    assert "2 processes (torchrun, gloo), 4 faces each a step" in metrics["notes"]
    epoch = metrics["epochs"][0]
    assert epoch["val"]["frame"]["n"] == metrics["split_sizes"]["val"]["faces"]
    assert epoch["val_self_blend"]["n_fake"] == epoch["val_self_blend"]["n_real"] > 0

    scored = CliRunner().invoke(main, ["evaluate", "--checkpoint", str(tmp_path / "run" / "checkpoint_best.pt"),
                                       "--faces", str(faces), "--split", "val", "--json", "--quiet", "--threads", "1"],
                                catch_exceptions=False)
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.output)["frame"]["log_loss"] == pytest.approx(epoch["val"]["frame"]["log_loss"], rel=1e-6)
