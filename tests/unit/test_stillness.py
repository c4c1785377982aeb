"""The still-background member (ensembles/stillness.py) on synthetic frames and tracks: the measure, how the
ensemble combines it with the nets and the mouth-motion member (it only argues FAKE, alone it stops at "likely
fake" and says so, it abstains without background), and its place in the ensemble file and the budget."""
import json
from pathlib import Path

import numpy as np
import pytest

from ensembles.budget import p_fake_at
from ensembles.ensemble import STILL_BACKGROUND, EnsembleConfig
from ensembles.explain import explained
from ensembles.stillness import FLOOR, BackgroundStillness, background_ratio, frame_changes
from pipeline.detectors import Detection
from tests.unit.test_track_rules import SHAPE, ensemble, face

# reals' log background ratio ~ N(log 0.2, 0.75): alone a track reaches the threshold below 0.2 * exp(-2.576 * 0.75)
STILL = BackgroundStillness(mu=float(np.log(0.2)), sigma=0.75, alpha=0.005, calibration="test")


def test_the_background_is_the_frame_outside_every_person():
    change = np.zeros((90, 160), dtype=np.uint8)
    change[:, :] = 6  # the background changes by 6 grey levels
    change[20:50, 60:90] = 30  # the face (box 60-90 x 20-50 in the change picture) by 30
    box = (120.0, 40.0, 180.0, 100.0)  # frame pixels: the change picture is half the frame's size
    background, (face_change,) = frame_changes(change, 0.5, [box])
    assert face_change == pytest.approx(30.0)
    # the person's region (face widened by 0.3 face widths, raised by 0.35 face heights, down to the bottom) is
    # not background: only the 6s remain
    assert background == pytest.approx(6.0)
    assert frame_changes(None, 0.5, [box, box]) == (None, [None, None])


def test_a_close_up_has_no_background_to_measure():
    change = np.full((90, 160), 5, dtype=np.uint8)
    background, faces = frame_changes(change, 1.0, [(10.0, 5.0, 150.0, 85.0)])  # the person fills the frame
    assert background is None and faces == [pytest.approx(5.0)]


def test_the_ratio_needs_enough_measured_frames():
    backgrounds, faces = [0.1] * 8, [4.0] * 8
    assert background_ratio(backgrounds, faces) == pytest.approx((0.1 + FLOOR) / (4.0 + FLOOR))
    assert background_ratio(backgrounds[:7], faces[:7]) is None
    assert background_ratio([None] * 4 + backgrounds, [1.0] * 4 + faces) == background_ratio(backgrounds, faces)
    assert background_ratio(backgrounds[:5], faces[:5], min_faces=5) is not None


def track(n=12, x=300.0):
    return [face(x, 200.0, 120.0, SHAPE) for _ in range(n)]


def verdict_with(ensemble_, tracks, probs, changes):
    """The verdict of a video holding `tracks`, scored `probs` per track, each face's (background, face) change
    given per track."""
    faces_meta, member_probs, face_changes = [], [], []
    for faces, p, change in zip(tracks, probs, changes):
        for t, (box, marks) in enumerate(faces):
            faces_meta.append((t, 10 * t, t / 3, Detection(box, 0.99, marks)))
            member_probs.append([p])
            face_changes.append(change)
    order = sorted(range(len(faces_meta)), key=lambda i: faces_meta[i][0])
    return ensemble_._verdict(Path("clip.mp4"), "video", max(len(t) for t in tracks), [faces_meta[i] for i in order],
                              np.asarray([member_probs[i] for i in order]), {"total": 1.0},
                              changes=[face_changes[i] for i in order])


