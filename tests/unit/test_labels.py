import json

import pytest

from pipeline.errors import UsageError
from pipeline.labels import FAKE, REAL, UNKNOWN, LabelResolver


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_folder_names_in_any_case(tmp_path):
    resolver = LabelResolver()
    assert resolver.resolve(touch(tmp_path / "Real" / "a.mp4")).label == REAL
    assert resolver.resolve(touch(tmp_path / "FAKE" / "sub" / "b.mp4")).label == FAKE
    assert resolver.resolve(touch(tmp_path / "misc" / "c.mp4")).label == UNKNOWN


def test_dfdc_metadata_json_gives_label_and_original_as_group(tmp_path):
    (tmp_path / "metadata.json").write_text(json.dumps({
        "f.mp4": {"label": "FAKE", "split": "train", "original": "o.mp4"},
        "o.mp4": {"label": "REAL", "split": "train"},
    }))
    resolver = LabelResolver()
    fake = resolver.resolve(touch(tmp_path / "f.mp4"))
    real = resolver.resolve(touch(tmp_path / "o.mp4"))
    assert (fake.label, fake.group, fake.source) == (FAKE, "o.mp4", "metadata.json")
    assert (real.label, real.group) == (REAL, "o.mp4")
    assert resolver.resolve(touch(tmp_path / "other.mp4")).label == UNKNOWN


def test_faceforensics_tree(tmp_path):
    resolver = LabelResolver()
    original = touch(tmp_path / "original_sequences" / "youtube" / "c23" / "videos" / "000.mp4")
    fake = touch(tmp_path / "manipulated_sequences" / "Deepfakes" / "c23" / "videos" / "000_003.mp4")
    assert (resolver.resolve(original).label, resolver.resolve(original).group) == (REAL, "000")
    assert (resolver.resolve(fake).label, resolver.resolve(fake).group) == (FAKE, "000")


def test_labels_csv_wins_and_matches_by_name_or_stem(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("file,label,group\nreal/a.jpg,fake,g1\nb,0,\n")
    resolver = LabelResolver(csv)
    a = resolver.resolve(touch(tmp_path / "real" / "a.jpg"))  # the folder says real, the CSV says fake
    assert (a.label, a.group, a.source) == (FAKE, "g1", "csv")
    b = resolver.resolve(touch(tmp_path / "b.mp4"))
    assert (b.label, b.group) == (REAL, "b.mp4")


@pytest.mark.parametrize(
    "content, message",
    [("name,verdict\na,REAL\n", "needs a 'label' column"), ("file,label\na.mp4,maybe\n", "neither REAL nor FAKE")],
)
def test_bad_labels_csv_is_a_usage_error(tmp_path, content, message):
    csv = tmp_path / "labels.csv"
    csv.write_text(content)
    with pytest.raises(UsageError, match=message):
        LabelResolver(csv)


def test_missing_labels_csv_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="file not found"):
        LabelResolver(tmp_path / "nope.csv")
