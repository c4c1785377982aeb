"""Tensors follow the device of their input or model (issue 10: every `--device cuda` path failed).

There is no GPU here, so these checks use torch's "meta" device: a tensor that has a device but no data.
Arithmetic between a meta tensor and a non-scalar CPU tensor raises, exactly as CUDA and CPU tensors do,
so a tensor made on the CPU by mistake shows up without a GPU. Where meta cannot stand in (a meta
tensor has no values), the mixed-precision path runs on the CPU with the same calls CUDA uses.
"""
from __future__ import annotations

import ast
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from models import create_model
from models.data import Preprocess
from models.train import TrainConfig, restore_scaler, train_one_epoch, training_autocast
from pipeline.detectors import create_detector, cuda_expected, resolve_device
from pipeline.errors import UsageError
from pipeline.extract import CUDA_DEFAULT_WORKERS, resolve_workers
from pipeline.mtcnn import keep_where, known_candidates, no_candidates

ROOT = Path(__file__).resolve().parents[2]
META = torch.device("meta")


def test_meta_tensors_catch_a_device_mix():
    """The premise of this file: mixing a meta tensor with a CPU one raises, as CUDA with CPU does."""
    with pytest.raises(RuntimeError, match="device"):
        torch.zeros(2, 3, 4, 4, device=META) - torch.zeros(3, 1, 1)


# -- models ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_normalize_makes_mean_and_std_on_the_images_device(dtype):
    images = torch.zeros(2, 3, 8, 8, dtype=dtype, device=META)
    out = Preprocess(8).normalize(images)
    assert out.device == META and out.dtype == torch.float32 and out.shape == (2, 3, 8, 8)


def test_normalize_values_are_unchanged_on_the_cpu():
    preprocess = Preprocess(2)
    images = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    expected = [(1.0 - m) / s for m, s in zip(preprocess.mean, preprocess.std)]
    assert preprocess.normalize(images)[0, :, 0, 0].tolist() == pytest.approx(expected)


def test_inference_batch_is_built_on_the_scoring_device(astronaut):
    """What `Ensemble.score_crops` does: crops -> batch on the model's device -> logits, all on that device."""
    model = create_model("lenet").to(META)
    batch = Preprocess(model.input_size)([astronaut, astronaut[:, ::-1]], device=META)
    assert batch.device == META and batch.shape == (2, 3, 64, 64)
    assert model(batch).device == META
    assert Preprocess(model.input_size)([astronaut]).device.type == "cpu"  # the default stays the CPU


def test_training_step_with_mixed_precision_and_loss_scaling():
    """The CUDA branch of `train_one_epoch` (autocast float16 + GradScaler), run on the CPU."""
    torch.manual_seed(0)
    model = create_model("lenet").to(memory_format=torch.channels_last)
    images = torch.randint(0, 256, (8, 3, 64, 64), dtype=torch.uint8)
    targets = torch.tensor([0.0, 1.0] * 4)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, targets), batch_size=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    scaler = torch.amp.GradScaler("cpu", enabled=True, init_scale=2.0**8)
    before = [p.detach().clone() for p in model.parameters()]
    metrics = train_one_epoch(model, torch.nn.BCEWithLogitsLoss(), optimizer, scheduler, loader,
                              Preprocess(64), torch.device("cpu"), scaler, epoch=1, progress=False,
                              autocast_dtype=torch.float16)
    assert np.isfinite(metrics["log_loss"]) and metrics["n"] == 8
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the optimizer stepped
    assert scaler.state_dict()["scale"] > 0


def test_autocast_type_of_each_precision():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert training_autocast("auto", cuda) == torch.float16  # with loss scaling, as before --precision
    assert training_autocast("auto", cpu) is None  # float32: CPU recipes train exactly as they always did
    assert training_autocast(None, cuda) == torch.float16  # a config not yet resolved by a run means auto
    assert training_autocast("bf16", cpu) == training_autocast("bf16", cuda) == torch.bfloat16
    assert training_autocast("fp32", cuda) is None
    with pytest.raises(UsageError, match="--precision 'half'"):
        TrainConfig(net="lenet", precision="half")


