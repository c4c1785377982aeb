"""Crop geometry: a square box around a face with a margin, cut from the frame with border padding."""
from __future__ import annotations

import cv2
import numpy as np


def square_crop_box(box: tuple[float, float, float, float], margin: float) -> tuple[int, int, int, int]:
    """Square (x1, y1, x2, y2) centred on `box`, side = longer side of `box` * (1 + margin), in integer pixels.

    The square may extend past the frame; `cut_square` pads what lies outside.
    """
    x1, y1, x2, y2 = box
    side = max(1, int(round(max(x2 - x1, y2 - y1) * (1.0 + margin))))
    left = int(round((x1 + x2) / 2.0 - side / 2.0))
    top = int(round((y1 + y2) / 2.0 - side / 2.0))
    return left, top, left + side, top + side


def cut_square(image: np.ndarray, crop_box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """Pixels of `crop_box` from `image`, black where the box leaves the frame, resized to size x size."""
    left, top, right, bottom = crop_box
    height, width = image.shape[:2]
    side = right - left
    canvas = np.zeros((side, side, image.shape[2]), dtype=image.dtype)
    src_x1, src_y1 = max(left, 0), max(top, 0)
    src_x2, src_y2 = min(right, width), min(bottom, height)
    if src_x2 > src_x1 and src_y2 > src_y1:
        canvas[src_y1 - top : src_y2 - top, src_x1 - left : src_x2 - left] = image[src_y1:src_y2, src_x1:src_x2]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(canvas, (size, size), interpolation=interpolation)
