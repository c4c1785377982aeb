"""calibrate-motion on real clips (../shared/data/real_talking, GRID's 3-second clips): it adds a fitted
mouth-motion member to a copy of the shipped ensemble, classify-video then reports the member, and bad input
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


@pytest.fixture(scope="module")
def grid_clips(tmp_path_factory) -> Path:
    """The eleven GRID clips of real_talking (3 s of one person talking each), linked into one folder."""
    folder = tmp_path_factory.mktemp("grid")
    for clip in sorted(shared_data("real_talking").glob("LipNet__*.mpg")):
        (folder / clip.name).symlink_to(clip)
    assert len(list(folder.iterdir())) >= 10
    return folder


@pytest.fixture(scope="module")
def calibrated(grid_clips, tmp_path_factory):
    out = tmp_path_factory.mktemp("motion") / "ensemble.json"
    result = run("calibrate-motion", grid_clips, tmp_path_factory.mktemp("x") / "missing.mp4", "--out", out,
                 "--alpha", "0.05", "--quiet", "--device", "cpu")
    return result, out


def test_calibration_writes_a_fitted_member_next_to_the_shipped_nets(calibrated):
    result, out = calibrated
    assert result.exit_code == 1  # the missing path is reported, the others are used
    assert "missing.mp4: file not found" in result.stderr
    assert "leave-one-clip-out:" in result.stdout and f"wrote {out}" in result.stdout
    config = EnsembleConfig.load(out)
    motion = config.mouth_motion
    assert motion is not None and motion.alpha == 0.05 and "real tracks of 11 clips" in motion.calibration
    # people talking: their mouth spread lies around a few hundredths of an inter-eye distance
    assert 0.005 < motion.flagged_below < 0.05 and 0 < motion.sigma < 2
    shipped = EnsembleConfig.load(Path("models/weights/ensemble.json"))
    assert config.threshold == shipped.threshold and len(config.members) == len(shipped.members)
    assert all((out.parent / member).resolve().is_file() for member in config.members)


def test_classify_reports_the_member(calibrated, grid_clips):
    _, out = calibrated
    clip = sorted(grid_clips.iterdir())[0]
    result = run("classify-video", clip, "--ensemble", out, "--json", "--device", "cpu")
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.stdout.splitlines()[0])
    assert MOUTH_MOTION in verdict["per_model"]
    (track,) = [t for t in verdict["tracks"] if t["counted"]]
    assert track["mouth_spread"] is not None and track["p_motion"] is not None
    assert track["p_fake"] == pytest.approx(max(track["p_nets"], track["p_motion"]), abs=1e-4)


def test_too_few_tracks_is_a_usage_error(grid_clips, tmp_path):
    result = run("calibrate-motion", sorted(grid_clips.iterdir())[0], "--out", tmp_path / "e.json", "--quiet",
                 "--device", "cpu")
    assert result.exit_code == 2 and "needs at least 10 tracks" in result.stderr
    assert not (tmp_path / "e.json").exists()
