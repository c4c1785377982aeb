"""A PNG per classified file: the per-frame p_fake timeline of each face track and the face thumbnails."""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import cv2
import numpy as np

from ensembles.verdict import VideoVerdict

MAX_THUMBNAILS = 12


def _safe(part: str) -> str:
    return re.sub(r"[^\w.~-]+", "_", part).strip("_.") or "video"


def report_name(verdict: VideoVerdict) -> str:
    return f"{_safe(verdict.video_id)}.png"


class ReportNames:
    """Report names for one run, unique and deterministic: no input's report overwrites another's.

    An input found in a folder is named by its path relative to that folder (`clips/a/x.mp4` given as
    `clips` -> `a/x.png`, a subfolder of the report directory); a file named on the command line by its
    own name. When that name is already another input's (`a/clip.mp4` and `b/clip.mp4` both named, or
    `clip.mp4` beside `clip.avi`), `~` and a short hash of the file's absolute path are added, as
    `extract` does for video ids. The same file met twice keeps its one name.
    """

    def __init__(self):
        self._by_source: dict[str, Path] = {}
        self._taken: set[str] = set()

    def name_for(self, root: Path, file: Path) -> Path:
        """The report's path relative to the report directory, for `file` found under `root`."""
        source = os.path.abspath(file)
        if source in self._by_source:
            return self._by_source[source]
        try:
            parts = Path(file).relative_to(root).with_suffix("").parts
        except ValueError:
            parts = (Path(file).stem,)
        parts = tuple(_safe(part) for part in parts) or ("video",)
        name = Path(*parts[:-1], f"{parts[-1]}.png")
        digest = hashlib.sha1(source.encode()).hexdigest()
        width = 8
        while name.as_posix().lower() in self._taken:  # lower case: reports may land on a case-blind disk
            name = Path(*parts[:-1], f"{parts[-1]}~{digest[:width]}.png")
            width += 4
        self._taken.add(name.as_posix().lower())
        self._by_source[source] = name
        return name


def write_report(verdict: VideoVerdict, thumbnails: list[np.ndarray], out_dir: Path,
                 name: str | Path | None = None) -> Path:
    """Draw the report of one verdict into `out_dir` (as `name`, default from its video id); return the PNG's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = out_dir / (name or report_name(verdict))
    path.parent.mkdir(parents=True, exist_ok=True)
    shown = np.linspace(0, len(thumbnails) - 1, min(MAX_THUMBNAILS, len(thumbnails))).round().astype(int) \
        if thumbnails else []
    figure = plt.figure(figsize=(12, 6.5), dpi=100)
    grid = figure.add_gridspec(2, max(1, len(shown)), height_ratios=[3, 1.3])
    timeline = figure.add_subplot(grid[0, :])
    title = f"{verdict.verdict}  {Path(verdict.path).name}"
    if verdict.p_fake is not None:
        title += f"  p_fake={verdict.p_fake:.3f} (threshold {verdict.threshold:.3f})"
    timeline.set_title(title, color={"FAKE": "firebrick", "REAL": "seagreen"}.get(verdict.verdict, "black"))
    for track in verdict.tracks:
        points = [(f.timestamp, f.p_fake) for f in verdict.faces if f.track == track.track]
        times, scores = zip(*points)
        label = f"track {track.track}: {track.p_fake:.2f} ({track.n_faces} faces)"
        if track.track == verdict.deciding_track:  # the person whose score is the verdict's
            timeline.plot(times, scores, "-o", markersize=5, linewidth=3, label=f"{label} (decided)")
        elif track.counted:
            timeline.plot(times, scores, "-o", markersize=4, linewidth=1.2, label=label)
        else:  # left out of the verdict: greyed, with the reason
            timeline.plot(times, scores, ":x", color="silver", markersize=4, linewidth=1,
                          label=f"{label}, excluded: {track.excluded or 'not counted'}")
    timeline.axhline(verdict.threshold, color="grey", linestyle="--", linewidth=1, label="threshold")
    timeline.set_ylim(-0.02, 1.02)
    timeline.set_xlabel("time (s)" if verdict.media_type != "image" else "image")
    timeline.set_ylabel("p_fake (ensemble)")
    timeline.grid(alpha=0.3)
    if verdict.tracks:
        timeline.legend(loc="upper right", fontsize=8)
    else:
        timeline.text(0.5, 0.5, verdict.message or "no face", ha="center", va="center", transform=timeline.transAxes)
    for slot, index in enumerate(shown):
        axis = figure.add_subplot(grid[1, slot])
        axis.imshow(cv2.cvtColor(thumbnails[index], cv2.COLOR_BGR2RGB))
        face = verdict.faces[index]
        axis.set_title(f"t={face.timestamp:.1f}s #{face.track}\n{face.p_fake:.2f}", fontsize=8)
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
