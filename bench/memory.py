"""Benchmark 3: peak memory (RSS of the whole process tree) of extract and classify-video on long clips.

    .venv/bin/python -m bench.memory [--minutes 1 10]

Generates 1080p H.264 clips of the given lengths (cached in the temp dir), then runs `cli.py extract`
and `cli.py classify-video` on each as separate processes, polling /proc every 50 ms.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from bench.common import ROOT, generated_clip, peak_memory_of, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 10])
    parser.add_argument("--ensemble", type=Path, default=None)
    args = parser.parse_args()
    scratch = Path(tempfile.gettempdir()) / "deepfake-bench"
    rows, peaks = [], {}
    for minutes in args.minutes:
        clip = generated_clip(scratch / f"gen_1080p_{minutes:g}min.mp4", 1920, 1080, minutes * 60)
        out = Path(tempfile.mkdtemp(prefix="bench-memory-"))
        commands = {
            "extract": [sys.executable, str(ROOT / "cli.py"), "extract", str(clip), "--out", str(out), "--quiet"],
            "classify-video": [sys.executable, str(ROOT / "cli.py"), "classify-video", str(clip)]
            + (["--ensemble", str(args.ensemble)] if args.ensemble else []),
        }
        for name, command in commands.items():
            peak, seconds, code = peak_memory_of(command)
            peaks[(name, minutes)] = peak
            rows.append([name, f"{minutes:g} min", f"{clip.stat().st_size / 1e6:.0f} MB", peak, seconds, code])
        shutil.rmtree(out, ignore_errors=True)
    print(table(rows, ["command", "clip (1080p)", "file", "peak RSS MB", "seconds", "exit"]))
    if len(args.minutes) >= 2:
        short, long = min(args.minutes), max(args.minutes)
        for name in ("extract", "classify-video"):
            growth = 100 * (peaks[(name, long)] / peaks[(name, short)] - 1)
            print(f"{name}: {long:g}-min peak is {growth:+.1f}% of the {short:g}-min peak")


if __name__ == "__main__":
    main()
