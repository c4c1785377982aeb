"""bench.spectrum_probe: the power-spectrum features of a face crop (issue 11, a probe that was not shipped)."""
import cv2
import numpy as np

from bench.spectrum_probe import GRID, spectrum_features


def face_crop(astronaut) -> np.ndarray:
    return cv2.resize(astronaut[0:300, 120:420], (224, 224), interpolation=cv2.INTER_AREA)


def test_one_grid_per_colour_channel(astronaut):
    features = spectrum_features(face_crop(astronaut))
    assert features.shape == (3 * GRID * GRID,)
    assert np.isfinite(features).all()


def test_brightness_and_contrast_drop_out(astronaut):
    crop = face_crop(astronaut).astype(np.float32)
    dimmer = np.clip(0.6 * crop + 40, 0, 255).round().astype(np.uint8)  # no clipping at these values
    plain, changed = spectrum_features(crop.astype(np.uint8)), spectrum_features(dimmer)
    luma = slice(0, GRID * GRID)
    assert np.abs(plain[luma] - changed[luma]).max() < 0.5  # only rounding noise is left
    assert np.abs(plain[luma]).max() > 5  # against a spectrum's own range


def test_a_fine_periodic_pattern_shows_in_the_highest_frequencies(astronaut):
    crop = face_crop(astronaut)
    yy, xx = np.indices(crop.shape[:2])
    checker = np.where((xx + yy) % 2 == 0, 6, -6)[..., None]  # the highest frequency in both axes
    patterned = np.clip(crop.astype(int) + checker, 0, 255).astype(np.uint8)
    corner = GRID * GRID - 1  # luma grid, highest row and column frequency
    assert spectrum_features(patterned)[corner] > spectrum_features(crop)[corner] + 1.0
