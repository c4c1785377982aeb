"""Every path survives classify-video / classify-image / evaluate-ensemble (issue 10): reports never
overwrite each other, damaged files and thin evidence are said, missing paths and empty folders are
answered, and classify-image offers only the options that mean something for images."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import pytest
from click.testing import CliRunner

from cli import main
from pipeline.sample import write_sample_clip


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def faststart_copy(source: Path, target: Path) -> Path:
    """Remux `source` (OpenCV writes the index, the moov atom, at the end) with the index at the front."""
    import av

    with av.open(str(source)) as src, av.open(str(target), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is None:  # the demuxer's final flush packet
                continue
            packet.stream = stream
            out.mux(packet)
    return target


@pytest.fixture(scope="module")
def six_second_clips(tmp_path_factory) -> tuple[Path, Path]:
    """A 6 s clip (90 frames: 9 sampled faces) with its index at the front, and a copy cut to half its bytes."""
    folder = tmp_path_factory.mktemp("truncated")
    plain = write_sample_clip(folder / "source.mp4", seconds=6.0, fps=15)
    whole = faststart_copy(plain, folder / "whole.mp4")
    data = whole.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat"), "the index must come first for this test to mean anything"
    cut = folder / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    plain.unlink()
    return whole, cut


# -- reports -------------------------------------------------------------------------------------
def test_same_name_in_two_folders_gives_two_reports(small_ensemble, face_clip, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / "in" / folder).mkdir(parents=True)
        shutil.copy(face_clip, tmp_path / "in" / folder / "clip.mp4")
    named = [tmp_path / "in" / "a" / "clip.mp4", tmp_path / "in" / "b" / "clip.mp4"]

    first = run("classify-video", *named, "--ensemble", small_ensemble, "--json", "--report", tmp_path / "r1")
    assert first.exit_code == 0, first.output
    reports = [v["report"] for v in json_lines(first.output)]
    assert len(set(reports)) == 2 and all(cv2.imread(r) is not None for r in reports)
    assert sorted(p.name for p in (tmp_path / "r1").iterdir())[0] == "clip.png"

    again = run("classify-video", *named, "--ensemble", small_ensemble, "--json", "--report", tmp_path / "r2")
    assert [Path(v["report"]).name for v in json_lines(again.output)] == [Path(r).name for r in reports]

    walked = run("classify-video", tmp_path / "in", "--ensemble", small_ensemble, "--json", "--report", tmp_path / "r3")
    assert walked.exit_code == 0
    assert [v["report"] for v in json_lines(walked.output)] == [
        str(tmp_path / "r3" / "a" / "clip.png"), str(tmp_path / "r3" / "b" / "clip.png")]
    assert (tmp_path / "r3" / "a" / "clip.png").is_file() and (tmp_path / "r3" / "b" / "clip.png").is_file()


def test_report_path_that_is_a_file_is_a_usage_error(small_ensemble, face_clip, tmp_path):
    (tmp_path / "taken").write_text("a file, not a folder")
    result = run("classify-video", face_clip, "--ensemble", small_ensemble, "--report", tmp_path / "taken")
    assert result.exit_code == 2 and "not a directory" in result.output


# -- damaged files and thin evidence -------------------------------------------------------------
def test_truncated_mp4_is_flagged_damaged(small_ensemble, six_second_clips):
    whole, cut = six_second_clips
    result = run("classify-video", whole, cut, "--ensemble", small_ensemble, "--json")
    assert result.exit_code == 1, result.output
    intact, damaged = json_lines(result.output)
    assert (intact["damaged"], intact["low_evidence"], intact["warnings"]) == (False, False, [])
    assert intact["n_faces"] == 9
    assert damaged["verdict"] in ("REAL", "FAKE") and damaged["damaged"] is True
    assert 0 < damaged["n_faces"] < 9
    assert any("s of the 6.0 s the file announces (truncated or damaged" in w for w in damaged["warnings"])

    text = run("classify-video", cut, "--ensemble", small_ensemble)
    assert text.exit_code == 1
    verdict_line, warning = text.output.splitlines()[:2]
    assert verdict_line.split()[0] in ("REAL", "FAKE") and "cut.mp4" in verdict_line
    assert warning.startswith("  warning: decoded ") and "s of the 6.0 s the file announces" in warning


def test_intact_file_exits_zero(small_ensemble, six_second_clips):
    whole, _ = six_second_clips
    result = run("classify-video", whole, "--ensemble", small_ensemble)
    assert result.exit_code == 0 and "warning" not in result.output


def test_few_sampled_faces_are_low_evidence(small_ensemble, face_clip):
    result = run("classify-video", face_clip, "--ensemble", small_ensemble, "--json", "--frames", "2")
    assert result.exit_code == 0, result.output  # thin evidence is said, not a failure
    [verdict] = json_lines(result.output)
    assert verdict["n_faces"] == 2 and verdict["low_evidence"] is True and verdict["damaged"] is False
    deciding = max((t for t in verdict["tracks"] if t["counted"]), key=lambda t: t["p_fake"])
    [warning] = verdict["warnings"]
    assert warning.startswith("low evidence") and "5 or more wanted" in warning
    assert f"rests on {deciding['n_faces']} scored face" in warning
    text = run("classify-video", face_clip, "--ensemble", small_ensemble, "--frames", "2")
    assert "  warning: low evidence" in text.output


def test_a_photo_is_never_low_evidence(small_ensemble, astronaut, tmp_path):
    cv2.imwrite(str(tmp_path / "photo.jpg"), astronaut)
    result = run("classify-image", tmp_path / "photo.jpg", "--ensemble", small_ensemble, "--json")
    [verdict] = json_lines(result.output)
    assert verdict["n_faces"] == 1 and verdict["low_evidence"] is False and verdict["warnings"] == []


# -- the batch rule ------------------------------------------------------------------------------
def test_missing_path_among_good_ones(small_ensemble, face_clip, tmp_path):
    missing = tmp_path / "gone.mp4"
    result = run("classify-video", missing, face_clip, "--ensemble", small_ensemble)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert f"ERROR    {missing}: file not found" in lines
    assert any(line.split()[0] in ("REAL", "FAKE") and str(face_clip) in line for line in lines)


def test_missing_path_in_json(small_ensemble, face_clip, tmp_path):
    result = run("classify-video", face_clip, tmp_path / "gone.mp4", "--ensemble", small_ensemble, "--json")
    assert result.exit_code == 1
    error, verdict = json_lines(result.output)
    assert (error["verdict"], error["path"]) == ("ERROR", str(tmp_path / "gone.mp4"))
    assert "file not found" in error["message"]
    assert verdict["verdict"] in ("REAL", "FAKE")


def test_empty_folder_says_so(small_ensemble, tmp_path):
    (tmp_path / "empty").mkdir()
    result = run("classify-video", tmp_path / "empty", "--ensemble", small_ensemble)
    assert result.exit_code == 1
    assert result.output.strip() == f"ERROR    {tmp_path / 'empty'}: no video or image file in this folder"


def test_folder_of_text_files_says_so(small_ensemble, tmp_path):
    (tmp_path / "notes").mkdir()
    for name in ("a.txt", "b.md"):
        (tmp_path / "notes" / name).write_text("not media")
    result = run("classify-image", tmp_path / "notes", "--ensemble", small_ensemble)
    assert result.exit_code == 1
    assert f"ERROR    {tmp_path / 'notes'}: no video or image file in this folder (2 other files skipped)" \
        in result.output.splitlines()


def test_classify_image_offers_only_image_options():
    image_help = run("classify-image", "--help").output
    video_help = run("classify-video", "--help").output
    for option in ("--every", "--frames", "--redetect-every"):
        assert option not in image_help and option in video_help
    assert "Exit status" in image_help and "damaged" in video_help
    refused = CliRunner().invoke(main, ["classify-image", "photo.jpg", "--frames", "2"])
    assert refused.exit_code == 2 and "No such option" in refused.output


def test_evaluate_ensemble_with_a_missing_path(small_ensemble, astronaut, tmp_path):
    for label, image in (("real", astronaut), ("fake", cv2.flip(astronaut, 1))):
        (tmp_path / label).mkdir()
        cv2.imwrite(str(tmp_path / label / "0.jpg"), image)
    missing = tmp_path / "gone"
    result = run("evaluate-ensemble", tmp_path / "real", missing, tmp_path / "fake", "--ensemble", small_ensemble,
                 "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["errors"] == 1 and (report["metrics"]["n_real"], report["metrics"]["n_fake"]) == (1, 1)
    assert report["metrics"]["roc_auc_ci"] is None  # one file of each: too few for an interval
    [error] = [row for row in report["verdicts"] if row["verdict"] == "ERROR"]
    assert error["path"] == str(missing) and "file not found" in error["message"]

    text = run("evaluate-ensemble", tmp_path / "real", missing, tmp_path / "fake", "--ensemble", small_ensemble)
    assert text.exit_code == 1 and f"ERROR    {missing}: file not found" in text.stdout.splitlines()
    assert "errors: 1" in text.stdout


def test_evaluate_ensemble_with_only_missing_paths(small_ensemble, tmp_path):
    result = run("evaluate-ensemble", tmp_path / "gone", "--ensemble", small_ensemble)
    assert result.exit_code == 1 and "nothing to score" in result.output and "file not found" in result.output
