"""bench.pack_faces: a compact copy of a face cache in size-bounded zips, unpacked into a cache `train` takes."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from bench.pack_faces import main as pack_faces
from models.data import Preprocess, landmarks_of
from pipeline.cache import load_manifest
from tests.conftest import run_main
from tests.integration.test_train import astronaut_pairs, cli, make_cache

PART_MB = 0.06  # the astronaut's 24 crops take ~0.15 MB at 152 px: three parts or so


def run_pack(*args) -> tuple[int, str]:
    return run_main(pack_faces, *args)


def unpack(out: Path, dest: Path) -> None:
    """The unpack command the tool prints, run as printed."""
    for part in sorted(out.glob("part*.zip")):
        subprocess.run([sys.executable, "-m", "zipfile", "-e", str(part), str(dest)], check=True)


@pytest.fixture(scope="module")
def faces(tmp_path_factory, astronaut) -> Path:
    """12 groups, each a REAL variation of the astronaut and a crude FAKE of it (as test_train's cache)."""
    images = astronaut_pairs(astronaut, np.random.default_rng(0), 12, "02d")
    return make_cache(images, tmp_path_factory.mktemp("astronaut"))


@pytest.fixture(scope="module")
def packed(faces, tmp_path_factory) -> tuple[Path, Path, str]:
    """(OUT, the unpacked cache, the printed report) of packing every row in parts of PART_MB."""
    out = tmp_path_factory.mktemp("pack") / "out"
    code, printed = run_pack(faces, out, "--part-mb", PART_MB)
    assert code == 0, printed
    dest = tmp_path_factory.mktemp("unpacked") / faces.name
    unpack(out, dest)
    return out, dest, printed


def test_parts_unpack_into_a_cache_of_152px_crops(faces, packed):
    out, dest, printed = packed
    parts = sorted(out.iterdir())
    assert len(parts) >= 2 and [p.name for p in parts] == [f"part{k}.zip" for k in range(1, len(parts) + 1)]
    assert all(p.stat().st_size <= PART_MB * 1e6 for p in parts)
    with zipfile.ZipFile(parts[0]) as first:
        assert first.namelist()[:2] == ["config.json", "manifest.csv"]
        assert first.getinfo("manifest.csv").compress_type == zipfile.ZIP_DEFLATED
        assert {i.compress_type for i in first.infolist() if i.filename.endswith(".jpg")} == {zipfile.ZIP_STORED}
    assert f"zipfile -e \"$z\" DEST/{faces.name}" in printed and "packed 24 faces of 12 groups" in printed

    original, _ = load_manifest(faces)
    unpacked, cache_dir = load_manifest(dest)
    assert cache_dir == dest
    pd.testing.assert_frame_equal(unpacked.drop(columns="crop_file"), original.drop(columns="crop_file"))
    config, before = (json.loads((d / "config.json").read_text()) for d in (dest, faces))
    assert config == before | {"crop_size": 152, "jpeg_quality": 90, "packed_from": faces.name}
    assert {cv2.imread(f).shape for f in unpacked["crop_file"]} == {(152, 152, 3)}
    assert not (dest / "journal.jsonl").exists() and not (dest / "split.csv").exists()


def test_the_net_sees_the_same_faces_and_landmarks(faces, packed):
    _, dest = packed[:2]
    preprocess = Preprocess(input_size=128)
    original, _ = load_manifest(faces)
    unpacked, _ = load_manifest(dest)
    assert np.abs(landmarks_of(unpacked, dest, preprocess) - landmarks_of(original, faces, preprocess)).max() < 1.5
    for before, after in zip(original["crop_file"], unpacked["crop_file"]):
        images = [preprocess.crop_resize(cv2.imread(f)).numpy().astype(float) for f in (before, after)]
        assert np.abs(images[0] - images[1]).mean() < 6


def test_train_runs_on_the_unpacked_cache(packed, tmp_path):
    result = cli("train", "--net", "lenet", "--faces", packed[1], "--out", tmp_path / "run", "--epochs", 1,
                 "--batch-size", 8, "--quiet")
    assert result.exit_code == 0, result.output


def test_a_split_file_keeps_train_val_and_a_few_test_groups(faces, tmp_path):
    groups = [f"group{g:02d}" for g in range(12)]
    splits = ["train"] * 6 + ["val"] * 2 + ["test"] * 4
    split_file = tmp_path / "split.csv"
    pd.DataFrame({"group": groups[::-1], "split": splits}).to_csv(split_file, index=False)  # test: 00..03
    code, printed = run_pack(faces, tmp_path / "out", "--split-file", split_file, "--test-groups", 2)
    assert code == 0, printed
    dest = tmp_path / "unpacked" / faces.name
    unpack(tmp_path / "out", dest)
    unpacked, _ = load_manifest(dest)
    assert set(unpacked["group"]) == set(groups[4:]) | {"group00", "group01"} and len(unpacked) == 20
    assert (dest / "split.csv").read_bytes() == split_file.read_bytes()
    assert len(list(dest.glob("*/*.jpg"))) == 20


def test_bad_split_files_are_refused(faces, tmp_path):
    (tmp_path / "columns.csv").write_text("group,part\ngroup00,train\n")
    code, printed = run_pack(faces, tmp_path / "out", "--split-file", tmp_path / "columns.csv")
    assert code == 2 and "needs the columns group,split" in printed
    (tmp_path / "other.csv").write_text("group,split\nsomeone,train\nelse,val\n")
    code, printed = run_pack(faces, tmp_path / "out", "--split-file", tmp_path / "other.csv")
    assert code == 2 and "keeps none of the 24 rows" in printed
    assert not (tmp_path / "out").exists()


def test_a_non_empty_out_is_refused_and_left_alone(faces, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    code, printed = run_pack(faces, tmp_path / "out")
    assert code == 2 and "not empty; name a new or empty folder" in printed
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["notes.txt"]


def test_a_missing_cache_fails_clearly(tmp_path):
    code, printed = run_pack(tmp_path / "nowhere", tmp_path / "out")
    assert code == 1 and "no such face cache directory" in printed and "Traceback" not in printed
    assert not (tmp_path / "out").exists()


def test_an_unreadable_crop_stops_the_pack_and_leaves_nothing(faces, tmp_path):
    broken = tmp_path / "broken" / faces.name
    shutil.copytree(faces, broken)
    manifest, _ = load_manifest(broken)
    victim = manifest["crop_path"].iloc[5]
    (broken / victim).write_bytes(b"not a jpeg")
    code, printed = run_pack(broken, tmp_path / "out", "--part-mb", PART_MB)
    assert code == 1 and f"{broken / victim}: missing or not a readable image" in printed
    assert not (tmp_path / "out").exists()
