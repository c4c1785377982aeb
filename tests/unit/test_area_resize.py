"""The integral-image 'area' resize that MTCNN's pyramid and candidate crops use is torch's, bit for bit."""
import numpy as np
import pytest
import torch
from torch.nn.functional import interpolate

from pipeline.mtcnn import area_resize, integral_image


def torch_area(image: np.ndarray, height: int, width: int) -> np.ndarray:
    tensor = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    return interpolate(tensor, size=(height, width), mode="area")[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("out_size", [(217, 385), (154, 273), (24, 24), (48, 48), (7, 3)])
def test_whole_image_matches_torch_exactly(out_size):
    image = np.random.default_rng(0).integers(0, 256, (360, 640, 3), dtype=np.uint8)
    assert np.array_equal(area_resize(integral_image(image), *out_size), torch_area(image, *out_size))


@pytest.mark.parametrize("box", [(10, 90, 30, 140), (0, 13, 0, 11), (200, 359, 500, 639), (5, 300, 40, 60)])
def test_window_of_the_integral_resizes_that_crop(box):
    """Candidate crops: a window of the frame's integral image, shrunk or enlarged to 24 and 48 px."""
    image = np.random.default_rng(1).integers(0, 256, (360, 640, 3), dtype=np.uint8)
    top, bottom, left, right = box  # inclusive pixel rows / columns
    integral = integral_image(image)
    for size in (24, 48):
        mine = area_resize(integral[top:bottom + 2, left:right + 2], size, size)
        assert np.array_equal(mine, torch_area(np.ascontiguousarray(image[top:bottom + 1, left:right + 1]), size, size))


def test_integral_switches_to_float_before_int32_could_overflow():
    assert integral_image(np.zeros((8, 8, 3), np.uint8)).dtype == np.int32
    big = np.full((3000, 3000, 3), 255, np.uint8)  # 3000 * 3000 * 255 > 2**31
    integral = integral_image(big)
    assert integral.dtype == np.float64 and integral[-1, -1, 0] == 3000 * 3000 * 255
