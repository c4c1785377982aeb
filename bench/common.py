"""Helpers shared by the benchmark scripts: generated H.264 test clips, timing, process-tree memory."""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"


def generated_clip(path: Path, width: int, height: int, seconds: float, fps: int = 30) -> Path:
    """An H.264 clip (PyAV/libx264) of the astronaut drifting across the frame; reused if it exists."""
    import av

    from pipeline.sample import sample_frames

    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23"}
        n_frames = int(seconds * fps)
        cycle = fps * 10  # the face drifts back and forth every 10 s
        frames = list(sample_frames(cycle, width, height))
        for i in range(n_frames):
            k = i % (2 * cycle)
            frame = frames[k if k < cycle else 2 * cycle - 1 - k]
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)
    return path


def dfdc_clips() -> list[Path]:
    folder = SHARED / "dfdc_videos"
    return sorted(folder.glob("*.mp4")) if folder.is_dir() else []


def median_time(function, runs: int) -> tuple[float, object]:
    """Median wall time of `runs` calls, and the last call's result."""
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MB."""
    total, pids, seen = 0, [pid], set()
    while pids:
        current = pids.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
            pids += [int(c) for c in children]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total / 1024


def peak_memory_of(command: list[str]) -> tuple[float, float, int]:
    """(peak RSS of the whole process tree in MB, wall seconds, exit code) of running `command`."""
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0.0
    started = time.perf_counter()
    stop = threading.Event()

    def poll():
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss_mb(process.pid))
            time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    code = process.wait()
    stop.set()
    poller.join()
    return peak, time.perf_counter() - started, code


def table(rows: list[list], header: list[str]) -> str:
    cells = [header] + [[f"{c:.2f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def percent(a: float, b: float) -> float:
    return 100.0 * a / b if b else float("nan")


__all__ = ["ROOT", "SHARED", "generated_clip", "dfdc_clips", "median_time", "peak_memory_of", "table", "percent",
           "np"]
