"""Face crops from a manifest -> tensors: the shared preprocessing, the in-memory dataset, augmentation.

`Preprocess` is the ONE preprocessing of face crops, used by training and by inference on in-memory
BGR crops: keep the central `face_fraction` of the square crop (the face box plus 10% margin; the outer
ring is often black padding and must not be learnt from), resize to the net's input size, BGR -> RGB,
scale to [0, 1], normalise with the mean and std stored in the checkpoint.
"""
from __future__ import annotations

import json
import logging
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2
from tqdm import tqdm

from models.registry import model_class
from models.selfblend import sample_rng, self_blend
from pipeline.errors import DataError, UsageError

log = logging.getLogger(__name__)

CLASSES = ("REAL", "FAKE")  # class order: index 1 (and p_fake) is FAKE
FACE_FRACTION = 1.1 / 1.3  # crops are cut with margin 0.3; keep the face box plus 10%
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """Square BGR face crop -> normalised RGB tensor of the net's input size."""

    input_size: int
    face_fraction: float = FACE_FRACTION
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def crop_resize(self, crop_bgr: np.ndarray) -> torch.Tensor:
        """uint8 RGB tensor (3, S, S): the central `face_fraction` of the crop, resized to S = input_size."""
        height, width = crop_bgr.shape[:2]
        side = max(1, int(round(min(height, width) * self.face_fraction)))
        top, left = (height - side) // 2, (width - side) // 2
        region = crop_bgr[top : top + side, left : left + side]
        interpolation = cv2.INTER_AREA if side > self.input_size else cv2.INTER_LINEAR
        resized = cv2.resize(region, (self.input_size, self.input_size), interpolation=interpolation)
        rgb = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
        return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Float tensor normalised with mean/std, from uint8 images or floats already in [0, 1], on the
        images' device."""
        images = images.float().div(255.0) if images.dtype == torch.uint8 else images.float()
        mean = torch.tensor(self.mean, dtype=images.dtype, device=images.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=images.dtype, device=images.device).view(-1, 1, 1)
        return (images - mean) / std

    def __call__(self, crops_bgr: list[np.ndarray], device: torch.device | str | None = None) -> torch.Tensor:
        """A normalised batch (N, 3, S, S) from in-memory BGR crops (what inference calls), on `device`
        (default CPU): the uint8 batch is moved there before it is normalised, a quarter of the float bytes."""
        batch = torch.stack([self.crop_resize(crop) for crop in crops_bgr])
        return self.normalize(batch if device is None else batch.to(device))

    def to_dict(self) -> dict:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, fields: dict) -> "Preprocess":
        return cls(input_size=int(fields["input_size"]), face_fraction=float(fields["face_fraction"]),
                   mean=tuple(float(v) for v in fields["mean"]), std=tuple(float(v) for v in fields["std"]))


def net_preprocess(net: str, input_size: int) -> Preprocess:
    """The preprocessing the registered net `net` is trained and scored with: its input size and the
    normalisation it expects (ImageNet statistics for the nets trained here, [-1, 1] for EfficientNet)."""
    cls = model_class(net)
    return Preprocess(int(input_size), mean=tuple(cls.input_mean), std=tuple(cls.input_std))


def points_to_input(points, crop_box, crop_size: int, preprocess: Preprocess) -> np.ndarray:
    """Frame pixel (x, y) points (e.g. a face's landmarks) -> the same points in pixels of the image that
    `preprocess.crop_resize` makes of the crop cut at `crop_box` (x1, y1, x2, y2 in frame pixels, the
    manifest's crop_x1..crop_y2) and saved at crop_size x crop_size. Pure geometry, float32 (N, 2).

    The two steps mirror `pipeline.crops.cut_square` (the box resized to crop_size) and `crop_resize` (the
    central `face_fraction` kept and resized to input_size); coordinates are cv2.resize's, where pixel i
    has its centre at i, so a resize by s maps c to (c + 0.5) * s - 0.5.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    x1, y1, x2, y2 = (float(v) for v in crop_box)
    to_crop = np.array([crop_size / (x2 - x1), crop_size / (y2 - y1)])
    return crop_points_to_input((points - (x1, y1) + 0.5) * to_crop - 0.5, crop_size, preprocess)


def crop_points_to_input(points, crop_size: int, preprocess: Preprocess) -> np.ndarray:
    """Pixel (x, y) points of a stored crop_size x crop_size crop -> pixels of `preprocess.crop_resize`'s
    image of it (the second step of `points_to_input`), float32 (N, 2)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    side = max(1, int(round(crop_size * preprocess.face_fraction)))
    offset = (crop_size - side) // 2
    return ((points - offset + 0.5) * (preprocess.input_size / side) - 0.5).astype(np.float32)


