"""Classify many files with one ensemble: the library side of `classify-video` and `classify-image`."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterator

from ensembles.ensemble import Ensemble
from ensembles.report import write_report
from ensembles.verdict import VideoVerdict
from pipeline.errors import UsageError
from pipeline.extract import collect_inputs
from pipeline.faces import FaceExtractor

log = logging.getLogger(__name__)


def classify_paths(paths: list[str | os.PathLike], ensemble: Ensemble, report_dir: Path | None = None,
                   images_only: bool = False, **face_overrides) -> Iterator[VideoVerdict]:
    """Verdicts for every video or image under `paths`, in order; bad files give ERROR verdicts.

    `images_only`: a video among the inputs gets an ERROR verdict saying to use classify-video.
    """
    collected = collect_inputs(paths)
    found, skipped = collected.found, collected.skipped
    if collected.missing:  # TODO(batch rule): ERROR verdicts for missing paths, classify the rest
        raise UsageError(f"input {collected.missing[0]} does not exist")
    for path in skipped:
        log.warning("%s: skipped, not a video or image name", path)
    extractor = FaceExtractor(ensemble.face_config(**face_overrides), device=str(ensemble.device))
    for _, path in found:
        verdict, thumbnails = ensemble.classify(path, extractor, keep_thumbnails=report_dir is not None,
                                                expected_type="image" if images_only else None)
        if report_dir is not None and verdict.verdict != "ERROR":
            write_report(verdict, thumbnails, Path(report_dir))
        yield verdict
