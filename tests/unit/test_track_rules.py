"""Track rules on synthetic tracks: a face that never changes shape (a photo in the frame) or one far smaller
than the main faces does not vote, a short track does not either, the verdict names the deciding track, and
when no track passes the rules the longest one decides with a warning (issue 11, item 6)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ensembles.ensemble import Ensemble, EnsembleConfig, Member
from ensembles.tracks import SMALL, STATIC, rule_tracks, shape_spread
from pipeline.detectors import Detection
from pipeline.errors import UsageError

# five MTCNN-style landmarks (eyes, nose, mouth corners) relative to the box, in fractions of its size
SHAPE = np.array([(0.3, 0.35), (0.7, 0.35), (0.5, 0.55), (0.35, 0.75), (0.65, 0.75)])
RULES = dict(min_track_fraction=0.2, min_size_fraction=0.3, min_shape_spread=0.75, max_static_travel=0.15,
             min_static_faces=5)


def face(x, y, size, shape=SHAPE, rng=None, noise=0.0):
    """A box and its landmarks for a face of `size` px at (x, y); `noise`: landmark jitter in px."""
    marks = np.array([x, y]) + shape * size
    if rng is not None:
        marks = marks + rng.normal(0, noise, marks.shape)
    return (x, y, x + size, y + size), tuple(map(tuple, marks))


def photo_track(n=20, size=48.0, camera=None, seed=0):
    """A rigid face: one shape, only detector jitter; `camera(t)` -> (dx, dy, zoom) moves the whole frame."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n):
        dx, dy, zoom = camera(t) if camera else (0.0, 0.0, 1.0)
        out.append(face(10 * zoom + dx, 420 * zoom + dy, size * zoom, rng=rng, noise=0.1))
    return out


