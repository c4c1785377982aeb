"""Train / validation / test split by source group, never by frame or file.

A group is the manifest's `group` column: a source video, and a fake together with its original. Whole
groups go to one split, so no face of one person-and-scene leaks across splits. The split is seeded,
stratified by the labels a group holds, and written to RUN_DIR/split.csv (group,split) for reuse.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import DataError, UsageError
from pipeline.labels import read_user_table

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def check_fractions(fractions: tuple[float, float, float]) -> tuple[float, float, float]:
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise UsageError(f"split fractions must be three positive numbers summing to 1, got {list(fractions)}")
    return tuple(float(f) for f in fractions)


def split_groups(manifest: pd.DataFrame, fractions=(0.7, 0.15, 0.15), seed: int = 0) -> pd.DataFrame:
    """One row per group: `group`, `split` (train/val/test), seeded and stratified by the group's labels.

    Within each stratum (groups holding REAL only, FAKE only, or both) the groups are shuffled and
    spread evenly over [0, 1); cutting that order at the cumulative fractions gives every split its
    share of every stratum, and the exact overall proportions.
    """
    fractions = check_fractions(tuple(fractions))
    strata = manifest.groupby("group")["label"].agg(lambda labels: "+".join(sorted(set(labels))))
    if len(strata) < 3:
        raise DataError(f"only {len(strata)} group(s) in the manifest: a train/val/test split needs at least 3")
    rng = np.random.default_rng(seed)
    positions = []
    for _, members in sorted(strata.groupby(strata), key=lambda item: item[0]):
        groups = sorted(members.index)
        order = rng.permutation(len(groups))
        positions += [(groups[i], (rank + rng.random()) / len(groups)) for rank, i in enumerate(order)]
    positions.sort(key=lambda item: item[1])
    n = len(positions)
    n_train = max(1, int(round(fractions[0] * n)))
    n_val = max(1, int(round(fractions[1] * n)))
    n_train = min(n_train, n - n_val - 1)  # keep at least one group for test
    names = ["train"] * n_train + ["val"] * n_val + ["test"] * (n - n_train - n_val)
    table = pd.DataFrame({"group": [g for g, _ in positions], "split": names})
    table["rank"] = table["split"].map(SPLITS.index)
    return table.sort_values(["rank", "group"]).drop(columns="rank").reset_index(drop=True)


def write_split(table: pd.DataFrame, path: Path) -> None:
    from pipeline.cache import write_atomic

    write_atomic(Path(path), table[["group", "split"]].to_csv(index=False).encode("utf-8"))


def read_split(path: Path) -> pd.DataFrame:
    """A split file (group,split), checked: known split names, each group once."""
    path = Path(path)
    table = read_user_table(path, "--split-file", error=DataError)
    if list(table.columns[:2]) != ["group", "split"]:
        raise DataError(f"{path}: a split file needs the columns group,split; found {', '.join(table.columns)}")
    bad = sorted(set(table["split"]) - set(SPLITS))
    if bad:
        raise DataError(f"{path}: unknown split name(s) {', '.join(bad)}; expected {', '.join(SPLITS)}")
    duplicated = table["group"][table["group"].duplicated()]
    if len(duplicated):
        raise DataError(f"{path}: group {duplicated.iloc[0]!r} is listed more than once")
    return table[["group", "split"]]


def assign_splits(manifest: pd.DataFrame, table: pd.DataFrame, where: str = "split file") -> pd.Series:
    """The split of every manifest row, from its group; every group of the manifest must be in `table`."""
    splits = manifest["group"].map(dict(zip(table["group"], table["split"])))
    missing = manifest.loc[splits.isna(), "group"].unique()
    if len(missing):
        raise DataError(f"{where}: {len(missing)} group(s) of the manifest have no split, e.g. {missing[0]!r} "
                        "(a split file made for another manifest?)")
    return splits


def subsample_groups(manifest: pd.DataFrame, limit: int, seed: int = 0) -> pd.DataFrame:
    """Rows of whole groups, drawn in a seeded order until about `limit` faces (for quick trials)."""
    groups = sorted(manifest["group"].unique())
    order = np.random.default_rng(seed).permutation(len(groups))
    sizes = manifest["group"].value_counts()
    kept, total = set(), 0
    for index in order:
        if total >= limit:
            break
        kept.add(groups[index])
        total += int(sizes[groups[index]])
    return manifest[manifest["group"].isin(kept)]
