import numpy as np
import pytest

from ensembles.aggregate import Aggregator
from ensembles.combine import Combiner, fit_stacked
from ensembles.tracks import TrackConfig, iou, link_tracks
from pipeline.errors import UsageError

MEMBERS = np.array([[0.9, 0.7, 0.2], [0.1, 0.3, 0.2]])


def test_mean_and_weighted_combiners():
    assert Combiner("mean")(MEMBERS) == pytest.approx([0.6, 0.2])
    assert Combiner("weighted", (2.0, 1.0, 1.0))(MEMBERS) == pytest.approx([(1.8 + 0.7 + 0.2) / 4, (0.2 + 0.3 + 0.2) / 4])


def test_logit_mean_is_the_geometric_odds_mean():
    combined = Combiner("logit_mean")(np.array([[0.9, 0.5]]))
    odds = np.sqrt(9.0 * 1.0)
    assert combined == pytest.approx([odds / (1 + odds)])


def test_combiners_reject_bad_configuration():
    with pytest.raises(UsageError, match="unknown combiner"):
        Combiner("max")
    with pytest.raises(UsageError, match="one weight per member"):
        Combiner("weighted")
    with pytest.raises(UsageError, match="2 weights for 3 members"):
        Combiner("weighted", (1.0, 1.0))(MEMBERS)


def test_stacked_combiner_learns_to_trust_the_informative_member():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    good = np.clip(labels * 0.6 + 0.2 + rng.normal(0, 0.1, 400), 0.01, 0.99)
    noise = rng.uniform(0.01, 0.99, 400)
    combiner = fit_stacked(np.column_stack([good, noise]), labels)
    assert abs(combiner.weights[0]) > 5 * abs(combiner.weights[1])
    again = Combiner.from_dict(combiner.to_dict())
    assert again(np.array([[0.9, 0.1], [0.1, 0.9]])) == pytest.approx(combiner(np.array([[0.9, 0.1], [0.1, 0.9]])))
    assert again(np.array([[0.9, 0.5]]))[0] > 0.5 > again(np.array([[0.1, 0.5]]))[0]
    with pytest.raises(UsageError, match="both classes"):
        fit_stacked(np.column_stack([good, noise]), np.zeros(400))


