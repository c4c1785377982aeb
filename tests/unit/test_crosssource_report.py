"""The cross-source report's arithmetic, on a made-up results table (the benchmark itself needs
../shared/data/crosssource_dev and the shipped models; this checks what it prints from their verdicts)."""
from __future__ import annotations

import pandas as pd
import pytest

from bench.crosssource import compare_runs, crosssource_report


def results() -> pd.DataFrame:
    rows = [("fake/a.mp4", "FAKE", "face swap", 0.9), ("fake/b.mp4", "FAKE", "face swap", 0.2),
            ("fake/c.png", "FAKE", "face swap", None),  # no face found: missed, left out of the AUC
            ("fake/d.mp4", "FAKE", "lip-sync", 0.7), ("fake/e.mp4", "FAKE", "lip-sync", 0.6),
            ("fake/f.mp4", "FAKE", "talking head", 0.3),
            ("real/g.mp4", "REAL", "face swap", 0.1), ("real/h.mp4", "REAL", "real", 0.65),
            ("real/i.mp4", "REAL", "lip-sync", 0.25), ("real/j.png", "REAL", "real", None)]
    frame = pd.DataFrame(rows, columns=["file", "label", "family", "p_fake"])
    frame["verdict"] = ["FAKE" if p is not None and p >= 0.5 else "REAL" for p in frame["p_fake"]]
    return frame


def test_each_family_is_its_fakes_against_every_real_with_intervals():
    report = crosssource_report(results(), threshold=0.5)
    assert list(report) == ["face swap", "lip-sync", "talking head", "pooled"]
    swap = report["face swap"]
    assert (swap["n_fake"], swap["n_real"], swap["no_face"]) == (3, 4, 2)
    # scored fakes 0.9, 0.2 against scored reals 0.1, 0.65, 0.25: 4 of 6 pairs ranked right
    assert swap["roc_auc"] == pytest.approx(4 / 6)
    assert swap["tpr"] == pytest.approx(1 / 3) and swap["fpr"] == pytest.approx(1 / 4)
    for name, family in report.items():
        if name == "talking head":  # one fake: an AUC, but no bootstrap interval
            assert family["roc_auc"] == pytest.approx(2 / 3) and family["roc_auc_ci"] is None
        else:
            low, high = family["roc_auc_ci"]
            assert 0.0 <= low <= family["roc_auc"] <= high <= 1.0
        for rate in ("tpr", "fpr"):
            assert family[f"{rate}_ci"][0] <= family[rate] <= family[f"{rate}_ci"][1]
    assert report["lip-sync"]["roc_auc"] == pytest.approx(5 / 6)
    assert report["pooled"]["n_fake"] == 6 and report["pooled"]["tpr"] == pytest.approx(3 / 6)
    wrong = report["pooled"]["wrong"]
    assert any(line.startswith("fake/c.png (FAKE, REAL, p_fake=-)") for line in wrong)
    assert any(line.startswith("real/h.mp4 (REAL, FAKE") for line in wrong)
    assert len(wrong) == 4  # b, c, f missed; h flagged


def test_comparing_two_runs_pairs_them_file_by_file():
    base = results().dropna(subset=["p_fake"])  # a face found in every file both runs compare
    same = compare_runs(base, base.copy())
    assert all(c["difference"] == 0.0 for c in same.values())
    assert same["talking head"]["difference_ci"] is None  # one fake: no bootstrap interval
    assert all(same[f]["difference_ci"] == [0.0, 0.0] for f in ("face swap", "lip-sync", "pooled"))
    better = base.copy()
    better.loc[better["label"] == "FAKE", "p_fake"] += 1.0  # every fake above every real
    comparison = compare_runs(base, better)
    pooled = comparison["pooled"]
    assert pooled["files"] == len(base) and pooled["roc_auc_candidate"] == 1.0
    assert pooled["difference"] == pytest.approx(1.0 - pooled["roc_auc_base"])
    assert 0.0 <= pooled["difference_ci"][0] <= pooled["difference"] <= pooled["difference_ci"][1]
    with pytest.raises(ValueError, match="same files"):
        compare_runs(base, better.iloc[1:])


def test_another_sets_families_are_the_ones_its_labels_name():
    frame = results()
    frame["family"] = frame["family"].replace({"face swap": "morph", "lip-sync": "face swap", "talking head": "avatar"})
    report = crosssource_report(frame, threshold=0.5)
    assert list(report) == ["face swap", "morph", "avatar", "pooled"]  # crosssource_dev's order first
    assert report["morph"]["n_fake"] == 3 and report["avatar"]["n_fake"] == 1
    assert report["pooled"] == crosssource_report(results(), threshold=0.5)["pooled"]
    assert list(compare_runs(frame.dropna(subset=["p_fake"]), frame.dropna(subset=["p_fake"]))) == list(report)


def write_set(folder, rows, header="file,label,family"):
    for name in {row.split(",")[0] for row in rows}:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"x")
    (folder / "labels.csv").write_text("\n".join([header, *rows]) + "\n")
    return folder


def test_a_labelled_set_is_read_and_checked(tmp_path):
    from bench.crosssource import NO_FAMILY, read_labels

    labels = read_labels(write_set(tmp_path / "a", ["fake/1.mp4,fake,lip-sync", "real/2.mp4,REAL,", "fake/3.png,FAKE,"]))
    assert list(labels["label"]) == ["FAKE", "REAL", "FAKE"]
    assert list(labels["family"]) == ["lip-sync", NO_FAMILY, NO_FAMILY]
    no_family = read_labels(write_set(tmp_path / "b", ["x.mp4,REAL", "y.mp4,FAKE"], header="file,label"))
    assert set(no_family["family"]) == {NO_FAMILY}
    for rows, header, message in [
        (["x.mp4,REAL", "y.mp4,maybe"], "file,label", "label must be REAL or FAKE, got 'MAYBE' for y.mp4"),
        (["x.mp4,REAL"], "file,label", "needs REAL and FAKE files"),
        (["x.mp4"], "file", "no label column"),
    ]:
        with pytest.raises(SystemExit, match=message):
            read_labels(write_set(tmp_path / message[:8].replace(" ", "_"), rows, header))
    broken = write_set(tmp_path / "c", ["x.mp4,REAL", "y.mp4,FAKE"], header="file,label")
    (broken / "y.mp4").unlink()
    with pytest.raises(SystemExit, match="1 labelled file.* not found, e.g. y.mp4"):
        read_labels(broken)
    with pytest.raises(SystemExit, match="labels.csv not found"):
        read_labels(tmp_path / "nothing")
