"""Self-blended images (SBI): pseudo-fakes made from one real face, for training.

Shiohara & Yamasaki, "Detecting Deepfakes with Self-Blended Images" (CVPR 2022); the idea of training on
blending boundaries comes from Face X-ray (Li et al., CVPR 2020). A face swap pastes a face into a frame
through a soft mask; what betrays it is the boundary: colour, sharpness and alignment that do not quite
match. `self_blend` makes such a boundary out of a single real face, so a net learns the boundary, not
one forger's artefacts:

* the source is a copy of the face with a random colour shift (hue, saturation, brightness, contrast,
  RGB), a random change of frequency content (sharpen, blur, or down- then up-scaling) and a small
  random resize and shift, so that the pasted face is slightly misaligned;
* the target is the real face itself, untouched, so the blend equals the real outside the mask: a real
  and its own blend differ only where a swap would (SBI gets the same by returning its transformed
  target as the real);
* the mask is a face-shaped hull placed by the five MTCNN landmarks (see `face_hull`), or the convex
  hull of a dense face outline when one is given (`outline_hull`, e.g. MediaPipe's face oval), randomly
  scaled and elastically deformed, blurred twice with random Gaussian kernels, and multiplied by a
  blend ratio drawn from {0.25, 0.5, 0.75, 1, 1, 1};
* blended = source * mask + target * (1 - mask).

Lip-sync tools (Wav2Lip, HyperLips, DINet) leave the upper face alone: they regenerate the lower face,
often at 96-128 px, and paste it back. `lower_face_share` turns that share of the pseudo-fakes into
lower-face blends: the face outline cut across at a random height between the eyes and the mouth
(`lower_face_hull`), so the boundary runs over the cheeks and the nose and the eyes stay untouched.

Everything random comes from the numpy Generator passed in: the same generator state gives the same
pseudo-fake. Sizes (blur kernels, deformation, shifts) are relative to the size of the face hull, so the
nets' 64-112 px inputs, 224 px crops and faces that fill only part of a picture all work alike.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)

# The outline of an average face, in a frame set by the five landmarks: x in units of the eye-to-eye
# vector (from the midpoint of the eyes), y in units of the vector from that midpoint to the midpoint of
# the mouth corners. Computed from the mean shape of dlib's 68-point model (the template OpenFace aligns
# with): its jaw line (points 0-16) and eyebrows (17-26), made symmetric. That hull, temple to temple and
# eyebrows to chin, is the region face swaps replace and the one SBI blends. The five points alone span
# only eyes to mouth (about a third of it): scaling their hull about its centre would grow it sideways
# as much as downwards and never reach the chin or the brows in the right proportion, while this frame
# follows the face's size, roll and the foreshortening of a turned head.
JAW = ((1.17, 0.00), (1.16, 0.30), (1.13, 0.59), (1.07, 0.87), (0.95, 1.13), (0.77, 1.36), (0.54, 1.56),
       (0.29, 1.72), (0.00, 1.76))
BROWS = ((0.93, -0.20), (0.78, -0.30), (0.59, -0.33), (0.39, -0.30), (0.19, -0.23), (0.00, -0.22))
# SBI uses the 81-point model (the 68 points plus the forehead) three times in four; this arc stands in
# for the forehead points, about as high above the eyes as the mouth is below them.
FOREHEAD = ((1.05, -0.45), (0.80, -0.75), (0.45, -0.92), (0.00, -0.97))
FOREHEAD_PROBABILITY = 0.75
# Lower-face blends cut the outline at this height, in the units of JAW (0: the eyes, 1: the mouth; the
# nose tip lies near 0.5): from just under the eyes, as Wav2Lip's lower half of the face box, to just
# above the mouth, as DINet's mouth region.
LOWER_FACE_CUT = (0.3, 0.8)


def _mirrored(points) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    return np.concatenate([points, points * (-1.0, 1.0)])


def face_hull(landmarks, rng: np.random.Generator) -> np.ndarray:
    """The convex hull (K, 2) of a face outline placed by five landmarks, randomly grown or shrunk.

    `landmarks`: (5, 2) pixel (x, y) of the left eye, right eye, nose, left and right mouth corner
    (MTCNN's order; left is the image's left). With probability 3/4 the outline includes the forehead;
    it is then scaled about its centre by independent random factors in [0.9, 1.1] across and along
    the face.
    """
    template = [_mirrored(JAW), _mirrored(BROWS)]
    if rng.random() < FOREHEAD_PROBABILITY:
        template.append(_mirrored(FOREHEAD))
    return _placed_hull(np.concatenate(template), landmarks, rng)


def _placed_hull(template: np.ndarray, landmarks, rng: np.random.Generator) -> np.ndarray:
    """The convex hull (K, 2) of `template` (points in the frame of JAW) scaled about its centre by random
    factors in [0.9, 1.1] across and along, then placed on the face by its five `landmarks`."""
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    eyes_mid = (points[0] + points[1]) / 2.0
    across = points[1] - points[0]
    down = (points[3] + points[4]) / 2.0 - eyes_mid
    centre = template.mean(axis=0)
    template = centre + (template - centre) * rng.uniform(0.9, 1.1, size=2)
    outline = eyes_mid + template[:, :1] * across + template[:, 1:] * down
    return cv2.convexHull(outline.astype(np.float32)).reshape(-1, 2)


def lower_face_hull(landmarks, rng: np.random.Generator) -> np.ndarray:
    """The convex hull (K, 2) of the lower part of the face outline: JAW below a cut drawn from
    LOWER_FACE_CUT, scaled about its centre by random factors in [0.9, 1.1] as `face_hull` does.
    `landmarks`: as for `face_hull`."""
    jaw = np.asarray(JAW, dtype=np.float64)
    cut = rng.uniform(*LOWER_FACE_CUT)
    half_width = float(np.interp(cut, jaw[:, 1], jaw[:, 0]))
    return _placed_hull(_mirrored(np.concatenate([[(half_width, cut)], jaw[jaw[:, 1] > cut]])), landmarks, rng)


def outline_hull(outline, landmarks, rng: np.random.Generator) -> np.ndarray:
    """The convex hull (K, 2) of a dense face outline, randomly grown or shrunk as `face_hull` does.

    `outline`: (K, 2) pixel (x, y) points around the face (e.g. the face mesh's FACE_OVAL, which reaches
    the forehead); `landmarks`: the five points of `face_hull`, which give the directions across the face
    (the eye line) and along it. The hull is scaled about the outline's centre by independent random
    factors in [0.9, 1.1] in those two directions. It draws what `face_hull` draws (the forehead coin goes
    unused), so the rest of a pseudo-fake made from the same generator is the same with either hull.
    """
    points = np.asarray(outline, dtype=np.float64).reshape(-1, 2)
    marks = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    rng.random()  # face_hull's forehead coin
    factors = rng.uniform(0.9, 1.1, size=2)
    across = marks[1] - marks[0]
    across = across / np.linalg.norm(across) if np.linalg.norm(across) > 0 else np.array([1.0, 0.0])
    axes = np.stack([across, (-across[1], across[0])])  # rows: across, along (a rotation)
    centre = points.mean(axis=0)
    scaled = centre + ((points - centre) @ axes.T * factors) @ axes
    return cv2.convexHull(scaled.astype(np.float32)).reshape(-1, 2)


def _odd(value: float) -> int:
    return max(3, int(value) // 2 * 2 + 1)


def elastic(mask: np.ndarray, rng: np.random.Generator, amount: float, smoothness: float) -> np.ndarray:
    """`mask` warped by a smooth random displacement field of at most `amount` pixels (a wobbly edge)."""
    height, width = mask.shape
    fields = []
    for _ in range(2):
        field = cv2.GaussianBlur(rng.uniform(-1.0, 1.0, (height, width)).astype(np.float32), (0, 0), smoothness)
        fields.append(field * (amount / max(float(np.abs(field).max()), 1e-6)))
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return cv2.remap(mask, grid_x + fields[0], grid_y + fields[1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def face_size(hull: np.ndarray) -> float:
    """The longer side of the hull's bounding box, in pixels: the unit of every random size here."""
    return max(1.0, float(np.ptp(hull, axis=0).max()))


