"""Benchmark: extract on a local Dask cluster against the process pool, and the client's journal-write ceiling.

    .venv/bin/python -m bench.dask_extract [--runs 3] [--copies 2] [--records 2000] [--skip-extract]

1. Throughput, ratios in one run: `python cli.py extract` in a fresh process, as a user runs it (start-up
   included), on the six DFDC clips (10 s, 1080p), each --copies times under other names, default options:
   today's process pool (--workers 0: one process per core), then `--dask-workers 1` and `--dask-workers 2`,
   interleaved, median of --runs. Also per input: the workers' median `seconds` of inputs.csv (decode,
   detect, crop, write) and the CPU time of all the run's processes. The cost per clip for the model is CPU
   time, which another job on the machine does not inflate the way it inflates wall time: that of
   `--dask-workers 1` on the batch minus that on the clips once, per extra input (start-up cancels out).
2. The client, which stays the single writer: records/s through `FaceCache.record` (one journal line and one
   fsync each, snapshots every 20 s included) for records of --faces face rows each (a DFDC clip at --every
   10 gives about 30); then the same records coming back from Dask tasks that do nothing but return them
   (as_completed, gather, journal): the most inputs per second any cluster can feed this client. And what
   grows with the cache: the time of one snapshot (manifest.csv and inputs.csv rewritten) and the client's
   memory per face row, measured at --snapshot-inputs inputs and scaled to the DFDC training set.
3. The DFDC model: 119,154 clips on N machines of M cores from the measured per-clip cost, by the workers
   alone and simulated with the client's measured rates and snapshots (`simulated_run`), with what a run
   reads from and writes to the shared filesystem per second. `--skip-extract --cost-per-clip S --crop-mb M`
   redoes 2 and 3 from an earlier run's numbers.
"""
from __future__ import annotations

import argparse
import gc
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import pandas as pd

from bench.common import ROOT, dfdc_clips, median_time, table
from bench.extract_speed import batch_of_copies
from pipeline.cache import MANIFEST_COLUMNS, SNAPSHOT_EVERY_SECONDS, FaceCache, find_cache_dir

DFDC_CLIPS = 119_154  # the DFDC training set: 10-second clips, about 470 GB
DFDC_GB = 470
VARIANTS = {
    "process pool (--workers 0)": ["--workers", "0"],
    "--dask-workers 1": ["--dask-workers", "1"],
    "--dask-workers 2": ["--dask-workers", "2"],
}


