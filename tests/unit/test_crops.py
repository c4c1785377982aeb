import numpy as np
import pytest

from pipeline.crops import cut_square, square_crop_box


def test_square_box_is_centred_with_margin():
    assert square_crop_box((100, 100, 200, 150), margin=0.0) == (100, 75, 200, 175)
    left, top, right, bottom = square_crop_box((100, 100, 200, 150), margin=0.3)
    assert right - left == bottom - top == 130
    assert (left + right) / 2 == pytest.approx(150, abs=1)
    assert (top + bottom) / 2 == pytest.approx(125, abs=1)


def test_cut_square_inside_the_frame_matches_the_pixels():
    image = np.arange(100 * 100 * 3, dtype=np.uint32).reshape(100, 100, 3).astype(np.uint8)
    crop = cut_square(image, (10, 20, 42, 52), size=32)
    assert np.array_equal(crop, image[20:52, 10:42])


def test_cut_square_pads_black_outside_the_frame():
    image = np.full((50, 50, 3), 200, dtype=np.uint8)
    crop = cut_square(image, (-25, -25, 25, 25), size=50)  # only the bottom-right quarter is inside
    assert crop.shape == (50, 50, 3)
    assert crop[:25, :25].max() == 0 and crop[:25, 25:].max() == 0 and crop[25:, :25].max() == 0
    assert crop[26:, 26:].min() == 200


def test_cut_square_entirely_outside_is_black_not_an_error():
    crop = cut_square(np.full((20, 20, 3), 255, np.uint8), (100, 100, 140, 140), size=16)
    assert crop.shape == (16, 16, 3) and crop.max() == 0


def test_cut_square_resizes_to_requested_size():
    crop = cut_square(np.zeros((1000, 1000, 3), np.uint8), (100, 100, 700, 700), size=224)
    assert crop.shape == (224, 224, 3)
