"""The false-alarm budget (ensembles/budget.py) on synthetic verdicts: the threshold is the lowest that keeps
both sets' reals within the budget, the mouth-motion member's flags count at every threshold, and a verdict
re-judged at its own threshold is the verdict itself."""
import numpy as np
import pytest

from ensembles.budget import false_alarms, lowest_threshold_within, p_fake_at, read_dev_labels
from pipeline.errors import DataError, UsageError
from tests.unit.test_mouth_motion import MOTION, talking
from tests.unit.test_track_rules import ensemble, verdict_of

NETS = np.linspace(0.05, 0.95, 20)  # the nets' scores of 20 real files


def reals(model, frozen=()):
    """20 real files, one talking person each; those in `frozen` with a mouth that barely moves."""
    return [verdict_of(model, [talking(mouth=0.0005 if k in frozen else 0.08, seed=k)], [p]) for k, p in enumerate(NETS)]


def test_the_threshold_is_the_lowest_that_keeps_each_set_within_the_budget():
    model = ensemble(threshold=0.5)
    files = reals(model)
    loose_val = np.linspace(0.0, 0.5, 1000)  # validation alone would allow 0.48
    threshold = lowest_threshold_within(0.05, loose_val, files, model)
    assert false_alarms(files, threshold, model)[0] == 0.05  # 1 of 20: the budget, exactly
    assert false_alarms(files, threshold - 1e-3, model)[0] > 0.05  # any lower and the set breaks it
    assert NETS[-2] - 1e-4 < threshold <= NETS[-1]  # (track scores are kept to 4 decimals)
    strict_val = np.linspace(0.0, 1.0, 1001)  # now validation needs >= 0.95
    threshold = lowest_threshold_within(0.05, strict_val, files, model)
    assert (strict_val >= threshold).mean() <= 0.05 and (strict_val >= threshold - 2e-3).mean() > 0.05


def test_reals_the_mouth_motion_member_flags_count_at_every_threshold():
    model = ensemble(threshold=0.5, mouth_motion=MOTION)
    files = reals(model, frozen={0})  # the nets' lowest-scored real, its mouth frozen
    assert files[0].verdict == "FAKE"
    for threshold in (0.3, 0.6, 0.99):
        assert files[0].file_name in false_alarms(files, threshold, model)[1]
    # one file flagged by the member uses the whole budget of 1 in 20: the nets may flag none
    threshold = lowest_threshold_within(0.05, np.zeros(10), files, model)
    assert NETS[-1] < threshold and false_alarms(files, threshold, model)[1] == [files[0].file_name]
    # two such files: no threshold meets the budget
    assert lowest_threshold_within(0.05, np.zeros(10), reals(model, frozen={0, 1}), model) is None


def test_a_verdict_re_judged_at_its_own_threshold_is_unchanged():
    model = ensemble(threshold=0.5, mouth_motion=MOTION)
    for verdict in reals(model, frozen={3, 7}):
        assert p_fake_at(verdict, 0.5, model) == pytest.approx(verdict.p_fake, abs=1e-4)


def test_the_dev_set_labels_are_checked(tmp_path):
    with pytest.raises(UsageError, match="labels.csv not found"):
        read_dev_labels(tmp_path)
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "labels.csv").write_text("file,label\na.mp4,maybe\n")
    with pytest.raises(DataError, match="REAL or FAKE"):
        read_dev_labels(tmp_path)
    (tmp_path / "labels.csv").write_text("file,label\na.mp4,FAKE\nb.mp4,REAL\n")
    with pytest.raises(DataError, match="1 labelled file"):
        read_dev_labels(tmp_path)
    (tmp_path / "labels.csv").write_text("file,label\na.mp4,fake\n")
    with pytest.raises(DataError, match="no REAL file"):
        read_dev_labels(tmp_path)
