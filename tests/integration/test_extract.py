"""The extract stage end to end: real MTCNN, real videos written to temp dirs, the CLI as a user runs it."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cli import main
from pipeline.cache import load_manifest
from pipeline.extract import ExtractConfig, extract
from tests.conftest import ROOT, sample_frames, set_mp4_rotation, shared_data, write_video


def run_cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def inputs_table(out: Path) -> pd.DataFrame:
    _, cache_dir = load_manifest(out)
    return pd.read_csv(cache_dir / "inputs.csv").set_index("source_path")


def assert_consistent(out: Path) -> pd.DataFrame:
    """No duplicate rows, every row's crop on disk: the invariant a crash must never break."""
    manifest, cache_dir = load_manifest(out)
    assert not manifest.duplicated(["video_id", "frame_index", "face_index"]).any()
    assert all((cache_dir / p).is_file() for p in manifest["crop_path"])
    return manifest


def test_clip_gives_crops_and_a_manifest(face_clip, tmp_path):
    result = run_cli("extract", face_clip, "--out", tmp_path, "--workers", "1", "--quiet")
    assert result.exit_code == 0, result.output
    assert "1 ok, 0 no face, 0 failed" in result.output
    manifest = assert_consistent(tmp_path)
    assert manifest["frame_index"].tolist() == [0, 10, 20]
    assert manifest["timestamp"].tolist() == pytest.approx([0.0, 10 / 15, 20 / 15], abs=1e-3)
    row = manifest.iloc[0]
    assert (row.video_id, row.label, row.detector, row.media_type) == ("astronaut", "unknown", "mtcnn", "video")
    assert len(eval(row.landmarks)) == 5 and row.score > 0.9
    assert (row.frame_width, row.frame_height) == (640, 360)
    crop = cv2.imread(row.crop_file)
    assert crop.shape == (224, 224, 3)
    # the crop is centred on the detected face box, with the configured 30% margin
    assert row.crop_x2 - row.crop_x1 == pytest.approx(1.3 * max(row.x2 - row.x1, row.y2 - row.y1), abs=1)


def test_redetect_every_names_its_own_cache_and_one_keeps_the_older_name(face_clip, tmp_path):
    """Tracked and untracked crops never mix, and `--redetect-every 1` keeps the name that caches made
    before the option existed have (the shipped models' training cache was mtcnn-3fd855f0a0)."""
    for setting in ("1", "2"):
        assert run_cli("extract", face_clip, "--out", tmp_path, "--redetect-every", setting, "--quiet").exit_code == 0
    configs = {d.name: json.loads((d / "config.json").read_text()) for d in tmp_path.iterdir() if d.is_dir()}
    assert configs["mtcnn-3fd855f0a0"].get("redetect_every") is None and len(configs) == 2
    assert [c["redetect_every"] for name, c in configs.items() if name != "mtcnn-3fd855f0a0"] == [2]


def test_k_evenly_spaced_frames(face_clip, tmp_path):
    assert run_cli("extract", face_clip, "--out", tmp_path, "--frames", "2", "--workers", "1", "--quiet").exit_code == 0
    assert load_manifest(tmp_path)[0]["frame_index"].tolist() == [0, 29]


def test_opencv_dnn_detector_end_to_end(face_clip, tmp_path):
    result = run_cli("extract", face_clip, "--out", tmp_path, "--detector", "opencv-dnn", "--workers", "1", "--quiet")
    assert result.exit_code == 0, result.output
    manifest = assert_consistent(tmp_path)
    assert len(manifest) == 3 and set(manifest["detector"]) == {"opencv-dnn"}
    assert manifest["landmarks"].isna().all()


def test_portrait_rotation_metadata_is_honoured(tmp_path):
    stored_sideways = [np.ascontiguousarray(np.rot90(f, 1)) for f in sample_frames(10, 640, 360)]
    clip = write_video(tmp_path / "phone.mp4", stored_sideways)
    set_mp4_rotation(clip, 90)
    assert run_cli("extract", clip, "--out", tmp_path / "out", "--workers", "1", "--quiet").exit_code == 0
    manifest = load_manifest(tmp_path / "out")[0]
    assert len(manifest) == 1  # the face is only findable upright
    assert (manifest.frame_width[0], manifest.frame_height[0]) == (640, 360)


