"""Self-blended images (models/selfblend.py), the landmark geometry and the dataset that makes them on the fly."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from models.data import FaceDataset, PairedShuffle, Preprocess, outlines_of, picture_boxes_of, points_to_input
from models.selfblend import face_hull, inside_picture, lower_face_hull, outline_hull, sample_rng, self_blend
from pipeline.crops import cut_square, square_crop_box
from pipeline.errors import DataError, UsageError

# MTCNN's face box and five landmarks (eyes, nose, mouth corners) in the 512x512 astronaut photo
ASTRONAUT_BOX = (181.6, 62.54, 267.55, 175.7)
ASTRONAUT_LANDMARKS = ((204.37, 101.5), (248.22, 103.34), (226.24, 129.04), (202.92, 140.79), (247.91, 142.0))


def face_as_dataset_holds_it(astronaut: np.ndarray, size: int = 112) -> tuple[np.ndarray, np.ndarray]:
    """The astronaut's face as FaceDataset holds a crop (uint8 RGB (3, size, size)), with its landmarks there."""
    box = square_crop_box(ASTRONAUT_BOX, 0.3)
    preprocess = Preprocess(size)
    image = preprocess.crop_resize(cut_square(astronaut, box, 224)).numpy()
    return image, points_to_input(ASTRONAUT_LANDMARKS, box, 224, preprocess)


