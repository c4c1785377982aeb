"""Mouth motion, the track-level signal for one-photo talking heads (ensembles/motion.py): calibrate it on real
people talking, then measure it, alone, on crosssource_dev.

    .venv/bin/python -m bench.mouth_motion [--ensemble FILE] [--alpha 0.05] [--all-faces] [--rows ROWS.json]
        [--fit OUT.json] [--measure corners|inner-lips|outer-lips]

Like the shipped member, it judges only the faces sampled while someone speaks in the file's audio
(pipeline/audio.py); `--all-faces` judges every face, as the member did before 2026-11-23.

1. Calibration, REAL faces only: every long-enough track of ../shared/data/real_talking and of the real DFDC clip
   lynaeydofd. A log-normal is fitted to their mouth spreads (`fit_mouth_motion`). Leave-one-person-out: each
   real clip is judged by a fit without its person, and the share of real clips flagged is printed (the
   false-positive rate to expect from this member alone at the threshold).
2. Check: the five DFDC fakes (face swaps keep the real person's mouth motion, so they should not be flagged).
3. Measurement only, never used for a choice: crosssource_dev, per family (its fakes against all reals),
   ROC-AUC of the signal alone (a file's stillest long-enough track) and TPR/FPR at the fitted threshold.

`--measure` compares ways to measure a mouth's opening: `corners` (the member's: eyes to MTCNN's mouth corners),
or the gap between the inner (`inner-lips`) or outer lips (`outer-lips`) from dlib's 68-point predictor, fitted
inside the MTCNN box. dlib is not a project dependency; for this comparison only:
`.venv/bin/pip install dlib-bin==20.0.1.post1 face-recognition-models==0.3.0` (the predictor's weights ship in the
second; nothing is downloaded at run time).

`--rows` caches the measured tracks (they take a few minutes to find); `--fit` writes the calibration that
`build-ensemble --mouth-motion FILE` puts into an ensemble.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from tqdm import tqdm

from bench.common import SHARED, table
from bench.crosssource import DATASET as CROSSSOURCE, FAMILIES
from ensembles.ensemble import Ensemble
from ensembles.motion import MIN_MOTION_FACES, fit_mouth_motion, track_rows
from pipeline.faces import FaceExtractor

REAL_TALKING = SHARED / "real_talking"
DFDC = SHARED / "dfdc_videos"


def default_clips() -> list[tuple[str, Path]]:
    """(group, path): the calibration clips, the photo clip, then the other DFDC clips as a check."""
    clips = [("real_talking", path) for path in sorted(REAL_TALKING.glob("*")) if path.suffix.lower() in
             (".mp4", ".mpg", ".avi", ".mov", ".mkv", ".webm")]
    clips.append(("real DFDC", DFDC / "lynaeydofd.mp4"))
    clips.append(("photo clip", DFDC / "yhffcuhhjy.mp4"))
    clips += [("DFDC fake (check)", path) for path in sorted(DFDC.glob("*.mp4"))
              if path.stem not in ("lynaeydofd", "yhffcuhhjy")]
    return clips


CALIBRATION = ("real_talking", "real DFDC")


def clips_to_measure() -> list[tuple[str, Path, str]]:
    """(group, path, person): calibration reals and DFDC checks, then crosssource_dev files (group = family)."""
    people = {}
    if (REAL_TALKING / "labels.csv").is_file():
        labels = pd.read_csv(REAL_TALKING / "labels.csv")
        people = dict(zip(labels["file"], labels["person"].astype(str)))
    clips = [(group, path, people.get(path.name, path.stem)) for group, path in default_clips()]
    if (CROSSSOURCE / "labels.csv").is_file():
        labels = pd.read_csv(CROSSSOURCE / "labels.csv")
        clips += [(f"crosssource {r.label} {r.family}" if r.label == "FAKE" else "crosssource REAL",
                   CROSSSOURCE / r.file, r.file) for r in labels.itertuples()]
    return clips


LIP_PAIRS = {"inner-lips": ((61, 67), (62, 66), (63, 65)), "outer-lips": ((50, 58), (51, 57), (52, 56))}


def dlib_lip_opening(measure: str):
    """(frame BGR image, Detection) -> the mean gap between the upper and lower lip (68-point indices in
    `LIP_PAIRS`), in distances between the eyes' centres, from dlib's predictor fitted in the detection's box."""
    import importlib.util

    import cv2
    try:
        import dlib
        package = importlib.util.find_spec("face_recognition_models")  # its __init__ needs pkg_resources: not run
    except ImportError:
        package = None
    if package is None:
        raise SystemExit(f"--measure {measure} needs dlib and its 68-point predictor: .venv/bin/pip install"
                         " dlib-bin==20.0.1.post1 face-recognition-models==0.3.0")
    predictor = dlib.shape_predictor(str(Path(package.submodule_search_locations[0])
                                         / "models" / "shape_predictor_68_face_landmarks.dat"))

    def opening(image: np.ndarray, detection) -> float | None:
        x1, y1, x2, y2 = (int(round(v)) for v in detection.box)
        shape = predictor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), dlib.rectangle(x1, y1, x2, y2))
        points = np.array([(shape.part(i).x, shape.part(i).y) for i in range(68)], dtype=float)
        eyes = float(np.linalg.norm(points[36:42].mean(axis=0) - points[42:48].mean(axis=0)))
        gap = np.mean([np.linalg.norm(points[a] - points[b]) for a, b in LIP_PAIRS[measure]])
        return float(gap / eyes) if eyes > 0 else None

    return opening