def test_image_is_a_one_frame_video(astronaut, tmp_path):
    cv2.imwrite(str(tmp_path / "portrait.jpg"), astronaut)
    assert run_cli("extract", tmp_path / "portrait.jpg", "--out", tmp_path / "out", "--quiet").exit_code == 0
    manifest = load_manifest(tmp_path / "out")[0]
    assert manifest[["frame_index", "media_type"]].values.tolist() == [[0, "image"]]


@pytest.fixture(scope="module")
def bad_input_dir(tmp_path_factory, face_clip, faceless_clip, astronaut):
    """A directory holding every kind of bad input next to good ones."""
    folder = tmp_path_factory.mktemp("mixed")
    (folder / "zero.mp4").write_bytes(b"")
    data = face_clip.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (folder / "text.mp4").write_text("this is not a video\n" * 50)
    ok, jpeg = cv2.imencode(".jpg", astronaut)
    (folder / "photo.mp4").write_bytes(jpeg.tobytes())
    os.symlink(folder / "gone.mp4", folder / "dangling.mp4")
    shutil.copy(face_clip, folder / "név with spaces ü.mp4")
    shutil.copy(faceless_clip, folder / "noface.mp4")
    uhd = [np.zeros((2160, 3840, 3), np.uint8) for _ in range(2)]
    for frame in uhd:
        frame[800:1312, 1600:2112] = astronaut
    write_video(folder / "uhd.mp4", uhd)
    (folder / "notes.txt").write_text("not media")
    locked = folder / "locked.mp4"
    shutil.copy(face_clip, locked)
    locked.chmod(0)
    yield folder
    locked.chmod(0o644)


def test_bad_inputs_are_reported_and_the_rest_processed(bad_input_dir, tmp_path):
    result = run_cli("extract", bad_input_dir, "--out", tmp_path, "--workers", "2", "--quiet")
    assert result.exit_code == 1
    status = inputs_table(tmp_path)
    by_name = {Path(p).name: row for p, row in status.iterrows()}
    expected_errors = {
        "zero.mp4": "empty file",
        "truncated.mp4": "not a readable video",
        "text.mp4": "not a readable video",
        "dangling.mp4": "file not found",
    }
    for name, message in expected_errors.items():
        assert by_name[name].status == "error", name
        assert message in by_name[name].message, (name, by_name[name].message)
        assert f"FAILED {bad_input_dir / name}" in result.output or name in result.output
    assert by_name["photo.mp4"].status == "ok" and by_name["photo.mp4"].media_type == "image"
    assert "despite the .mp4 name" in by_name["photo.mp4"].message
    assert by_name["név with spaces ü.mp4"].status == "ok" and by_name["név with spaces ü.mp4"].n_faces == 3
    assert by_name["noface.mp4"].status == "no_face"
    assert by_name["uhd.mp4"].status == "ok" and by_name["uhd.mp4"].frame_width == 3840
    if os.geteuid() != 0:  # root reads anything
        assert by_name["locked.mp4"].status == "error" and "permission denied" in by_name["locked.mp4"].message
    assert "notes.txt" in result.output and "notes.txt" not in by_name
    manifest = assert_consistent(tmp_path)
    uhd_row = manifest[manifest.video_id == "uhd"].iloc[0]
    assert 1600 < (uhd_row.x1 + uhd_row.x2) / 2 < 2112  # found at 4K, in full-resolution coordinates


def test_missing_input_alone_is_a_failure_not_a_usage_error(tmp_path):
    """A path that does not exist is a failed input of the batch (exit 1), as an unreadable file is;
    named alone, there is nothing to extract, and no cache is made (tests/integration/test_extract_robustness.py
    has the missing path among good ones)."""
    result = run_cli("extract", tmp_path / "does-not-exist", "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert f"{tmp_path / 'does-not-exist'} does not exist" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args", [["--every", "0"], ["--every", "5", "--frames", "3"], ["--detector", "haar"],
                                  ["--redetect-every", "0"]])
def test_bad_options_are_usage_errors(face_clip, tmp_path, args):
    result = run_cli("extract", face_clip, "--out", tmp_path, *args)
    assert result.exit_code == 2