def landmarks_of(rows: pd.DataFrame, cache_dir: Path, preprocess: Preprocess) -> np.ndarray:
    """float32 (N, 5, 2): the five landmarks of every row in the pixels of `preprocess.crop_resize`'s image.

    The manifest holds them in frame pixels (`landmarks`, JSON [[x, y] x 5]) with the crop box; the cache's
    config.json gives the crop size. DataError, naming the cache and the detector, when any row has none
    (the opencv-dnn detector finds boxes only).
    """
    where = cache_dir / "manifest.csv"
    missing = rows["landmarks"].isna() if "landmarks" in rows else pd.Series(True, index=rows.index)
    if missing.any():
        detectors = sorted(set(rows.loc[missing, "detector"].dropna().astype(str))) if "detector" in rows else []
        detector = ", ".join(detectors) or "unknown"
        raise DataError(f"{where}: {int(missing.sum())} of {len(rows)} faces have no landmarks (detector: {detector}), "
                        f"e.g. {rows.loc[missing, 'video_id'].iloc[0]!r}; self-blended fakes need the five MTCNN "
                        "landmarks of every REAL face: extract with --detector mtcnn")
    crop_size = cache_crop_size(cache_dir)
    mapped = np.empty((len(rows), 5, 2), dtype=np.float32)
    boxes = rows[["crop_x1", "crop_y1", "crop_x2", "crop_y2"]].to_numpy(dtype=np.float64)
    for index, (text, box) in enumerate(zip(rows["landmarks"], boxes)):
        try:
            points = np.asarray(json.loads(text), dtype=np.float64).reshape(5, 2)
        except (ValueError, TypeError) as exc:
            raise DataError(f"{where}: unreadable landmarks {text!r} ({exc})") from None
        mapped[index] = points_to_input(points, box, crop_size, preprocess)
    return mapped


def outlines_of(rows: pd.DataFrame, cache_dir: Path, preprocess: Preprocess, path: Path) -> np.ndarray:
    """float32 (N, K, 2): every row's dense face outline in the pixels of `preprocess.crop_resize`'s image,
    from an outlines file; NaN for a crop the file does not list or where it found no face.

    The file (npz, written by `bench/dense_landmarks.py outlines`) holds `crop_path` (N strings, as in the
    manifest), `points` (float32 (N, K, 2), pixel (x, y) in the stored crop, NaN where no face was found)
    and optionally `cache`, the name of the cache directory it was made for. UsageError when the file is
    missing; DataError when it is unreadable, malformed or made for another cache.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--blend-outlines {path}: no such file (make it with `bench/dense_landmarks.py "
                         "outlines`, see the README)")
    try:
        with np.load(path, allow_pickle=False) as saved:
            crop_paths, points = saved["crop_path"].astype(str), saved["points"].astype(np.float32)
            cache = str(saved["cache"]) if "cache" in saved.files else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable outlines file ({exc!r}); it needs crop_path and points "
                        "arrays (bench/dense_landmarks.py outlines writes one)") from None
    if points.ndim != 3 or points.shape[1] < 3 or points.shape[2] != 2 or len(points) != len(crop_paths):
        raise DataError(f"{path}: points of shape {points.shape} for {len(crop_paths)} crop paths; expected "
                        "(crops, K >= 3, 2)")
    if cache is not None and cache != cache_dir.name:
        raise DataError(f"{path}: made for the face cache {cache!r}, not {cache_dir.name!r} (another detector "
                        "or crop geometry): build it for this cache")
    position = {crop_path: index for index, crop_path in enumerate(crop_paths)}
    crop_size = cache_crop_size(cache_dir)
    mapped = np.full((len(rows), points.shape[1], 2), np.nan, dtype=np.float32)
    for index, crop_path in enumerate(rows["crop_path"].astype(str)):
        if crop_path in position:
            mapped[index] = crop_points_to_input(points[position[crop_path]], crop_size, preprocess)
    return mapped


def has_outline(outlines: np.ndarray) -> np.ndarray:
    """bool (N,): which rows of `outlines_of`'s array hold an outline (all points finite)."""
    return np.isfinite(outlines).all(axis=(1, 2))


