import json

import numpy as np
import pandas as pd
import pytest

from pipeline.cache import (FaceCache, cache_dir_name, crop_relpath, default_cache_name, find_cache_dir,
                            load_manifest, write_jpeg_atomic)
from pipeline.errors import DataError, UsageError

CONFIG = {"detector": "mtcnn", "margin": 0.3}


def entry(video_id, n_faces, cache_dir, status="ok", size=10, mtime=1):
    faces = []
    for i in range(n_faces):
        rel = crop_relpath(video_id, i * 10, 0)
        write_jpeg_atomic(cache_dir / rel, np.zeros((8, 8, 3), np.uint8), 90)
        faces.append({"video_id": video_id, "frame_index": i * 10, "face_index": 0, "crop_path": rel, "label": "REAL",
                      "group": video_id})
    record = {"video_id": video_id, "status": status, "source_path": f"/x/{video_id}.mp4", "source_size": size,
              "source_mtime_ns": mtime, "n_frames": n_faces, "n_faces": n_faces}
    return {"input": record, "faces": faces}


def test_config_decides_the_directory(tmp_path):
    a = FaceCache(tmp_path, CONFIG).dir
    b = FaceCache(tmp_path, {**CONFIG, "margin": 0.5}).dir
    assert a != b and a.parent == b.parent == tmp_path and a.name.startswith("mtcnn-")


def test_record_snapshot_and_done_check(tmp_path):
    with FaceCache(tmp_path, CONFIG) as cache:
        cache.record(entry("v1", 2, cache.dir))
        cache.record(entry("v2", 0, cache.dir, status="no_face"))
        cache.record(entry("v3", 0, cache.dir, status="error"))
        assert cache.is_done("v1", 10, 1) and cache.is_done("v2", 10, 1)
        assert not cache.is_done("v1", 11, 1)  # the file changed size
        assert not cache.is_done("v3", 10, 1)  # errors are retried
    manifest, cache_dir = load_manifest(tmp_path)
    assert cache_dir == cache.dir
    assert manifest["video_id"].tolist() == ["v1", "v1"]
    assert sorted(pd.read_csv(cache.dir / "inputs.csv")["status"]) == ["error", "no_face", "ok"]


def test_torn_journal_line_is_dropped_and_later_lines_still_append(tmp_path):
    with FaceCache(tmp_path, CONFIG) as cache:
        cache.record(entry("v1", 1, cache.dir))
    with open(cache.dir / "journal.jsonl", "a") as handle:
        handle.write('{"input": {"video_id": "v2", "sta')  # killed mid-write
    with FaceCache(tmp_path, CONFIG) as cache:
        assert set(cache.entries) == {"v1"}
        cache.record(entry("v3", 1, cache.dir))
    with FaceCache(tmp_path, CONFIG) as cache:
        assert set(cache.entries) == {"v1", "v3"}


def test_entry_whose_crops_vanished_is_redone(tmp_path):
    with FaceCache(tmp_path, CONFIG) as cache:
        cache.record(entry("v1", 2, cache.dir))
    (cache.dir / crop_relpath("v1", 10, 0)).unlink()
    with FaceCache(tmp_path, CONFIG) as cache:
        assert "v1" not in cache.entries
    assert load_manifest(cache.dir)[0].empty


def test_redone_input_deletes_crops_it_no_longer_has(tmp_path):
    with FaceCache(tmp_path, CONFIG) as cache:
        cache.record(entry("v1", 3, cache.dir))
        cache.record(entry("v1", 1, cache.dir, mtime=2))
        cache.snapshot()
    assert sorted(p.name for p in (cache.dir / "v1").iterdir()) == ["f000000_00.jpg"]
    assert len(load_manifest(cache.dir)[0]) == 1


def test_second_writer_is_refused(tmp_path):
    with FaceCache(tmp_path, CONFIG):
        with pytest.raises(UsageError, match="another extract"):
            FaceCache(tmp_path, CONFIG).open()


def test_find_cache_dir_lists_choices_when_ambiguous(tmp_path):
    for margin in (0.1, 0.2):
        with FaceCache(tmp_path, {**CONFIG, "margin": margin}):
            pass
    with pytest.raises(DataError, match="several face caches") as error:
        find_cache_dir(tmp_path)
    for cache_dir in tmp_path.iterdir():
        assert f"  {cache_dir}  (" in str(error.value)
    assert default_cache_name() in str(error.value)  # the name that would have been chosen
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no manifest"):
        find_cache_dir(empty)


def extract_cache(root, **face_settings):
    """An (empty) cache as `extract` names it for these face settings, everything else at its default."""
    from pipeline.extract import ExtractConfig
    from pipeline.faces import FaceConfig

    with FaceCache(root, ExtractConfig(faces=FaceConfig(**face_settings)).cache_fields()) as cache:
        cache.record(entry("v1", 1, cache.dir))
    return cache.dir


def test_default_cache_name_is_the_directory_extract_makes_by_default(tmp_path):
    assert extract_cache(tmp_path).name == default_cache_name()
    assert extract_cache(tmp_path, redetect_every=1).name != default_cache_name()


def test_the_cache_the_model_card_names_is_the_one_redetect_every_1_makes():
    from pipeline.extract import ExtractConfig
    from pipeline.faces import FaceConfig

    # models/weights/MODEL_CARD.md and README.md: the shipped models were trained on this cache
    assert cache_dir_name(ExtractConfig(faces=FaceConfig(redetect_every=1)).cache_fields()) == "mtcnn-3fd855f0a0"


def test_several_caches_resolve_to_the_one_made_with_default_settings(tmp_path):
    default = extract_cache(tmp_path)
    extract_cache(tmp_path, redetect_every=1)
    extract_cache(tmp_path, margin=0.5)
    assert find_cache_dir(tmp_path) == default
    assert load_manifest(tmp_path)[1] == default
    assert find_cache_dir(tmp_path / "mtcnn-3fd855f0a0").name == "mtcnn-3fd855f0a0"  # named: that one


def test_a_single_cache_is_found_whatever_its_settings(tmp_path):
    only = extract_cache(tmp_path, redetect_every=1)
    assert find_cache_dir(tmp_path) == only


def test_a_default_directory_without_manifest_is_no_cache(tmp_path):
    extract_cache(tmp_path, redetect_every=1)
    extract_cache(tmp_path, margin=0.5)
    (tmp_path / default_cache_name()).mkdir()  # e.g. made by hand, or an extract that never got to write
    with pytest.raises(DataError, match="several face caches and none made with extract's default settings"):
        find_cache_dir(tmp_path)


def test_config_is_recorded(tmp_path):
    with FaceCache(tmp_path, CONFIG) as cache:
        pass
    assert json.loads((cache.dir / "config.json").read_text()) == CONFIG


def test_caches_written_before_redetect_every_existed_keep_their_key_and_meaning():
    from ensembles.ensemble import face_config_from_dict
    from pipeline.faces import FaceConfig

    assert "redetect_every" not in FaceConfig(redetect_every=1).cache_key_fields()
    assert FaceConfig(redetect_every=2).cache_key_fields()["redetect_every"] == 2
    assert face_config_from_dict({"detector": "mtcnn"}).redetect_every == 1
    assert face_config_from_dict({"redetect_every": 3}).redetect_every == 3
