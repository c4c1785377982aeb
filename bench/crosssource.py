"""Cross-source benchmark: the ensemble end to end on fakes from tools DFDC never used (../shared/data/crosssource_dev).

    .venv/bin/python -m bench.crosssource [--ensemble FILE] [--json OUT.json] [--data DIR]
    .venv/bin/python -m bench.crosssource --compare BASE.json CANDIDATE.json   # two saved --json runs

Every file of the set is classified exactly as `classify-video` does. For each family (face swap, lip-sync,
talking head) its fakes are scored against ALL the set's reals, then everything pooled:

* video ROC-AUC of p_fake (files where no face was found have no p_fake and are left out of the AUC; they
  are counted in the `no face` column);
* TPR and FPR at the ensemble's own threshold (chosen on validation data, never on this set). A fake with no
  face counts as missed, a real with no face as not flagged;
* 95% confidence intervals for all three (ROC-AUC: a seeded bootstrap, fakes and reals resampled apart;
  rates: Wilson). With 7-24 fakes and 14 reals they are wide: a difference of a few hundredths between two
  ensembles is within them, and the intervals say so;
* the files it gets wrong at that threshold.

`--compare` reads two runs saved with `--json` and prints, per family, both ROC-AUCs and their difference with
a paired 95% bootstrap interval (the same files resampled for both): the way to tell whether one finished
candidate ranks these files better than another, or whether the gap is within what 38 files can show.

crosssource_dev is for measuring only: never train on it and never choose thresholds, epochs or nets with it.
`--data DIR` runs the same report on another set laid out the same way (a `labels.csv` with `file` and
`label` columns, REAL or FAKE, and optionally `family`; files relative to DIR), e.g. a second development
set of other tools' fakes, which may be used for choosing. Its families are those its labels name.
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
from ensembles.classify import classify_paths
from ensembles.ensemble import Ensemble
from models.metrics import auc_difference_interval, auc_interval, format_interval, rate_interval
from pipeline.cache import write_atomic
from pipeline.errors import DataError, UsageError
from pipeline.labels import read_labelled_set

DATASET = SHARED / "crosssource_dev"
FAMILIES = ("face swap", "lip-sync", "talking head")
NO_FAMILY = "all"  # the family of every fake in a set whose labels name none


def read_labels(dataset: Path) -> pd.DataFrame:
    """The set's labels.csv (file, label, family), checked: every file present, every label REAL or FAKE, both
    present; a missing family is NO_FAMILY."""
    try:
        labels = read_labelled_set(dataset)
    except (DataError, UsageError) as exc:
        raise SystemExit(str(exc)) from None
    labels["family"] = labels["family"].where(labels["family"].str.strip() != "", NO_FAMILY)
    if labels["label"].nunique() < 2:
        raise SystemExit(f"{dataset / 'labels.csv'}: needs REAL and FAKE files, has only {labels['label'].iloc[0]}")
    return labels[["file", "label", "family"]]


def families_of(results: pd.DataFrame) -> list[str]:
    """The fakes' families: crosssource_dev's three in their usual order, then any others as they come."""
    named = list(dict.fromkeys(results.loc[results["label"] == "FAKE", "family"]))
    return [f for f in FAMILIES if f in named] + [f for f in named if f not in FAMILIES]


def classify_set(ensemble: Ensemble, dataset: Path = DATASET, labels: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per labelled file: file, label, family, verdict, p_fake (`labels`: the set's, if already read)."""
    labels = read_labels(dataset) if labels is None else labels
    paths = [dataset / name for name in labels["file"]]
    verdicts = {Path(v.path).resolve(): v for v in tqdm(classify_paths(paths, ensemble), total=len(paths),
                                                         desc="classify", unit="file")}
    rows = []
    for row, path in zip(labels.itertuples(), paths):
        verdict = verdicts.get(path.resolve())
        counted = [t.p_nets for t in verdict.tracks if t.counted and t.p_nets is not None] if verdict else []
        rows.append({"file": row.file, "label": row.label, "family": row.family,
                     "verdict": verdict.verdict if verdict else "ERROR",
                     "p_fake": verdict.p_fake if verdict else None, "band": verdict.band if verdict else None,
                     "p_nets": max(counted) if counted else None})
    return pd.DataFrame(rows)