def cache_crop_size(cache_dir: Path) -> int:
    """The side of a face cache's square crops (its config.json); DataError when unreadable."""
    try:
        return int(json.loads((cache_dir / "config.json").read_text())["crop_size"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{cache_dir / 'config.json'}: cannot read the crop size of the cache ({exc!r})") from None


def picture_boxes_of(rows: pd.DataFrame, cache_dir: Path, preprocess: Preprocess) -> np.ndarray | None:
    """float32 (N, 4): where the frame itself lies in each row's `preprocess.crop_resize` image, as pixel-edge
    (x1, y1, x2, y2); outside it is the black padding `cut_square` added where the crop box left the frame
    (a face near the picture's edge). None when the manifest does not record the frame size."""
    if not {"frame_width", "frame_height"} <= set(rows.columns) or rows[["frame_width", "frame_height"]].isna().any().any():
        return None
    crop_size = cache_crop_size(cache_dir)
    boxes = rows[["crop_x1", "crop_y1", "crop_x2", "crop_y2"]].to_numpy(dtype=np.float64)
    sizes = rows[["frame_width", "frame_height"]].to_numpy(dtype=np.float64)
    pictures = np.empty((len(rows), 4), dtype=np.float32)
    for index, (box, (width, height)) in enumerate(zip(boxes, sizes)):
        corners = points_to_input([(-0.5, -0.5), (width - 0.5, height - 0.5)], box, crop_size, preprocess)
        pictures[index] = corners.reshape(4)
    return pictures


def read_crop(path: str | Path, preprocess: Preprocess) -> torch.Tensor:
    """One crop file through `preprocess.crop_resize`; DataError naming the file when missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: crop file is missing (the face cache is incomplete: run extract again)")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise DataError(f"{path}: crop file is corrupt or not an image (run extract again)")
    return preprocess.crop_resize(image)


def load_crops(files: list[str], preprocess: Preprocess, threads: int = 2, progress: bool = False) -> torch.Tensor:
    """Decode and preprocess every crop once: uint8 tensor (N, 3, S, S), in the order of `files`."""
    size = preprocess.input_size
    images = torch.empty((len(files), 3, size, size), dtype=torch.uint8)
    with ThreadPoolExecutor(max(1, threads)) as pool:  # cv2 releases the GIL while decoding
        results = pool.map(lambda f: read_crop(f, preprocess), files)
        for index, image in enumerate(tqdm(results, total=len(files), desc="load crops", unit="crop",
                                           disable=not progress, leave=False)):
            images[index] = image
    return images


def labels_of(rows: pd.DataFrame) -> np.ndarray:
    """1.0 for FAKE, 0.0 for REAL (rows must hold no other labels)."""
    return (rows["label"].to_numpy() == CLASSES[1]).astype(np.float32)


FAKE_SOURCES = ("dataset", "self-blend", "both")


class FaceDataset(Dataset):
    """Preprocessed uint8 crops held in memory, augmented per sample; `Preprocess.normalize` runs per batch.

    `fakes` chooses where the FAKE samples come from:
      dataset     the images with their own labels (REAL and FAKE);
      self-blend  the REAL images only, each twice: as itself (REAL) and self-blended (FAKE);
      both        the images with their own labels, plus a self-blend (FAKE) of each REAL one.
    Self-blends need `landmarks` (N, 5, 2) in the images' pixels (and take `pictures`, see
    `picture_boxes_of`, to keep the blend off the padding, and `outlines` (N, K, 2), see `outlines_of`, to
    blend through a dense face outline where one is finite; `lower_face_share` of them blend through the
    lower face only, see models/selfblend.py), and are made when a sample is read,
    from a generator seeded by (seed, epoch, image index): the same run makes the same pseudo-fakes, in
    any order and any worker. Call `set_epoch` before each epoch. Augmentation applies after blending.
    """

    def __init__(self, images: torch.Tensor, labels: np.ndarray, augment=None, fakes: str = "dataset",
                 landmarks: np.ndarray | None = None, seed: int = 0, pictures: np.ndarray | None = None,
                 outlines: np.ndarray | None = None, lower_face_share: float = 0.0):
        if fakes not in FAKE_SOURCES:
            raise UsageError(f"unknown fake source {fakes!r}; choose one of: {', '.join(FAKE_SOURCES)}")
        labels = np.asarray(labels, dtype=np.float32)
        reals = np.flatnonzero(labels == 0)
        own = reals if fakes == "self-blend" else np.arange(len(images))
        blended = reals if fakes != "dataset" else np.zeros(0, dtype=np.int64)
        if len(blended) and (landmarks is None or len(landmarks) != len(images)):
            raise UsageError(f"fakes={fakes!r} needs the landmarks of every image")
        self.images = images
        self.augment = augment
        self.fakes, self.landmarks, self.seed, self.epoch = fakes, landmarks, seed, 0
        self.pictures = pictures  # (N, 4) where the frame lies in each image: blends stay off the padding
        if outlines is not None and len(outlines) != len(images):
            raise UsageError(f"{len(outlines)} outlines for {len(images)} images")
        self.outlines = outlines  # (N, K, 2) dense face outlines (NaN: blend through the 5-point hull)
        self.lower_face_share = lower_face_share
        # sample k: image `self.sources[k]`, self-blended when `self.blended[k]`
        self.sources = np.concatenate([own, blended]).astype(np.int64)
        self.blended = np.concatenate([np.zeros(len(own), bool), np.ones(len(blended), bool)])
        self.labels = torch.as_tensor(np.where(self.blended, 1.0, labels[self.sources]), dtype=torch.float32)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        source = int(self.sources[index])
        image = self.images[source]
        if self.blended[index]:
            picture = None if self.pictures is None else self.pictures[source]
            outline = None if self.outlines is None else self.outlines[source]
            image, _ = self_blend(image, self.landmarks[source], sample_rng(self.seed, self.epoch, source), picture,
                                  outline, self.lower_face_share)
        if self.augment is not None:
            image = self.augment(image)
        return image, self.labels[index]

    def pairs(self) -> list[list[int]]:
        """The samples grouped as they should share a batch: a real with its own self-blend, others alone."""
        partner = {int(source): k for k, source in enumerate(self.sources) if self.blended[k]}
        units = []
        for k, source in enumerate(self.sources):
            if not self.blended[k]:
                units.append([k, partner[int(source)]] if int(source) in partner else [k])
        return units


class PairedShuffle(torch.utils.data.Sampler):
    """A shuffled order in which each real comes right before its own self-blend (`FaceDataset.pairs`), so
    that both fall in one batch (always, with an even batch size and fakes=self-blend)."""

    def __init__(self, dataset: FaceDataset, generator: torch.Generator):
        self.units = dataset.pairs()
        self.generator = generator

    def __len__(self) -> int:
        return sum(map(len, self.units))

    def __iter__(self):
        for position in torch.randperm(len(self.units), generator=self.generator).tolist():
            yield from self.units[position]


# -- augmentation ------------------------------------------------------------------------------
class RandomDownscale(torch.nn.Module):
    """With probability p, shrink by a random factor in [low, high] and enlarge back (lost detail)."""

    def __init__(self, low: float = 0.4, high: float = 0.9, p: float = 0.2):
        super().__init__()
        self.low, self.high, self.p = low, high, p

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if torch.rand(()) >= self.p:
            return image
        size = image.shape[-2:]
        factor = self.low + (self.high - self.low) * float(torch.rand(()))
        small = [max(4, int(round(s * factor))) for s in size]
        return v2.functional.resize(v2.functional.resize(image, small, antialias=True), list(size), antialias=True)


class RandomJPEG(torch.nn.Module):
    """With probability p, re-compress as JPEG at a random quality in [low, high] (OpenCV, RGB uint8 in)."""

    def __init__(self, low: int = 40, high: int = 95, p: float = 0.3):
        super().__init__()
        self.low, self.high, self.p = low, high, p

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if torch.rand(()) >= self.p:
            return image
        quality = int(torch.randint(self.low, self.high + 1, ()))
        ok, encoded = cv2.imencode(".jpg", image.permute(1, 2, 0).numpy(), [cv2.IMWRITE_JPEG_QUALITY, quality])
        decoded = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)  # channel order is kept as it is
        return torch.from_numpy(decoded).permute(2, 0, 1).contiguous()


# The seeds' set (geometry, grayscale, channel shuffle, noise) and the field's (colour, blur, JPEG, downscale).
AUGMENTATIONS = {
    "flip": lambda: v2.RandomHorizontalFlip(p=0.5),
    "affine": lambda: v2.RandomApply([v2.RandomAffine(degrees=8, translate=(0.04, 0.04), scale=(0.93, 1.07),
                                                      shear=4)], p=0.5),
    "grayscale": lambda: v2.RandomGrayscale(p=0.05),
    "channel-shuffle": lambda: v2.RandomApply([v2.RandomChannelPermutation()], p=0.05),
    "color-jitter": lambda: v2.RandomApply([v2.ColorJitter(0.2, 0.2, 0.2, 0.03)], p=0.5),
    "blur": lambda: v2.RandomApply([v2.GaussianBlur(5, sigma=(0.2, 1.5))], p=0.2),
    "downscale": lambda: RandomDownscale(0.4, 0.9, p=0.2),
    "jpeg": lambda: RandomJPEG(40, 95, p=0.3),
    "noise": lambda: v2.RandomApply([v2.GaussianNoise(sigma=0.02)], p=0.2),  # on floats in [0, 1]
}
AUGMENT_PRESETS = {
    "none": [],
    "seeds": ["flip", "affine", "grayscale", "channel-shuffle", "noise"],
    "field": ["color-jitter", "blur", "downscale", "jpeg"],
}
AUGMENT_PRESETS["all"] = AUGMENT_PRESETS["seeds"] + AUGMENT_PRESETS["field"]


def parse_augment(spec: str) -> list[str]:
    """Augmentation names from a preset (none, seeds, field, all) or a comma list of names and presets."""
    names: list[str] = []
    for word in (w.strip() for w in spec.split(",")):
        if word in AUGMENT_PRESETS:
            names += AUGMENT_PRESETS[word]
        elif word in AUGMENTATIONS:
            names.append(word)
        else:
            known = ", ".join(list(AUGMENT_PRESETS) + list(AUGMENTATIONS))
            raise UsageError(f"unknown augmentation {word!r}; choose from: {known}")
    return [name for name in AUGMENTATIONS if name in names]  # one fixed order, whatever the spelling


def build_augment(names: list[str]) -> v2.Compose | None:
    """uint8 (3, S, S) -> augmented image (uint8, or float in [0, 1] when noise is on); None for no augmentation."""
    if not names:
        return None
    steps = [AUGMENTATIONS[name]() for name in names if name != "noise"]
    if "noise" in names:
        steps += [v2.ToDtype(torch.float32, scale=True), AUGMENTATIONS["noise"]()]
    return v2.Compose(steps)


def labelled_faces(manifest: pd.DataFrame, where: str) -> tuple[pd.DataFrame, int]:
    """The REAL and FAKE rows of a manifest, and how many rows with an unknown label were left out."""
    if manifest.empty:
        raise DataError(f"{where}: the manifest lists no faces (did extract find any?)")
    labels = manifest["label"].fillna("unknown")
    odd = sorted(set(labels) - set(CLASSES) - {"unknown"})
    if odd:
        raise DataError(f"{where}: unexpected label(s) {', '.join(map(repr, odd))}; expected REAL, FAKE or unknown")
    known = manifest[labels.isin(CLASSES)]
    n_unknown = len(manifest) - len(known)
    if known.empty:
        raise DataError(f"{where}: none of its {len(manifest)} faces has a REAL/FAKE label "
                        "(give extract a --labels CSV or a metadata.json)")
    if n_unknown:
        log.warning("%s: %d face(s) with an unknown label left out", where, n_unknown)
    return known.reset_index(drop=True), n_unknown