def whole_photo(astronaut: np.ndarray, size: int = 160) -> tuple[np.ndarray, np.ndarray, tuple]:
    """The whole photo (HWC RGB) at `size`, with the landmarks and face box there: room far from the face."""
    scale = size / astronaut.shape[0]
    image = cv2.cvtColor(cv2.resize(astronaut, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    return image, np.array(ASTRONAUT_LANDMARKS) * scale, tuple(v * scale for v in ASTRONAUT_BOX)


# -- the landmark geometry ---------------------------------------------------------------------------
@pytest.mark.parametrize("face_box", [(300, 100, 420, 250), (-30, 40, 110, 220), (520, 230, 630, 350)])
def test_points_follow_the_pixels_through_crop_and_preprocessing(face_box):
    """Three coloured dots drawn in a frame land, after the real crop and preprocessing, where the mapping says
    (boxes inside the frame and across its edges, where the crop is padded)."""
    frame = np.zeros((360, 640, 3), dtype=np.float32)
    x1, y1, x2, y2 = face_box
    points = np.array([(x1 + 0.3 * (x2 - x1), y1 + 0.35 * (y2 - y1)), (x1 + 0.7 * (x2 - x1), y1 + 0.4 * (y2 - y1)),
                       (x1 + 0.45 * (x2 - x1), y1 + 0.75 * (y2 - y1))])
    grid_y, grid_x = np.mgrid[0:360, 0:640]
    for channel, (px, py) in enumerate(points):
        frame[..., channel] = 255 * np.exp(-((grid_x - px) ** 2 + (grid_y - py) ** 2) / (2 * 4.0**2))
    crop_box = square_crop_box(face_box, 0.3)
    preprocess = Preprocess(96)
    image = preprocess.crop_resize(cut_square(frame.astype(np.uint8), crop_box, 224)).numpy().astype(np.float64)

    mapped = points_to_input(points, crop_box, 224, preprocess)
    rows, columns = np.mgrid[0 : image.shape[1], 0 : image.shape[2]]
    for channel in range(3):
        weight = image[2 - channel]  # crop_resize turns BGR into RGB: the frame's channel 0 is the image's 2
        centroid = ((columns * weight).sum() / weight.sum(), (rows * weight).sum() / weight.sum())
        assert centroid == pytest.approx(tuple(mapped[channel]), abs=0.05)  # to a twentieth of a pixel


# -- self_blend ----------------------------------------------------------------------------------------
def test_a_seed_gives_the_same_blend_and_other_seeds_others(astronaut):
    image, landmarks = face_as_dataset_holds_it(astronaut)
    first, first_mask = self_blend(image, landmarks, np.random.default_rng(7))
    again, again_mask = self_blend(image, landmarks, np.random.default_rng(7))
    assert np.array_equal(first, again) and np.array_equal(first_mask, again_mask)
    others = [self_blend(image, landmarks, np.random.default_rng(seed))[0] for seed in range(8, 12)]
    assert all(not np.array_equal(first, other) for other in others)
    assert sample_rng(0, 1, 5).random() == sample_rng(0, 1, 5).random() != sample_rng(0, 2, 5).random()


def test_types_layouts_and_shapes_are_kept(astronaut):
    image, landmarks = face_as_dataset_holds_it(astronaut, size=64)
    blended, mask = self_blend(torch.from_numpy(image), landmarks, np.random.default_rng(0))
    assert isinstance(blended, torch.Tensor) and blended.dtype == torch.uint8 and blended.shape == (3, 64, 64)
    assert isinstance(mask, torch.Tensor) and mask.dtype == torch.float32 and mask.shape == (64, 64)

    hwc = np.ascontiguousarray(image.transpose(1, 2, 0))
    blended_hwc, mask_hwc = self_blend(hwc, landmarks, np.random.default_rng(0))
    assert blended_hwc.dtype == np.uint8 and blended_hwc.shape == (64, 64, 3) and mask_hwc.shape == (64, 64)
    assert np.array_equal(blended_hwc.transpose(2, 0, 1), blended.numpy())  # the layout changes nothing else

    with pytest.raises(ValueError, match="uint8 RGB image"):
        self_blend(image.astype(np.float32), landmarks, np.random.default_rng(0))


def test_the_mask_covers_the_face_and_nothing_far_from_it(astronaut):
    image, landmarks, (x1, y1, x2, y2) = whole_photo(astronaut)
    width, height = x2 - x1, y2 - y1
    far = np.ones(image.shape[:2], dtype=bool)  # outside the face box grown by half its size on every side
    far[int(y1 - height / 2) : int(y2 + height / 2), int(x1 - width / 2) : int(x2 + width / 2)] = False
    nose = tuple(np.round(landmarks[2]).astype(int))
    ratios = set()
    for seed in range(20):
        _, mask = self_blend(image, landmarks, np.random.default_rng(seed))
        assert mask.dtype == np.float32 and 0.0 <= mask.min() and mask.max() <= 1.0 + 1e-6
        assert mask[far].max() == 0.0, seed
        assert mask[nose[1], nose[0]] >= 0.2, seed  # the blend ratio is at least 0.25
        assert (mask > 0.1).sum() > 0.4 * width * height, seed  # a face-sized region, not the five points' hull
        ratios.add(round(float(mask.max()), 2))
    assert len(ratios) >= 3  # the blend ratio varies (0.25, 0.5, 0.75, 1)


def test_the_blend_changes_the_face_only_inside_the_mask(astronaut):
    image, landmarks, _ = whole_photo(astronaut)
    inside_changes = []
    for seed in range(10):
        blended, mask = self_blend(image, landmarks, np.random.default_rng(seed))
        assert np.array_equal(blended[mask == 0], image[mask == 0])  # the target is the real face, untouched
        difference = np.abs(blended.astype(np.int16) - image.astype(np.int16)).sum(axis=2)
        inside_changes.append(difference[mask > 0.5].mean() if (mask > 0.5).any() else 0.0)
    assert np.mean(inside_changes) > 5.0  # colour, frequency and position changed where the source shows


def test_the_hull_is_grown_from_the_five_points_toward_chin_and_brows(astronaut):
    _, landmarks, (x1, y1, x2, y2) = whole_photo(astronaut)
    hull = face_hull(landmarks, np.random.default_rng(0))
    mouth_y, eyes_y = landmarks[3:, 1].mean(), landmarks[:2, 1].mean()
    assert hull[:, 1].max() > mouth_y + 0.5 * (mouth_y - eyes_y)  # reaches below the mouth, to the chin
    assert hull[:, 1].min() < eyes_y - 0.2 * (mouth_y - eyes_y)  # and above the eyes, to the brows
    assert hull[:, 0].min() < landmarks[:, 0].min() and hull[:, 0].max() > landmarks[:, 0].max()
    assert hull[:, 0].max() - hull[:, 0].min() < 1.6 * (x2 - x1)  # but about the face's width


def test_lower_face_blends_leave_the_eyes_and_change_mouth_and_chin(astronaut):
    """A lower-face blend (as lip-sync tools leave one) keeps the eyes and all above them pixel for pixel, and
    blends the mouth and the chin under it."""
    image, landmarks, _ = whole_photo(astronaut)
    eyes_y, mouth_y = landmarks[:2, 1].mean(), landmarks[3:, 1].mean()
    eye_row = int(np.ceil(eyes_y + 0.1 * (mouth_y - eyes_y)))
    mouth = tuple(np.round(landmarks[3:].mean(axis=0)).astype(int))
    cuts = []
    for seed in range(20):
        blended, mask = self_blend(image, landmarks, np.random.default_rng(seed), lower_face_share=1.0)
        assert mask[:eye_row].max() == 0.0, seed
        assert np.array_equal(blended[:eye_row], image[:eye_row]), seed
        assert mask[mouth[1], mouth[0]] >= 0.5 * mask.max(), seed  # the mouth is well inside the blend
        cuts.append(np.flatnonzero(mask.max(axis=1) > 0.1)[0])
    assert np.ptp(cuts) >= 0.15 * (mouth_y - eyes_y)  # the cut's height varies


def test_the_lower_face_hull_spans_the_jaw_below_a_cut_between_eyes_and_mouth(astronaut):
    _, landmarks, (x1, _, x2, _) = whole_photo(astronaut)
    eyes_y, mouth_y = landmarks[:2, 1].mean(), landmarks[3:, 1].mean()
    for seed in range(10):
        hull = lower_face_hull(landmarks, np.random.default_rng(seed))
        assert eyes_y + 0.2 * (mouth_y - eyes_y) < hull[:, 1].min() < mouth_y, seed
        assert hull[:, 1].max() > mouth_y + 0.5 * (mouth_y - eyes_y), seed  # down to the chin
        assert 0.8 * (x2 - x1) < np.ptp(hull[:, 0]) < 1.6 * (x2 - x1), seed  # cheek to cheek


def test_the_lower_face_share_picks_that_share_of_the_blends(astronaut):
    image, landmarks, _ = whole_photo(astronaut)
    eye_row = int(np.ceil(landmarks[:2, 1].mean()))
    eyes_kept = [not self_blend(image, landmarks, np.random.default_rng(seed), lower_face_share=0.5)[1][:eye_row].any()
                 for seed in range(60)]
    assert 15 <= sum(eyes_kept) <= 45  # about half are lower-face blends, the others whole-face ones
    never = [self_blend(image, landmarks, np.random.default_rng(seed))[1][:eye_row].any() for seed in range(20)]
    assert all(never)  # the default blends the whole face, eyes included


@pytest.mark.parametrize("size", [8, 16])
def test_tiny_images_work(size, astronaut):
    image, landmarks = face_as_dataset_holds_it(astronaut, size=size)
    blended, mask = self_blend(image, landmarks, np.random.default_rng(3))
    assert blended.shape == (3, size, size) and mask.shape == (size, size)
    assert 0.0 <= mask.min() and mask.max() <= 1.0 + 1e-6 and mask.max() > 0


# -- the dataset ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def faces(astronaut):
    """Six 'faces': the astronaut lit differently; labels REAL, FAKE, REAL, REAL, FAKE, REAL."""
    image, landmarks = face_as_dataset_holds_it(astronaut, size=64)
    images = torch.stack([torch.from_numpy(np.clip(image * (0.7 + 0.1 * k), 0, 255).astype(np.uint8))
                          for k in range(6)])
    labels = np.array([0, 1, 0, 0, 1, 0], dtype=np.float32)
    return images, labels, np.repeat(landmarks[None], 6, axis=0)


def test_self_blend_uses_each_real_twice_and_no_dataset_fake(faces):
    images, labels, landmarks = faces
    dataset = FaceDataset(images, labels, fakes="self-blend", landmarks=landmarks, seed=3)
    assert len(dataset) == 8 and dataset.labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert dataset.pairs() == [[0, 4], [1, 5], [2, 6], [3, 7]]
    for k, source in enumerate([0, 2, 3, 5]):
        real, blended = dataset[k][0], dataset[k + 4][0]
        assert torch.equal(real, images[source])
        assert not torch.equal(blended, images[source])

    both = FaceDataset(images, labels, fakes="both", landmarks=landmarks, seed=3)
    assert len(both) == 10 and both.labels.tolist() == [0, 1, 0, 0, 1, 0, 1, 1, 1, 1]
    assert torch.equal(both[1][0], images[1])  # the cache's own fake, as it is
    assert torch.equal(both[6][0], dataset[4][0])  # the same real's self-blend, whatever the mode

    plain = FaceDataset(images, labels)
    assert len(plain) == 6 and plain.labels.tolist() == labels.tolist() and plain.pairs() == [[k] for k in range(6)]


def test_self_blends_depend_on_seed_epoch_and_face_only(faces):
    images, labels, landmarks = faces
    dataset = FaceDataset(images, labels, fakes="self-blend", landmarks=landmarks, seed=3)
    dataset.set_epoch(1)
    epoch_1 = [dataset[k][0] for k in range(4, 8)]
    assert all(torch.equal(dataset[k][0], epoch_1[k - 4]) for k in reversed(range(4, 8)))  # order does not matter
    dataset.set_epoch(2)
    assert not torch.equal(dataset[4][0], epoch_1[0])
    other_seed = FaceDataset(images, labels, fakes="self-blend", landmarks=landmarks, seed=4)
    other_seed.set_epoch(1)
    assert not torch.equal(other_seed[4][0], epoch_1[0])


def test_workers_make_the_same_pseudo_fakes_and_pairs_share_a_batch(faces):
    images, labels, landmarks = faces
    batches = {}
    for workers in (0, 2):
        dataset = FaceDataset(images, labels, fakes="self-blend", landmarks=landmarks, seed=3)
        dataset.set_epoch(5)
        generator = torch.Generator().manual_seed(11)
        loader = DataLoader(dataset, batch_size=4, sampler=PairedShuffle(dataset, generator), generator=generator,
                            num_workers=workers)
        batches[workers] = list(loader)
    for (images_0, labels_0), (images_2, labels_2) in zip(batches[0], batches[2]):
        assert torch.equal(images_0, images_2) and torch.equal(labels_0, labels_2)
    for batch, targets in batches[0]:
        assert targets.tolist() == [0, 1, 0, 1]  # a real, then its own self-blend, twice
        for real, blended in ((batch[0], batch[1]), (batch[2], batch[3])):
            outside = self_blend_outside(real, blended)
            assert outside  # equal far from the face: the same real under the blend


def self_blend_outside(real: torch.Tensor, blended: torch.Tensor) -> bool:
    """True when the two images agree in the corners (outside any face mask) but not everywhere."""
    corners = (slice(None), slice(0, 4), slice(0, 4))
    return torch.equal(real[corners], blended[corners]) and not torch.equal(real, blended)


def test_self_blends_need_landmarks(faces):
    images, labels, _ = faces
    with pytest.raises(Exception, match="needs the landmarks"):
        FaceDataset(images, labels, fakes="self-blend")
    with pytest.raises(Exception, match="unknown fake source 'gan'"):
        FaceDataset(images, labels, fakes="gan")


# -- the padding of a crop that left the frame is never blended ------------------------------------------
def padded_face(astronaut: np.ndarray, size: int = 112):
    """The astronaut's face cut from a frame that ends just left of its nose: the crop's left part is black
    padding. Returns the image as FaceDataset holds it, its landmarks and where the frame lies in it."""
    frame = astronaut[:, :226]  # the frame ends at x 226, mid-face
    box = square_crop_box(ASTRONAUT_BOX, 0.3)
    preprocess = Preprocess(size)
    image = preprocess.crop_resize(cut_square(frame, box, 224)).numpy()
    rows = pd.DataFrame([{"crop_x1": box[0], "crop_y1": box[1], "crop_x2": box[2], "crop_y2": box[3],
                          "frame_width": frame.shape[1], "frame_height": frame.shape[0]}])
    return image, points_to_input(ASTRONAUT_LANDMARKS, box, 224, preprocess), rows, preprocess


def test_picture_boxes_find_the_padding(astronaut, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"crop_size": 224}))
    image, _, rows, preprocess = padded_face(astronaut)
    (picture,) = picture_boxes_of(rows, tmp_path, preprocess)
    padding = image.max(axis=0) == 0
    # the frame's right edge falls inside the image, its other edges outside; beyond it (a pixel of
    # interpolation aside) the image is black, and the frame's last columns are not
    assert 0 < picture[2] < image.shape[2] and picture[0] < 0 and picture[1] < 0 and picture[3] > image.shape[1]
    beyond = ~inside_picture(image.shape[1:], picture + np.array([0, 0, 1, 0])).astype(bool)
    assert padding[beyond].all() and 0.1 < beyond.mean() < 0.5
    last_columns = image[:, :, int(picture[2]) - 3 : int(picture[2]) - 1]
    assert (last_columns.max(axis=0) > 0).mean() > 0.9
    # a frame without recorded size: no picture boxes (older caches)
    assert picture_boxes_of(rows.drop(columns=["frame_width"]), tmp_path, preprocess) is None