def run_extract(inputs: list[Path], options: list[str]) -> tuple[int, list[float], int, float]:
    """(sampled frames, per-input worker seconds, bytes of crops written, CPU seconds of all its processes) of
    `cli.py extract` in a fresh process."""
    out = Path(tempfile.mkdtemp(prefix="bench-dask-"))
    try:
        command = [sys.executable, str(ROOT / "cli.py"), "extract", *map(str, inputs), "--out", str(out), "--quiet"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(command + options, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)  # its workers were reaped by it: counted too
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        cache_dir = find_cache_dir(out)
        status = pd.read_csv(cache_dir / "inputs.csv")
        assert (status["status"] == "ok").all(), status[["source_path", "status", "message"]]
        crop_bytes = sum(p.stat().st_size for p in cache_dir.rglob("*.jpg"))
        return int(status["n_frames"].sum()), status["seconds"].tolist(), crop_bytes, cpu
    finally:
        shutil.rmtree(out, ignore_errors=True)


# -- the client ---------------------------------------------------------------------------------------
def synthetic_entry(index: int, n_faces: int) -> dict:
    """A journal entry shaped like a DFDC clip's: the input's status record and `n_faces` manifest rows."""
    video_id = f"dfdc_train_part_{index // 2500:02d}/{index:08x}"
    record = {"video_id": video_id, "source_path": f"/shared/dfdc/{video_id}.mp4", "source_size": 3_900_000,
              "source_mtime_ns": 1_700_000_000_000_000_000 + index, "media_type": "video", "label": "FAKE",
              "group": f"{index // 5:08x}.mp4", "label_source": "metadata.json", "status": "ok", "message": "",
              "n_frames": n_faces, "n_faces": n_faces, "frame_width": 1920, "frame_height": 1080, "fps": 29.97,
              "frame_count": 300, "seconds": 2.345}
    faces = []
    for k in range(n_faces):
        row = {c: record[c] for c in MANIFEST_COLUMNS if c in record}
        row.update(frame_index=10 * k, timestamp=round(10 * k / 29.97, 4), face_index=0, x1=812.31, y1=301.77,
                   x2=1011.05, y2=540.62, score=0.99987,
                   landmarks="[[870.1, 400.2], [950.3, 398.7], [912.5, 450.1], [880.4, 490.9], [945.8, 489.3]]",
                   crop_x1=757, crop_y1=266, crop_x2=1067, crop_y2=576,
                   crop_path=f"{video_id}/f{10 * k:06d}_00.jpg", detector="mtcnn", frame_width=1920, frame_height=1080)
        faces.append(row)
    return {"input": record, "faces": faces}


def _entry_task(index: int, n_faces: int) -> dict:
    """A Dask task that only returns a record (what a worker sends back after extracting one input)."""
    return synthetic_entry(index, n_faces)


def journal_rate(n_records: int, n_faces: int) -> float:
    """Records/s through FaceCache.record alone (journal line + fsync each; snapshots every 20 s)."""
    entries = [synthetic_entry(i, n_faces) for i in range(n_records)]
    folder = Path(tempfile.mkdtemp(prefix="bench-journal-"))
    try:
        with FaceCache(folder, {"detector": "bench"}) as cache:
            started = time.perf_counter()
            for entry in entries:
                cache.record(entry)
            return n_records / (time.perf_counter() - started)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def dask_client_rate(n_records: int, n_faces: int) -> float:
    """Records/s that come back from Dask tasks (2 local workers) and are journaled: the client's ceiling."""
    from pipeline.dask_cluster import ClusterConfig, dask_client, run_each

    folder = Path(tempfile.mkdtemp(prefix="bench-journal-"))
    try:
        with dask_client(ClusterConfig(n_workers=2)) as client, FaceCache(folder, {"detector": "bench"}) as cache:
            client.run(lambda: bool(__import__("bench.dask_extract")))  # workers up, this module imported
            started = time.perf_counter()
            for _, entry in run_each(client, _entry_task, range(n_records), "bench", n_faces=n_faces):
                cache.record(entry)
            return n_records / (time.perf_counter() - started)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def snapshot_cost(n_inputs: int, n_faces: int) -> tuple[float, float]:
    """(seconds of one snapshot, client memory in bytes per face row) with `n_inputs` inputs in the cache."""
    folder = Path(tempfile.mkdtemp(prefix="bench-snapshot-"))
    try:
        gc.collect()
        tracemalloc.start()
        entries = {}
        for i in range(n_inputs):
            entry = synthetic_entry(i, n_faces)
            entries[entry["input"]["video_id"]] = entry
        held, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        with FaceCache(folder, {"detector": "bench"}) as cache:
            cache.entries = entries  # as if journaled (the journal lines are what journal_rate measures)
            seconds, _ = median_time(cache.snapshot, 1)
        return seconds, held / (n_inputs * n_faces)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def simulated_run(cores: int, per_clip: float, client_rate: float, snapshot_per_row: float, faces: int) -> float:
    """Seconds to extract the DFDC set, simulated in steps of a second: the workers produce a result per
    `per_clip` core-seconds while results not yet journaled leave them tasks in run_each's window; the client
    journals them at `client_rate`, and once 20 s (SNAPSHOT_EVERY_SECONDS) have passed since its last snapshot,
    rewrites the manifest so far (`snapshot_per_row` seconds per face row), journaling nothing meanwhile."""
    from pipeline.dask_cluster import MIN_WINDOW, WINDOW_PER_THREAD

    window, worker_rate = max(MIN_WINDOW, WINDOW_PER_THREAD * cores), cores / per_clip
    made = waiting = journaled = 0.0  # results made, made but not journaled, journaled
    snapshot_left, since_snapshot, elapsed = 0.0, 0.0, 0.0
    while journaled < DFDC_CLIPS - 0.5:  # (fractions of results per step)
        elapsed += 1
        made_now = min(worker_rate, DFDC_CLIPS - made, max(0.0, window - waiting))  # a full window stalls them
        made, waiting = made + made_now, waiting + made_now
        if snapshot_left > 0:
            snapshot_left -= 1
            continue
        taken = min(waiting, client_rate)
        waiting, journaled, since_snapshot = waiting - taken, journaled + taken, since_snapshot + 1
        if since_snapshot > SNAPSHOT_EVERY_SECONDS and taken:
            snapshot_left, since_snapshot = snapshot_per_row * journaled * faces, 0.0
    return elapsed


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--copies", type=int, default=2, help="Copies of each DFDC clip in the batch.")
    parser.add_argument("--records", type=int, default=2000, help="Records for the journal measurements.")
    parser.add_argument("--faces", type=int, default=30, help="Face rows per record (a DFDC clip at --every 10).")
    parser.add_argument("--snapshot-inputs", type=int, default=10_000)
    parser.add_argument("--skip-extract", action="store_true", help="Only the client measurements and the model.")
    parser.add_argument("--cost-per-clip", type=float, default=None,
                        help="CPU seconds per clip for the model (with --skip-extract: from an earlier run).")
    parser.add_argument("--crop-mb", type=float, default=None, help="MB of crops per clip (as --cost-per-clip).")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    per_clip = args.cost_per_clip if args.cost_per_clip is not None else float("nan")
    crop_mb = args.crop_mb if args.crop_mb is not None else float("nan")

    if not args.skip_extract:
        clips = dfdc_clips()
        if not clips:
            sys.exit("no DFDC clips in ../shared/data/dfdc_videos")
        batch = batch_of_copies(clips, args.copies, Path(tempfile.gettempdir()) / "deepfake-bench" / "copies")
        rows, base, frames, crop_bytes = [], None, 0, 0
        timings = {label: [] for label in VARIANTS}
        seconds = {label: [] for label in VARIANTS}
        cpu = {label: [] for label in VARIANTS}
        single_cpu = []  # --dask-workers 1 on the clips once: start-up cancels out of the difference
        for _ in range(args.runs):
            for label, options in VARIANTS.items():  # interleaved: a change of load hits every variant alike
                started = time.perf_counter()
                frames, clip_seconds, crop_bytes, cpu_seconds = run_extract(batch, options)
                timings[label].append(time.perf_counter() - started)
                seconds[label] += clip_seconds
                cpu[label].append(cpu_seconds)
            single_cpu.append(run_extract(clips, VARIANTS["--dask-workers 1"])[3])
        for label in VARIANTS:
            wall = statistics.median(timings[label])
            base = base or wall
            # the pool's workers are children of its fork server, which nobody reaps: their CPU is not seen
            cpu_per_input = statistics.median(cpu[label]) / len(batch) if "dask" in label else "not seen"
            rows.append([label, round(wall, 1), frames / wall, len(batch) / wall, base / wall,
                         statistics.median(seconds[label]), cpu_per_input])
        print(f"{len(batch)} inputs ({len(clips)} DFDC clips x {args.copies}), {frames} sampled frames, default "
              f"options, {cores} cores; median of {args.runs} interleaved runs, start-up included")
        print(table(rows, ["extract", "seconds", "sampled frames/s", "inputs/s", "ratio to the pool",
                           "worker s per input (median)", "CPU s per input (all processes)"]))
        # the CPU time an input costs once the workers are up, whatever else runs on the machine
        extra_inputs = len(batch) - len(clips)
        measured = (statistics.median(cpu["--dask-workers 1"]) - statistics.median(single_cpu)) / extra_inputs \
            if extra_inputs else statistics.median(cpu["--dask-workers 1"]) / len(batch)  # (start-up included)
        per_clip = args.cost_per_clip or measured
        crop_mb = crop_bytes / len(batch) / 1e6

    journal = journal_rate(args.records, args.faces)
    through_dask = dask_client_rate(args.records, args.faces)
    snapshot_seconds, bytes_per_row = snapshot_cost(args.snapshot_inputs, args.faces)
    rows_now = args.snapshot_inputs * args.faces
    print(f"\nclient, records of {args.faces} face rows: FaceCache.record {journal:.0f} records/s; from Dask tasks "
          f"(2 local workers) and journaled {through_dask:.0f} records/s")
    print(f"snapshot at {args.snapshot_inputs} inputs ({rows_now} face rows): {snapshot_seconds:.2f} s; client "
          f"memory {bytes_per_row:.0f} bytes per face row")

    # -- the DFDC model --------------------------------------------------------------------------------
    dfdc_rows = DFDC_CLIPS * args.faces
    snapshot_at_dfdc = snapshot_seconds * dfdc_rows / rows_now
    # the cache snapshots after 20 s of journaling: near the end each snapshot takes snapshot_at_dfdc
    client_rate = min(journal, through_dask)
    late_ceiling = client_rate * SNAPSHOT_EVERY_SECONDS / (SNAPSHOT_EVERY_SECONDS + snapshot_at_dfdc)
    print(f"\ncost per clip: {per_clip:.2f} CPU seconds (--dask-workers 1: CPU of the batch minus CPU of the clips "
          f"once, per extra input); crops written: {crop_mb:.2f} MB per clip")
    print(f"at the DFDC scale ({DFDC_CLIPS} clips, ~{dfdc_rows / 1e6:.1f} M face rows): one snapshot "
          f"~{snapshot_at_dfdc:.0f} s, client memory ~{bytes_per_row * dfdc_rows / 2**30:.1f} GiB; the client takes "
          f"{client_rate:.0f} inputs/s at the start and ~{late_ceiling:.0f} inputs/s near the end (a snapshot of "
          f"~{snapshot_at_dfdc:.0f} s after every {SNAPSHOT_EVERY_SECONDS:.0f} s)")
    model = []
    for machines, machine_cores in [(1, 2), (1, 16), (4, 16), (16, 16), (64, 16), (256, 16)]:
        total_cores = machines * machine_cores
        compute = DFDC_CLIPS * per_clip / total_cores
        needed_rate = DFDC_CLIPS / compute if compute else float("inf")
        if needed_rate > client_rate:
            limit = "the client, all along"
        elif needed_rate > late_ceiling:
            limit = "the client's snapshots, late in the run"
        else:
            limit = "the workers: decode + detect"
        with_client = simulated_run(total_cores, per_clip, client_rate, snapshot_seconds / rows_now, args.faces)
        model.append([f"{machines} x {machine_cores}", total_cores, hours(compute), hours(with_client),
                      needed_rate, DFDC_GB * 1000 / compute, DFDC_CLIPS * crop_mb / compute, limit])
    print(table(model, ["machines x cores", "cores", "time, workers alone", "time, client included",
                        "inputs/s to journal", "MB/s read", "MB/s of crops written", "limit"]))


if __name__ == "__main__":
    main()
