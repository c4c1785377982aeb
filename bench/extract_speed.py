"""Benchmark 1: extraction throughput and recall against the plain approach, on the same clips.

    .venv/bin/python -m bench.extract_speed [--runs 3] [--plain-runs 1] [--copies 4]

The plain approach reads every frame with cv2.VideoCapture.read(), keeps every 10th, runs facenet-pytorch
MTCNN on each full-resolution frame one at a time (torch's default threads) and crops with a margin; its
model is loaded before the clock starts. Ours is `python cli.py extract` run as a user runs it (a fresh
process, default options, one worker process per core), so its time includes starting Python, torch and
the workers (~3-4 s here). It runs twice: on the clips once, and on a batch holding each clip --copies
times under other names, where that start-up weighs less (a dataset has thousands of clips). Recall: the
share of the plain approach's face-bearing frames in which ours finds a face too.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import pandas as pd
import torch

from bench.common import ROOT, dfdc_clips, generated_clip, median_time, percent, table
from pipeline.cache import find_cache_dir
from pipeline.crops import cut_square, square_crop_box
from pipeline.faces import FaceConfig


def plain_extract(clip: Path, mtcnn) -> dict[int, int]:
    """{sampled frame index: faces found} the plain way."""
    capture = cv2.VideoCapture(str(clip))
    found, index = {}, 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if index % 10 == 0:
            boxes, _ = mtcnn.detect(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            boxes = [] if boxes is None else boxes
            for box in boxes:
                cut_square(frame, square_crop_box(tuple(float(v) for v in box), 0.3), 224)
            found[index] = len(boxes)
        index += 1
    capture.release()
    return found


def ours_extract(clips: list[Path], options: list[str]) -> dict[str, dict[int, int]]:
    """{clip name: {sampled frame index: faces found}} from `cli.py extract` in a fresh process."""
    out = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    try:
        command = [sys.executable, str(ROOT / "cli.py"), "extract", *map(str, clips), "--out", str(out), "--quiet"]
        subprocess.run(command + options, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        cache_dir = find_cache_dir(out)
        manifest = pd.read_csv(cache_dir / "manifest.csv", dtype={"video_id": str})
        inputs = pd.read_csv(cache_dir / "inputs.csv", dtype={"video_id": str})
        result = {}
        for row in inputs.itertuples():
            faces = manifest[manifest.video_id == row.video_id].groupby("frame_index").size().to_dict()
            result[Path(row.source_path).name] = {i: faces.get(i, 0) for i in range(0, row.frame_count, 10)}
        return result
    finally:
        shutil.rmtree(out, ignore_errors=True)


def batch_of_copies(clips: list[Path], copies: int, folder: Path) -> list[Path]:
    """Each clip `copies` times under distinct names (hard links when possible): a bigger batch, same content."""
    folder.mkdir(parents=True, exist_ok=True)
    batch = []
    for k in range(copies):
        for clip in clips:
            target = folder / f"copy{k}_{clip.name}"
            if not target.exists():
                try:
                    os.link(clip, target)
                except OSError:
                    shutil.copyfile(clip, target)
            batch.append(target)
    return batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--plain-runs", type=int, default=1)
    parser.add_argument("--copies", type=int, default=4, help="Copies of each clip in the batch run.")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--detect-size", type=int, default=FaceConfig().detect_size)
    parser.add_argument("--redetect-every", type=int, default=FaceConfig().redetect_every)
    args = parser.parse_args()
    scratch = Path(tempfile.gettempdir()) / "deepfake-bench"
    clips = dfdc_clips() + [generated_clip(scratch / "gen_720p.mp4", 1280, 720, 10),
                            generated_clip(scratch / "gen_1080p.mp4", 1920, 1080, 10)]
    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(keep_all=True, device="cpu")
    rows, plain_total, ours_total, frames_total, hits_total, plain_face_frames = [], 0.0, 0.0, 0, 0, 0
    options = ["--workers", str(args.workers), "--detect-size", str(args.detect_size),
               "--redetect-every", str(args.redetect_every)]
    ours_time, ours = median_time(lambda: ours_extract(clips, options), args.runs)
    batch = batch_of_copies(clips, args.copies, scratch / "copies")
    batch_time, _ = median_time(lambda: ours_extract(batch, options), args.runs)
    for clip in clips:
        plain_time, plain = median_time(lambda: plain_extract(clip, mtcnn), args.plain_runs)
        mine = ours[clip.name]
        face_frames = [i for i, n in plain.items() if n > 0]
        hits = sum(1 for i in face_frames if mine.get(i, 0) > 0)
        rows.append([clip.name, len(plain), len(plain) / plain_time, sum(plain.values()), sum(mine.values()),
                     percent(hits, len(face_frames))])
        plain_total += plain_time
        frames_total += len(plain)
        hits_total += hits
        plain_face_frames += len(face_frames)
    ours_fps = frames_total / ours_time
    batch_fps = frames_total * args.copies / batch_time
    plain_fps = frames_total / plain_total
    print(f"plain: torch threads {torch.get_num_threads()}, {args.plain_runs} run(s); ours: detect size "
          f"{args.detect_size}, redetect every {args.redetect_every}, workers {args.workers or 'one per core'}, "
          f"median of {args.runs} runs")
    print(table(rows, ["clip", "sampled frames", "plain frames/s", "plain faces", "our faces", "recall %"]))
    print(f"\nplain: {plain_fps:.2f} sampled frames/s ({plain_total:.1f} s for {frames_total} frames)")
    print(f"ours, the {len(clips)} clips: {ours_fps:.2f} frames/s ({ours_time:.1f} s with start-up), "
          f"speed ratio {ours_fps / plain_fps:.1f}x")
    print(f"ours, {len(batch)} inputs ({args.copies} copies of each): {batch_fps:.2f} frames/s ({batch_time:.1f} s), "
          f"speed ratio {batch_fps / plain_fps:.1f}x")
    print(f"recall {percent(hits_total, plain_face_frames):.1f}% of {plain_face_frames} face-bearing frames")


if __name__ == "__main__":
    main()
