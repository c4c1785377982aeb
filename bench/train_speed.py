"""Benchmark 4: training throughput (images/s) of each registered net on this machine, per precision.

    .venv/bin/python -m bench.train_speed [--batch-size 64] [--steps 20]

Forward + backward + AdamW step on channels-last batches at each net's input size (random pixels: throughput
does not depend on content), as `train` runs them, after 3 warm-up steps; median step time of --steps steps.
Also a ResNet-18-sized ResNet (depths 2,2,2,2, widths 64-512, 128 px). bf16 is `train --precision bf16`
(bfloat16 autocast); the last column is its speed-up over float32, measured in the same process.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench.common import table
from models.registry import create_model, model_names

RESNET18 = {"input_size": 128, "depths": [2, 2, 2, 2], "widths": [64, 128, 256, 512]}


def images_per_second(model: torch.nn.Module, batch_size: int, steps: int, dtype: torch.dtype | None) -> float:
    """Median training throughput of `model` with autocast in `dtype` (None: float32)."""
    model = model.train().to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images = torch.randn(batch_size, 3, model.input_size, model.input_size).contiguous(
        memory_format=torch.channels_last)
    labels = torch.randint(0, 2, (batch_size,)).float()
    times = []
    for step in range(steps + 3):
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            logits = model(images)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step >= 3:
            times.append(time.perf_counter() - started)
    return batch_size / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    nets = [(name, name, {}) for name in model_names()] + [("resnet-18", "resnet", RESNET18)]
    rows = []
    for label, name, kwargs in nets:
        torch.manual_seed(0)
        fp32 = images_per_second(create_model(name, **kwargs), args.batch_size, args.steps, None)
        torch.manual_seed(0)
        bf16 = images_per_second(create_model(name, **kwargs), args.batch_size, args.steps, torch.bfloat16)
        model = create_model(name, **kwargs)
        parameters = sum(p.numel() for p in model.parameters())
        rows.append([label, model.input_size, f"{parameters / 1e6:.2f} M", round(fp32), round(bf16),
                     f"{bf16 / fp32:.2f}x"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}")
    print(table(rows, ["net", "input px", "parameters", "fp32 images/s", "bf16 images/s", "bf16 speed-up"]))


if __name__ == "__main__":
    main()
