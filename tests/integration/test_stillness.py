"""The still-background member end to end: the reader gives each sampled frame its change to the next one without
changing what it samples, a photo brought to life (a face moving before a frozen background) is flagged where
the same scene filmed by a camera is not, and calibrate-background fits the member on real clips."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from cli import main
from ensembles.ensemble import STILL_BACKGROUND, Ensemble, EnsembleConfig
from ensembles.stillness import BackgroundStillness
from pipeline.media import CHANGE_WIDTH, MediaReader
from pipeline.sampling import SamplingConfig
from tests.conftest import shared_data, write_video

# the fit measured on 35 real tracks of real_talking and the real DFDC clip: log ratio ~ N(-1.555, 0.743)
MEASURED_FIT = BackgroundStillness(mu=-1.555, sigma=0.743, alpha=0.005, calibration="test")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def scene(astronaut: np.ndarray, t: int, filmed: bool, rng) -> np.ndarray:
    """Frame `t` of a 640x360 scene: a detailed background (scikit-image's coffee photo) and the astronaut's face
    in front of it, nodding and opening and closing the jaw. `filmed`: as a camera sees it, with sensor noise and a hand's
    jitter over the whole frame; otherwise the background is the same pixels in every frame."""
    from skimage import data

    background = cv2.resize(cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR), (640, 360), interpolation=cv2.INTER_AREA)
    face = cv2.resize(astronaut[40:200, 160:290], (195, 240), interpolation=cv2.INTER_AREA)  # the face alone
    jaw = int(round(12 * abs(np.sin(t / 2.0))))
    face = np.vstack([face[:150], cv2.resize(face[150:], (195, 90 + jaw))])[:240]  # the lower face stretches
    frame = background.copy()
    y = 60 + int(round(6 * np.sin(t / 1.5)))  # a nod
    frame[y:y + 240, 220:415] = face
    if filmed:
        shift = np.float32([[1, 0, rng.normal(0, 0.7)], [0, 1, rng.normal(0, 0.7)]])
        frame = cv2.warpAffine(frame, shift, (640, 360), borderMode=cv2.BORDER_REFLECT)
        frame = np.clip(frame + rng.normal(0, 3.0, frame.shape), 0, 255).astype(np.uint8)
    return frame


@pytest.fixture(scope="module")
def scenes(astronaut, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("still")
    rng = np.random.default_rng(0)
    return {kind: write_video(folder / f"{kind}.mp4", (scene(astronaut, t, kind == "filmed", rng) for t in range(100)),
                              fps=25)
            for kind in ("brought to life", "filmed")}


@pytest.mark.parametrize("decoder", ["pyav", "opencv"])
@pytest.mark.parametrize("sampling", [SamplingConfig(every=10), SamplingConfig(every=None, frames=7),
                                      SamplingConfig(every=1)])
def test_changes_come_with_the_same_sampled_frames(scenes, decoder, sampling):
    path = scenes["filmed"]
    with MediaReader(path, decoder=decoder) as reader:
        plain = list(reader.frames(sampling))
    with MediaReader(path, decoder=decoder) as reader:
        changed = list(reader.frames(sampling, changes=True))
        assert reader.truncation_note() == ""
    assert [(f.index, f.timestamp) for f in changed] == [(f.index, f.timestamp) for f in plain]
    assert all(np.array_equal(a.image, b.image) and a.change is None for a, b in zip(plain, changed))
    with MediaReader(path, decoder=decoder) as reader:
        following = {f.index: f.image for f in reader.frames(SamplingConfig(every=1))}
    for frame in changed:
        if frame.index + 1 in following:  # the last frame of the clip has no next one
            assert frame.change.shape == (180, CHANGE_WIDTH) and frame.change.dtype == np.uint8
            expected = cv2.absdiff(*(cv2.cvtColor(cv2.resize(image, (320, 180), interpolation=cv2.INTER_AREA),
                                                  cv2.COLOR_BGR2GRAY) for image in (frame.image, following[frame.index + 1])))
            assert np.array_equal(frame.change, expected)
        else:
            assert frame.change is None


def with_member(ensemble_file: Path, folder: Path, member: BackgroundStillness | None) -> Ensemble:
    config = EnsembleConfig.load(ensemble_file)
    members = tuple(str((ensemble_file.parent / m).resolve()) for m in config.members)
    path = folder / "still.json"
    replace(config, members=members, background_stillness=member).save(path)
    return Ensemble.load(path, device="cpu")


def test_a_photo_brought_to_life_is_flagged_and_the_filmed_scene_is_not(scenes, small_ensemble, tmp_path):
    ensemble = with_member(small_ensemble, tmp_path, MEASURED_FIT)
    threshold = ensemble.config.threshold
    tracks = {}
    for kind, clip in scenes.items():
        verdict, _ = ensemble.classify(clip)
        (tracks[kind],) = [t for t in verdict.tracks if t.counted]
        assert verdict.per_model[STILL_BACKGROUND] == tracks[kind].p_still
    alive, filmed = tracks["brought to life"], tracks["filmed"]
    assert alive.background_ratio < MEASURED_FIT.flagged_below < filmed.background_ratio
    assert alive.p_still >= threshold > filmed.p_still
    assert alive.p_fake >= threshold and filmed.p_fake == pytest.approx(filmed.p_nets)
    # without the member nothing is measured (no frame after a sampled one is decoded) unless asked for, as
    # calibration asks; and nothing is scored from it
    without = with_member(small_ensemble, tmp_path, None)
    plain, _ = without.classify(scenes["brought to life"])
    assert plain.tracks[0].background_ratio is None and STILL_BACKGROUND not in plain.per_model
    measured, _ = without.classify(scenes["brought to life"], measure_background=True)
    assert measured.tracks[0].background_ratio == alive.background_ratio and measured.tracks[0].p_still is None


def test_a_still_image_is_not_judged(small_ensemble, astronaut, tmp_path):
    cv2.imwrite(str(tmp_path / "photo.jpg"), astronaut)
    verdict, _ = with_member(small_ensemble, tmp_path, MEASURED_FIT).classify(tmp_path / "photo.jpg")
    assert verdict.tracks[0].background_ratio is None and verdict.per_model[STILL_BACKGROUND] is None


@pytest.fixture(scope="module")
def real_clips(tmp_path_factory) -> Path:
    """real_talking's clips of 224-850 px (MEAD's 1080p left out for time)."""
    clips = sorted(p for p in shared_data("real_talking").glob("*.mp4") if not p.name.startswith("spectre__"))
    folder = tmp_path_factory.mktemp("reals")
    for clip in clips:
        (folder / clip.name).symlink_to(clip)
    return folder


def test_calibration_fits_the_member_on_real_clips(real_clips, tmp_path):
    out = tmp_path / "not yet made" / "ensemble.json"  # the folder is made
    result = run("calibrate-background", real_clips, tmp_path / "missing.mp4", "--out", out, "--quiet",
                 "--device", "cpu")
    assert result.exit_code == 1 and "missing.mp4: file not found" in result.stderr  # the others are used
    assert f"wrote {out}" in result.stdout and "leave-one-clip-out:" in result.stdout
    member = EnsembleConfig.load(out).background_stillness
    assert member is not None and member.alpha == 0.005 and "real tracks of" in member.calibration
    # filmed backgrounds change by a tenth to a half of what the face does, and the clips differ a lot
    assert 0.05 < np.exp(member.mu) < 0.6 and 0.3 < member.sigma < 1.5 and member.flagged_below < 0.05
    shipped = EnsembleConfig.load(Path("models/weights/ensemble.json"))
    assert EnsembleConfig.load(out).threshold == shipped.threshold


def test_too_few_real_tracks_is_a_usage_error(real_clips, tmp_path):
    few = tmp_path / "few"
    few.mkdir()
    for clip in sorted(real_clips.iterdir())[:3]:
        (few / clip.name).symlink_to(clip.resolve())
    result = run("calibrate-background", few, "--out", tmp_path / "e.json", "--quiet", "--device", "cpu")
    assert result.exit_code == 2 and "needs at least 10 tracks" in result.stderr
    assert not (tmp_path / "e.json").exists()


def test_with_the_default_nets_it_flags_loopys_frozen_backgrounds_and_a_still_studio_speech(tmp_path):
    """What the member does on real files, with the default nets (why it is not in the shipped files): two Loopy
    renders of selection_dev, whose backgrounds are the photo's own pixels, are called FAKE by it alone; so is
    a real studio recording of crosssource_dev, filmed from a tripod and compressed until its background froze
    (docs/experiments.md). The real clip it was fitted on is not flagged."""
    ensemble = with_member(Path("models/weights/ensemble.json"), tmp_path, MEASURED_FIT)
    threshold = ensemble.config.threshold
    for path in (shared_data("selection_dev", "fake", "loopy__3.mp4"), shared_data("selection_dev", "fake", "loopy__7.mp4"),
                 shared_data("crosssource_dev", "real", "EDTalk__test_data_pose_source1.mp4")):
        verdict, _ = ensemble.classify(path)
        (track,) = [t for t in verdict.tracks if t.counted]
        assert track.p_nets < threshold <= track.p_still and verdict.verdict == "FAKE", path.name
        assert verdict.band in ("borderline", "likely fake") and "Only the still-background check" in verdict.explanation
    verdict, _ = ensemble.classify(shared_data("dfdc_videos", "lynaeydofd.mp4"))
    assert all(t.p_still is None or t.p_still < threshold for t in verdict.tracks)
