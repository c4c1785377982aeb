"""Track-level judging on hand-made scores: a swap on one of two people must not be averaged away."""
import numpy as np
import pytest
import torch

from ensembles.aggregate import Aggregator
from ensembles.ensemble import Ensemble, EnsembleConfig


def judge(policy, positions, boxes, probs, aggregator="mean"):
    config = EnsembleConfig(members=("x.pt",), track_policy=policy, aggregator=Aggregator(aggregator))
    return Ensemble(config, [], torch.device("cpu")).video_score(positions, boxes, np.asarray(probs))


def two_people(n=10):
    positions, boxes, probs = [], [], []
    for t in range(n):
        positions += [t, t]
        boxes += [(100, 100, 200, 200), (600, 100, 700, 200)]
        probs += [0.1, 0.9]  # person A real, person B swapped
    return positions, boxes, probs


def test_most_suspicious_track_decides():
    score, tracks, ids = judge("max", *two_people())
    assert score == pytest.approx(0.9)
    assert len(tracks) == 2 and sorted(t.p_fake for t in tracks) == pytest.approx([0.1, 0.9])
    assert pooled_mean(two_people()) == pytest.approx(0.5)  # what frame pooling would have said


def pooled_mean(data):
    return float(np.mean(data[2]))


def test_mean_policy_weights_tracks_by_length():
    score, _, _ = judge("mean", *two_people())
    assert score == pytest.approx(0.5)


def test_a_spurious_short_track_does_not_vote():
    positions, boxes, probs = [], [], []
    for t in range(20):
        positions.append(t)
        boxes.append((100, 100, 200, 200))
        probs.append(0.1)
    positions.append(7)
    boxes.append((900, 500, 940, 540))  # one stray detection, scored very fake
    probs.append(0.99)
    score, tracks, _ = judge("max", positions, boxes, probs)
    assert score == pytest.approx(0.1)
    assert [t.counted for t in tracks] == [True, False]


def test_confident_aggregator_inside_a_track():
    positions = list(range(30))
    boxes = [(100, 100, 200, 200)] * 30
    probs = [0.95] * 14 + [0.3] * 16
    score, _, _ = judge("max", positions, boxes, probs, aggregator="confident")
    assert score == pytest.approx(0.95)