def test_a_non_negative_stack_drops_a_member_that_only_helps_by_subtraction():
    """Member 2 repeats member 0's score minus some label signal: unconstrained, the stack subtracts it (a
    correlation of this validation set); non-negative, it gets weight 0 and the fit is the two-member one."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 4000)
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    first = labels * 1.5 - 0.75 + rng.normal(0, 1, 4000)
    second = labels * 1.0 - 0.5 + rng.normal(0, 1, 4000)
    echo = 0.5 * first - 0.5 * labels + rng.normal(0, 1, 4000)
    probs = sigmoid(np.column_stack([first, second, echo]))
    free, kept = fit_stacked(probs, labels), fit_stacked(probs, labels, weights="non-negative")
    assert free.weights[2] < -0.2 and min(free.weights[:2]) > 0.5
    assert kept.weights[2] == 0.0 and min(kept.weights) >= 0.0
    two = fit_stacked(probs[:, :2], labels)  # where the constraint does not bind, the same fit as sklearn's
    assert kept.weights[:2] == pytest.approx(two.weights, abs=1e-3)
    assert kept.intercept == pytest.approx(two.intercept, abs=1e-3)
    assert fit_stacked(probs[:, :2], labels, weights="non-negative").weights == pytest.approx(two.weights, abs=1e-3)
    with pytest.raises(UsageError, match="unknown stack weights"):
        fit_stacked(probs, labels, weights="positive")


def test_simple_aggregators_and_clipping():
    probs = [0.0, 0.2, 0.9, 1.0]
    assert Aggregator("mean", clip=0.0)(probs) == pytest.approx(0.525)
    assert Aggregator("mean", clip=0.1)(probs) == pytest.approx((0.1 + 0.2 + 0.9 + 0.9) / 4)
    assert Aggregator("median", clip=0.0)(probs) == pytest.approx(0.55)
    weighted = Aggregator("confidence_weighted", clip=0.0)([0.5, 0.5, 0.95])
    assert weighted > 0.9  # unsure frames barely count


def test_confident_rule_averages_only_the_confident_fakes_when_there_are_enough():
    probs = [0.95] * 13 + [0.3] * 17  # 13 of 30 confidently fake: > 40% and >= 11
    assert Aggregator("confident")(probs) == pytest.approx(0.95)


def test_confident_rule_needs_both_the_fraction_and_the_count():
    too_few = [0.95] * 10 + [0.3] * 10  # 50% but only 10 frames
    assert Aggregator("confident")(too_few) == pytest.approx(np.mean(too_few))
    too_rare = [0.95] * 12 + [0.3] * 20  # 12 frames but only 37.5%
    assert Aggregator("confident")(too_rare) == pytest.approx(np.mean(too_rare))


def test_confident_rule_for_clearly_real_videos():
    probs = [0.05] * 19 + [0.6]  # 95% confidently real
    assert Aggregator("confident")(probs) == pytest.approx(0.05)
    mixed = [0.05] * 17 + [0.6] * 3  # only 85%
    assert Aggregator("confident")(mixed) == pytest.approx(np.mean(mixed))


def test_aggregator_edge_cases():
    assert Aggregator("confident")([0.7]) == pytest.approx(0.7)
    with pytest.raises(ValueError):
        Aggregator("mean")([])
    with pytest.raises(UsageError, match="unknown aggregator"):
        Aggregator("max")
    assert Aggregator.from_dict(Aggregator("median", clip=0.05).to_dict()) == Aggregator("median", clip=0.05)


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)


def test_two_people_walking_get_two_tracks():
    positions, boxes = [], []
    for t in range(10):
        positions += [t, t]
        boxes += [(100 + 5 * t, 100, 200 + 5 * t, 200), (600 - 8 * t, 120, 700 - 8 * t, 220)]
    tracks = link_tracks(positions, boxes)
    assert tracks[0::2] == [0] * 10 and tracks[1::2] == [1] * 10


def test_track_survives_a_short_gap_but_not_a_long_one():
    box = (100, 100, 200, 200)
    assert link_tracks([0, 1, 4], [box] * 3, TrackConfig(max_gap=3)) == [0, 0, 0]
    assert link_tracks([0, 1, 6], [box] * 3, TrackConfig(max_gap=3)) == [0, 0, 1]


def test_fast_motion_is_linked_by_centre_distance_and_far_faces_are_not():
    assert link_tracks([0, 1], [(100, 100, 200, 200), (150, 100, 250, 200)]) == [0, 0]  # IoU 0.33
    assert link_tracks([0, 1], [(100, 100, 200, 200), (145, 130, 245, 230)]) == [0, 0]  # IoU < 0.25, close centre
    assert link_tracks([0, 1], [(100, 100, 200, 200), (600, 100, 700, 200)]) == [0, 1]  # 5 face sizes away


def test_a_face_crossing_the_frame_fast_stays_one_track_when_its_size_agrees():
    """As the woman walking past the camera in multi_face/crowd.mp4: 3.3 face sizes per sampled frame."""
    walker = [(100 + 330 * t, 400, 200 + 330 * t, 510) for t in range(4)]
    assert link_tracks([0, 1, 2, 3], walker) == [0, 0, 0, 0]
    # a face of another size that far away is someone else; so is one beyond max_jump
    assert link_tracks([0, 1], [walker[0], (430, 400, 580, 550)]) == [0, 1]
    assert link_tracks([0, 1], [walker[0], (600, 400, 700, 510)]) == [0, 1]  # 4.5 face sizes
    # the near pairing comes first: a face that stayed put keeps its track, the far one of the same size starts
    # its own when no track is left over
    still = (900, 100, 1000, 210)
    assert link_tracks([0, 1, 1], [still, still, (1230, 100, 1330, 210)]) == [0, 0, 1]


def test_a_box_of_another_size_starts_its_own_track_and_leaves_the_face_linked():
    """A stray box three times the face's size near it (the whole upper frame, as at frame 60 of DFDC's
    yhffcuhhjy) is not linked into the face's track, and the face after it is linked to the face before."""
    face, stray = (300, 100, 360, 160), (200, 0, 380, 180)
    assert link_tracks([0, 1, 2], [face, stray, face]) == [0, 1, 0]
    assert link_tracks([0, 1], [face, (290, 95, 370, 175)]) == [0, 0]  # 1.33x: a face coming closer
    assert link_tracks([0, 1], [face, stray], TrackConfig(max_size_ratio=4.0)) == [0, 0]
