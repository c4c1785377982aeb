"""Split ../shared/data/stylegan_faces by file for training on part and reporting on the rest (issue 11).

Writes, under --out (default runs/):
* stylegan_labels.csv: file,label,group (one group per file), for `extract --labels`;
* stylegan_split.csv: group,split, 70/15/15 per class, seeded;
* shipped_plus_stylegan_split.csv: that split appended to --base (the shipped split, exported as the model
  card shows), for `train --split-file` on a cache holding both;
* stylegan_test/{real,fake}/: links to the test files, for `evaluate-ensemble`.

    .venv/bin/python -m bench.stylegan_split [--seed 0] [--base runs/shipped_split.csv] [--out runs]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
STYLEGAN = ROOT.parent / "shared" / "data" / "stylegan_faces"
FRACTIONS = (0.7, 0.15, 0.15)


def split_by_file(files: pd.DataFrame, seed: int) -> pd.DataFrame:
    """group,split for `files` (columns label, group): each class cut 70/15/15 in a seeded random order."""
    rng = np.random.default_rng(seed)
    parts = []
    for _, rows in files.groupby("label", sort=True):
        order = rng.permutation(len(rows))
        cuts = (int(FRACTIONS[0] * len(rows)), int((FRACTIONS[0] + FRACTIONS[1]) * len(rows)))
        split = np.empty(len(rows), dtype=object)
        split[order[:cuts[0]]], split[order[cuts[0]:cuts[1]]], split[order[cuts[1]:]] = "train", "val", "test"
        parts.append(pd.DataFrame({"group": rows["group"].to_numpy(), "split": split}))
    return pd.concat(parts, ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--base", type=Path, default=ROOT / "runs" / "shipped_split.csv")
    parser.add_argument("--out", type=Path, default=ROOT / "runs")
    args = parser.parse_args()
    if not STYLEGAN.is_dir() or not args.base.is_file():
        raise SystemExit(f"needs {STYLEGAN} and {args.base} (export the shipped split as the model card shows)")
    files = pd.DataFrame([(str(path), label.upper(), f"stylegan/{label}/{path.name}")
                          for label in ("real", "fake") for path in sorted((STYLEGAN / label).glob("*.jpg"))],
                         columns=["file", "label", "group"])
    split = split_by_file(files, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    files.to_csv(args.out / "stylegan_labels.csv", index=False)
    split.to_csv(args.out / "stylegan_split.csv", index=False)
    pd.concat([pd.read_csv(args.base), split]).to_csv(args.out / "shipped_plus_stylegan_split.csv", index=False)
    for group in split.loc[split["split"] == "test", "group"]:
        _, label, name = group.split("/")
        link = args.out / "stylegan_test" / label / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(STYLEGAN / label / name)
    print(split.groupby("split").size().to_string())
    print(f"wrote {args.out}/stylegan_labels.csv, stylegan_split.csv, shipped_plus_stylegan_split.csv, stylegan_test/")


if __name__ == "__main__":
    main()