def test_rerun_reuses_the_cache_and_redoes_changed_files(face_clip, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("a.mp4", "b.mp4"):
        shutil.copy(face_clip, clips / name)
    config = ExtractConfig(out_dir=tmp_path / "out", workers=1)
    first = extract([clips], config, progress=False)
    crop = first.cache_dir / "a" / "f000000_00.jpg"
    stamp = crop.stat().st_mtime_ns
    second = extract([clips], config, progress=False)
    assert (second.cached, second.ok, second.faces) == (2, 2, 6)
    assert crop.stat().st_mtime_ns == stamp  # not rewritten
    os.utime(clips / "b.mp4", ns=(time.time_ns(), time.time_ns()))
    third = extract([clips], config, progress=False)
    assert third.cached == 1 and third.ok == 2
    other = extract([clips], ExtractConfig(out_dir=tmp_path / "out", workers=1, faces=config.faces.__class__(margin=0.5)),
                    progress=False)
    assert other.cache_dir != first.cache_dir and other.cached == 0
    assert len(load_manifest(first.cache_dir)[0]) == len(load_manifest(other.cache_dir)[0]) == 6


def test_same_name_from_two_folders_gets_two_ids(face_clip, tmp_path):
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        shutil.copy(face_clip, tmp_path / folder / "clip.mp4")
    extract([tmp_path / "x"], ExtractConfig(out_dir=tmp_path / "out", workers=1), progress=False)
    extract([tmp_path / "y"], ExtractConfig(out_dir=tmp_path / "out", workers=1), progress=False)
    manifest = assert_consistent(tmp_path / "out")
    assert manifest["video_id"].nunique() == 2 and manifest["source_path"].nunique() == 2


def test_output_is_identical_whatever_the_number_of_workers(face_clip, faceless_clip, astronaut, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    shutil.copy(face_clip, clips / "one.mp4")
    shutil.copy(faceless_clip, clips / "two.mp4")
    write_video(clips / "three.mp4", sample_frames(25, 480, 320, face=cv2.flip(astronaut, 1)))
    tables = []
    for workers in (1, 2):
        summary = extract([clips], ExtractConfig(out_dir=tmp_path / f"w{workers}", workers=workers), progress=False)
        manifest = pd.read_csv(summary.cache_dir / "manifest.csv").drop(columns=["source_mtime_ns"])
        crops = [cv2.imread(str(summary.cache_dir / p)) for p in manifest["crop_path"]]
        tables.append((manifest, crops))
    pd.testing.assert_frame_equal(tables[0][0], tables[1][0])
    assert all(np.array_equal(a, b) for a, b in zip(tables[0][1], tables[1][1]))


def test_kill_minus_nine_then_rerun_leaves_a_consistent_cache(face_clip, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(12):
        shutil.copy(face_clip, clips / f"clip{i:02d}.mp4")
    out = tmp_path / "out"
    command = [sys.executable, str(ROOT / "cli.py"), "extract", str(clips), "--out", str(out), "--workers", "1", "--quiet"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    journal = None
    while time.monotonic() < deadline:
        journals = list(out.glob("*/journal.jsonl"))
        if journals and journals[0].read_text().count("\n") >= 3:
            journal = journals[0]
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert journal is not None, "extract made no progress before the deadline"
    assert_consistent(out)  # the snapshot on disk right after the kill is already consistent
    rerun = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert "12 ok" in rerun.stdout
    manifest = assert_consistent(out)
    assert manifest.groupby("video_id").size().to_dict() == {f"clip{i:02d}": 3 for i in range(12)}
    assert not list(out.rglob(".*.tmp*"))


def test_dfdc_clips_get_faces_and_metadata_labels(tmp_path):
    videos = shared_data("dfdc_videos")
    result = run_cli("extract", videos, "--out", tmp_path, "--quiet")
    assert result.exit_code == 0, result.output
    status = inputs_table(tmp_path)
    assert len(status) == 6 and set(status["status"]) == {"ok"}
    assert (status["n_faces"] > 10).all()
    labels = {Path(p).stem: label for p, label in status["label"].items()}
    assert labels["lynaeydofd"] == "REAL" and sorted(labels.values()).count("FAKE") == 5
    portrait = status.loc[os.path.abspath(videos / "brtujopkby.mp4")]
    assert (portrait.frame_width, portrait.frame_height) == (1080, 1920)
    manifest = assert_consistent(tmp_path)
    assert set(manifest.loc[manifest.video_id == "brtujopkby", "group"]) == {"gnmmhlbzge.mp4"}


def test_crowd_clip_has_several_faces_per_frame(tmp_path):
    crowd = shared_data("multi_face", "crowd.mp4")
    summary = extract([crowd], ExtractConfig(out_dir=tmp_path, workers=1), progress=False)
    manifest = load_manifest(summary.cache_dir)[0]
    per_frame = manifest.groupby("frame_index").size()
    assert per_frame.max() >= 3 and summary.ok == 1
