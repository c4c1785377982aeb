"""Classify many files with one ensemble: the library side of `classify-video` and `classify-image`."""
from __future__ import annotations

import logging
import os
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

from ensembles.ensemble import Ensemble, EnsembleConfig
from ensembles.report import ReportNames, write_report
from ensembles.verdict import ERROR, VideoVerdict
from pipeline.dask_cluster import ClusterConfig
from pipeline.errors import UsageError
from pipeline.extract import collect_inputs
from pipeline.faces import FaceConfig, FaceExtractor

log = logging.getLogger(__name__)


def classify_paths(paths: list[str | os.PathLike], ensemble: Ensemble, report_dir: Path | None = None,
                   images_only: bool = False, cluster: ClusterConfig | None = None, worker_device: str | None = None,
                   extractor: FaceExtractor | None = None, **face_overrides) -> Iterator[VideoVerdict]:
    """Verdicts for every video or image under `paths`, in order; bad files give ERROR verdicts.

    Every named path is answered: a path that does not exist, and a folder holding no video or image
    file, each give an ERROR verdict (first, before any file is classified); the other files are still
    classified. `images_only`: a video among the inputs gets an ERROR verdict saying to use classify-video.
    `report_dir`: a PNG per file that was read, under a name unique in the run (see `ReportNames`),
    recorded in the verdict's `report`; a report that cannot be written leaves `report` None and a warning.
    `cluster`: classify on a Dask cluster instead, one task per file (see `_classify_on_cluster`); verdicts then
    come in the order files finish, and `worker_device` is the torch device the workers load the ensemble on
    (None: cuda where a worker has one). `extractor`: the face extractor to use (one made for the ensemble's
    face configuration with `face_overrides` otherwise).
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
    if cluster is not None:
        yield from _classify_on_cluster(collected.found, ensemble, ensemble.face_config(**face_overrides), report_dir,
                                        images_only, cluster, worker_device)
        return
    extractor = extractor or FaceExtractor(ensemble.face_config(**face_overrides), device=str(ensemble.device))
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


# -- on a Dask cluster -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _FileTask:
    path: Path  # absolute: what a worker reads (remote workers see the files at the same paths)
    report: Path | None  # the report's name in the report directory, chosen here as without a cluster


@dataclass(frozen=True)
class _WorkerSetup:
    source: Path  # the ensemble file, absolute
    config: EnsembleConfig  # the client's, so that e.g. --threshold holds on the workers
    device: str | None
    faces: FaceConfig
    report_dir: Path | None  # absolute
    images_only: bool
    precision: str  # the client's resolved one: every worker scores with the same arithmetic


def _classify_on_cluster(found: list[tuple[Path, Path]], ensemble: Ensemble, faces: FaceConfig,
                         report_dir: Path | None, images_only: bool, cluster: ClusterConfig,
                         device: str | None) -> Iterator[VideoVerdict]:
    """Verdicts of the `found` files as their tasks complete, one Dask task per distinct file.

    Each worker process loads the ensemble (and its face detector) with its first task and keeps it for the
    others. Report names are chosen here, in input order, exactly as without a cluster; the worker that
    classified a file draws its report (the thumbnails stay there). A file named twice is classified once
    and answered twice, as the plain command answers it.
    """
    from pipeline.dask_cluster import WorkersDied, dask_client, run_each

    if ensemble.source is None:
        raise UsageError("an ensemble made in memory cannot be sent to Dask workers: load it from its file")
    names = ReportNames()
    named_as: dict[Path, list[Path]] = {}  # absolute path -> the paths as found (one verdict each)
    tasks = []
    for root, path in found:
        absolute = Path(os.path.abspath(path))
        report = names.name_for(root, path) if report_dir is not None else None
        if absolute not in named_as:
            named_as[absolute] = []
            tasks.append(_FileTask(absolute, report))
        named_as[absolute].append(path)
    setup = _WorkerSetup(Path(os.path.abspath(ensemble.source)), ensemble.config, device, faces,
                         Path(os.path.abspath(report_dir)) if report_dir is not None else None, images_only,
                         ensemble.precision)
    with dask_client(cluster) as client, closing(run_each(client, _classify_job, tasks, "classify", setup=setup)) \
            as results:
        for task, outcome in results:
            for named in named_as[task.path]:
                if isinstance(outcome, WorkersDied):
                    yield ensemble.error_verdict(named, f"{named}: {outcome}")
                else:
                    yield _as_named(outcome, task, named, setup.report_dir, report_dir)


def _classify_job(task: _FileTask, setup: _WorkerSetup) -> VideoVerdict:
    """One file, in a Dask worker: the ensemble and the detector are loaded by the worker's first task."""
    from pipeline.dask_cluster import loaded_once

    loaded = loaded_once(("ensemble", str(setup.source), setup.device),
                         lambda: Ensemble.load(setup.source, setup.device))
    ensemble = Ensemble(setup.config, loaded.members, loaded.device, loaded.source, setup.precision)
    extractor = loaded_once(("faces", setup.faces, str(loaded.device)),
                            lambda: FaceExtractor(setup.faces, device=str(loaded.device)))
    verdict, thumbnails = ensemble.classify(task.path, extractor, keep_thumbnails=setup.report_dir is not None,
                                            expected_type="image" if setup.images_only else None)
    if setup.report_dir is not None and verdict.verdict != ERROR:
        verdict = _with_report(verdict, thumbnails, setup.report_dir, task.report)
    return verdict


def _as_named(verdict: VideoVerdict, task: _FileTask, named: Path, absolute_reports: Path | None,
              report_dir: Path | None) -> VideoVerdict:
    """A worker's verdict naming the file (and its report) as the user did, as the plain command names them."""
    swaps = [(str(task.path), str(named))]
    if report_dir is not None:
        swaps.append((str(absolute_reports), str(report_dir)))

    def as_named(text: str) -> str:
        for worker_side, user_side in swaps:
            text = text.replace(worker_side, user_side)
        return text

    report = str(Path(report_dir) / task.report) if verdict.report is not None else None
    return replace(verdict, path=str(named), message=as_named(verdict.message), report=report,
                   warnings=[as_named(w) for w in verdict.warnings])
