"""MTCNN's three-stage cascade with facenet-pytorch's networks, weights and helpers, arranged for CPU speed.

Same algorithm, pyramid, thresholds and non-maximum suppression as
`facenet_pytorch.models.utils.detect_face.detect_face`, and the same boxes, scores and landmarks up to
float rounding (tests/integration/test_detectors.py compares the two on real frames). It is about twice as
fast on a CPU (bench/extract_speed.py) because:

- the networks run in channels-last memory format, where torch's max-pooling is ~3x faster;
- the candidate boxes of the second and third stages are resampled in numpy with the exact weights of
  torch's 'area' interpolation (two small matrix products per box) instead of one torch call per box,
  which cost ~0.2 ms each and dominated the profile.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np


@lru_cache(maxsize=4096)
def _windows(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start, end and length of each output cell's input window in torch's adaptive average pooling."""
    cells = np.arange(size_out)
    start = (cells * size_in) // size_out
    end = -((-(cells + 1) * size_in) // size_out)  # ceil
    return start, end, (end - start).astype(np.float32)


def integral_image(image: np.ndarray) -> np.ndarray:
    """(H+1, W+1, C) running sums of a uint8 image, exact (int32 while it cannot overflow, else float64)."""
    height, width = image.shape[:2]
    depth = cv2.CV_32S if height * width * 255 < 2**31 else cv2.CV_64F
    return cv2.integral(image, sdepth=depth).reshape(height + 1, width + 1, -1)


def area_resize(integral: np.ndarray, out_height: int, out_width: int) -> np.ndarray:
    """float32 (out_height, out_width, C) 'area' resize of the image whose integral image (or a window of it)
    is given: bit-identical to torch's `interpolate(mode="area")`, several times faster on a CPU."""
    sy, ey, count_y = _windows(integral.shape[0] - 1, out_height)
    sx, ex, count_x = _windows(integral.shape[1] - 1, out_width)
    rows = integral[ey] - integral[sy]
    sums = (rows[:, ex] - rows[:, sx]).astype(np.float32)  # window sums of integers: exact
    return sums / count_y[:, None, None] / count_x[None, :, None]  # torch's order of division


# The cascade's candidates live on the nets' device: boxes (K, 5) float and their image indices (K,) long.
# Every tensor is made on the device it is used with: CUDA indices into a CPU tensor raise, as does arithmetic
# between tensors of two devices (tests/unit/test_devices.py checks these helpers on torch's 'meta' device).
def no_candidates(device) -> tuple:
    """No candidate at all (frames too small for the pyramid): empty boxes and image indices on `device`."""
    import torch

    return torch.zeros((0, 5), device=device), torch.zeros(0, dtype=torch.long, device=device)


def known_candidates(boxes: np.ndarray, device) -> tuple:
    """Square candidates (K, 5) around known face boxes (K, 4) of one frame, and their image indices (all 0),
    on `device`: the input of the last two stages when faces are re-found."""
    import torch
    from facenet_pytorch.models.utils.detect_face import rerec

    boxes = torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4), device=device)
    candidates = torch.cat((boxes, torch.zeros((len(boxes), 1), device=device)), dim=1)
    return rerec(candidates), torch.zeros(len(boxes), dtype=torch.long, device=device)


def keep_where(valid: np.ndarray, *tensors) -> list:
    """The rows of each tensor where the numpy mask `valid` is true (as row indices on the tensors' device)."""
    import torch

    keep = torch.from_numpy(np.flatnonzero(valid)).to(tensors[0].device)
    return [tensor[keep] for tensor in tensors]


