"""bench.choose on a tiny labelled set: it crops the set once into a scoring cache of its own (not a training
cache), scores each checkpoint per family, reuses the cache, and writes every file's score."""
import cv2
import pandas as pd

from bench.choose import main
from tests.conftest import make_small_ensemble, run_main, write_labelled_set


def test_candidates_are_scored_per_family_from_a_scoring_cache_of_their_own(tmp_path, face_clip, astronaut):
    data = write_labelled_set(
        tmp_path / "set", face_clip, astronaut,
        {"blurred": cv2.GaussianBlur(astronaut, (0, 0), 3), "dark": (astronaut * 0.5).astype("uint8")},
        "file,label,family,group\nreal/clip.mp4,REAL,real,a\nreal/photo.jpg,REAL,real,b\n"
        "fake/blurred.jpg,FAKE,blur,b\nfake/dark.jpg,FAKE,dark,b\n")
    (tmp_path / "nets").mkdir()
    nets = make_small_ensemble(tmp_path / "nets").parent
    caches = tmp_path / "caches"
    args = ["--data", str(data), "--cache-dir", str(caches), "--csv", str(tmp_path / "scores.csv"),
            str(nets / "lenet.pt"), str(nets / "minivgg.pt")]
    code, output = run_main(main, *args)
    assert code == 0, output
    assert "2 real and 2 fake files with a face" in output
    header = next(line for line in output.splitlines() if line.startswith("| checkpoint"))
    assert "blur" in header and "dark" in header and "TPR at FPR 5%" in header
    assert sum(str(nets / "lenet.pt") in line for line in output.splitlines()) == 1
    [cache] = [p.parent for p in caches.rglob("manifest.csv")]  # one cache, under --cache-dir only
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert sorted(scores["file"]) == sorted(["real/clip.mp4", "real/photo.jpg", "fake/blurred.jpg", "fake/dark.jpg"])
    assert scores[[str(nets / "lenet.pt"), str(nets / "minivgg.pt")]].stack().between(0, 1).all()
    crops = {p: p.stat().st_mtime_ns for p in cache.rglob("*.jpg")}
    assert crops and run_main(main, *args)[0] == 0
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*.jpg")} == crops  # reused, not cropped again
