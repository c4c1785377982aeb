"""The Python API: a `Detector` loads an ensemble once and classifies files, folders, images and frames.

    from ensembles import Detector

    detector = Detector()                    # the shipped default models
    verdict = detector("clip.mp4")           # a VideoVerdict: .verdict, .p_fake, .band, .explanation, .tracks ...
    print(verdict.summary_line())            # the line `classify-video` prints
    verdict.to_dict()                        # the JSON `classify-video --json` prints

The command line (`classify-video`, `classify-image`) calls the same object.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from ensembles.classify import classify_paths
from ensembles.ensemble import Ensemble
from ensembles.verdict import VideoVerdict
from pipeline.dask_cluster import ClusterConfig
from pipeline.errors import MediaError, UsageError
from pipeline.faces import FaceExtractor
from pipeline.media import ArrayReader

PathLike = str | os.PathLike


class Detector:
    """An ensemble loaded once, with the face detector it was trained with.

    `ensemble`: an ensemble file or a loaded `Ensemble` (None: the shipped default). `device`: a torch device
    ("cpu", "cuda"; None: CUDA when available). `threshold` overrides the ensemble's. `every` / `frames`
    choose a video's frames (every Nth, or K evenly spaced; default: the ensemble's, every 10th);
    `redetect_every`, `max_megapixels` and `precision` (the nets' arithmetic: "auto", "fp32", "bf16") are as on
    the command line.
    """

    def __init__(self, ensemble: PathLike | Ensemble | None = None, device: str | None = None,
                 threshold: float | None = None, every: int | None = None, frames: int | None = None,
                 redetect_every: int | None = None, max_megapixels: float | None = None, precision: str = "auto"):
        if every is not None and frames is not None:
            raise UsageError("every and frames cannot be used together")
        self.ensemble = (ensemble if isinstance(ensemble, Ensemble)
                         else Ensemble.load(ensemble, device=device, precision=precision))
        if threshold is not None:
            self.ensemble = self.ensemble.with_threshold(threshold)
        sampling = f"every{every}" if every else (f"frames{frames}" if frames else None)
        self.face_overrides = dict(sampling=sampling, redetect_every=redetect_every, max_megapixels=max_megapixels)
        self.face_config = self.ensemble.face_config(**self.face_overrides)
        self._extractor: FaceExtractor | None = None

    @property
    def extractor(self) -> FaceExtractor:
        """The face detector and cropper, made on first use and kept."""
        if self._extractor is None:
            self._extractor = FaceExtractor(self.face_config, device=str(self.ensemble.device))
        return self._extractor

    def __call__(self, source, fps: float | None = None) -> VideoVerdict | list[VideoVerdict]:
        """A verdict for a file (path), a picture (array or PIL image) or a video's frames (a list of pictures
        with `fps`); a list of paths gives a list of verdicts (a folder gives one per file in it)."""
        if isinstance(source, (str, os.PathLike)):
            found = list(self.classify_paths([source]))
            return found[0] if len(found) == 1 and not Path(source).is_dir() else found
        if isinstance(source, (list, tuple)) and source and all(isinstance(s, (str, os.PathLike)) for s in source):
            return list(self.classify_paths(source))
        if isinstance(source, (list, tuple)):
            return self.classify_frames(source, fps)
        return self.classify_image(source)

    def classify_paths(self, paths: list[PathLike], report_dir: Path | None = None, images_only: bool = False,
                       cluster: ClusterConfig | None = None, worker_device: str | None = None
                       ) -> Iterator[VideoVerdict]:
        """Verdicts for every video or image under `paths`, as they are ready; bad files give ERROR verdicts
        (see `ensembles.classify.classify_paths`: `report_dir` PNGs, `images_only`, a Dask `cluster`)."""
        return classify_paths(list(paths), self.ensemble, report_dir=report_dir, images_only=images_only,
                              cluster=cluster, worker_device=worker_device,
                              extractor=None if cluster is not None else self.extractor, **self.face_overrides)

    def classify_image(self, picture, name: str = "image") -> VideoVerdict:
        """The verdict of one picture in memory: a BGR uint8 array (as OpenCV reads it) or a PIL image."""
        return self._classify_memory(lambda: ArrayReader(picture, name=name, max_pixels=self.face_config.max_pixels),
                                     name)

    def classify_frames(self, frames, fps: float | None, name: str = "frames") -> VideoVerdict:
        """The verdict of a video given as its frames in memory (BGR arrays or PIL images, in order) at `fps`
        frames a second; they are sampled as a file's frames are (every 10th by default)."""
        return self._classify_memory(lambda: ArrayReader(frames, fps=fps, name=name,
                                                         max_pixels=self.face_config.max_pixels), name)

    def _classify_memory(self, make_reader, name: str) -> VideoVerdict:
        try:
            reader = make_reader()
        except MediaError as exc:
            return self.ensemble.error_verdict(Path(name), str(exc))
        verdict, _ = self.ensemble.classify(reader, self.extractor)
        return verdict
