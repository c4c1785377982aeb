"""bench.crosssource end to end on a labelled set laid out as crosssource_dev (`--data`), with real faces."""
from __future__ import annotations

import json

import cv2
import numpy as np

from bench.crosssource import main as crosssource
from tests.conftest import run_main


def run(*args) -> tuple[int, str]:
    return run_main(crosssource, *args)


def test_another_labelled_set_is_reported_by_its_own_families(small_ensemble, astronaut, tmp_path):
    data = tmp_path / "second_dev"
    (data / "real").mkdir(parents=True)
    (data / "fake").mkdir()
    cv2.imwrite(str(data / "real" / "person.png"), astronaut)
    cv2.imwrite(str(data / "fake" / "mirrored.jpg"), astronaut[:, ::-1])
    cv2.imwrite(str(data / "fake" / "landscape.png"), np.full((200, 300, 3), 90, np.uint8))  # no face in it
    (data / "labels.csv").write_text("file,label,family\nreal/person.png,REAL,\n"
                                     "fake/mirrored.jpg,FAKE,morph\nfake/landscape.png,FAKE,morph\n")
    out = tmp_path / "run.json"
    code, printed = run("--data", data, "--ensemble", small_ensemble, "--json", out)
    assert code == 0, printed
    assert f"set {data}" in printed and "morph" in printed and "face swap" not in printed
    saved = json.loads(out.read_text())
    assert saved["data"] == str(data) and list(saved["report"]) == ["morph", "pooled"]
    morph = saved["report"]["morph"]
    assert (morph["n_fake"], morph["n_real"], morph["no_face"]) == (2, 1, 1)
    assert "fake/landscape.png (FAKE, NO_FACE, p_fake=-)" in morph["wrong"]  # a fake with no face is missed
    verdicts = {v["file"]: v for v in saved["verdicts"]}
    assert verdicts["real/person.png"]["p_fake"] is not None and verdicts["fake/landscape.png"]["p_fake"] is None
    code, printed = run("--compare", out, out)
    assert code == 0 and "morph" in printed and "+0.000" in printed


def test_a_set_with_bad_labels_fails_before_any_model_loads(tmp_path):
    (tmp_path / "clip.mp4").write_bytes(b"x")
    (tmp_path / "labels.csv").write_text("file,label\nclip.mp4,REAL\nclip.mp4,DEEPFAKE\n")
    code, printed = run("--data", tmp_path, "--ensemble", tmp_path / "missing.json")
    assert code == 1 and "label must be REAL or FAKE, got 'DEEPFAKE' for clip.mp4" in printed
