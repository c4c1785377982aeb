"""Pack a compact, transportable copy of a face cache, for training on another machine (uploads of ~30 MB).

The crops are re-saved at the smallest size that `Preprocess.crop_resize` still turns into the net's input
without upsampling, ceil(S / FACE_FRACTION) (152 px for the 128-px nets; or --crop-size), as JPEG at
--quality; config.json records the new crop size, so landmarks map into the crops as before. With
--split-file only the groups of --splits are kept, plus the first --test-groups test groups (sorted), so
that the final test step of `train` still has faces; the split file travels as split.csv. The journal and
inputs.csv stay behind (training reads neither).

    .venv/bin/python -m bench.pack_faces CACHE OUT [--input-size 128 | --crop-size N] [--quality 90]
        [--split-file F] [--splits train,val] [--test-groups 12] [--part-mb 28]

Writes OUT/part1.zip .. partN.zip, each at most --part-mb MB (part1 holds config.json, manifest.csv and
split.csv; member paths are the crops' cache-relative paths). Unpacking every part into one folder named
like the cache gives a face cache that `train --faces` takes (the command is printed at the end):

    for z in OUT/part*.zip; do python -m zipfile -e "$z" DEST/mtcnn-0463e6a4ab; done

Do not point `extract` at the unpacked folder: without the journal it would empty the manifest.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import sys
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import cv2
import pandas as pd
from tqdm import tqdm

from models.data import FACE_FRACTION
from models.split import SPLITS, read_split
from pipeline.cache import find_cache_dir
from pipeline.errors import DataError, UsageError

MB = 1_000_000
ENTRY_OVERHEAD = 128  # bytes a zip spends per member besides its data and twice its name (headers, slack)


def pack_crop_size(input_size: int) -> int:
    """The smallest crop side whose central FACE_FRACTION still holds `input_size` pixels (128 -> 152)."""
    return math.ceil(input_size / FACE_FRACTION - 1e-9)


def kept_rows(manifest: pd.DataFrame, split: pd.DataFrame, splits, test_groups: int) -> pd.DataFrame:
    """The rows whose group is in `splits`, plus those of the first `test_groups` test groups (sorted)."""
    which = manifest["group"].map(dict(zip(split["group"], split["split"])))
    tests = sorted(set(manifest.loc[which == "test", "group"]))[:test_groups]
    return manifest[which.isin(list(splits)) | manifest["group"].isin(tests)]


def resave(path: Path, crop_size: int, quality: int) -> bytes:
    """The crop at `path` as JPEG bytes at crop_size x crop_size (INTER_AREA to shrink, INTER_LINEAR to grow)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"{path}: missing or not a readable image")
    if image.shape[:2] != (crop_size, crop_size):
        interpolation = cv2.INTER_AREA if crop_size < max(image.shape[:2]) else cv2.INTER_LINEAR
        image = cv2.resize(image, (crop_size, crop_size), interpolation=interpolation)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise DataError(f"{path}: JPEG encoding failed")
    return encoded.tobytes()


@dataclass
class Parts:
    """part1.zip, part2.zip, ... in `folder`, each at most `limit` bytes: a new one begun when a member
    would not fit in the current one."""

    folder: Path
    limit: int
    paths: list[Path] = field(default_factory=list)
    _zip: zipfile.ZipFile | None = None
    _size: int = 0

    def add(self, name: str, data: bytes, compress: int = zipfile.ZIP_STORED) -> None:
        stored = len(zlib.compress(data)) if compress == zipfile.ZIP_DEFLATED else len(data)
        cost = stored + ENTRY_OVERHEAD + 2 * len(name.encode())
        if cost > self.limit:
            raise UsageError(f"--part-mb {self.limit / MB:g} is too small for {name} ({cost / MB:.2f} MB); raise it")
        if self._zip is None or self._size + cost > self.limit:
            self._next()
        self._zip.writestr(name, data, compress_type=compress)
        self._size += cost - stored + self._zip.getinfo(name).compress_size

    def _next(self) -> None:
        self.close()
        self.paths.append(self.folder / f"part{len(self.paths) + 1}.zip")
        self._zip, self._size = zipfile.ZipFile(self.paths[-1], "w", zipfile.ZIP_STORED), 22  # end record

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            with open(self._zip.filename, "rb") as handle:
                os.fsync(handle.fileno())
            self._zip = None