def test_self_blends_leave_the_padding_black(astronaut, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"crop_size": 224}))
    image, landmarks, rows, preprocess = padded_face(astronaut)
    picture = picture_boxes_of(rows, tmp_path, preprocess)[0]
    outside = ~inside_picture(image.shape[1:], picture).astype(bool)
    spilled = 0
    for seed in range(12):
        unclipped, _ = self_blend(image, landmarks, sample_rng(seed, 0, 0))
        blended, mask = self_blend(image, landmarks, sample_rng(seed, 0, 0), picture)
        assert (blended[:, outside] == image[:, outside]).all() and (mask[outside] == 0).all()
        assert (blended != image).any()  # the face inside the frame is still blended
        spilled += (unclipped[:, outside] != image[:, outside]).any()
    assert spilled > 0  # without the picture box the blends do reach the padding: the test can fail


# -- a dense face outline (e.g. the face mesh's oval) instead of the 5-point hull ------------------------
def ellipse(centre, half_width: float, half_height: float, k: int = 36) -> np.ndarray:
    angles = np.linspace(0.0, 2.0 * np.pi, k, endpoint=False)
    return np.stack([centre[0] + half_width * np.cos(angles), centre[1] + half_height * np.sin(angles)], axis=1)


def centroid(mask: np.ndarray) -> np.ndarray:
    rows, columns = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]]
    return np.array([(columns * mask).sum(), (rows * mask).sum()]) / mask.sum()


