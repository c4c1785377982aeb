"""Score an ensemble end to end on labelled videos or images (labels as `extract` finds them)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ensembles.classify import classify_paths
from ensembles.ensemble import Ensemble
from ensembles.verdict import ERROR
from models.metrics import binary_metrics
from pipeline.errors import DataError
from pipeline.labels import FAKE, REAL, LabelResolver


@dataclass
class EnsembleEvaluation:
    metrics: dict
    n_no_face: int
    n_error: int
    n_unlabelled: int
    verdicts: list[dict] = field(default_factory=list)
    n_damaged: int = 0  # scored, but fewer frames decoded than announced

    def to_dict(self) -> dict:
        return {"metrics": self.metrics, "no_face": self.n_no_face, "errors": self.n_error,
                "damaged": self.n_damaged, "unlabelled": self.n_unlabelled, "verdicts": self.verdicts}

    def problem_lines(self) -> list[str]:
        """One line per input that gave an ERROR or was damaged, as classify-video prints them."""
        lines = [f"ERROR    {row['message']}" for row in self.verdicts if row["verdict"] == ERROR]
        lines += [f"DAMAGED  {row['path']}: {'; '.join(row['warnings'])}" for row in self.verdicts if row["damaged"]]
        return lines


def evaluate_ensemble(paths: list[str | os.PathLike], ensemble: Ensemble, labels_csv: Path | None = None,
                      progress: bool = True) -> EnsembleEvaluation:
    """Classify every file under `paths` and compare the verdicts with their labels (at the ensemble threshold)."""
    from tqdm import tqdm

    labels = LabelResolver(labels_csv)
    truth, scores, rows = [], [], []
    no_face = errors = unlabelled = 0
    for verdict in tqdm(classify_paths(list(paths), ensemble), desc="classify", unit="file", disable=not progress):
        label = labels.resolve(Path(verdict.path)).label
        rows.append({"path": verdict.path, "label": label, "verdict": verdict.verdict, "p_fake": verdict.p_fake,
                     "damaged": verdict.damaged, "low_evidence": verdict.low_evidence,
                     "warnings": verdict.warnings, "message": verdict.message})
        if verdict.verdict == ERROR:
            errors += 1
        elif verdict.p_fake is None:
            no_face += 1
        elif label not in (REAL, FAKE):
            unlabelled += 1
        else:
            truth.append(1 if label == FAKE else 0)
            scores.append(verdict.p_fake)
    if not truth:
        failures = [row["message"] for row in rows if row["verdict"] == ERROR]
        shown = "; ".join(failures[:3]) + (" ..." if len(failures) > 3 else "")
        raise DataError("no labelled file with a face among the inputs: nothing to score "
                        "(labels come from --labels, a metadata.json or real/fake folder names)"
                        + (f"; {len(failures)} error(s): {shown}" if failures else ""))
    metrics = binary_metrics(np.array(truth), np.array(scores), threshold=ensemble.config.threshold, name="files",
                             interval=True)
    return EnsembleEvaluation(metrics, no_face, errors, unlabelled, rows,
                              n_damaged=sum(row["damaged"] for row in rows))
