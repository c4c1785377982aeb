"""calibrate-motion on real clips (../shared/data/real_talking's VoxCeleb2 and other clips of 224-850 px): it adds
a fitted mouth-motion member to a copy of the shipped ensemble, classify-video then reports the member, and bad input
gets a clear message and exit status."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from ensembles.ensemble import MOUTH_MOTION, EnsembleConfig
from tests.conftest import shared_data


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
    config = EnsembleConfig.load(out)
    motion = config.mouth_motion
    assert motion is not None and motion.alpha == 0.05 and "real tracks of" in motion.calibration
    # people talking: their mouth spread lies around a few hundredths of an inter-eye distance
    assert 0.005 < motion.flagged_below < 0.05 and 0 < motion.sigma < 2
    shipped = EnsembleConfig.load(Path("models/weights/ensemble.json"))
    assert config.threshold == shipped.threshold and len(config.members) == len(shipped.members)
    assert all((out.parent / member).resolve().is_file() for member in config.members)


def test_classify_reports_the_member(calibrated, talking_clips):
    _, out = calibrated
    clip = talking_clips / "DPE__data_s.mp4"
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
