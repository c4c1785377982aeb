"""Texture probe (issue 11, a generator-fingerprint cue that was tried and not shipped): how much fine detail a
face's mouth holds next to its eyes, and its middle next to the sides beside the face, on native frames.

    .venv/bin/python -m bench.texture_probe runs/texture_rows.json

Lip-sync tools regenerate the lower face at a low resolution (Wav2Lip at 96 px) and talking-head tools render the
face at 256-512 px, so their mouths might hold less detail than the eyes beside them. For every face found as
`classify-video` finds it: `detail` = var(Laplacian) / var(patch) (contrast-normalised high-frequency energy) of a
patch around the mouth, around each eye, over the face's middle and beside the face; per track, the median of
log(mouth / eyes) and log(face / sides). It prints the spread of these over the calibration reals
(../shared/data/real_talking and DFDC lynaeydofd) and, for measuring only, crosssource_dev's ROC-AUC per family
("lower = fake"). Measured 2026-11-23: the reals' log(mouth / eyes) spans -2.1 to 0.8 (sd 0.6), far wider than
any shift the fakes show (ROC-AUC 0.35 face swap, 0.61 lip-sync, 0.73 talking head; log(face / sides): 0.57,
0.66, 0.58), so neither was made a member.
"""
from __future__ import annotations

import json
import sys
from contextlib import closing
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from tqdm import tqdm

from bench.common import table
from bench.crosssource import FAMILIES
from bench.mouth_motion import CALIBRATION, clips_to_measure
from ensembles.ensemble import Ensemble
from ensembles.tracks import link_tracks
from pipeline.faces import FaceExtractor
from pipeline.media import MediaReader


def detail(gray: np.ndarray, center, half_w: float, half_h: float) -> float | None:
    """Contrast-normalized high-frequency energy of a patch: var(Laplacian) / var(patch)."""
    x, y = center
    x0, x1 = int(round(x - half_w)), int(round(x + half_w))
    y0, y1 = int(round(y - half_h)), int(round(y + half_h))
    if x0 < 0 or y0 < 0 or x1 > gray.shape[1] or y1 > gray.shape[0] or x1 - x0 < 6 or y1 - y0 < 4:
        return None
    patch = gray[y0:y1, x0:x1]
    spread = patch.var()
    if spread < 1.0:
        return None
    lap = cv2.Laplacian(patch, cv2.CV_32F, ksize=3)[1:-1, 1:-1]
    return float(lap.var() / spread)


def face_features(gray: np.ndarray, box, marks) -> dict:
    points = np.asarray(marks, dtype=float)
    left, right, nose, mouth_l, mouth_r = points
    d = float(np.linalg.norm(right - left))
    mouth = (mouth_l + mouth_r) / 2
    eyes = [detail(gray, left, 0.35 * d, 0.25 * d), detail(gray, right, 0.35 * d, 0.25 * d)]
    eyes = [e for e in eyes if e is not None]
    x0, y0, x1, y1 = box
    width, height = x1 - x0, y1 - y0
    face = detail(gray, ((x0 + x1) / 2, (y0 + y1) / 2), 0.3 * width, 0.3 * height)
    sides = [detail(gray, (x0 - 0.2 * width, (y0 + y1) / 2), 0.15 * width, 0.3 * height),
             detail(gray, (x1 + 0.2 * width, (y0 + y1) / 2), 0.15 * width, 0.3 * height)]
    sides = [s for s in sides if s is not None]
    return {"eye_px": d, "mouth": detail(gray, mouth, 0.55 * d, 0.3 * d),
            "eyes": float(np.mean(eyes)) if eyes else None, "face": face,
            "context": float(np.mean(sides)) if sides else None}


def measure(path: Path, ensemble, extractor) -> list[dict]:
    rows = []
    with MediaReader(path) as reader:
        with closing(extractor.faces_in_file(reader)) as found:
            for position, (frame, crops) in enumerate(found):
                gray = cv2.cvtColor(frame.image, cv2.COLOR_BGR2GRAY).astype(np.float32)
                for crop in crops:
                    det = crop.detection
                    if det.landmarks is None:
                        continue
                    rows.append({"position": position, "box": list(det.box),
                                 **face_features(gray, det.box, det.landmarks)})
    if rows:
        ids = link_tracks([r["position"] for r in rows], [tuple(r["box"]) for r in rows], ensemble.config.tracks)
        for row, track in zip(rows, ids):
            row["track"] = int(track)
    return rows


def per_clip(rows: pd.DataFrame) -> pd.DataFrame:
    """Per clip, its longest track's median log(mouth / eyes) and log(face / sides)."""
    rows = rows.assign(mouth_eyes=np.log(rows["mouth"] / rows["eyes"]), face_sides=np.log(rows["face"] / rows["context"]))
    tracks = rows.groupby(["group", "clip", "track"]).agg(
        faces=("position", "size"), mouth_eyes=("mouth_eyes", "median"), face_sides=("face_sides", "median"))
    return tracks.reset_index().sort_values("faces").groupby(["group", "clip"]).tail(1)


def main() -> None:
    out = Path(sys.argv[1])
    if out.is_file():
        rows = pd.DataFrame(json.loads(out.read_text()))
    else:
        ensemble = Ensemble.load(None, device="cpu")
        extractor = FaceExtractor(ensemble.face_config(), device="cpu")
        result = []
        for group, path, person in tqdm(clips_to_measure(), unit="clip"):
            for row in measure(path, ensemble, extractor):
                result.append({"group": group, "person": person, "clip": path.name, **row})
        out.write_text(json.dumps(result))
        rows = pd.DataFrame(result)
    rows[["mouth", "eyes", "face", "context"]] = rows[["mouth", "eyes", "face", "context"]].astype(float)
    clips = per_clip(rows)
    reals = clips[clips["group"].isin(CALIBRATION)]
    print(f"calibration reals ({len(reals)} clips):")
    print(reals[["mouth_eyes", "face_sides"]].describe().round(3).to_string())
    cross_reals = clips[clips["group"] == "crosssource REAL"]
    result = []
    for family in FAMILIES:
        fakes = clips[clips["group"] == f"crosssource FAKE {family}"]
        both = pd.concat([fakes, cross_reals])
        truth = both["group"] != "crosssource REAL"
        result.append([family, len(fakes)] + [f"{roc_auc_score(truth, -both[c].fillna(both[c].median())):.3f}"
                                              for c in ("mouth_eyes", "face_sides")])
    print("\ncrosssource_dev (measurement only), ROC-AUC with lower = fake:")
    print(table(result, ["family", "fakes", "log(mouth / eyes)", "log(face / sides)"]))


if __name__ == "__main__":
    main()
