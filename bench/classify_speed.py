"""Benchmark 2: classify-video wall time per clip against merely decoding that clip with the same decoder.

    .venv/bin/python -m bench.classify_speed [--runs 3] [--ensemble FILE] [--precision auto|fp32|bf16]

Decode floor: the same reader classify-video uses (grab() every frame, retrieve() the sampled ones), with
nothing else. Classification: `Ensemble.classify` on the same clip, models loaded once beforehand (as in
a batch run or the server). Both are medians of --runs runs in this process.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from bench.common import dfdc_clips, generated_clip, median_time, table
from ensembles.ensemble import PRECISIONS, Ensemble
from pipeline.faces import FaceExtractor
from pipeline.media import MediaReader


def decode_only(clip: Path, sampling) -> int:
    with MediaReader(clip) as reader:
        return sum(1 for _ in reader.frames(sampling))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ensemble", type=Path, default=None)
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="the nets' arithmetic, as classify-video's --precision")
    args = parser.parse_args()
    scratch = Path(tempfile.gettempdir()) / "deepfake-bench"
    dfdc = dfdc_clips()
    clips = dfdc + [generated_clip(scratch / "gen_720p.mp4", 1280, 720, 10),
                    generated_clip(scratch / "gen_1080p.mp4", 1920, 1080, 10)]
    ensemble = Ensemble.load(args.ensemble, device="cpu", precision=args.precision)
    config = ensemble.face_config()
    extractor = FaceExtractor(config, device="cpu")
    rows, ratios = [], []
    for clip in clips:
        decode_time, frames = median_time(lambda: decode_only(clip, config.sampling), args.runs)
        classify_time, (verdict, _) = median_time(lambda: ensemble.classify(clip, extractor), args.runs)
        ratios.append(classify_time / decode_time)
        rows.append([clip.name, frames, decode_time, classify_time, classify_time / decode_time, verdict.verdict,
                     verdict.p_fake if verdict.p_fake is not None else "-"])
    print(f"nets' arithmetic: {ensemble.precision}")
    print(table(rows, ["clip", "sampled frames", "decode s", "classify s", "ratio", "verdict", "p_fake"]))
    print(f"\nclassify / decode (medians of {args.runs} runs per clip): DFDC clips (the target's set) median "
          f"{statistics.median(ratios[:len(dfdc)]):.2f}x, worst {max(ratios[:len(dfdc)]):.2f}x; all clips median "
          f"{statistics.median(ratios):.2f}x, worst {max(ratios):.2f}x")


if __name__ == "__main__":
    main()