def test_a_dense_outline_moves_the_mask_to_follow_it(astronaut):
    """An outline lopsided to the image's right (and below the chin) gives masks there, of its size; the same
    generator with the five points alone gives masks centred on the face."""
    image, landmarks, (x1, y1, x2, y2) = whole_photo(astronaut)
    width, height = x2 - x1, y2 - y1
    centre = np.array([(x1 + x2) / 2 + 0.35 * width, (y1 + y2) / 2 + 0.2 * height])
    outline = ellipse(centre, 0.5 * width, 0.6 * height)
    area = np.pi * 0.5 * width * 0.6 * height
    for seed in range(8):
        _, five_point = self_blend(image, landmarks, np.random.default_rng(seed))
        _, dense = self_blend(image, landmarks, np.random.default_rng(seed), outline=outline)
        inside = (dense > 0).astype(np.float64)
        assert np.linalg.norm(centroid(inside) - centre) < 0.08 * width, seed
        assert np.linalg.norm(centroid((five_point > 0).astype(np.float64)) - centre) > 0.25 * width, seed
        assert 0.6 * area < inside.sum() < 1.3 * area, seed  # scaled by 0.9-1.1, shrunk a little by the blur
        assert dense.max() == pytest.approx(five_point.max())  # the same draws: the same blend ratio


