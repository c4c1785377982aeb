"""Frame- and video-level metrics: known values, agreement with scikit-learn, single-class sets."""
from __future__ import annotations

import logging

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

from models.metrics import (auc_difference_interval, auc_interval, binary_metrics, describe, equal_error_rate, frame_and_video_metrics,
                            rate_interval, video_scores)


def test_a_perfect_detector():
    metrics = binary_metrics([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert metrics["roc_auc"] == 1.0 and metrics["eer"] == 0.0 and metrics["average_precision"] == 1.0
    assert metrics["accuracy"] == metrics["precision"] == metrics["recall"] == metrics["f1"] == 1.0
    assert metrics["specificity"] == 1.0
    assert metrics["confusion_matrix"] == [[2, 0], [0, 2]]
    assert (metrics["n"], metrics["n_real"], metrics["n_fake"]) == (4, 2, 2)


def test_known_values_at_the_threshold():
    # REAL: 0.1 (TN), 0.6 (FP); FAKE: 0.4 (FN), 0.9 (TP), 0.7 (TP)
    metrics = binary_metrics([0, 0, 1, 1, 1], [0.1, 0.6, 0.4, 0.9, 0.7])
    assert metrics["confusion_matrix"] == [[1, 1], [1, 2]]  # rows true REAL/FAKE, columns predicted
    assert metrics["accuracy"] == pytest.approx(3 / 5)
    assert metrics["precision"] == pytest.approx(2 / 3) and metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["specificity"] == pytest.approx(1 / 2)
    assert metrics["roc_auc"] == pytest.approx(5 / 6)


def test_agrees_with_scikit_learn_on_random_scores():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    p = np.clip(0.3 * y + rng.random(500) * 0.7, 0, 1)
    metrics = binary_metrics(y, p)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert metrics["average_precision"] == pytest.approx(average_precision_score(y, p))
    assert metrics["log_loss"] == pytest.approx(log_loss(y, p))
    predicted = p >= 0.5
    assert metrics["specificity"] == pytest.approx(np.mean(~predicted[y == 0]))
    assert metrics["recall"] == pytest.approx(np.mean(predicted[y == 1]))


def test_equal_error_rate_is_where_false_alarms_meet_misses():
    y = np.array([0] * 100 + [1] * 100)
    p = np.concatenate([np.linspace(0, 0.6, 100), np.linspace(0.4, 1.0, 100)])  # overlap 0.4..0.6
    eer, threshold = equal_error_rate(y, p)
    false_alarms = np.mean(p[y == 0] >= threshold)
    misses = np.mean(p[y == 1] < threshold)
    assert eer == pytest.approx(false_alarms, abs=0.011) and eer == pytest.approx(misses, abs=0.011)
    assert 0.1 < eer < 0.25 and 0.45 < threshold < 0.55


def test_one_class_only_gives_undefined_auc_not_a_crash(caplog):
    with caplog.at_level(logging.WARNING):
        metrics = binary_metrics([1, 1, 1], [0.2, 0.7, 0.9], name="test videos")
    assert metrics["roc_auc"] is None and metrics["eer"] is None and metrics["average_precision"] is None
    assert metrics["accuracy"] == pytest.approx(2 / 3) and metrics["specificity"] is None
    assert "test videos: only one class (FAKE)" in caplog.text
    assert "AUC n/a" in describe(metrics)


def test_video_level_is_the_mean_of_frame_probabilities():
    videos = video_scores(["b", "a", "a", "b", "c"], [1, 0, 0, 1, 0], [0.9, 0.2, 0.4, 0.5, 0.6])
    assert videos["video_id"].tolist() == ["a", "b", "c"]
    assert videos["p_fake"].tolist() == pytest.approx([0.3, 0.7, 0.6])
    assert videos["n_frames"].tolist() == [2, 2, 1] and videos["label"].tolist() == [0, 1, 0]
    with pytest.raises(ValueError, match="both labels"):
        video_scores(["a", "a"], [0, 1], [0.5, 0.5])


def test_frame_and_video_levels_differ_when_averaging_helps():
    # each FAKE video has one low frame; averaging lifts every FAKE video above every REAL one
    ids = ["r1", "r1", "r2", "r2", "f1", "f1", "f2", "f2"]
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    p = [0.3, 0.4, 0.35, 0.45, 0.2, 0.9, 0.25, 0.95]
    metrics = frame_and_video_metrics(ids, y, p)
    assert metrics["video"]["n"] == 4 and metrics["frame"]["n"] == 8
    assert metrics["video"]["roc_auc"] == 1.0 and metrics["frame"]["roc_auc"] < 1.0


# -- confidence intervals: how far a figure measured on a few dozen files can be trusted -----------
def wilson(hits: int, total: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval written out (Wilson 1927), to check the library call against."""
    rate = hits / total
    centre = (rate + z * z / (2 * total)) / (1 + z * z / total)
    half = z / (1 + z * z / total) * np.sqrt(rate * (1 - rate) / total + z * z / (4 * total * total))
    return centre - half, centre + half


@pytest.mark.parametrize("hits, total", [(13, 24), (2, 14), (0, 14), (24, 24)])
def test_rate_interval_is_the_wilson_interval(hits, total):
    assert rate_interval(hits, total) == pytest.approx(wilson(hits, total), abs=1e-6)


def test_auc_interval_holds_the_measured_auc_and_narrows_with_more_files():
    rng = np.random.default_rng(3)
    small = rng.normal(1.0, 1.0, 24), rng.normal(0.0, 1.0, 14)
    large = rng.normal(1.0, 1.0, 240), rng.normal(0.0, 1.0, 140)
    for fakes, reals in (small, large):
        auc = roc_auc_score(np.r_[np.ones(len(fakes)), np.zeros(len(reals))], np.r_[fakes, reals])
        low, high = auc_interval(fakes, reals)
        assert low < auc < high
    assert np.diff(auc_interval(*large)) < 0.5 * np.diff(auc_interval(*small))
    assert auc_interval(*small) == auc_interval(*small)  # seeded
    assert auc_interval(*small, seed=1) != auc_interval(*small)


def test_auc_interval_covers_the_true_auc_about_as_often_as_it_says():
    """Two normal classes one standard deviation apart: the true ROC-AUC is Phi(1 / sqrt 2) = 0.760. Over 200
    draws of 24 fakes and 14 reals, a 90% interval should hold it about 90% of the time (a percentile
    bootstrap is somewhat optimistic at this size; below 80% it would be misleading)."""
    true_auc = norm.cdf(1 / np.sqrt(2))
    rng = np.random.default_rng(0)
    held = 0
    for draw in range(200):
        low, high = auc_interval(rng.normal(1.0, 1.0, 24), rng.normal(0.0, 1.0, 14), confidence=0.9,
                                 n_resamples=500, seed=draw)
        held += low <= true_auc <= high
    assert 0.8 <= held / 200 <= 0.97


def test_intervals_need_two_of_each_class():
    assert auc_interval([0.2, 0.9], [0.1]) is None  # one real: nothing to resample
    with pytest.raises(ValueError, match="at least one trial"):
        rate_interval(0, 0)


def test_auc_difference_interval_is_paired():
    """Two detectors that score the same 24 fakes and 14 reals almost alike: each AUC alone is uncertain by
    +-0.15, but their difference is pinned near 0, because both are judged on the same resampled files."""
    rng = np.random.default_rng(5)
    fakes, reals = rng.normal(1.0, 1.0, 24), rng.normal(0.0, 1.0, 14)
    nudged = fakes + rng.normal(0.0, 0.05, 24), reals + rng.normal(0.0, 0.05, 14)
    low, high = auc_difference_interval(fakes, reals, *nudged)
    assert low <= 0.0 <= high and high - low < 0.08
    assert np.diff(auc_interval(fakes, reals))[0] > 0.2
    assert auc_difference_interval(fakes, reals, fakes, reals) == (0.0, 0.0)


def test_auc_difference_interval_finds_a_real_improvement():
    rng = np.random.default_rng(6)
    fakes, reals = rng.normal(0.5, 1.0, 200), rng.normal(0.0, 1.0, 200)
    better = fakes + 1.5, reals  # every fake scored higher by the second detector
    measured = (roc_auc_score(np.r_[np.ones(200), np.zeros(200)], np.r_[better])
                - roc_auc_score(np.r_[np.ones(200), np.zeros(200)], np.r_[fakes, reals]))
    low, high = auc_difference_interval(fakes, reals, *better)
    assert 0.0 < low < measured < high
    with pytest.raises(ValueError, match="same files"):
        auc_difference_interval(fakes, reals, fakes[:-1], reals)