def test_a_still_background_raises_the_track_but_alone_only_to_likely_fake():
    model = ensemble(threshold=0.5, background_stillness=STILL)
    frozen = explained(verdict_with(model, [track()], [0.2], [(0.0, 5.0)]))  # a photo brought to life
    (scored,) = frozen.tracks
    assert scored.background_ratio == pytest.approx(FLOOR / (5.0 + FLOOR), abs=1e-4) and scored.p_still > 0.9
    assert frozen.verdict == "FAKE" and frozen.band == "likely fake" and scored.p_fake < scored.p_still
    assert frozen.per_model == {"x": pytest.approx(0.2), STILL_BACKGROUND: pytest.approx(scored.p_still)}
    assert "Only the still-background check calls it fake" in frozen.explanation
    assert "(from its still background)" in scored.description
    agreed = explained(verdict_with(model, [track()], [0.6], [(0.0, 5.0)]))  # the nets say FAKE too
    assert agreed.band == "very likely fake" and "comes from the still-background check" in agreed.explanation
    filmed = verdict_with(model, [track()], [0.2], [(1.5, 5.0)])  # a camera's background changes too
    assert filmed.tracks[0].p_still < 0.2 and filmed.tracks[0].p_fake == pytest.approx(0.2)
    assert filmed.verdict == "REAL"


def test_the_ratio_is_measured_without_the_member_and_no_score_is_given():
    plain = verdict_with(ensemble(threshold=0.5), [track()], [0.2], [(0.0, 5.0)])
    (scored,) = plain.tracks
    assert scored.background_ratio is not None and scored.p_still is None  # calibration reads the ratio
    assert STILL_BACKGROUND not in plain.per_model and plain.verdict == "REAL"


def test_the_member_abstains_without_background_or_on_a_short_track():
    model = ensemble(threshold=0.5, background_stillness=STILL)
    for faces, change in ((track(), (None, 5.0)), (track(n=6), (0.0, 5.0))):
        verdict = verdict_with(model, [faces], [0.2], [change])
        assert verdict.tracks[0].p_still is None and verdict.per_model[STILL_BACKGROUND] is None
        assert verdict.verdict == "REAL"


def test_the_higher_track_member_speaks_for_the_track():
    from tests.unit.test_mouth_motion import MOTION, talking

    model = ensemble(threshold=0.5, background_stillness=STILL, mouth_motion=MOTION)
    frozen_mouth = talking(n=12, mouth=0.0001)
    verdict = explained(verdict_with(model, [frozen_mouth], [0.2], [(1.5, 5.0)]))  # only the mouth is suspicious
    assert "(from its mouth motion)" in verdict.tracks[0].description
    verdict = explained(verdict_with(model, [talking(n=12, mouth=0.08)], [0.2], [(0.0, 5.0)]))
    assert "(from its still background)" in verdict.tracks[0].description


def test_the_budget_rescores_the_member_at_each_threshold():
    model = ensemble(threshold=0.5, background_stillness=STILL)
    verdict = verdict_with(model, [track()], [0.2], [(0.02, 5.0)])
    ratio = verdict.tracks[0].background_ratio
    assert ratio < STILL.flagged_below  # flagged at any threshold ...
    for threshold in (0.3, 0.6, 0.9):
        p = p_fake_at(verdict, threshold, model)
        assert p >= threshold and p == pytest.approx(max(0.2, min(STILL.p_fake(ratio, threshold), p)))


@pytest.mark.parametrize("field_name", ["mouth_motion", "background_stillness"])
def test_track_members_round_trip_through_the_ensemble_file(tmp_path, field_name):
    from tests.unit.test_mouth_motion import MOTION

    member = {"mouth_motion": MOTION, "background_stillness": STILL}[field_name]
    EnsembleConfig(members=("x.pt",), **{field_name: member}).save(tmp_path / "e.json")
    assert getattr(EnsembleConfig.load(tmp_path / "e.json"), field_name) == member
    data = json.loads((tmp_path / "e.json").read_text())
    data.pop(field_name)  # an ensemble file from before the member: no member
    (tmp_path / "old.json").write_text(json.dumps(data))
    assert getattr(EnsembleConfig.load(tmp_path / "old.json"), field_name) is None
    with pytest.raises(ValueError):
        type(member)(mu=0.0, sigma=0.5, alpha=0.7)