def soften(mask: np.ndarray, rng: np.random.Generator, size: float) -> np.ndarray:
    """SBI's two random blurs: the first, thresholded at 1, shrinks the mask by about half its kernel; the
    second makes an edge of random width. Kernels of 2.5-11% of the face size `size` (SBI: 5-25 px on
    its 192-256 px mask)."""
    first = cv2.GaussianBlur(mask, (_odd(rng.uniform(0.025, 0.11) * size),) * 2, 0)
    peak = float(first.max())
    if peak <= 0:
        return first
    core = (first >= peak * (1.0 - 1e-4)).astype(np.float32)
    kernel = _odd(rng.uniform(0.025, 0.11) * size)
    second = cv2.GaussianBlur(core, (kernel, kernel), kernel * rng.uniform(0.2, 1.8))
    return second / max(float(second.max()), 1e-6)


def blend_mask(shape: tuple[int, int], hull: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """float32 (H, W) mask in [0, 1]: the filled hull, elastically deformed, softened twice (before the
    blend ratio)."""
    height, width = shape
    mask = np.zeros((height, width), dtype=np.float32)
    cv2.fillConvexPoly(mask, np.round(hull * 16).astype(np.int32), 1.0, lineType=cv2.LINE_AA, shift=4)
    size = face_size(hull)
    mask = elastic(mask, rng, amount=rng.uniform(0.01, 0.045) * size, smoothness=0.065 * size)
    return soften(mask, rng, size)


# -- the source's transforms (float32 RGB in [0, 255]) ------------------------------------------------
def shift_colour(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Hue, saturation, brightness and contrast shifts, and with probability 0.3 an RGB shift (up to 20)."""
    hsv = cv2.cvtColor(np.clip(image, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-3.0, 3.0)) % 180.0  # OpenCV hue: 2 degrees a unit
    hsv[..., 1] = hsv[..., 1] * rng.uniform(0.85, 1.15)
    hsv[..., 2] = hsv[..., 2] * rng.uniform(0.9, 1.1)
    image = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    mean = image.mean()
    image = (image - mean) * rng.uniform(0.9, 1.1) + mean + rng.uniform(-0.1, 0.1) * 255.0
    if rng.random() < 0.3:
        image = image + rng.uniform(-20.0, 20.0, size=3).astype(np.float32)
    return image


def change_frequency(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of: sharpen (unsharp mask), Gaussian blur, or shrink by 1.5-3x (nearest) and enlarge back."""
    kind = rng.integers(3)
    if kind == 0:
        detail = image - cv2.GaussianBlur(image, (0, 0), 1.0)
        return image + rng.uniform(0.3, 1.0) * detail
    if kind == 1:
        return cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 1.2))
    height, width = image.shape[:2]
    factor = rng.uniform(1.5, 3.0)
    small = cv2.resize(image, (max(2, round(width / factor)), max(2, round(height / factor))),
                       interpolation=cv2.INTER_NEAREST)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def misalign(image: np.ndarray, mask: np.ndarray, hull: np.ndarray,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The source and its mask resized by 0.95-1.05 about the face's centre and shifted by up to 3.3% of
    the face size across and 1.6% down (SBI's affine: 3% and 1.5% of a crop the face nearly fills), so
    the pasted face does not line up exactly with the face under it."""
    height, width = mask.shape
    size = face_size(hull)
    scale = rng.uniform(0.95, 1.0 / 0.95)
    shift = rng.uniform(-1.0, 1.0, size=2) * (0.033 * size, 0.016 * size)
    centre = tuple(float(v) for v in (hull.min(axis=0) + hull.max(axis=0)) / 2.0)
    matrix = cv2.getRotationMatrix2D(centre, 0.0, scale)
    matrix[:, 2] += shift
    moved = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    moved_mask = cv2.warpAffine(mask, matrix, (width, height), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return moved, moved_mask


def inside_picture(shape: tuple[int, int], picture) -> np.ndarray:
    """float32 (H, W): 1 on pixels whose centre lies inside `picture` (x1, y1, x2, y2 pixel edges), else 0."""
    height, width = shape
    x1, y1, x2, y2 = (float(v) for v in picture)
    columns = ((np.arange(width) >= x1 - 0.5) & (np.arange(width) < x2 - 0.5)).astype(np.float32)
    rows = ((np.arange(height) >= y1 - 0.5) & (np.arange(height) < y2 - 0.5)).astype(np.float32)
    return rows[:, None] * columns[None, :]


def self_blend(image, landmarks, rng: np.random.Generator, picture=None, outline=None,
               lower_face_share: float = 0.0):
    """(blended image, mask): a self-blended pseudo-fake of one real face.

    `image`: uint8 RGB, (3, H, W) or (H, W, 3), a numpy array or a CPU tensor (as `FaceDataset` holds).
    `landmarks`: (5, 2) pixel (x, y) in that image (see `face_hull`). The blended image has the input's
    type, layout and dtype; the mask is float32 (H, W) in [0, 1] (a tensor for a tensor input), already
    multiplied by the blend ratio. Outside the mask the blended image equals `image`.
    `outline` ((K, 2) pixel points around the face, or None): when given and finite, the mask follows it
    (`outline_hull`); else the five points' face outline (`face_hull`).
    `picture` (x1, y1, x2, y2 pixel edges, or None): where the frame itself lies in the image; the mask is
    cut to it, so that the black padding of a crop that left the frame is never blended (a shortcut no
    real fake has: 34% of pseudo-fakes of DFDC crops changed padding pixels before this).
    `lower_face_share`: the probability of blending through `lower_face_hull` instead (the eyes untouched,
    as lip-sync tools leave them); at 0 the generator is drawn exactly as before the option existed.
    """
    as_tensor = isinstance(image, torch.Tensor)
    array = image.numpy() if as_tensor else np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or 3 not in (array.shape[0], array.shape[2]):
        raise ValueError(f"self_blend needs a uint8 RGB image, (3, H, W) or (H, W, 3); got {array.dtype} "
                         f"{tuple(array.shape)}")
    channels_first = array.shape[0] == 3 and array.shape[2] != 3
    target = np.ascontiguousarray(array.transpose(1, 2, 0) if channels_first else array).astype(np.float32)

    dense = outline is not None and len(outline) >= 3 and bool(np.isfinite(outline).all())
    if lower_face_share > 0 and rng.random() < lower_face_share:
        hull = lower_face_hull(landmarks, rng)
    else:
        hull = outline_hull(outline, landmarks, rng) if dense else face_hull(landmarks, rng)
    mask = blend_mask(target.shape[:2], hull, rng)
    source = change_frequency(shift_colour(target, rng), rng)
    source, mask = misalign(source, mask, hull, rng)
    mask = (mask * rng.choice(BLEND_RATIOS)).astype(np.float32)
    if picture is not None:
        mask = mask * inside_picture(mask.shape, picture)
    weight = mask[..., None]
    blended = np.clip(np.rint(source * weight + target * (1.0 - weight)), 0, 255).astype(np.uint8)

    if channels_first:
        blended = blended.transpose(2, 0, 1)
    blended = np.ascontiguousarray(blended)
    if as_tensor:
        return torch.from_numpy(blended), torch.from_numpy(mask)
    return blended, mask


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one pseudo-fake: a function of (run seed, epoch, face index) only, so that a rerun
    makes the same pseudo-fakes in any order and in any DataLoader worker."""
    return np.random.default_rng([abs(int(seed)), int(seed < 0), int(epoch), int(index)])


# -- a picture of what the nets learn from ------------------------------------------------------------