class MTCNNCascade:
    """P-Net over an image pyramid, then R-Net and O-Net on the surviving candidates."""

    def __init__(self, device: str, min_face_size: int = 20, thresholds=(0.6, 0.7, 0.7), factor: float = 0.709):
        import torch
        from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

        self.device = torch.device(device)
        self.min_face_size, self.thresholds, self.factor = min_face_size, thresholds, factor
        memory_format = torch.channels_last if self.device.type == "cpu" else torch.contiguous_format
        self.pnet, self.rnet, self.onet = (
            net.to(self.device).eval().to(memory_format=memory_format) for net in (PNet(), RNet(), ONet())
        )

    def pyramid(self, height: int, width: int) -> list[float]:
        """The scales P-Net sees, largest first (faces of `min_face_size` px become 12 px)."""
        scale = 12.0 / self.min_face_size
        shortest = min(height, width) * scale
        scales = []
        while shortest >= 12:
            scales.append(scale)
            scale *= self.factor
            shortest *= self.factor
        return scales

    def detect(self, frames_rgb: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each of the (N, H, W, 3) uint8 RGB frames: (boxes (K, 5) as x1, y1, x2, y2, score; landmarks (K, 5, 2))."""
        import torch

        integrals = [integral_image(frame) for frame in frames_rgb]
        with torch.inference_mode():
            boxes, image_inds = self._propose(integrals, *frames_rgb.shape[1:3])
            return self._finish(integrals, boxes, image_inds)

    def refine(self, frame_rgb: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Faces near `boxes` (K, 4) of one (H, W, 3) frame: the second and third stages run on those boxes
        instead of on P-Net's proposals (a face found in the previous sampled frame, re-found in this one)."""
        import torch

        integrals = [integral_image(frame_rgb)]
        with torch.inference_mode():
            return self._finish(integrals, *known_candidates(boxes, self.device))[0]

    def _propose(self, integrals: list[np.ndarray], height: int, width: int):
        """Stage 1: P-Net on every pyramid level, NMS per level and image, then across levels."""
        import torch
        from facenet_pytorch.models.utils.detect_face import generateBoundingBox, rerec
        from torchvision.ops.boxes import batched_nms

        scales = self.pyramid(height, width)
        if not scales:  # frames under min_face_size px: no face fits, nothing to search
            return no_candidates(self.device)
        boxes, image_inds, picks, offset = [], [], [], 0
        for scale in scales:
            size = (int(height * scale + 1), int(width * scale + 1))
            level = np.stack([area_resize(integral, *size) for integral in integrals])
            level = torch.from_numpy(level).to(self.device).permute(0, 3, 1, 2)
            reg, probs = self.pnet((level - 127.5) * 0.0078125)
            level_boxes, level_inds = generateBoundingBox(reg, probs[:, 1], scale, self.thresholds[0])
            boxes.append(level_boxes)
            image_inds.append(level_inds)
            picks.append(batched_nms(level_boxes[:, :4], level_boxes[:, 4], level_inds, 0.5) + offset)
            offset += level_boxes.shape[0]
        picks = torch.cat(picks)
        boxes, image_inds = torch.cat(boxes)[picks], torch.cat(image_inds)[picks]
        pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
        boxes, image_inds = boxes[pick], image_inds[pick]
        regw, regh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        boxes = torch.stack([boxes[:, 0] + boxes[:, 5] * regw, boxes[:, 1] + boxes[:, 6] * regh,
                             boxes[:, 2] + boxes[:, 7] * regw, boxes[:, 3] + boxes[:, 8] * regh, boxes[:, 4]], dim=1)
        return rerec(boxes), image_inds

    def _finish(self, integrals: list[np.ndarray], boxes, image_inds) -> list[tuple[np.ndarray, np.ndarray]]:
        """Stages 2 and 3 on square candidate boxes: R-Net refines them, O-Net scores them and adds landmarks."""
        import torch
        from facenet_pytorch.models.utils.detect_face import batched_nms_numpy, bbreg, rerec
        from torchvision.ops.boxes import batched_nms

        if len(boxes):
            boxes, image_inds, crops = self._crops(integrals, boxes, image_inds, 24)
        if len(boxes):  # (the nets refuse an empty batch: every candidate may lie outside the frame)
            reg, probs = self.rnet(crops)
            keep = probs[:, 1] > self.thresholds[1]
            boxes = torch.cat((boxes[keep, :4], probs[keep, 1:2]), dim=1)
            image_inds, reg = image_inds[keep], reg[keep]
            pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
            boxes = rerec(bbreg(boxes[pick], reg[pick]))
            image_inds = image_inds[pick]
        points = torch.zeros(0, 5, 2, device=self.device)
        if len(boxes):
            boxes, image_inds, crops = self._crops(integrals, boxes, image_inds, 48)
        if len(boxes):
            reg, marks, probs = self.onet(crops)
            keep = probs[:, 1] > self.thresholds[2]
            boxes = torch.cat((boxes[keep, :4], probs[keep, 1:2]), dim=1)
            image_inds, reg, marks = image_inds[keep], reg[keep], marks[keep]
            box_w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
            box_h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
            points = torch.stack((box_w * marks[:, :5] + boxes[:, 0:1] - 1,
                                  box_h * marks[:, 5:10] + boxes[:, 1:2] - 1), dim=2)
            boxes = bbreg(boxes, reg)
            pick = batched_nms_numpy(boxes[:, :4], boxes[:, 4], image_inds, 0.7, "Min")
            boxes, image_inds, points = boxes[pick], image_inds[pick], points[pick]
        boxes, points, image_inds = boxes.cpu().numpy(), points.cpu().numpy(), image_inds.cpu().numpy()
        return [(boxes[image_inds == i], points[image_inds == i]) for i in range(len(integrals))]

    def _crops(self, integrals: list[np.ndarray], boxes, image_inds, size: int):
        """Boxes that overlap the frame, their image indices, and their normalised `size` x `size` crops."""
        import torch
        from facenet_pytorch.models.utils.detect_face import pad

        height, width = integrals[0].shape[0] - 1, integrals[0].shape[1] - 1
        y, ey, x, ex = pad(boxes, width, height)  # 1-based, inclusive, clipped to the frame
        valid = (ey > y - 1) & (ex > x - 1)
        inds = image_inds.cpu().numpy()
        crops = np.empty((int(valid.sum()), size, size, 3), dtype=np.float32)
        for k, (i, top, bottom, left, right) in enumerate(zip(inds[valid], y[valid], ey[valid], x[valid], ex[valid])):
            crops[k] = area_resize(integrals[i][top - 1:bottom + 1, left - 1:right + 1], size, size)
        crops = torch.from_numpy(crops).to(boxes.device).permute(0, 3, 1, 2)
        boxes, image_inds = keep_where(valid, boxes, image_inds)
        return boxes, image_inds, (crops - 127.5) * 0.0078125
