"""Spectrum probe (issue 11, a generator-fingerprint cue that was tried and not shipped): can a linear model on a
face crop's power spectrum, trained on the StyleGAN split's training part, tell synthetic faces from real ones?

    .venv/bin/python -m bench.spectrum_probe SG_CACHE DFDC_CACHE CROSS_CACHE [--dfdc-per-label 4000]

GAN generators leave periodic traces of their up-sampling in the spectrum (Durall et al., "Watch your
up-convolution", CVPR 2020), and SadTalker and EDTalk can finish their faces with face restoration (SadTalker's
GFPGAN enhancer decodes with a StyleGAN2 prior), so a StyleGAN fingerprint might carry over to talking heads. The features: each 224 px cached crop in YCrCb,
the log power spectrum of each channel (Hann window), folded to one quadrant and averaged onto a 16 x 16 grid
(768 numbers); a logistic regression (standardised, balanced classes) on the StyleGAN split's training faces
(`runs/shipped_plus_stylegan_split.csv`, bench/stylegan_split.py), with or without the DFDC training REAL faces
as more negatives. The caches are `cli.py extract` outputs (a configuration folder each): the StyleGAN faces
(`--labels runs/stylegan_labels.csv`), the cache with DFDC's and real_talking's faces (split by
`runs/shipped_plus_rt_split.csv`) and crosssource_dev, which is only measured.

Measured 2026-11-23: trained against FFHQ faces alone, StyleGAN validation / test ROC-AUC 0.81-0.82 / 0.74-0.78
(and the validation fakes rank above DFDC's real video faces in only 0.71-0.86 of pairs); with the DFDC training
reals as more negatives, 0.72-0.78 / 0.71-0.73 (the fakes then rank above 0.997-0.999 of DFDC's reals). Either
way crosssource_dev's fakes score below its reals (pooled 0.40-0.45): the spectra tell photos from video frames,
not made faces from real ones. Not made a member.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from bench.common import table
from bench.crosssource import DATASET, FAMILIES

GRID = 16


def spectrum_features(bgr: np.ndarray) -> np.ndarray:
    """Per YCrCb channel, the windowed log power spectrum folded to one quadrant, on a GRID x GRID grid, relative
    to its lowest frequencies."""
    channels = cv2.cvtColor(bgr, cv2.COLOR_BGR2YCrCb).astype(np.float32)
    h, w = channels.shape[:2]
    window = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    mirrored_rows = [0] + list(range(h - 1, h // 2 - 1, -1))
    features = []
    for k in range(3):
        channel = channels[:, :, k]
        power = np.log(np.abs(np.fft.fft2((channel - channel.mean()) * window)) ** 2 + 1e-3)
        quadrant = power[:h // 2 + 1, :w // 2 + 1]
        quadrant = (quadrant + power[mirrored_rows, :w // 2 + 1][:quadrant.shape[0]]) / 2
        grid = cv2.resize(quadrant, (GRID, GRID), interpolation=cv2.INTER_AREA)
        features.append((grid - grid[:2, :2].mean()).ravel())
    return np.concatenate(features)


def cache_features(cache: Path, per_label: int | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """The manifest rows of a face cache (at most `per_label` DFDC faces of each label, seeded; every
    real_talking face) and their features."""
    rows = pd.read_csv(cache / "manifest.csv")
    if per_label:
        talking = rows["source_path"].str.contains("real_talking")
        sampled = [part.sample(min(per_label, len(part)), random_state=0)
                   for _, part in rows[~talking].groupby("label")]
        rows = pd.concat(sampled + [rows[talking]], ignore_index=True)
    features = np.stack([spectrum_features(cv2.imread(str(cache / path)))
                         for path in tqdm(rows["crop_path"], desc=cache.parent.name, unit="face")])
    return rows.reset_index(drop=True), features


def auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    return float(roc_auc_score(np.r_[np.ones(len(positives)), np.zeros(len(negatives))], np.r_[positives, negatives]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stylegan_cache", type=Path)
    parser.add_argument("dfdc_cache", type=Path)
    parser.add_argument("cross_cache", type=Path)
    parser.add_argument("--dfdc-per-label", type=int, default=4000)
    args = parser.parse_args()
    sg_split = dict(pd.read_csv("runs/shipped_plus_stylegan_split.csv").values)
    dfdc_split = dict(pd.read_csv("runs/shipped_plus_rt_split.csv").values)
    sg, sg_x = cache_features(args.stylegan_cache)
    dfdc, dfdc_x = cache_features(args.dfdc_cache, args.dfdc_per_label)
    cross, cross_x = cache_features(args.cross_cache)
    sg_part = sg["group"].astype(str).map(sg_split).to_numpy()
    sg_fake = (sg["label"] == "FAKE").to_numpy()
    dfdc_part = dfdc["group"].astype(str).map(dfdc_split).fillna("train").to_numpy()
    dfdc_real = (dfdc["label"] == "REAL").to_numpy()
    talking = dfdc["source_path"].str.contains("real_talking").to_numpy()
    labels = pd.read_csv(DATASET / "labels.csv")
    truth = {os.path.realpath(DATASET / f): (label, family)
             for f, label, family in zip(labels["file"], labels["label"], labels["family"])}
    cross_files = cross["source_path"].map(os.path.realpath)

    result = []
    for negatives in ("FFHQ", "FFHQ + DFDC reals"):
        for c in (0.003, 0.01, 0.03):
            x, y = [sg_x[sg_part == "train"]], [sg_fake[sg_part == "train"]]
            if negatives != "FFHQ":
                extra = (dfdc_part == "train") & dfdc_real & ~talking
                x.append(dfdc_x[extra])
                y.append(np.zeros(extra.sum(), bool))
            model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000, class_weight="balanced"))
            model.fit(np.concatenate(x), np.concatenate(y))
            sg_score = model.decision_function(sg_x)
            val_fakes = sg_score[(sg_part == "val") & sg_fake]
            dfdc_score = model.decision_function(dfdc_x)
            per_file = pd.Series(model.decision_function(cross_x)).groupby(cross_files.to_numpy()).mean()
            clips = pd.DataFrame([(*truth[f], s) for f, s in per_file.items() if f in truth],
                                 columns=["label", "family", "score"])
            reals = clips.loc[clips["label"] == "REAL", "score"].to_numpy()
            fakes = clips[clips["label"] == "FAKE"]
            result.append([negatives, str(c)]
                          + [f"{auc(sg_score[(sg_part == p) & sg_fake], sg_score[(sg_part == p) & ~sg_fake]):.3f}"
                             for p in ("val", "test")]
                          + [f"{auc(val_fakes, dfdc_score[(dfdc_part == 'val') & dfdc_real & ~talking]):.3f}"]
                          + [f"{auc(fakes.loc[fakes['family'] == f, 'score'].to_numpy(), reals):.3f}" for f in FAMILIES]
                          + [f"{auc(fakes['score'].to_numpy(), reals):.3f}"])
    print(table(result, ["negatives", "C", "StyleGAN val", "StyleGAN test", "SG val fakes vs DFDC val reals"]
                + [f"{f} (measured only)" for f in FAMILIES] + ["pooled"]))


if __name__ == "__main__":
    main()
