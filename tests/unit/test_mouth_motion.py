"""The mouth-motion member (issue 11, item 5) on synthetic tracks: the measure, its calibration against real
tracks, and how the ensemble combines it with the nets (it can only argue FAKE, it abstains on short tracks
and images, it follows the threshold, it round-trips through the ensemble file)."""

import numpy as np
import pytest
from scipy.stats import norm

from ensembles.ensemble import MOUTH_MOTION
from ensembles.motion import MouthMotion, fit_mouth_motion, mouth_opening, mouth_spread
from tests.unit.test_track_rules import SHAPE, ensemble, face, verdict_of

# reals' log mouth spread ~ N(log 0.04, 0.45): a track is flagged alone below exp(log 0.04 - 1.645 * 0.45) = 0.019
MOTION = MouthMotion(mu=float(np.log(0.04)), sigma=0.45, alpha=0.05, min_faces=8, calibration="test")


def talking(n=20, mouth=0.06, seed=1):
    """A 120 px face whose mouth corners move up and down by `mouth` face sizes, the head turning a little."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n):
        shape = SHAPE.copy()
        shape[3:, 1] += mouth * np.sin(t * 1.3)
        shape[2, 0] += 0.03 * np.sin(t * 0.4)
        out.append(face(300.0, 200.0, 120.0, shape, rng=rng, noise=0.1))
    return out


def test_mouth_opening_is_scale_free():
    small = face(0, 0, 50)[1]
    large = face(300, 80, 400)[1]
    # eyes at y 0.35, mouth at 0.75 (0.4 apart), eyes 0.4 apart: one inter-eye distance
    assert mouth_opening(small) == pytest.approx(1.0) and mouth_opening(large) == pytest.approx(1.0)
    assert mouth_opening(((0, 0), (0, 0), (0, 1), (0, 2), (0, 2))) is None  # eyes on one point
    assert mouth_opening(((0, 0), (1, 0), (0, 1))) is None  # not five points


def test_mouth_spread_grows_with_the_mouth_and_needs_enough_faces():
    def spread_of(track, min_faces=8):
        boxes, marks = zip(*track)
        return mouth_spread(list(boxes), list(marks), min_faces)

    still, moving = spread_of(talking(mouth=0.005)), spread_of(talking(mouth=0.08))
    assert 0 <= still < moving
    assert spread_of(talking(n=7)) is None and spread_of(talking(n=7), min_faces=5) is not None
    boxes, marks = zip(*talking())
    assert mouth_spread(list(boxes), [None] * len(boxes)) is None  # a detector without landmarks


def test_a_stray_box_does_not_count_in_the_spread():
    track = talking(mouth=0.0)
    boxes, marks = map(list, zip(*track))
    clean = mouth_spread(boxes, marks)
    box, mark = face(300, 200, 400, SHAPE * np.array([1.0, 1.3]))  # 3x larger, mouth far lower: not this face
    assert mouth_spread(boxes + [box], marks + [mark]) == pytest.approx(clean)


def test_the_threshold_is_reached_at_the_reals_alpha_quantile():
    for threshold in (0.3, 0.5, 0.8):
        assert MOTION.p_fake(MOTION.flagged_below, threshold) == pytest.approx(threshold)
        assert MOTION.p_fake(MOTION.flagged_below * 0.9, threshold) > threshold
        assert MOTION.p_fake(MOTION.flagged_below * 1.1, threshold) < threshold
    assert MOTION.flagged_below == pytest.approx(0.04 * np.exp(norm.ppf(0.05) * 0.45))
    assert MOTION.p_fake(None, 0.5) is None
    # a typical real track (the median spread) is far from the threshold
    assert MOTION.p_fake(0.04, 0.5) == pytest.approx(0.05)


def test_fit_on_real_tracks_flags_about_alpha_of_them():
    rng = np.random.default_rng(0)
    reals = np.exp(rng.normal(np.log(0.04), 0.45, 2000))
    model = fit_mouth_motion(list(reals), alpha=0.1, calibration="synthetic")
    assert model.mu == pytest.approx(np.log(0.04), abs=0.03) and model.sigma == pytest.approx(0.45, abs=0.03)
    flagged = np.mean([model.p_fake(s, 0.5) >= 0.5 for s in reals])
    assert flagged == pytest.approx(0.1, abs=0.02)
    with pytest.raises(ValueError, match="at least 10"):
        fit_mouth_motion([0.04] * 9, 0.05, "")
    with pytest.raises(ValueError):
        MouthMotion(mu=0.0, sigma=0.5, alpha=0.7)


def test_a_still_mouth_raises_the_track_and_a_talking_one_leaves_the_nets_alone():
    model = ensemble(threshold=0.5, mouth_motion=MOTION)
    still = verdict_of(model, [talking(mouth=0.002)], [0.2])
    (track,) = still.tracks
    assert track.p_nets == pytest.approx(0.2) and track.mouth_spread < MOTION.flagged_below
    assert 0.5 < track.p_fake <= track.p_motion  # (alone it is held below "very likely fake": the next test)
    assert still.verdict == "FAKE" and still.per_model == {"x": pytest.approx(0.2), MOUTH_MOTION: pytest.approx(track.p_motion)}
    speaking = verdict_of(model, [talking(mouth=0.08)], [0.2])
    (track,) = speaking.tracks
    assert track.p_motion < 0.2 and track.p_fake == pytest.approx(0.2) and speaking.verdict == "REAL"
    # the nets' FAKE stands whatever the mouth does
    assert verdict_of(model, [talking(mouth=0.08)], [0.9]).verdict == "FAKE"


def test_the_member_abstains_on_short_tracks_and_without_calibration():
    short = verdict_of(ensemble(threshold=0.5, mouth_motion=MOTION), [talking(n=6, mouth=0.0)], [0.2])
    (track,) = short.tracks
    assert track.p_motion is None and track.mouth_spread is None and short.per_model[MOUTH_MOTION] is None
    assert short.verdict == "REAL"
    plain = verdict_of(ensemble(threshold=0.5), [talking(mouth=0.0)], [0.2])
    assert MOUTH_MOTION not in plain.per_model and plain.tracks[0].p_motion is None and plain.verdict == "REAL"


def test_the_member_follows_a_threshold_set_by_the_user():
    base = ensemble(threshold=0.5, mouth_motion=MOTION)
    track = talking(mouth=0.002)
    p_motion = verdict_of(base, [track], [0.2]).tracks[0].p_motion
    stricter = base.with_threshold(0.9)
    moved = verdict_of(stricter, [track], [0.2]).tracks[0].p_motion
    assert moved > p_motion  # the same stillness stands as far past the new threshold as past the old one
    spread = verdict_of(base, [track], [0.2]).tracks[0].mouth_spread
    assert (moved >= 0.9) == (spread < MOTION.flagged_below)


def test_the_mouth_motion_member_alone_never_reaches_very_likely_fake():
    """A FAKE verdict accuses someone: where the nets call a face REAL, a frozen mouth alone gives at most
    "likely fake", and the words say that one check alone carried it; where the nets agree, it may go higher."""
    from ensembles.explain import confidence_band, explained

    model = ensemble(threshold=0.5, mouth_motion=MOTION)
    frozen = explained(verdict_of(model, [talking(mouth=0.0001)], [0.2]))
    (track,) = frozen.tracks
    assert track.p_motion > 0.95  # on its own scale the member is sure ...
    assert frozen.verdict == "FAKE" and frozen.band == "likely fake"  # ... but alone it is held one band lower
    assert confidence_band(track.p_fake, 0.5) == "likely fake" and track.p_fake < track.p_motion
    assert "Only the mouth-motion check calls it fake" in frozen.explanation
    assert 'held at "likely fake" at most' in frozen.explanation
    agreed = explained(verdict_of(model, [talking(mouth=0.0001)], [0.6]))  # the nets say FAKE too
    assert agreed.band == "very likely fake" and agreed.tracks[0].p_fake == pytest.approx(agreed.tracks[0].p_motion, abs=1e-4)
    assert "also above the threshold" in agreed.explanation
