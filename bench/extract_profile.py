"""Where extraction time goes: decoding, full detection, re-finding and the rest, in one process and thread.

    .venv/bin/python -m bench.extract_profile

Runs the extract stage's per-input function sequentially on the benchmark clips (no decoder thread, so
the parts can be told apart) with full detection on every sampled frame and with the default tracking,
and times the start-up of a worker (importing torch and facenet-pytorch in a fresh process).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import torch

import pipeline.faces
from bench.common import dfdc_clips, generated_clip
from pipeline.extract import InputJob, process_input
from pipeline.faces import FaceConfig, FaceExtractor
from pipeline.labels import LabelResolver
from pipeline.media import MediaReader


class TimedDetector:
    """The real detector, adding up the seconds spent in its full and re-finding paths."""

    def __init__(self, detector):
        self.inner, self.seconds = detector, {"detect": 0.0, "refine": 0.0}
        self.name, self.default_score_threshold = detector.name, detector.default_score_threshold

    def _timed(self, path: str, *args):
        started = time.perf_counter()
        try:
            return getattr(self.inner, path)(*args)
        finally:
            self.seconds[path] += time.perf_counter() - started

    def detect(self, frames_rgb):
        return self._timed("detect", frames_rgb)

    def refine(self, frame_rgb, boxes):
        return self._timed("refine", frame_rgb, boxes)


def main() -> None:
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    pipeline.faces.prefetch = lambda frames, depth: frames  # no decoder thread: the parts run one after another
    scratch = Path(tempfile.gettempdir()) / "deepfake-bench"
    clips = dfdc_clips() + [generated_clip(scratch / "gen_720p.mp4", 1280, 720, 10),
                            generated_clip(scratch / "gen_1080p.mp4", 1920, 1080, 10)]
    started = time.perf_counter()
    frames = 0
    for clip in clips:
        with MediaReader(clip) as reader:
            frames += sum(1 for _ in reader.frames(FaceConfig().sampling))
    decode = time.perf_counter() - started
    print(f"{len(clips)} clips, {frames} sampled frames; decoding alone {decode:.1f} s ({decode / frames * 1000:.0f} ms/frame)")
    out = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    try:
        for redetect in (1, FaceConfig().redetect_every):
            config = FaceConfig(redetect_every=redetect)
            detector = TimedDetector(FaceExtractor(config, device="cpu").detector)
            extractor = FaceExtractor(config, detector=detector)
            started = time.perf_counter()
            for clip in clips:
                process_input(InputJob(clip.stem, clip, LabelResolver(None).resolve(clip), 0, 0), extractor, out, 95)
            total = time.perf_counter() - started
            rest = total - decode - sum(detector.seconds.values())
            print(f"redetect every {redetect}: {total:.1f} s = decoding {decode:.1f} s + full detection "
                  f"{detector.seconds['detect']:.1f} s + re-finding {detector.seconds['refine']:.1f} s + the rest "
                  f"{rest:.1f} s (shrinking, colour conversion, crops, JPEG writes; ± the noise of decoding twice)")
    finally:
        shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, facenet_pytorch"], check=True)
    print(f"a worker's imports (torch, facenet-pytorch) in a fresh process: {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
