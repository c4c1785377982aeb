"""A picture of what self-blending does to a face cache's REAL faces (`cli.py self-blend-grid`): real, mask,
blended and the difference, row by row."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from models.data import CLASSES, Preprocess, landmarks_of, outlines_of, picture_boxes_of, read_crop
from models.selfblend import sample_rng, self_blend
from pipeline.cache import load_manifest, write_atomic
from pipeline.errors import DataError


def write_self_blend_grid(faces: Path, out: Path, n: int = 8, seed: int = 0, input_size: int = 112,
                          blend_outlines: Path | None = None, lower_face_share: float = 0.0) -> Path:
    """A PNG of `n` REAL faces of a face cache (drawn with `seed`): real, mask, self-blended, and the
    difference (x3), at the nets' input size `input_size`; blended through the dense outlines of the file
    `blend_outlines` where it has one (as `train --blend-outlines`), and that share of them through the lower
    face only (as `train --lower-face-blends`). Returns `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    manifest, cache_dir = load_manifest(faces)
    reals = manifest[manifest["label"] == CLASSES[0]]
    if reals.empty:
        raise DataError(f"{cache_dir / 'manifest.csv'}: no REAL faces to self-blend")
    rng = np.random.default_rng(seed)
    picked = reals.iloc[np.sort(rng.choice(len(reals), size=min(n, len(reals)), replace=False))]
    preprocess = Preprocess(input_size)
    landmarks = landmarks_of(picked, cache_dir, preprocess)
    pictures = picture_boxes_of(picked, cache_dir, preprocess)
    outlines = None if blend_outlines is None else outlines_of(picked, cache_dir, preprocess, blend_outlines)

    columns = ("real", "mask", "self-blended", "|difference| x3")
    figure, axes = plt.subplots(len(picked), 4, figsize=(8, 2.1 * len(picked)), squeeze=False)
    for row, (crop_file, marks) in enumerate(zip(picked["crop_file"], landmarks)):
        real = read_crop(crop_file, preprocess).permute(1, 2, 0).numpy()
        outline = None if outlines is None else outlines[row]
        blended, mask = self_blend(real, marks, sample_rng(seed, 0, row), None if pictures is None else pictures[row],
                                   outline, lower_face_share)
        difference = np.clip(np.abs(blended.astype(np.int16) - real.astype(np.int16)) * 3, 0, 255).astype(np.uint8)
        for column, picture in enumerate((real, mask, blended, difference)):
            axis = axes[row, column]
            axis.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=1 if column == 1 else 255)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(columns[column], fontsize=9)
        axes[row, 0].plot(marks[:, 0], marks[:, 1], "c.", markersize=3)
        dense = outline is not None and bool(np.isfinite(outline).all())
        if dense:
            axes[row, 0].plot(outline[:, 0], outline[:, 1], "m.", markersize=2)
        hull_name = "" if outlines is None else ("dense outline, " if dense else "5-point hull, ")
        axes[row, 1].set_xlabel(f"{hull_name}ratio {mask.max():.2f}", fontsize=7)
        axes[row, 0].set_ylabel(Path(crop_file).parent.name, fontsize=7)
    figure.suptitle(f"self-blended images from {cache_dir.name} (seed {seed}, {input_size} px)", fontsize=10)
    figure.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.tmp.png")
    figure.savefig(temporary, dpi=110)
    plt.close(figure)
    write_atomic(out, temporary.read_bytes())
    temporary.unlink()
    return out
