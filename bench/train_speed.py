"""Benchmark 4: training throughput (images/s) of each registered net on this machine.

    .venv/bin/python -m bench.train_speed [--batch-size 64] [--steps 20]

Forward + backward + AdamW step on batches at each net's input size (random pixels: throughput does not
depend on content), after 3 warm-up steps; median step time of --steps steps.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench.common import table
from models.registry import create_model, model_names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    rows = []
    for name in model_names():
        model = create_model(name).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        images = torch.randn(args.batch_size, 3, model.input_size, model.input_size)
        labels = torch.randint(0, 2, (args.batch_size,)).float()
        times = []
        for step in range(args.steps + 3):
            started = time.perf_counter()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step >= 3:
                times.append(time.perf_counter() - started)
        parameters = sum(p.numel() for p in model.parameters())
        rows.append([name, model.input_size, f"{parameters / 1e6:.2f} M", args.batch_size / statistics.median(times)])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}")
    print(table(rows, ["net", "input px", "parameters", "train images/s"]))


if __name__ == "__main__":
    main()