def test_an_outline_that_is_not_finite_falls_back_to_the_five_points(astronaut):
    image, landmarks = face_as_dataset_holds_it(astronaut)
    expected = self_blend(image, landmarks, np.random.default_rng(4))
    one_missing = ellipse((56, 60), 30, 40)
    one_missing[3] = np.nan
    for outline in (np.full((36, 2), np.nan, dtype=np.float32), one_missing, None):
        blended, mask = self_blend(image, landmarks, np.random.default_rng(4), outline=outline)
        assert np.array_equal(blended, expected[0]) and np.array_equal(mask, expected[1])


def test_outline_hulls_are_deterministic_and_draw_what_face_hull_draws(astronaut):
    image, landmarks = face_as_dataset_holds_it(astronaut)
    outline = ellipse((56, 62), 32, 42)
    first = self_blend(image, landmarks, sample_rng(3, 1, 7), outline=outline)
    again = self_blend(image, landmarks, sample_rng(3, 1, 7), outline=outline)
    other = self_blend(image, landmarks, sample_rng(3, 2, 7), outline=outline)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])
    after_five, after_dense = np.random.default_rng(9), np.random.default_rng(9)
    face_hull(landmarks, after_five)
    outline_hull(outline, landmarks, after_dense)
    assert after_five.random() == after_dense.random()  # the rest of the pseudo-fake is drawn alike