def live_track(n=20, size=120.0, seed=1, mouth=0.05, still=True):
    """A talking face: the mouth opens and closes, eyes blink, the head turns a little; `still`: it stays put."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n):
        shape = SHAPE.copy()
        shape[3:, 1] += mouth * np.sin(t * 1.3)  # mouth corners
        shape[3, 0] -= mouth / 2 * np.cos(t * 0.7)
        shape[:2, 1] += 0.02 * (t % 4 == 0)  # a blink
        shape[2, 0] += 0.03 * np.sin(t * 0.4)  # the head turns: the nose moves across
        x = 300.0 if still else 300.0 + 15 * t
        out.append(face(x, 200.0, size, shape, rng=rng, noise=0.1))
    return out


def shaky(t):
    """A handheld camera: the frame shifts by tens of pixels and zooms by up to 10%."""
    return 40 * np.sin(t), 25 * np.cos(0.7 * t), 1.0 + 0.1 * np.sin(0.3 * t)


def spread(track, scale=1.0):
    boxes, marks = zip(*track)
    return shape_spread(list(boxes), list(marks), 5, scale)


def test_shape_spread_tells_a_photo_from_a_still_talking_face():
    assert spread(photo_track()) < 0.75 < spread(live_track())
    assert spread(live_track(still=False)) == pytest.approx(spread(live_track()), rel=0.05)  # walking: same shape


def test_camera_motion_does_not_make_a_photo_move():
    still, shaken = spread(photo_track()), spread(photo_track(camera=shaky))
    assert shaken < 0.75 and shaken == pytest.approx(still, rel=0.3)


def test_shape_spread_is_in_detector_pixels_and_needs_enough_faces():
    assert spread(live_track(), scale=0.5) == pytest.approx(spread(live_track()) / 2)
    assert spread(live_track(n=4)) is None  # too few faces to tell
    boxes, _ = zip(*live_track())
    assert shape_spread(list(boxes), [None] * len(boxes)) is None  # a detector without landmarks


def test_a_stray_box_in_a_photo_track_does_not_make_it_move():
    track = photo_track()
    twisted = SHAPE + np.array([(0.1, -0.1), (-0.1, 0.0), (0.2, 0.1), (0.0, -0.2), (-0.1, 0.1)])
    track[6] = face(-40, -110, 470, twisted)  # a huge false box linked into the track (seen in yhffcuhhjy)
    assert spread(track) < 0.75
    track[7] = face(12, 418, 50, twisted)  # a face-sized one with another shape does count: it moved
    assert spread(track) > 0.75


def people(*tracks, positions=None):
    """Faces of several tracks, frame by frame, with their track ids, boxes and landmarks."""
    ids, boxes, marks, frames = [], [], [], []
    for track_id, track in enumerate(tracks):
        for t, (box, mark) in enumerate(track):
            ids.append(track_id)
            boxes.append(box)
            marks.append(mark)
            frames.append(t)
    return ids, boxes, marks, frames


def test_rules_exclude_the_photo_and_a_tiny_face_and_keep_the_person():
    ids, boxes, marks, _ = people(live_track(), photo_track(size=48), live_track(size=30, seed=2))
    facts = rule_tracks(ids, boxes, marks, **RULES)
    assert [facts[t].excluded for t in (0, 1, 2)] == [None, STATIC, SMALL]
    assert facts[0].face_size == pytest.approx(120) and facts[0].shape_spread > 0.75


def test_a_large_photo_does_not_make_the_live_person_small():
    ids, boxes, marks, _ = people(photo_track(size=600), live_track(size=120))
    facts = rule_tracks(ids, boxes, marks, **RULES)
    assert (facts[0].excluded, facts[1].excluded) == (STATIC, None)


def test_a_lone_still_face_is_never_static():
    """Alone in its clip, a still face cannot be told from a photo by shape alone: it votes, with no warning."""
    ids, boxes, marks, _ = people(photo_track())
    assert rule_tracks(ids, boxes, marks, **RULES)[0].excluded is None
    verdict = verdict_of(ensemble(threshold=0.5), [photo_track()], [0.8])
    assert verdict.deciding_track == 0 and verdict.warnings == []


def test_a_small_face_walking_past_is_not_static():
    walker = [face(100.0 + 25 * t, 300.0, 20.0, rng=np.random.default_rng(t), noise=0.05) for t in range(8)]
    ids, boxes, marks, _ = people(live_track(size=60), walker)
    facts = rule_tracks(ids, boxes, marks, **RULES)
    assert facts[1].shape_spread < 0.75 and facts[1].travel > 0.15  # rigid-looking, but it walks
    assert facts[1].excluded is None


def test_a_photo_on_a_shaking_camera_is_static_only_when_travel_is_not_asked():
    ids, boxes, marks, _ = people(live_track(), photo_track(camera=shaky))
    assert rule_tracks(ids, boxes, marks, **RULES)[1].excluded is None  # it wanders with the camera: it votes
    shape_only = {**RULES, "max_static_travel": float("inf")}
    assert rule_tracks(ids, boxes, marks, **shape_only)[1].excluded == STATIC


def test_without_landmarks_no_track_is_static():
    ids, boxes, _, _ = people(live_track(), photo_track())
    facts = rule_tracks(ids, boxes, None, **RULES)
    assert all(f.excluded is None and f.shape_spread is None for f in facts.values())


def ensemble(**fields):
    config = EnsembleConfig(members=("x.pt",), **fields)
    return Ensemble(config, [Member("x", None, None)], torch.device("cpu"))


def verdict_of(ensemble_, tracks, probs):
    """The verdict of a video holding `tracks` (per-face box and landmarks), scored `probs` per track."""
    faces_meta, member_probs = [], []
    for track, p in zip(tracks, probs):
        for t, (box, marks) in enumerate(track):
            faces_meta.append((t, 10 * t, t / 3, Detection(box, 0.99, marks)))
            member_probs.append([p])
    order = sorted(range(len(faces_meta)), key=lambda i: faces_meta[i][0])
    return ensemble_._verdict(Path("clip.mp4"), "video",
                              max(len(t) for t in tracks), [faces_meta[i] for i in order],
                              np.asarray([member_probs[i] for i in order]), {"total": 1.0})


def test_the_photo_on_the_wall_does_not_decide_and_the_verdict_says_who_did():
    verdict = verdict_of(ensemble(threshold=0.5), [live_track(), photo_track()], [0.3, 0.95])
    assert verdict.verdict == "REAL" and verdict.p_fake == pytest.approx(0.3)
    person, photo = sorted(verdict.tracks, key=lambda t: -t.face_size)
    assert verdict.deciding_track == person.track and person.counted and person.excluded is None
    assert not photo.counted and photo.excluded == "static"
    data = json.loads(verdict.to_json())
    assert data["deciding_track"] == person.track
    assert {t["track"]: t["excluded"] for t in data["tracks"]} == {person.track: None, photo.track: "static"}
    assert verdict.per_model == {"x": pytest.approx(0.3)} and not verdict.warnings


def test_a_swap_on_a_live_person_still_decides_beside_a_photo():
    verdict = verdict_of(ensemble(threshold=0.5), [live_track(), photo_track()], [0.9, 0.1])
    assert verdict.verdict == "FAKE" and verdict.deciding_track == 0


def test_when_only_a_photo_is_seen_the_longest_track_decides_with_a_warning():
    verdict = verdict_of(ensemble(threshold=0.5), [photo_track(n=20), photo_track(n=12, seed=3)], [0.8, 0.2])
    assert verdict.verdict == "FAKE" and verdict.p_fake == pytest.approx(0.8)
    assert verdict.deciding_track == 0
    assert [t.counted for t in verdict.tracks] == [True, False]
    assert [t.excluded for t in verdict.tracks] == [None, "static"]
    assert len(verdict.warnings) == 1 and "(#0 static, #1 static), so the longest, #0, decides" in verdict.warnings[0]


def test_mean_policy_names_a_deciding_track_only_when_one_votes():
    two = verdict_of(ensemble(track_policy="mean"), [live_track(), live_track(seed=5, still=False)], [0.2, 0.6])
    assert two.deciding_track is None and two.p_fake == pytest.approx(0.4)
    one = verdict_of(ensemble(track_policy="mean"), [live_track(), photo_track()], [0.2, 0.6])
    assert one.deciding_track == 0 and one.p_fake == pytest.approx(0.2)


def test_rules_round_trip_and_older_ensemble_files_get_the_defaults(tmp_path):
    names = ("min_size_fraction", "min_shape_spread", "max_static_travel", "min_static_faces")
    config = EnsembleConfig(members=("x.pt",), **dict(zip(names, (0.25, 0.5, 0.3, 7))))
    config.save(tmp_path / "new.json")
    loaded = EnsembleConfig.load(tmp_path / "new.json")
    assert [getattr(loaded, name) for name in names] == [0.25, 0.5, 0.3, 7]
    older = config.to_dict()
    for name in names:
        older.pop(name)
    (tmp_path / "old.json").write_text(json.dumps(older))
    defaults = EnsembleConfig(members=("x.pt",))
    old = EnsembleConfig.load(tmp_path / "old.json")
    assert [getattr(old, name) for name in names] == [getattr(defaults, name) for name in names]


@pytest.mark.parametrize("fields", [dict(min_size_fraction=1.0), dict(min_shape_spread=-1.0),
                                    dict(max_static_travel=-0.1), dict(min_static_faces=1)])
def test_bad_rule_values_are_refused(fields):
    with pytest.raises(UsageError):
        EnsembleConfig(members=("x.pt",), **fields)
