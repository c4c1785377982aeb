"""calibrate-motion on real clips (../shared/data/real_talking's VoxCeleb2 and other clips of 224-850 px): it adds
a fitted mouth-motion member to a copy of the shipped ensemble, classify-video then reports the member, and bad input
gets a clear message and exit status. A speech-only member (the default) judges a still mouth only while someone
speaks in the file's audio."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli import main
from ensembles.ensemble import MOUTH_MOTION, Ensemble, EnsembleConfig
from ensembles.motion import MouthMotion, track_rows
from pipeline.faces import FaceExtractor
from pipeline.sample import write_sample_clip
from tests.conftest import shared_data, with_audio


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def linked(folder: Path, clips: list[Path]) -> Path:
    for clip in clips:
        (folder / clip.name).symlink_to(clip)
    return folder


@pytest.fixture(scope="module")
def talking_clips(tmp_path_factory) -> Path:
    """The real_talking clips of 224-850 px (4-14 s of one person talking each; MEAD's 1080p left out for time)."""
    clips = sorted(p for p in shared_data("real_talking").glob("*.mp4") if not p.name.startswith("spectre__"))
    assert len(clips) >= 15
    return linked(tmp_path_factory.mktemp("talking"), clips)


@pytest.fixture(scope="module")
def grid_clips(tmp_path_factory) -> Path:
    """GRID's 3-second clips: 8 sampled faces each, too few for a mouth-motion judgement."""
    return linked(tmp_path_factory.mktemp("grid"), sorted(shared_data("real_talking").glob("LipNet__*.mpg")))


@pytest.fixture(scope="module")
def calibrated(talking_clips, tmp_path_factory):
    out = tmp_path_factory.mktemp("motion") / "ensemble.json"
    result = run("calibrate-motion", talking_clips, tmp_path_factory.mktemp("x") / "missing.mp4", "--out", out,
                 "--alpha", "0.05", "--quiet", "--device", "cpu")
    return result, out


def test_calibration_writes_a_fitted_member_next_to_the_shipped_nets(calibrated):
    result, out = calibrated
    assert result.exit_code == 1  # the missing path is reported, the others are used
    assert "missing.mp4: file not found" in result.stderr
    assert "leave-one-clip-out:" in result.stdout and f"wrote {out}" in result.stdout
    assert "false-alarm rate 95% interval" in result.stdout
    config = EnsembleConfig.load(out)
    motion = config.mouth_motion
    assert motion is not None and motion.alpha == 0.05 and "real tracks of" in motion.calibration
    assert motion.speech_only and "sampled during speech" in motion.calibration  # the default
    # people talking: their mouth spread lies around a few hundredths of an inter-eye distance
    assert 0.005 < motion.flagged_below < 0.05 and 0 < motion.sigma < 2
    shipped = EnsembleConfig.load(Path("models/weights/ensemble.json"))
    assert config.threshold == shipped.threshold and len(config.members) == len(shipped.members)
    assert all((out.parent / member).resolve().is_file() for member in config.members)


def test_classify_reports_the_member(calibrated, talking_clips):
    _, out = calibrated
    clip = talking_clips / "Talking-Face_PC-AVS__Input_00098.mp4"  # 10 s of one person speaking
    result = run("classify-video", clip, "--ensemble", out, "--json", "--device", "cpu")
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.stdout.splitlines()[0])
    assert MOUTH_MOTION in verdict["per_model"]
    (track,) = [t for t in verdict["tracks"] if t["counted"]]
    assert track["mouth_spread"] is not None and track["p_motion"] is not None
    assert track["p_fake"] == pytest.approx(max(track["p_nets"], track["p_motion"]), abs=1e-4)


def test_too_few_tracks_is_a_usage_error(grid_clips, tmp_path):
    result = run("calibrate-motion", grid_clips, "--out", tmp_path / "e.json", "--quiet",
                 "--device", "cpu")
    assert result.exit_code == 2 and "needs at least 10 tracks" in result.stderr
    assert not (tmp_path / "e.json").exists()


