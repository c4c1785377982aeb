"""Track motion: the measures behind the track rules (a face that never moves, or one far smaller than the main
faces, does not decide a verdict), on real faces only.

    .venv/bin/python -m bench.track_motion [--ensemble FILE] [--json OUT.json] [PATH ...]

Faces are found exactly as `classify-video` finds them (the ensemble's face configuration: sampling every
10th frame, R-Net/O-Net re-finding between full detections) and linked into tracks with the ensemble's track
settings; nothing is scored. For each track it prints its faces, its median face size, that size as a
fraction of the largest long-enough track's, and its `shape_spread` (ensembles/tracks.py: how much the five
MTCNN landmarks move relative to the face box). The threshold `min_shape_spread` is chosen from this table:

* calibration (REAL faces only, all must come out live): every track of ../shared/data/real_talking and of
  the real DFDC clip lynaeydofd;
* the photo on the wall in DFDC clip yhffcuhhjy must come out static.

A track is static only when it also stays in place (`travel`, ensembles/tracks.py `box_travel`): a small
face walking past (try ../shared/data/multi_face/crowd.mp4) shows little shape change only because it is
small.

The other DFDC clips are listed as a check, not used for the choice. Never run this on crosssource_dev to
choose anything.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import SHARED, table
from ensembles.ensemble import Ensemble
from ensembles.motion import track_rows
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="clips to measure (default: the calibration set)")
    parser.add_argument("--ensemble", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    ensemble = Ensemble.load(args.ensemble, device="cpu")
    extractor = FaceExtractor(ensemble.face_config(), device="cpu")
    clips = [("given", path) for path in args.paths] or default_clips()
    rows = []
    for group, path in clips:
        for row in track_rows(path, ensemble, extractor):
            rows.append({"group": group, **row})
    frame = pd.DataFrame(rows)
    print(table([[r.group, r.clip[:48], r.track, r.faces, "short" if r.short else "", f"{r.size:.0f}",
                  f"{r.size_fraction:.2f}", "n/a" if pd.isna(r.spread) else f"{r.spread:.4f}",
                  "n/a" if pd.isna(r.travel) else f"{r.travel:.3f}"]
                 for r in frame.itertuples()],
                ["group", "clip", "track", "faces", "short", "size px", "size frac", "shape spread", "travel"]))
    judged = frame[~frame["short"] & frame["spread"].notna()]
    threshold, travel = ensemble.config.min_shape_spread, ensemble.config.max_static_travel
    print(f"\nshape spread in detector pixels, travel in face sizes; this ensemble file's rules: static when shape"
          f" spread < {threshold} and travel <= {travel}; small under {ensemble.config.min_size_fraction} of the"
          f" largest live face")
    for group, rows_of in judged.groupby("group", sort=False):
        static = rows_of[(rows_of["spread"] < threshold) & (rows_of["travel"] <= travel)]
        print(f"{group:>18}: {len(rows_of)} long-enough tracks, shape spread min {rows_of['spread'].min():.4f}"
              f" median {rows_of['spread'].median():.4f} max {rows_of['spread'].max():.4f};"
              f" static: {', '.join(f'{r.clip} #{r.track}' for r in static.itertuples()) or 'none'}")
    live = judged[judged["group"].isin(["real_talking", "real DFDC"])]["spread"]
    photo = judged[(judged["group"] == "photo clip") & (judged["spread"] < threshold)]
    if len(live) and len(photo):
        print(f"margin: the stillest real face's shape spread is {live.min() / threshold:.2f}x the threshold,"
              f" the threshold {threshold / photo['spread'].max():.2f}x the photo's largest;"
              f" the photo's travel is at most {photo['travel'].max():.3f} ({travel / photo['travel'].max():.1f}x"
              f" under {travel})")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=float))


if __name__ == "__main__":
    main()