def score_family(fakes: pd.DataFrame, reals: pd.DataFrame, threshold: float) -> dict:
    """AUC (files with a face), TPR and FPR at `threshold` (all files), their 95% intervals, and the files it gets
    wrong."""
    both = pd.concat([fakes, reals])
    scored = both[both["p_fake"].notna()]
    is_fake_scored = scored["label"] == "FAKE"
    auc = float(roc_auc_score(is_fake_scored, scored["p_fake"])) if is_fake_scored.nunique() == 2 else float("nan")
    auc_ci = auc_interval(scored.loc[is_fake_scored, "p_fake"], scored.loc[~is_fake_scored, "p_fake"])
    called_fake = both["p_fake"].fillna(-1.0) >= threshold
    is_fake = both["label"] == "FAKE"
    wrong = both[called_fake != is_fake]
    n_fake, n_real = int(is_fake.sum()), int((~is_fake).sum())
    caught, flagged = int((called_fake & is_fake).sum()), int((called_fake & ~is_fake).sum())
    return {
        "n_fake": n_fake, "n_real": n_real, "no_face": int(both["p_fake"].isna().sum()),
        "roc_auc": auc, "roc_auc_ci": None if auc_ci is None else list(auc_ci),
        "tpr": caught / max(1, n_fake), "tpr_ci": list(rate_interval(caught, n_fake)) if n_fake else None,
        "fpr": flagged / max(1, n_real), "fpr_ci": list(rate_interval(flagged, n_real)) if n_real else None,
        "wrong": [f"{r.file} ({r.label}, {r.verdict}, p_fake={_fmt(r.p_fake)})" for r in wrong.itertuples()],
    }


def crosssource_report(results: pd.DataFrame, threshold: float) -> dict[str, dict]:
    """Per family (its fakes against all reals) and pooled."""
    reals = results[results["label"] == "REAL"]
    fakes = results[results["label"] == "FAKE"]
    report = {family: score_family(fakes[fakes["family"] == family], reals, threshold)
              for family in families_of(results)}
    report["pooled"] = score_family(fakes, reals, threshold)
    report["pooled"]["reals_very_likely_fake"] = reals.loc[reals["band"] == "very likely fake", "file"].tolist() \
        if "band" in reals else []
    return report


def compare_runs(base: pd.DataFrame, candidate: pd.DataFrame) -> dict[str, dict]:
    """Per family and pooled: both ROC-AUCs on the files both scored (a face found by both), and the paired 95%
    interval of candidate minus base."""
    both = base.merge(candidate[["file", "p_fake"]], on="file", suffixes=("_base", "_candidate"))
    if len(both) != len(base) or len(both) != len(candidate):
        raise ValueError("the two runs did not score the same files")
    scored = both[both["p_fake_base"].notna() & both["p_fake_candidate"].notna()]
    reals = scored[scored["label"] == "REAL"]
    fakes = scored[scored["label"] == "FAKE"]
    comparison = {}
    for family in (*families_of(both), "pooled"):
        ours = fakes if family == "pooled" else fakes[fakes["family"] == family]
        truth = [1] * len(ours) + [0] * len(reals)
        auc = {side: float(roc_auc_score(truth, pd.concat([ours, reals])[f"p_fake_{side}"]))
               for side in ("base", "candidate")}
        interval = auc_difference_interval(ours["p_fake_base"], reals["p_fake_base"],
                                           ours["p_fake_candidate"], reals["p_fake_candidate"])
        comparison[family] = {"files": len(ours) + len(reals), **{f"roc_auc_{k}": v for k, v in auc.items()},
                              "difference": auc["candidate"] - auc["base"],
                              "difference_ci": None if interval is None else list(interval)}
    return comparison


