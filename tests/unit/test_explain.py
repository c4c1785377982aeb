"""The verdict in words (issue 13): bands around the threshold, persons named by how much they are seen, the
deciding person, the evidence, and low-confidence detections."""
import json
from dataclasses import replace

import pytest

from ensembles.explain import (EXCLUDED_WORDS, confidence_band, evidence_words, explained, low_confidence_floor,
                               margin, name_tracks)
from ensembles.verdict import TrackScore, VideoVerdict
from pipeline.sampling import SamplingConfig
from tests.unit.test_track_rules import ensemble, live_track, photo_track, verdict_of


@pytest.mark.parametrize("p_fake, band", [
    (0.99, "very likely fake"), (0.95, "very likely fake"), (0.70, "likely fake"), (0.563, "borderline"),
    (0.48, "borderline"), (0.40, "borderline"), (0.30, "likely real"), (0.05, "very likely real"),
])
def test_bands_are_measured_from_the_threshold(p_fake, band):
    assert confidence_band(p_fake, 0.472) == band


def test_the_threshold_is_the_middle_of_the_borderline_band_whatever_its_value():
    for threshold in (0.2, 0.5, 0.8):
        assert margin(threshold, threshold) == 0 and margin(1.0, threshold) == 1 and margin(0.0, threshold) == -1
        assert confidence_band(threshold, threshold) == "borderline"
    assert confidence_band(0.35, 0.2) == "borderline" and confidence_band(0.3, 0.8) == "very likely real"
    assert confidence_band(None, 0.5) is None


def test_low_confidence_is_the_lower_two_thirds_above_the_detectors_threshold():
    assert low_confidence_floor(0.7) == pytest.approx(0.9)
    assert low_confidence_floor(0.5) == pytest.approx(5 / 6)


def track(number, n_faces, first=0):
    return TrackScore(track=number, p_fake=0.5, n_faces=n_faces, first_frame=first, last_frame=first + n_faces,
                      counted=True)


def test_persons_are_numbered_by_how_often_they_are_seen():
    named = name_tracks([track(0, 3), track(1, 20), track(2, 3, first=5), track(3, 8)], n_frames=25,
                        frames_seen={0: 3, 1: 20, 2: 3, 3: 8})
    assert [(t.track, t.label, t.frame_share) for t in named] == [
        (0, "person 3", 0.12), (1, "person 1", 0.8), (2, "person 4", 0.12), (3, "person 2", 0.32)]


def explain(verdict, sampling=SamplingConfig(every=10)):
    return explained(replace(verdict, duration=10.0), sampling)


def test_a_fake_names_the_deciding_person_and_the_photo_left_out():
    verdict = explain(verdict_of(ensemble(threshold=0.5), [live_track(), photo_track()], [0.97, 0.2]))
    assert verdict.verdict == "FAKE" and verdict.band == "very likely fake"
    person = next(t for t in verdict.tracks if t.track == verdict.deciding_track)
    photo = next(t for t in verdict.tracks if t.track != verdict.deciding_track)
    assert person.label == "person 1" and person.frame_share == 1.0
    assert verdict.decided_by == "person 1 (100% of sampled frames)"
    assert person.description == "person 1 (100% of sampled frames): p_fake 0.97, decided the verdict"
    assert photo.description.endswith(f"not counted: {EXCLUDED_WORDS['static']}")
    assert verdict.explanation == (
        "Very likely fake: p_fake 0.97 is well above the threshold 0.50. Decided by person 1 (100% of sampled "
        f"frames). Not counted: {photo.label}, {EXCLUDED_WORDS['static']}.")
    assert verdict.evidence == "40 faces scored in 20 sampled frames (every 10th frame) of a 10.0 s clip"
    data = json.loads(verdict.to_json())
    assert data["band"] == "very likely fake" and data["decided_by"] == verdict.decided_by
    assert {t["label"] for t in data["tracks"]} == {"person 1", "person 2"}


def test_a_borderline_real_says_to_look_closer_and_the_summary_line_shows_the_band():
    verdict = explain(verdict_of(ensemble(threshold=0.5), [live_track()], [0.45]))
    assert verdict.verdict == "REAL" and verdict.band == "borderline"
    assert verdict.explanation.startswith("Borderline: p_fake 0.45 is just below the threshold 0.50; treat it as "
                                          "undecided and look closer.")
    assert "(threshold 0.500, borderline)" in verdict.summary_line()


def test_no_face_and_error_have_no_band_and_say_why():
    no_face = VideoVerdict(path="x.mp4", video_id="x", verdict="NO_FACE", p_fake=None, threshold=0.5, per_model={},
                           tracks=[], n_frames=12, n_faces=0, media_type="video", aggregator="mean", combiner="mean",
                           timings={})
    words = explain(no_face)
    assert words.band is None and words.decided_by is None
    assert words.explanation.startswith("No face was found in the 12 sampled frames")
    assert words.evidence == "0 faces scored in 12 sampled frames (every 10th frame) of a 10.0 s clip"
    error = explain(replace(no_face, verdict="ERROR", message="x.mp4: not a video or image file", n_frames=0))
    assert error.explanation == "x.mp4: not a video or image file" and error.evidence == "" and error.band is None


def test_an_image_speaks_of_the_image_not_of_frames():
    verdict = verdict_of(ensemble(threshold=0.5), [live_track(n=1)], [0.7])
    words = explained(replace(verdict, media_type="image"), None)
    assert words.decided_by == "person 1 (in the image)"
    assert words.evidence == "1 face scored in one image"


@pytest.mark.parametrize("sampling, expected", [
    (SamplingConfig(every=1), "every frame"), (SamplingConfig(every=2), "every 2nd frame"),
    (SamplingConfig(every=11), "every 11th frame"), (SamplingConfig(every=None, frames=8), "8 frames spread"),
])
def test_the_evidence_says_how_frames_were_sampled(sampling, expected):
    verdict = verdict_of(ensemble(threshold=0.5), [live_track()], [0.2])
    assert expected in evidence_words(replace(verdict, duration=75.0), sampling)
    assert "of a 1 min 15.0 s clip" in evidence_words(replace(verdict, duration=75.0), sampling)


def test_a_verdict_raised_by_the_mouth_motion_check_says_so():
    from tests.unit.test_mouth_motion import MOTION, talking

    model = ensemble(threshold=0.5, mouth_motion=MOTION)
    still = explained(verdict_of(model, [talking(mouth=0.002)], [0.2]))
    assert still.verdict == "FAKE"
    assert "Only the mouth-motion check calls it fake" in still.explanation and "nets alone give 0.20" in \
        still.explanation
    assert still.tracks[0].description.endswith("(from its mouth motion), decided the verdict")
    speaking = explained(verdict_of(model, [talking(mouth=0.08)], [0.2]))
    assert "mouth-motion" not in speaking.explanation and "mouth motion" not in speaking.tracks[0].description