def read_rows(cache_dir: Path) -> pd.DataFrame:
    """The cache's manifest as text (every value kept exactly as written), checked for group and crop_path."""
    where = cache_dir / "manifest.csv"
    try:
        rows = pd.read_csv(where, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{where}: unreadable manifest ({exc})") from None
    missing = [c for c in ("group", "crop_path") if c not in rows.columns]
    if missing:
        raise DataError(f"{where}: not a face manifest (missing columns {', '.join(missing)})")
    bad = [p for p in rows["crop_path"] if PurePosixPath(p).is_absolute() or ".." in PurePosixPath(p).parts or not p]
    if bad:
        raise DataError(f"{where}: crop_path {bad[0]!r} is not a path inside the cache")
    return rows


def select_rows(rows: pd.DataFrame, split_file: Path | None, splits, test_groups: int,
                where: Path) -> pd.DataFrame:
    """All rows, or with a split file those `kept_rows` keeps; UsageError for a bad split file or none kept."""
    if split_file is None:
        if rows.empty:
            raise DataError(f"{where}: the manifest has no rows")
        return rows
    try:
        table = read_split(split_file)
    except DataError as exc:
        raise UsageError(str(exc)) from None
    kept = kept_rows(rows, table, splits, test_groups)
    if kept.empty:
        raise UsageError(f"{split_file}: keeps none of the {len(rows)} rows of {where} (--splits "
                         f"{','.join(splits)}, --test-groups {test_groups}); a split file of another cache?")
    return kept


def check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder; name a new or empty folder")
    if out.is_dir() and any(out.iterdir()):
        raise UsageError(f"{out}: not empty; name a new or empty folder (nothing was written)")


def pack(cache: Path, out: Path, crop_size: int, quality: int = 90, split_file: Path | None = None,
         splits: tuple[str, ...] = ("train", "val"), test_groups: int = 12,
         part_mb: float = 28.0) -> tuple[pd.DataFrame, Path, list[Path]]:
    """Write the packed copy of `cache` to OUT/part*.zip; the kept rows, the cache dir and the parts."""
    cache_dir = find_cache_dir(cache).resolve()
    check_out(out)
    rows = read_rows(cache_dir)
    kept = select_rows(rows, split_file, splits, test_groups, cache_dir / "manifest.csv")
    try:
        config = json.loads((cache_dir / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{cache_dir / 'config.json'}: unreadable ({exc})") from None
    config |= {"crop_size": crop_size, "jpeg_quality": quality, "packed_from": cache_dir.name}
    created = not out.exists()
    temp = out / f".packing{os.getpid()}"
    try:
        temp.mkdir(parents=True)
    except OSError as exc:
        raise UsageError(f"cannot create the output folder {out}: {exc.strerror}") from None
    parts = Parts(temp, int(part_mb * MB))
    try:
        parts.add("config.json", json.dumps(config, indent=2, sort_keys=True).encode())
        parts.add("manifest.csv", kept.to_csv(index=False).encode(), zipfile.ZIP_DEFLATED)
        if split_file is not None:
            parts.add("split.csv", Path(split_file).read_bytes(), zipfile.ZIP_DEFLATED)
        for path in tqdm(list(dict.fromkeys(kept["crop_path"])), desc="packing", unit="crop"):
            parts.add(path, resave(cache_dir / path, crop_size, quality))
        parts.close()
        for path in parts.paths:
            os.replace(path, out / path.name)
    except BaseException:
        parts.close()
        shutil.rmtree(temp, ignore_errors=True)
        if created and not any(out.iterdir()):
            out.rmdir()
        raise
    temp.rmdir()
    return kept, cache_dir, [out / path.name for path in parts.paths]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache", type=Path, help="a face cache (or the folder holding it, as --faces takes)")
    parser.add_argument("out", type=Path, help="a new or empty folder for part1.zip .. partN.zip")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--input-size", type=int, default=128,
                      help=f"the nets' input side S; crops of ceil(S / {FACE_FRACTION:.4f}) px")
    size.add_argument("--crop-size", type=int, help="the packed crops' side, instead of one from --input-size")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality of the packed crops (1-100)")
    parser.add_argument("--split-file", type=Path, help="group,split CSV (as train --split-file takes)")
    parser.add_argument("--splits", default="train,val", help="the splits kept whole, with --split-file")
    parser.add_argument("--test-groups", type=int, default=12, help="test groups kept too (the first, sorted)")
    parser.add_argument("--part-mb", type=float, default=28.0, help="the most MB (10^6 bytes) of one zip")
    args = parser.parse_args(argv)
    crop_size = args.crop_size if args.crop_size is not None else pack_crop_size(args.input_size)
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    if crop_size < 1 or args.input_size < 1:
        parser.error("--input-size and --crop-size must be positive")
    if not 1 <= args.quality <= 100:
        parser.error(f"--quality {args.quality}: expected 1 to 100")
    if args.part_mb <= 0 or args.test_groups < 0:
        parser.error("--part-mb must be positive and --test-groups at least 0")
    if not splits or set(splits) - set(SPLITS):
        parser.error(f"--splits {args.splits!r}: expected names among {', '.join(SPLITS)}")
    try:
        kept, cache_dir, parts = pack(args.cache, args.out, crop_size, args.quality, args.split_file, tuple(splits),
                                      args.test_groups, args.part_mb)
    except UsageError as exc:
        parser.error(str(exc))
    except (DataError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    print(f"packed {len(kept)} faces of {kept['group'].nunique()} groups from {cache_dir}: "
          f"{crop_size} px crops, JPEG quality {args.quality}")
    for path in parts:
        print(f"  {path}  {path.stat().st_size / MB:.2f} MB")
    folder = shlex.quote(str(args.out))
    print("unpack every part into one folder named like the cache, then train on it:\n"
          f"  for z in {folder}/part*.zip; do python -m zipfile -e \"$z\" DEST/{cache_dir.name}; done\n"
          f"  python cli.py train --faces DEST/{cache_dir.name}"
          + (f" --split-file DEST/{cache_dir.name}/split.csv" if args.split_file else "") + " ...")


if __name__ == "__main__":
    main()
