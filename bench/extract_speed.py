"""Benchmark 1: extraction throughput and recall against the plain approach, on the same clips.

    .venv/bin/python bench/extract_speed.py [--runs 3] [--plain-runs 1]

The plain approach reads every frame with cv2.VideoCapture.read(), keeps every 10th, runs facenet-pytorch
MTCNN on each full-resolution frame one at a time (torch's default threads) and crops with a margin.
Ours is `extract` as a user runs it (default options, one worker process per core). Recall: the share of
the plain approach's face-bearing frames in which ours finds a face too.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import pandas as pd
import torch

from bench.common import dfdc_clips, generated_clip, median_time, percent, table
from pipeline.crops import cut_square, square_crop_box
from pipeline.extract import ExtractConfig, extract
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


def ours_extract(clips: list[Path], workers: int, faces: FaceConfig) -> dict[str, dict[int, int]]:
    out = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    try:
        summary = extract(clips, ExtractConfig(out_dir=out, workers=workers, faces=faces), progress=False)
        manifest = pd.read_csv(summary.cache_dir / "manifest.csv")
        inputs = pd.read_csv(summary.cache_dir / "inputs.csv")
        result = {}
        for row in inputs.itertuples():
            faces = manifest[manifest.video_id == row.video_id].groupby("frame_index").size().to_dict()
            result[Path(row.source_path).name] = {i: faces.get(i, 0) for i in range(0, row.frame_count, 10)}
        return result
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--plain-runs", type=int, default=1)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--detect-size", type=int, default=FaceConfig().detect_size)
    args = parser.parse_args()
    scratch = Path(tempfile.gettempdir()) / "deepfake-bench"
    clips = dfdc_clips() + [generated_clip(scratch / "gen_720p.mp4", 1280, 720, 10),
                            generated_clip(scratch / "gen_1080p.mp4", 1920, 1080, 10)]
    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(keep_all=True, device="cpu")
    rows, plain_total, ours_total, frames_total, hits_total, plain_face_frames = [], 0.0, 0.0, 0, 0, 0
    faces = FaceConfig(detect_size=args.detect_size)
    ours_time, ours = median_time(lambda: ours_extract(clips, args.workers, faces), args.runs)
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
    plain_fps = frames_total / plain_total
    print(f"plain: torch threads {torch.get_num_threads()}, {args.plain_runs} run(s); ours: detect size "
          f"{args.detect_size}, workers {args.workers or 'one per core'}, median of {args.runs} runs")
    print(table(rows, ["clip", "sampled frames", "plain frames/s", "plain faces", "our faces", "recall %"]))
    print(f"\nall clips: plain {plain_fps:.2f} sampled frames/s ({plain_total:.1f} s), ours {ours_fps:.2f} frames/s "
          f"({ours_time:.1f} s, median of {args.runs}); speed ratio {ours_fps / plain_fps:.1f}x; "
          f"recall {percent(hits_total, plain_face_frames):.1f}% of {plain_face_frames} face-bearing frames")


if __name__ == "__main__":
    main()