@pytest.mark.parametrize("dtype", [torch.bfloat16, None])
def test_training_step_in_bfloat16_on_the_cpu(dtype):
    """--precision bf16: the convolutions compute in bfloat16, the weights and their updates stay float32."""
    torch.manual_seed(0)
    model = create_model("lenet").to(memory_format=torch.channels_last)
    computed = []
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    first_conv.register_forward_hook(lambda module, args, output: computed.append(output.dtype))
    images = torch.randint(0, 256, (8, 3, 64, 64), dtype=torch.uint8)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(images, torch.tensor([0.0, 1.0] * 4)), batch_size=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    before = [p.detach().clone() for p in model.parameters()]
    metrics = train_one_epoch(model, torch.nn.BCEWithLogitsLoss(), optimizer, scheduler, loader, Preprocess(64),
                              torch.device("cpu"), torch.amp.GradScaler("cpu", enabled=False), epoch=1,
                              progress=False, autocast_dtype=dtype)
    assert computed == [dtype or torch.float32] * 2  # two batches
    assert np.isfinite(metrics["log_loss"]) and metrics["n"] == 8
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_a_cpu_run_resumes_with_loss_scaling_and_back():
    """A run saved on a CPU (disabled scaler: empty state) resumed on CUDA (enabled), and the reverse."""
    enabled = torch.amp.GradScaler("cpu", enabled=True, init_scale=1024.0)
    restore_scaler(enabled, torch.amp.GradScaler("cpu", enabled=False).state_dict())  # {}: a fresh scale
    assert enabled.get_scale() == 1024.0
    saved = torch.amp.GradScaler("cpu", enabled=True, init_scale=64.0).state_dict()
    restore_scaler(enabled, saved)
    assert enabled.get_scale() == 64.0
    restore_scaler(torch.amp.GradScaler("cpu", enabled=False), saved)  # ignored, no error


# -- the MTCNN cascade's candidate tensors --------------------------------------------------------
def test_refined_candidates_are_made_on_the_cascades_device():
    boxes, image_inds = known_candidates(np.array([[10, 20, 50, 40], [0, 0, 8, 8]], np.float32), META)
    assert boxes.device == META and image_inds.device == META
    assert boxes.shape == (2, 5) and image_inds.shape == (2,) and image_inds.dtype == torch.long


def test_refined_candidates_are_squares_around_the_boxes():
    boxes, image_inds = known_candidates(np.array([[10, 20, 50, 40]], np.float32), "cpu")
    assert boxes.tolist() == [[10.0, 10.0, 50.0, 50.0, 0.0]]  # 40 x 20 -> 40 x 40 about the same centre
    assert image_inds.tolist() == [0]


def test_no_candidates_on_the_cascades_device():
    boxes, image_inds = no_candidates(META)
    assert (boxes.device, image_inds.device) == (META, META)
    assert boxes.shape == (0, 5) and image_inds.shape == (0,)


def test_valid_rows_are_selected_on_the_tensors_device():
    boxes, image_inds = known_candidates(np.zeros((3, 4), np.float32), META)
    kept = keep_where(np.array([True, False, True]), boxes, image_inds)
    assert [t.device for t in kept] == [META, META] and [tuple(t.shape) for t in kept] == [(2, 5), (2,)]
    boxes, image_inds = known_candidates(np.arange(12, dtype=np.float32).reshape(3, 4), "cpu")
    kept_boxes, kept_inds = keep_where(np.array([False, True, False]), boxes, image_inds)
    assert kept_boxes.tolist() == boxes[1:2].tolist() and kept_inds.tolist() == [0]


def test_every_tensor_of_the_cascade_is_made_with_a_device():
    """Source check of pipeline/mtcnn.py: factories name `device=`, numpy arrays are moved with `.to(...)`."""
    factories = {"zeros", "ones", "empty", "full", "tensor", "as_tensor", "arange"}
    tree = ast.parse((ROOT / "pipeline" / "mtcnn.py").read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    offenders = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"):
            continue
        if node.func.attr in factories and not any(k.arg == "device" for k in node.keywords):
            offenders.append(f"line {node.lineno}: torch.{node.func.attr} without device=")
        if node.func.attr == "from_numpy":
            moved = parents.get(node)
            if not (isinstance(moved, ast.Attribute) and moved.attr == "to"):
                offenders.append(f"line {node.lineno}: torch.from_numpy not followed by .to(device)")
    assert offenders == []


# -- choosing and validating devices --------------------------------------------------------------
def test_unknown_device_names_are_usage_errors():
    with pytest.raises(UsageError, match="not a torch device"):
        resolve_device("gpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given when no CUDA device exists")
def test_cuda_without_a_gpu_is_a_usage_error(small_ensemble):
    from ensembles.ensemble import Ensemble

    with pytest.raises(UsageError, match="no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(UsageError, match="no CUDA device"):
        create_detector("mtcnn", device="cuda")
    with pytest.raises(UsageError, match="no CUDA device"):
        Ensemble.load(small_ensemble, device="cuda")


def test_cuda_workers_default_to_a_few_processes():
    cores = os.cpu_count() or 1
    assert resolve_workers(0, 100, "cpu") == cores
    assert resolve_workers(0, 100, "cuda") == min(cores, CUDA_DEFAULT_WORKERS)
    assert resolve_workers(0, 100, "cuda:1") == min(cores, CUDA_DEFAULT_WORKERS)
    assert resolve_workers(7, 100, "cuda") == 7  # asked for: given
    assert resolve_workers(0, 1, "cuda") == 1


def test_cuda_is_expected_from_the_device_name_without_initialising_it():
    assert cuda_expected("cuda") and cuda_expected("cuda:0")
    assert not cuda_expected("cpu")
    assert cuda_expected(None) == torch.cuda.is_available()  # torch is imported here: it answers
    assert not torch.cuda.is_initialized()
