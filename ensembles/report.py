"""A PNG per classified file: the per-frame p_fake timeline of each face track and the face thumbnails."""
from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from ensembles.verdict import VideoVerdict

MAX_THUMBNAILS = 12


def report_name(verdict: VideoVerdict) -> str:
    safe = re.sub(r"[^\w.-]+", "_", verdict.video_id).strip("_") or "video"
    return f"{safe}.png"


def write_report(verdict: VideoVerdict, thumbnails: list[np.ndarray], out_dir: Path) -> Path:
    """Draw the report of one verdict into `out_dir` and return the PNG's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
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
        style = "-o" if track.counted else ":x"
        timeline.plot(times, scores, style, markersize=4,
                      label=f"track {track.track}: {track.p_fake:.2f} ({track.n_faces} faces)")
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
    path = out_dir / report_name(verdict)
    figure.savefig(path)
    plt.close(figure)
    return path