def _load_run(path: Path) -> tuple[pd.DataFrame, dict]:
    saved = json.loads(path.read_text())
    return pd.DataFrame(saved["verdicts"]), saved["report"]


def print_comparison(base_path: Path, candidate_path: Path) -> None:
    (base, base_report), (candidate, candidate_report) = _load_run(base_path), _load_run(candidate_path)
    comparison = compare_runs(base, candidate)
    rows = [[family, c["files"], f"{c['roc_auc_base']:.3f}", f"{c['roc_auc_candidate']:.3f}",
             f"{c['difference']:+.3f}" + (f" ({c['difference_ci'][0]:+.2f} to {c['difference_ci'][1]:+.2f})"
                                          if c["difference_ci"] else ""),
             f"{base_report[family]['tpr']:.2f} -> {candidate_report[family]['tpr']:.2f}",
             f"{base_report[family]['fpr']:.2f} -> {candidate_report[family]['fpr']:.2f}"]
            for family, c in comparison.items()]
    print(f"base {base_path}, candidate {candidate_path}\n")
    print(table(rows, ["family (fakes vs all reals)", "files", "ROC-AUC base", "ROC-AUC candidate",
                       "difference (paired 95% CI)", "TPR", "FPR"]))


def _fmt(value) -> str:
    return "-" if value is None or pd.isna(value) else f"{value:.3f}"


def _with_interval(value: float, interval, digits: int) -> str:
    """'0.812 (95% CI 0.65-0.94)': a figure and its interval ('-' where there is no figure)."""
    return "-" if value is None or pd.isna(value) else f"{value:.{digits}f}{format_interval(interval, 2)}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ensemble", type=Path, default=None, help="Ensemble file [default: the shipped one].")
    parser.add_argument("--data", type=Path, default=DATASET,
                        help="A labelled set laid out as crosssource_dev (labels.csv: file,label[,family]) "
                             "[default: ../shared/data/crosssource_dev].")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None, help="Also write every verdict and figure here.")
    parser.add_argument("--compare", type=Path, nargs=2, metavar=("BASE", "CANDIDATE"), default=None,
                        help="Compare two runs saved with --json instead of classifying.")
    args = parser.parse_args(argv)
    if args.compare:
        missing = [str(p) for p in args.compare if not p.is_file()]
        if missing:
            raise SystemExit(f"--compare: {', '.join(missing)} not found (write runs with --json)")
        print_comparison(*args.compare)
        return
    if args.data == DATASET and not DATASET.is_dir():
        raise SystemExit(f"{DATASET} not found: this benchmark needs ../shared/data/crosssource_dev (or --data DIR)")
    labels = read_labels(args.data)  # a bad set fails before the models load
    ensemble = Ensemble.load(args.ensemble, device=args.device)
    threshold = ensemble.config.threshold
    results = classify_set(ensemble, args.data, labels)
    report = crosssource_report(results, threshold)
    rows = [[name, f["n_fake"], f["n_real"], f["no_face"], _with_interval(f["roc_auc"], f["roc_auc_ci"], 3),
             _with_interval(f["tpr"], f["tpr_ci"], 2), _with_interval(f["fpr"], f["fpr_ci"], 2)]
            for name, f in report.items()]
    print(f"set {args.data}; ensemble {ensemble.source}, threshold {threshold:.4f} ({ensemble.config.threshold_rule})\n")
    print(table(rows, ["family (fakes vs all reals)", "fakes", "reals", "no face", "video ROC-AUC",
                       "TPR at threshold", "FPR at threshold"]))
    accused = report["pooled"]["reals_very_likely_fake"]
    print(f"\nreals in 'very likely fake': {len(accused)}" + (f" ({', '.join(accused)})" if accused else ""))
    print("\nwrong at the threshold:")
    for line in report["pooled"]["wrong"]:
        print(f"  {line}")
    if args.json:
        saved = {"data": str(args.data), "threshold": threshold, "report": report,
                 "verdicts": results.replace({np.nan: None}).to_dict("records")}
        write_atomic(args.json, json.dumps(saved, indent=2).encode())


if __name__ == "__main__":
    main()
