"""Command line of the deepfake detector. Click only: options -> config -> one library call."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from pipeline.errors import DeepfakeError, UsageError


class DetectorCLI(click.Group):
    """Maps the project's exceptions to messages and exit codes, in one place (usage 2, failure 1)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)
        except DeepfakeError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)


@click.group(cls=DetectorCLI, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log details (debug level).")
def main(verbose: bool) -> None:
    """Video deepfake detector: extract faces, train detectors, classify videos and images."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from pipeline.media import quiet_opencv

    quiet_opencv()


def face_options(command):
    """Options shared by every command that finds faces (same sampling, detector and crop geometry)."""
    options = [
        click.option("--every", type=click.IntRange(min=1), default=None, help="Keep every Nth frame [default: 10]."),
        click.option("--frames", type=click.IntRange(min=1), default=None, help="Keep K evenly spaced frames instead."),
        click.option("--detector", type=click.Choice(["mtcnn", "opencv-dnn"]), default="mtcnn", show_default=True),
        click.option("--min-face-size", type=click.IntRange(min=1), default=40, show_default=True,
                     help="Smallest face kept, in pixels of the original frame."),
        click.option("--min-score", type=click.FloatRange(0, 1), default=None,
                     help="Detector score threshold [default: mtcnn 0.7, opencv-dnn 0.5]."),
        click.option("--largest-only", is_flag=True, help="Keep only the largest face of each frame."),
        click.option("--margin", type=click.FloatRange(0, 3), default=0.3, show_default=True,
                     help="Extra space around the face box, as a fraction of its longer side."),
        click.option("--size", "crop_size", type=click.IntRange(16, 1024), default=224, show_default=True,
                     help="Side of the square crops in pixels."),
        click.option("--detect-size", type=click.IntRange(min=64), default=640, show_default=True,
                     help="Frames are shrunk to this longer side for detection; crops come from full resolution."),
        click.option("--device", default=None, help="torch device, e.g. cpu or cuda [default: cuda when available]."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def build_face_config(every, frames, detector, min_face_size, min_score, largest_only, margin, crop_size,
                      detect_size):
    from pipeline.faces import FaceConfig
    from pipeline.sampling import SamplingConfig

    if every is not None and frames is not None:
        raise UsageError("--every and --frames cannot be used together")
    sampling = SamplingConfig(every=None, frames=frames) if frames is not None else SamplingConfig(every=every or 10)
    return FaceConfig(detector=detector, sampling=sampling, min_face_size=min_face_size, score_threshold=min_score,
                      largest_only=largest_only, margin=margin, crop_size=crop_size, detect_size=detect_size)


@main.command()
@click.argument("inputs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=Path("data/faces"), show_default=True,
              help="Face cache directory (one subdirectory per configuration).")
@click.option("--labels", type=click.Path(path_type=Path), default=None,
              help="CSV with a label column (REAL/FAKE) and a file/video column; optional group column.")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Worker processes (0: one per CPU core).")
@click.option("--jpeg-quality", type=click.IntRange(50, 100), default=95, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@face_options
def extract(inputs, out, labels, workers, jpeg_quality, quiet, device, **face):
    """Find, crop and cache the faces of videos and images.

    INPUTS are video or image files or directories (walked recursively) [default: data/raw_videos].
    Exit status: 0 when every input was read, 1 when any failed, 2 on usage errors.
    """
    from pipeline.extract import ExtractConfig, extract as run_extract

    config = ExtractConfig(faces=build_face_config(**face), out_dir=out, workers=workers, labels_csv=labels,
                           device=device, jpeg_quality=jpeg_quality)
    summary = run_extract(list(inputs) or [Path("data/raw_videos")], config, progress=not quiet)
    for line in summary.lines():
        click.echo(line)
    sys.exit(1 if summary.failed else 0)


@main.command("make-sample")
@click.argument("path", type=click.Path(path_type=Path), default=Path("data/raw_videos/sample_astronaut.mp4"))
@click.option("--seconds", type=click.FloatRange(0.2, 600), default=3.0, show_default=True)
def make_sample(path, seconds):
    """Write a short sample clip of a real face (scikit-image's astronaut) to PATH."""
    from pipeline.sample import write_sample_clip

    click.echo(f"wrote {write_sample_clip(path, seconds=seconds)}")


if __name__ == "__main__":
    main()
