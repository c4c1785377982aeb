"""The split is by group (source video, and a fake with its original), seeded, stratified and reusable."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.split import assign_splits, read_split, split_groups, subsample_groups, write_split
from pipeline.errors import DataError, UsageError


def manifest(n_groups=200, seed=0) -> pd.DataFrame:
    """Groups of 1-4 faces: pairs (an original and its fake), lone REALs and lone FAKEs."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        kind = ["pair", "real", "fake"][g % 3]
        labels = {"pair": ["REAL", "FAKE"], "real": ["REAL"], "fake": ["FAKE"]}[kind]
        for video, label in enumerate(labels):
            for frame in range(rng.integers(1, 3)):
                rows.append({"group": f"g{g:03d}", "video_id": f"g{g:03d}-{video}", "label": label, "frame": frame})
    return pd.DataFrame(rows)


def test_split_is_disjoint_by_group_and_covers_every_row():
    faces = manifest()
    table = split_groups(faces, seed=0)
    assert table["group"].is_unique and set(table["group"]) == set(faces["group"])
    faces["split"] = assign_splits(faces, table)
    groups = {name: set(faces.loc[faces["split"] == name, "group"]) for name in ("train", "val", "test")}
    assert not groups["train"] & groups["val"] and not groups["train"] & groups["test"]
    assert not groups["val"] & groups["test"]
    videos = faces.groupby("video_id")["split"].nunique()
    assert (videos == 1).all()  # no video (nor its frames) in two splits
    assert [len(groups[s]) for s in ("train", "val", "test")] == [140, 30, 30]


def test_split_is_stratified_by_the_labels_a_group_holds():
    faces = manifest(300)
    table = split_groups(faces, seed=1)
    kind = faces.groupby("group")["label"].agg(lambda s: "+".join(sorted(set(s))))
    merged = table.assign(kind=table["group"].map(kind))
    shares = pd.crosstab(merged["split"], merged["kind"], normalize="columns")
    assert np.allclose(shares.loc["train"], 0.7, atol=0.02) and np.allclose(shares.loc["test"], 0.15, atol=0.02)


def test_split_is_seeded():
    faces = manifest()
    assert split_groups(faces, seed=5).equals(split_groups(faces, seed=5))
    assert not split_groups(faces, seed=5).equals(split_groups(faces, seed=6))


def test_tiny_manifests():
    faces = manifest(3)
    assert sorted(split_groups(faces)["split"]) == ["test", "train", "val"]
    with pytest.raises(DataError, match="only 2 group"):
        split_groups(manifest(2))
    with pytest.raises(UsageError, match="fractions"):
        split_groups(faces, fractions=(0.8, 0.3, 0.1))


def test_split_file_round_trip_and_reuse(tmp_path):
    faces = manifest()
    table = split_groups(faces, seed=2)
    write_split(table, tmp_path / "split.csv")
    again = read_split(tmp_path / "split.csv")
    assert again.equals(table.astype(str))
    assert assign_splits(faces, again).equals(assign_splits(faces, table))
    extra = pd.concat([faces, pd.DataFrame([{"group": "new", "video_id": "n", "label": "REAL", "frame": 0}])])
    with pytest.raises(DataError, match="1 group\\(s\\) of the manifest have no split, e.g. 'new'"):
        assign_splits(extra, again, "split.csv")


@pytest.mark.parametrize("content, message", [
    ("video,split\na,train\n", "needs the columns group,split"),
    ("group,split\na,train\nb,holdout\n", "unknown split name"),
    ("group,split\na,train\na,test\n", "listed more than once"),
])
def test_bad_split_files(tmp_path, content, message):
    path = tmp_path / "split.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_split(path)


def test_missing_split_file(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        read_split(tmp_path / "nope.csv")


def test_subsample_keeps_whole_groups():
    faces = manifest()
    subset = subsample_groups(faces, limit=50, seed=0)
    assert 50 <= len(subset) < 50 + 8
    kept = set(subset["group"])
    assert (faces[faces["group"].isin(kept)].index == subset.index).all()