@pytest.fixture(scope="module")
def still_mouth(tmp_path_factory):
    """A 10 s clip of a face whose mouth never moves (the astronaut photo drifting across the frame): without an
    audio track, with a silent one, and with a real person's speech (the real DFDC clip's sound)."""
    folder = tmp_path_factory.mktemp("still")
    picture = write_sample_clip(folder / "picture.mp4", seconds=10.0, fps=30, width=480, height=360)
    return {"no audio": picture,
            "silent": with_audio(picture, folder / "silent.mp4", silent_seconds=10.0),
            "speech": with_audio(picture, folder / "speech.mp4",
                                 audio_source=shared_data("dfdc_videos", "lynaeydofd.mp4"))}


def with_motion(small_ensemble: Path, folder: Path, speech_only: bool) -> Ensemble:
    """The small test ensemble with a mouth-motion member of real talkers' spread (about 0.06, as fitted on
    real_talking), judging speech only or every face."""
    config = EnsembleConfig.load(small_ensemble)
    motion = MouthMotion(mu=float(np.log(0.06)), sigma=0.25, alpha=0.05, calibration="test", speech_only=speech_only)
    members = tuple(str((small_ensemble.parent / m).resolve()) for m in config.members)
    path = folder / f"speech_only_{speech_only}.json"
    replace(config, members=members, mouth_motion=motion).save(path)
    return Ensemble.load(path, device="cpu")


def motion_of(ensemble: Ensemble, clip: Path):
    verdict, _ = ensemble.classify(clip)
    (track,) = [t for t in verdict.tracks if t.counted]
    return track, verdict


def test_a_still_mouth_is_judged_only_while_someone_speaks(still_mouth, small_ensemble, tmp_path):
    speech_only = with_motion(small_ensemble, tmp_path, speech_only=True)
    track, verdict = motion_of(speech_only, still_mouth["speech"])
    assert track.mouth_spread is not None and track.mouth_spread < 0.03  # a photo: only landmark noise moves
    assert track.p_motion >= speech_only.config.threshold and verdict.verdict == "FAKE"
    assert verdict.per_model[MOUTH_MOTION] == pytest.approx(track.p_motion)
    for quiet in ("no audio", "silent"):  # nobody speaks: a still mouth says nothing
        track, verdict = motion_of(speech_only, still_mouth[quiet])
        assert track.mouth_spread is None and track.p_motion is None, quiet
        assert track.p_fake == pytest.approx(track.p_nets) and verdict.per_model[MOUTH_MOTION] is None
    every_face = with_motion(small_ensemble, tmp_path, speech_only=False)  # ensemble files before 2026-11-23
    track, _ = motion_of(every_face, still_mouth["no audio"])
    assert track.mouth_spread is not None and track.p_motion >= every_face.config.threshold


def test_all_faces_calibration_keeps_the_old_behaviour(talking_clips, tmp_path):
    out = tmp_path / "ensemble.json"
    result = run("calibrate-motion", talking_clips, "--out", out, "--all-faces", "--quiet", "--device", "cpu")
    assert result.exit_code == 0, result.output
    motion = EnsembleConfig.load(out).mouth_motion
    assert not motion.speech_only and "during speech" not in motion.calibration


def test_track_rows_measure_the_mouth_the_way_they_are_asked(still_mouth, small_ensemble):
    """bench/mouth_motion.py compares other measures of a mouth's opening (dlib's lips) through `opening`: it gets
    each sampled face's full BGR frame and detection, and the track's spread is taken over what it returns."""
    ensemble = Ensemble.load(small_ensemble, device="cpu")
    extractor = FaceExtractor(ensemble.face_config(), device="cpu")
    clip, frames = still_mouth["no audio"], []

    def box_left_edge(image, detection):  # the drifting photo's position: a measure that changes from face to face
        frames.append(image.shape)
        return detection.box[0] / 100

    def spread_by(measure):
        (row,) = [r for r in track_rows(clip, ensemble, extractor, opening=measure) if not r["short"]]
        return row["mouth"]

    corners = track_rows(clip, ensemble, extractor)
    assert [r["mouth"] for r in corners if not r["short"]][0] < 0.03  # the default: MTCNN's corners, a still mouth
    assert spread_by(box_left_edge) > 0.1 and set(frames) == {(360, 480, 3)}
    assert spread_by(lambda image, detection: None) is None  # nothing measured: no judgement
