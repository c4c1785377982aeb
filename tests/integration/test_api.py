"""The Python API (`ensembles.Detector`): files, folders, pictures and frames in memory, the same verdicts the
CLI prints."""
from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cli import main
from ensembles import Detector
from ensembles.verdict import VideoVerdict
from pipeline.media import MediaReader
from pipeline.sampling import SamplingConfig


@pytest.fixture(scope="module")
def detector(small_ensemble) -> Detector:
    return Detector(small_ensemble, device="cpu")


def without_timings(verdict: dict) -> dict:
    return {k: v for k, v in verdict.items() if k != "timings"}


def test_a_file_gets_the_verdict_the_cli_prints(detector, small_ensemble, face_clip):
    verdict = detector(face_clip)
    assert isinstance(verdict, VideoVerdict) and verdict.verdict in ("REAL", "FAKE") and verdict.n_faces == 3
    printed = CliRunner().invoke(main, ["classify-video", str(face_clip), "--ensemble", str(small_ensemble), "--json"])
    assert without_timings(json.loads(printed.output)) == without_timings(json.loads(verdict.to_json()))
    assert verdict.summary_line().split()[:2] == [verdict.verdict, str(face_clip)]


def test_a_folder_and_a_list_give_a_verdict_per_file_and_bad_files_give_errors(detector, face_clip, tmp_path):
    shutil.copy(face_clip, tmp_path / "a.mp4")
    (tmp_path / "b.mp4").write_text("not a video")
    verdicts = detector(tmp_path)
    assert [(v.file_name, v.verdict in ("REAL", "FAKE")) for v in verdicts] == [("a.mp4", True), ("b.mp4", False)]
    assert verdicts[1].verdict == "ERROR" and "not a readable video" in verdicts[1].message
    assert [v.file_name for v in detector([tmp_path / "a.mp4", tmp_path / "missing.mp4"])] == ["missing.mp4", "a.mp4"]


def test_a_picture_in_memory_as_array_or_pil_image(detector, astronaut, tmp_path):
    from_array = detector(astronaut)
    cv2.imwrite(str(tmp_path / "astronaut.png"), astronaut)
    from_file = detector(tmp_path / "astronaut.png")
    from_pil = detector.classify_image(Image.fromarray(cv2.cvtColor(astronaut, cv2.COLOR_BGR2RGB)))
    for verdict in (from_array, from_pil):
        assert verdict.media_type == "image" and verdict.n_faces == 1
        assert verdict.p_fake == pytest.approx(from_file.p_fake, abs=1e-4)  # PNG is lossless: the same pixels


def test_frames_in_memory_are_sampled_and_timed_as_a_file(detector, face_clip):
    with MediaReader(face_clip) as reader:
        frames = [frame.image for frame in reader.frames(SamplingConfig(every=1))]
    in_memory, from_file = detector(frames, fps=15), detector(face_clip)
    assert in_memory.media_type == "video" and in_memory.duration == pytest.approx(2.0)
    assert [(f.frame_index, f.timestamp) for f in in_memory.faces] == [(f.frame_index, f.timestamp)
                                                                       for f in from_file.faces]
    assert in_memory.p_fake == pytest.approx(from_file.p_fake, abs=1e-4)


@pytest.mark.parametrize("source, kwargs, message", [
    ([np.zeros((10, 10, 3), np.uint8)] * 3, {}, "give the frames' rate (fps)"),
    ([np.zeros((10, 10, 3), np.uint8), np.zeros((20, 10, 3), np.uint8)], {"fps": 25}, "differ in size"),
    (np.zeros((10, 10, 3), np.float32), {}, "expected uint8 pixels"),
    (np.zeros((10, 10, 5), np.uint8), {}, "expected (H, W, 3) BGR"),
])
def test_bad_pictures_give_error_verdicts_that_say_why(detector, source, kwargs, message):
    verdict = detector(source, **kwargs)
    assert verdict.verdict == "ERROR" and message in verdict.message


def test_options_reach_the_face_search(small_ensemble, face_clip):
    sparse = Detector(small_ensemble, device="cpu", every=15, threshold=0.01)
    verdict = sparse(face_clip)
    assert [f.frame_index for f in verdict.faces] == [0, 15] and verdict.threshold == 0.01
    assert verdict.verdict == "FAKE"
