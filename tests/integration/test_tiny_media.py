"""Tiny media and detector failures never kill the process (issue 10, "every path survives").

A 16x16 video made `classify-video` segfault in 5 runs of 6: MTCNN raised on frames under 20 px, and the
error path closed the video while the background decoding thread was still reading it. Everything here
runs the real CLI (or the real extract) in a fresh process, several times where the crash was
intermittent, and checks the exit status: a crash shows as a negative return code (-11 for SIGSEGV).
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.faces import FaceConfig, FaceExtractor
from pipeline.sample import sample_frames, write_sample_clip
from tests.conftest import ROOT, make_small_ensemble, write_video

RUNS = 4  # repeated runs of the commands whose crash was intermittent
TIMEOUT = 300  # a hang fails the test instead of hanging the suite


def run(*args: object, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=TIMEOUT)


def json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def statuses(cache_root: Path) -> dict[str, tuple[str, str]]:
    """input file name -> (status, message) from the single cache under `cache_root`."""
    [inputs] = cache_root.glob("*/inputs.csv")
    with open(inputs, newline="") as handle:
        return {Path(r["source_path"]).name: (r["status"], r["message"]) for r in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A 16x16 video of a real face (3 s, 15 fps) and 1x1 and 10x10 images of the same face."""
    folder = tmp_path_factory.mktemp("tiny")
    write_video(folder / "tiny16.mp4", sample_frames(45, 16, 16))
    face = next(sample_frames(1, 64, 64))
    for side, name in ((1, "one.png"), (10, "ten.png")):
        cv2.imwrite(str(folder / name), cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA))
    return folder


# -- tiny media -----------------------------------------------------------------------------------
def test_tiny_video_is_no_face_in_every_run(tiny, small_ensemble):
    for attempt in range(RUNS):
        result = run("cli.py", "classify-video", tiny / "tiny16.mp4", "--ensemble", small_ensemble, "--json")
        assert result.returncode == 0, f"run {attempt + 1}: exit {result.returncode}\n{result.stderr[-2000:]}"
        [verdict] = json_lines(result.stdout)
        assert verdict["verdict"] == "NO_FACE" and verdict["n_frames"] == 5, verdict


def test_tiny_images_are_no_face(tiny, small_ensemble):
    result = run("cli.py", "classify-image", tiny / "one.png", tiny / "ten.png", "--ensemble", small_ensemble, "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    assert [(Path(v["path"]).name, v["verdict"]) for v in json_lines(result.stdout)] == [
        ("one.png", "NO_FACE"), ("ten.png", "NO_FACE")]


def test_extract_of_tiny_media_is_no_face_in_every_worker(tiny, tmp_path):
    result = run("cli.py", "extract", tiny, "--out", tmp_path / "faces", "--workers", "2", "--quiet")
    assert result.returncode == 0, result.stderr[-2000:]
    assert {name: status for name, (status, _) in statuses(tmp_path / "faces").items()} == {
        "tiny16.mp4": "no_face", "one.png": "no_face", "ten.png": "no_face"}


@pytest.mark.parametrize("detector", ["mtcnn", "opencv-dnn"])
@pytest.mark.parametrize("shape", [(1, 1), (10, 10), (16, 16), (19, 19), (16, 2000), (2000, 12)])
def test_detectors_find_nothing_in_tiny_frames(detector, shape):
    """Frames under MTCNN's 20 px, including ones shrunk for detection and searched again at twice the size."""
    extractor = FaceExtractor(FaceConfig(detector=detector), device="cpu")
    frames = [np.full((*shape, 3), 128, np.uint8)] * 2
    assert extractor.detect(frames) == [[], []]
    assert extractor.detect(frames, pad=0.25) == [[], []]
    if detector == "mtcnn":  # re-finding faces of the previous frame in a tiny one
        assert extractor.detector.refine(frames[0], [(0.0, 0.0, 40.0, 40.0)]) == []