def measure(ensemble: Ensemble, speech_only: bool, how: str = "corners") -> pd.DataFrame:
    extractor = FaceExtractor(ensemble.face_config(), device="cpu")
    opening = None if how == "corners" else dlib_lip_opening(how)
    rows = []
    for group, path, person in tqdm(clips_to_measure(), desc="tracks", unit="clip"):
        for row in track_rows(path, ensemble, extractor, speech_only, opening):
            rows.append({"group": group, "person": person, **row})
    return pd.DataFrame(rows)


def per_clip(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per clip: the stillest mouth among its long-enough tracks (None: no track long enough)."""
    judged = rows[~rows["short"]]
    return judged.groupby(["group", "person", "clip"], sort=False)["mouth"].min().reset_index()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ensemble", type=Path, default=None)
    parser.add_argument("--alpha", type=float, default=0.05,
                        help="share of real tracks the member alone may flag (default 0.05)")
    parser.add_argument("--all-faces", action="store_true", help="judge every face, not only those during speech")
    parser.add_argument("--rows", type=Path, default=None,
                        help="track rows cache (read if present, else written; one file per --measure)")
    parser.add_argument("--fit", type=Path, default=None, help="write the calibration here")
    parser.add_argument("--measure", choices=("corners", *LIP_PAIRS), default="corners",
                        help="how a mouth's opening is measured (default: the member's, MTCNN's corners)")
    args = parser.parse_args()
    if args.fit and args.measure != "corners":
        parser.error("--fit writes a calibration for the member, which measures the corners: drop --measure")
    ensemble = Ensemble.load(args.ensemble, device="cpu")
    if args.rows and args.rows.is_file():
        rows = pd.DataFrame(json.loads(args.rows.read_text()))
    else:
        rows = measure(ensemble, speech_only=not args.all_faces, how=args.measure)
        if args.rows:
            args.rows.write_text(json.dumps(rows.replace({np.nan: None}).to_dict("records"), indent=1))
    clips = per_clip(rows)
    calibration = clips[clips["group"].isin(CALIBRATION) & clips["mouth"].notna()]
    real_tracks = rows[rows["group"].isin(CALIBRATION) & ~rows["short"] & rows["mouth"].notna()]
    name = (f"{len(real_tracks)} real tracks of {REAL_TALKING.name} and DFDC lynaeydofd,"
            f" at least {MIN_MOTION_FACES} faces each" + ("" if args.all_faces else " sampled during speech"))
    model = fit_mouth_motion(real_tracks["mouth"].tolist(), args.alpha, name, speech_only=not args.all_faces)
    threshold = ensemble.config.threshold
    # leave one person out: each calibration clip judged by a fit on the other people's tracks
    flagged = []
    for clip in calibration.itertuples():
        others = real_tracks[real_tracks["person"] != clip.person]["mouth"].tolist()
        held_out = fit_mouth_motion(others, args.alpha, "")
        flagged.append(held_out.p_fake(clip.mouth, threshold) >= threshold)
    clips["p_motion"] = [model.p_fake(m, threshold) if pd.notna(m) else None for m in clips["mouth"]]
    print(table([[r.group, r.clip[:44], "n/a" if pd.isna(r.mouth) else f"{r.mouth:.4f}",
                  "-" if r.p_motion is None or pd.isna(r.p_motion) else f"{r.p_motion:.3f}"]
                 for r in clips.itertuples()], ["group", "clip", "mouth spread", "p_fake (motion)"]))
    print(f"\nfit ({args.measure}): log mouth spread ~ N({model.mu:.3f}, {model.sigma:.3f}) on {name};"
          f" alpha {args.alpha}; threshold {threshold:.4f} reached at mouth spread {model.flagged_below:.4f}")
    print(f"leave-one-person-out: {sum(flagged)} of {len(flagged)} calibration clips flagged"
          f" ({np.mean(flagged):.1%})")
    dfdc_fakes = clips[clips["group"] == "DFDC fake (check)"]
    print(f"DFDC fakes (check): {int((dfdc_fakes['p_motion'] >= threshold).sum())} of {len(dfdc_fakes)} flagged")
    cross = clips[clips["group"].str.startswith("crosssource")]
    if len(cross):
        reals = cross[cross["group"] == "crosssource REAL"]
        result = []
        for family in (*FAMILIES, "pooled"):
            fakes = cross[cross["group"] == f"crosssource FAKE {family}"] if family != "pooled" else \
                cross[cross["group"].str.startswith("crosssource FAKE")]
            both = pd.concat([fakes, reals])
            scored = both[both["mouth"].notna()]
            truth = scored["group"] != "crosssource REAL"
            auc = roc_auc_score(truth, -scored["mouth"]) if truth.nunique() == 2 else float("nan")
            tpr = float((fakes["p_motion"].fillna(-1) >= threshold).mean())
            fpr = float((reals["p_motion"].fillna(-1) >= threshold).mean())
            result.append([family, len(fakes), len(reals), int(both["mouth"].isna().sum()), f"{auc:.3f}",
                           f"{tpr:.2f}", f"{fpr:.2f}"])
        print("\ncrosssource_dev (measurement only), the mouth-motion signal alone:")
        print(table(result, ["family (fakes vs all reals)", "fakes", "reals", "not judged", "ROC-AUC",
                             "TPR at threshold", "FPR at threshold"]))
    if args.fit:
        args.fit.write_text(json.dumps(model.to_dict(), indent=2))
        print(f"\nwrote {args.fit}")


if __name__ == "__main__":
    main()