def test_outline_hulls_are_scaled_across_and_along_a_rolled_face():
    """A face rolled by 30 degrees: the outline's extent along and across the eye line is scaled by 0.9-1.1."""
    angle = np.radians(30.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    upright_marks = np.array([(-20.0, 0.0), (20.0, 0.0), (0.0, 20.0), (-15.0, 35.0), (15.0, 35.0)])
    upright_outline = ellipse((0.0, 15.0), 40.0, 60.0)
    marks, outline = upright_marks @ rotation.T + 100, upright_outline @ rotation.T + 100
    factors = []
    for seed in range(20):
        hull = (outline_hull(outline, marks, np.random.default_rng(seed)) - 100) @ rotation  # back upright
        factors.append(np.ptp(hull, axis=0) / np.ptp(upright_outline, axis=0))
    factors = np.array(factors)
    assert factors.min() > 0.9 - 1e-3 and factors.max() < 1.1 + 1e-3
    assert np.ptp(factors[:, 0]) > 0.05 and np.ptp(factors[:, 0] - factors[:, 1]) > 0.05  # independent factors


def write_outlines(path, crop_paths, points, **extra):
    np.savez(path, crop_path=np.array(crop_paths, dtype=str), points=np.asarray(points, dtype=np.float32), **extra)
    return path


def test_outlines_map_from_crop_pixels_like_the_landmarks(astronaut, tmp_path):
    """The landmarks written as crop pixels come out of `outlines_of` where `points_to_input` puts them."""
    cache = tmp_path / "mtcnn-0123456789"
    cache.mkdir()
    (cache / "config.json").write_text(json.dumps({"crop_size": 224}))
    box = square_crop_box(ASTRONAUT_BOX, 0.3)
    in_crop = points_to_input(ASTRONAUT_LANDMARKS, box, 224, Preprocess(224, face_fraction=1.0))
    file = write_outlines(tmp_path / "outlines.npz", ["faces/a/f0.jpg", "faces/b/f0.jpg"],
                          [in_crop, np.full((5, 2), np.nan)], cache="mtcnn-0123456789")
    rows = pd.DataFrame({"crop_path": ["faces/b/f0.jpg", "faces/a/f0.jpg", "faces/c/f0.jpg"]})
    mapped = outlines_of(rows, cache, Preprocess(96), file)
    assert mapped.shape == (3, 5, 2) and np.isnan(mapped[[0, 2]]).all()
    np.testing.assert_allclose(mapped[1], points_to_input(ASTRONAUT_LANDMARKS, box, 224, Preprocess(96)), atol=1e-3)

    with pytest.raises(UsageError, match="no such file"):
        outlines_of(rows, cache, Preprocess(96), tmp_path / "missing.npz")
    (tmp_path / "garbage.npz").write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="not a readable outlines file"):
        outlines_of(rows, cache, Preprocess(96), tmp_path / "garbage.npz")
    np.savez(tmp_path / "no_paths.npz", points=np.zeros((1, 5, 2)))
    with pytest.raises(DataError, match="not a readable outlines file"):
        outlines_of(rows, cache, Preprocess(96), tmp_path / "no_paths.npz")
    with pytest.raises(DataError, match="expected"):
        outlines_of(rows, cache, Preprocess(96), write_outlines(tmp_path / "flat.npz", ["a"], [[1.0, 2.0]]))
    with pytest.raises(DataError, match="made for the face cache 'mtcnn-other'"):
        outlines_of(rows, cache, Preprocess(96), write_outlines(tmp_path / "other.npz", ["a"], [in_crop],
                                                                cache="mtcnn-other"))


def test_the_dataset_blends_through_the_outlines_where_it_has_one(faces):
    images, labels, landmarks = faces
    outlines = np.full((6, 36, 2), np.nan, dtype=np.float32)
    outlines[0] = ellipse((40, 36), 14, 22)  # a small outline off to one side of face 0; the others have none
    five_point = FaceDataset(images, labels, fakes="self-blend", landmarks=landmarks, seed=3)
    dense = FaceDataset(images, labels, fakes="self-blend", landmarks=landmarks, seed=3, outlines=outlines)
    assert not torch.equal(dense[4][0], five_point[4][0])  # face 0's self-blend follows its outline
    assert all(torch.equal(dense[k][0], five_point[k][0]) for k in (5, 6, 7))  # the others: the 5-point hull
    with pytest.raises(UsageError, match="5 outlines for 6 images"):
        FaceDataset(images, labels, fakes="self-blend", landmarks=landmarks, outlines=outlines[:5])
