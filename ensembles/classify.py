"""Classify many files with one ensemble: the library side of `classify-video` and `classify-image`."""
from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Iterator

from ensembles.ensemble import Ensemble
from ensembles.report import ReportNames, write_report
from ensembles.verdict import ERROR, VideoVerdict
from pipeline.errors import UsageError
from pipeline.extract import collect_inputs
from pipeline.faces import FaceExtractor

log = logging.getLogger(__name__)


def classify_paths(paths: list[str | os.PathLike], ensemble: Ensemble, report_dir: Path | None = None,
                   images_only: bool = False, **face_overrides) -> Iterator[VideoVerdict]:
    """Verdicts for every video or image under `paths`, in order; bad files give ERROR verdicts.

    Every named path is answered: a path that does not exist, and a folder holding no video or image
    file, each give an ERROR verdict (first, before any file is classified); the other files are still
    classified. `images_only`: a video among the inputs gets an ERROR verdict saying to use classify-video.
    `report_dir`: a PNG per file that was read, under a name unique in the run (see `ReportNames`),
    recorded in the verdict's `report`; a report that cannot be written leaves `report` None and a warning.
    """
    if report_dir is not None and Path(report_dir).exists() and not Path(report_dir).is_dir():
        raise UsageError(f"--report {report_dir}: exists and is not a directory")
    collected = collect_inputs(paths)
    for path in collected.missing:
        yield ensemble.error_verdict(path, f"{path}: file not found")
    for folder, skipped in _folders_without_media(paths, collected):
        extra = f" ({skipped} other file{'s' if skipped != 1 else ''} skipped)" if skipped else ""
        yield ensemble.error_verdict(folder, f"{folder}: no video or image file in this folder{extra}")
    for path in collected.skipped:
        log.warning("%s: skipped, not a video or image name", path)
    if not collected.found:
        return
    extractor = FaceExtractor(ensemble.face_config(**face_overrides), device=str(ensemble.device))
    names = ReportNames()
    for root, path in collected.found:
        verdict, thumbnails = ensemble.classify(path, extractor, keep_thumbnails=report_dir is not None,
                                                expected_type="image" if images_only else None)
        if report_dir is not None and verdict.verdict != ERROR:
            verdict = _with_report(verdict, thumbnails, Path(report_dir), names.name_for(root, path))
        yield verdict


def _folders_without_media(paths: list[str | os.PathLike], collected) -> list[tuple[Path, int]]:
    """Named folders in which no media file was found, each with the number of other files skipped there."""
    roots = {root for root, _ in collected.found}
    empty: dict[Path, int] = {}
    for raw in paths:
        folder = Path(raw)
        if folder.is_dir() and folder not in roots and folder not in empty:
            empty[folder] = sum(1 for file in collected.skipped if folder in file.parents)
    return list(empty.items())


def _with_report(verdict: VideoVerdict, thumbnails, report_dir: Path, name: Path) -> VideoVerdict:
    try:
        written = write_report(verdict, thumbnails, report_dir, name)
    except OSError as exc:  # a full disk or an unwritable folder costs the report, not the verdict
        log.debug("report of %s not written", verdict.path, exc_info=True)
        warning = f"report not written: {report_dir / name}: {exc.strerror or exc}"
        return replace(verdict, warnings=[*verdict.warnings, warning])
    return replace(verdict, report=str(written))