# -- a detector failing in the middle of a real video ----------------------------------------------
FAILING_DETECTOR = '''
    """A real MTCNN detector that raises on its third call (fault injection), registered only here.

    Run as a script: classify-video through the CLI, or extract through the library, in this process.
    """
    import json
    import sys

    sys.path.insert(0, {root!r})

    from pipeline.detectors import MTCNNDetector, register_detector


    @register_detector("mtcnn-failing")
    class FailingOnThirdCall(MTCNNDetector):
        def __init__(self, device=None):
            super().__init__(device)
            self.calls = 0

        def _count(self):
            self.calls += 1
            if self.calls == 3:
                raise RuntimeError("injected detector failure")

        def detect(self, frames_rgb):
            self._count()
            return super().detect(frames_rgb)

        def refine(self, frame_rgb, boxes):
            self._count()
            return super().refine(frame_rgb, boxes)


    if __name__ == "__main__":
        if sys.argv[1] == "classify":
            from cli import main

            main(sys.argv[2:])
        else:  # extract: inputs..., out, workers
            from pipeline.extract import ExtractConfig, extract
            from pipeline.faces import FaceConfig
            from pipeline.sampling import SamplingConfig

            *inputs, out, workers = sys.argv[2:]
            config = ExtractConfig(faces=FaceConfig(detector="mtcnn-failing", sampling=SamplingConfig(every=2)),
                                   out_dir=out, workers=int(workers), device="cpu")
            summary = extract(inputs, config, progress=False)
            print(json.dumps({{"ok": summary.ok, "failed": summary.failed, "no_face": summary.no_face,
                              "torch_in_parent": "torch" in sys.modules}}))
'''


@pytest.fixture(scope="module")
def failing(tmp_path_factory) -> dict:
    """The fault-injection script, an ensemble that uses its detector, and a 20-second face clip."""
    folder = tmp_path_factory.mktemp("failing")
    script = folder / "failing_detector.py"
    script.write_text(textwrap.dedent(FAILING_DETECTOR.format(root=str(ROOT))))
    ensemble = make_small_ensemble(folder)
    config = json.loads(ensemble.read_text())
    config["faces"] = {**config["faces"], "detector": "mtcnn-failing", "sampling": "every2"}
    ensemble.write_text(json.dumps(config))
    clip = write_sample_clip(folder / "long.mp4", seconds=20.0, fps=15)  # decoding goes on when detection fails
    return {"script": script, "ensemble": ensemble, "clip": clip}


def test_a_detector_failure_mid_video_is_an_error_verdict_in_every_run(failing, face_clip, tmp_path):
    for attempt in range(RUNS):
        result = run(failing["script"], "classify", "classify-video", failing["clip"], "--ensemble",
                     failing["ensemble"], "--json", cwd=tmp_path)
        assert result.returncode == 1, f"run {attempt + 1}: exit {result.returncode}\n{result.stderr[-2000:]}"
        [verdict] = json_lines(result.stdout)
        assert verdict["verdict"] == "ERROR" and "injected detector failure" in verdict["message"], verdict


@pytest.mark.parametrize("workers", [1, 2])
def test_a_detector_failure_mid_video_is_an_error_record(failing, tmp_path, workers):
    """Each worker's detector fails on its third call: the clip it is on becomes an error record, the
    worker survives and goes on; with several workers the parent never imports torch (so never CUDA)."""
    clips = [failing["clip"]] + [write_sample_clip(tmp_path / f"short{i}.mp4", seconds=1.0) for i in range(2)]
    for attempt in range(2):
        out = tmp_path / f"faces{attempt}"
        result = run(failing["script"], "extract", *clips, out, workers, cwd=tmp_path)
        assert result.returncode == 0, f"run {attempt + 1}: exit {result.returncode}\n{result.stderr[-2000:]}"
        [summary] = json_lines(result.stdout)
        found = statuses(out)
        assert found["long.mp4"][0] == "error" and "injected detector failure" in found["long.mp4"][1]
        assert summary["failed"] >= 1 and summary["ok"] + summary["failed"] + summary["no_face"] == 3
        assert summary["torch_in_parent"] == (workers == 1)
