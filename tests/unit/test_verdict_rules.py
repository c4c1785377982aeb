"""Verdict rules on hand-made scores: track-level judging (a swap on one of two people must not be averaged
away), low evidence, warnings, and unique report names."""
from pathlib import Path

import numpy as np
import pytest
import torch

from ensembles.aggregate import Aggregator
from ensembles.ensemble import Ensemble, EnsembleConfig
from ensembles.report import ReportNames
from ensembles.verdict import MIN_EVIDENCE_FACES, TrackScore, VideoVerdict, low_evidence_note
from pipeline.sampling import SamplingConfig


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


# -- low evidence, damage and report names (issue 10) ------------------------------------------
def test_low_evidence_rule_counts_the_deciding_faces_of_a_video():
    assert low_evidence_note("video", MIN_EVIDENCE_FACES - 1).startswith("low evidence")
    assert "1 scored face of" in low_evidence_note("video", 1)
    assert low_evidence_note("video", MIN_EVIDENCE_FACES) == ""
    assert low_evidence_note("image", 1) == ""  # a photo holds one face per person by nature
    # the advice is denser than the sampling that was used, or none when every frame was read
    assert low_evidence_note("video", 2).endswith("denser sampling with classify-video --every 5)")
    assert low_evidence_note("video", 2, SamplingConfig(every=5)).endswith("classify-video --every 2)")
    assert low_evidence_note("video", 2, SamplingConfig(every=None, frames=8)).endswith("--frames 16)")
    assert low_evidence_note("video", 2, SamplingConfig(every=1)).endswith("a longer clip gives more)")


def one_verdict(**fields) -> VideoVerdict:
    common = dict(path="clip.mp4", video_id="clip", verdict="FAKE", p_fake=0.8, threshold=0.5, per_model={},
                  tracks=[], n_frames=2, n_faces=2, media_type="video", aggregator="mean", combiner="mean",
                  timings={"total": 1.0})
    return VideoVerdict(**{**common, **fields})


def test_warnings_follow_the_verdict_line_and_reach_the_json():
    verdict = one_verdict(damaged=True, warnings=["decoded 60 of 300 announced frames (truncated or damaged video?)"])
    line, warning = verdict.summary_line().splitlines()
    assert line.startswith("FAKE") and "clip.mp4" in line
    assert warning == "  warning: decoded 60 of 300 announced frames (truncated or damaged video?)"
    data = verdict.to_dict()
    assert (data["damaged"], data["low_evidence"], data["report"]) == (True, False, None)
    assert not verdict.complete and one_verdict().complete and not one_verdict(verdict="ERROR").complete
    assert one_verdict().summary_line().count("\n") == 0


def test_the_summary_line_counts_every_person_the_json_lists():
    tracks = [TrackScore(track=k, p_fake=0.5, n_faces=6, first_frame=0, last_frame=5, counted=k < 2,
                         excluded=None if k < 2 else "short") for k in range(3)]
    assert "  tracks=3 (2 counted)  " in one_verdict(tracks=tracks).summary_line()
    assert "  tracks=2  " in one_verdict(tracks=tracks[:2]).summary_line()


def test_report_names_are_unique_and_deterministic(tmp_path):
    a, b = tmp_path / "a" / "clip.mp4", tmp_path / "b" / "clip.mp4"
    names = ReportNames()
    first, second = names.name_for(a.parent, a), names.name_for(b.parent, b)
    assert first == Path("clip.png") and second.name.startswith("clip~") and second.suffix == ".png"
    assert names.name_for(a.parent, a) == first  # the same file keeps its name
    again = ReportNames()
    assert [again.name_for(a.parent, a), again.name_for(b.parent, b)] == [first, second]
    walked = ReportNames()
    assert [walked.name_for(tmp_path, a), walked.name_for(tmp_path, b)] == [Path("a/clip.png"), Path("b/clip.png")]
    other = ReportNames()  # another extension, or a name differing only in case, is another input too
    names_seen = {other.name_for(tmp_path, tmp_path / n) for n in ("x.mp4", "x.avi", "X.mov", "we ird?.mp4")}
    assert len(names_seen) == 4 and Path("we_ird.png") in names_seen
