"""Command line of the deepfake detector. Click only: options -> config -> one library call."""
from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path

import click

from pipeline.errors import DeepfakeError, UsageError


EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C; SIGTERM gets the same


class DetectorCLI(click.Group):
    """Maps the project's exceptions to messages and exit codes, in one place (usage 2, failure 1,
    interrupted by Ctrl-C or SIGTERM 130)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)
        except DeepfakeError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:  # the library has cleaned up on the way out (workers ended, caches closed)
            click.echo("\ninterrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)


def interrupt_on_sigterm() -> None:
    """Make SIGTERM (`kill`, a service manager, a container stop) raise KeyboardInterrupt, as Ctrl-C does,
    so that both run the same cleanup and end the same way."""

    def raise_interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():  # signal handlers can only be set there
        signal.signal(signal.SIGTERM, raise_interrupt)


@click.group(cls=DetectorCLI, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log details (debug level).")
def main(verbose: bool) -> None:
    """Video deepfake detector: extract faces, train detectors, classify videos and images."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    interrupt_on_sigterm()
    from pipeline.media import limit_malloc_arenas, quiet_opencv

    quiet_opencv()
    limit_malloc_arenas()


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
        redetect_option(default=2, show_default=True),
        click.option("--device", default=None, help="torch device, e.g. cpu or cuda [default: cuda when available]."),
    ]
    return with_options(max_megapixels_option(command), options)


def precision_option(command):
    """--precision: the nets' arithmetic when they score faces (classify-video, classify-image, serve,
    evaluate-ensemble). The choices are ensembles.ensemble.PRECISIONS, spelt out: importing it would import torch
    for every `--help`."""
    return click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
                        help="The nets' arithmetic: bf16 (bfloat16) scores about twice as fast on a CPU that "
                             "computes it in hardware, a face's p_fake moving by 0.03 at most; fp32 is the "
                             "arithmetic the thresholds were set in. auto: bf16 on such a CPU, fp32 elsewhere.")(command)


def cluster_options(command):
    """--scheduler / --dask-workers: the per-file work on a Dask cluster (extract, classify-video, classify-image)."""
    options = [
        click.option("--scheduler", default=None, metavar="ADDRESS",
                     help="Run on an existing Dask cluster: its scheduler's address, e.g. tcp://HOST:8786 (inputs "
                          "and outputs on a filesystem every machine shares, at the same paths)."),
        click.option("--dask-workers", type=click.IntRange(min=1), default=None, metavar="N",
                     help="Run on a local Dask cluster of N worker processes (one thread each)."),
    ]
    return with_options(command, options)


def track_member_options(member: str, default_alpha: float, device_use: str):
    """The options shared by the commands that fit a track member on real videos (calibrate-motion,
    calibrate-background): the ensemble to add it to, where to write it, alpha, device, quiet."""
    def decorate(command):
        return with_options(command, [
            click.option("--ensemble", "ensemble_file", type=click.Path(path_type=Path), default=None,
                         help="Ensemble file to add the member to [default: the shipped models]."),
            click.option("--out", type=click.Path(path_type=Path), required=True,
                         help=f"Where to write the ensemble file with the {member} member (may be the --ensemble "
                              f"file)."),
            click.option("--alpha", type=click.FloatRange(0, 0.5, min_open=True, max_open=True), default=default_alpha,
                         show_default=True,
                         help="Share of real tracks the member alone may call FAKE at the ensemble's threshold."),
            click.option("--device", default=None, help=f"torch device for {device_use} [default: cuda when available]."),
            click.option("--quiet", is_flag=True, help="No progress bar."),
        ])
    return decorate


def build_cluster_config(scheduler, dask_workers):
    from pipeline.dask_cluster import ClusterConfig

    return ClusterConfig.from_options(scheduler, dask_workers)


def max_megapixels_option(command):
    """--max-megapixels: the decoded size past which an image or video is refused from its header."""
    from pipeline.media import DEFAULT_MAX_MEGAPIXELS

    return click.option("--max-megapixels", type=click.FloatRange(min=0, min_open=True),
                        default=DEFAULT_MAX_MEGAPIXELS, show_default=True,
                        help="Refuse images and videos whose pictures are larger than this many megapixels, read "
                             "from the file's header before anything is decoded (a small file can decode to "
                             "gigabytes).")(command)


def redetect_option(**kwargs):
    """The --redetect-every option, with the default each command gives it."""
    return click.option("--redetect-every", type=click.IntRange(1, 100), **kwargs,
                        help="Run the full face detector on every Nth sampled video frame and re-find known faces "
                             "in between (1: full detection on every frame).")


def with_options(command, options):
    """`command` decorated with every option of the list, in the listed order."""
    for option in reversed(options):
        command = option(command)
    return command


def build_face_config(every, frames, detector, min_face_size, min_score, largest_only, margin, crop_size,
                      detect_size, redetect_every, max_megapixels):
    from pipeline.faces import FaceConfig
    from pipeline.sampling import SamplingConfig

    if every is not None and frames is not None:
        raise UsageError("--every and --frames cannot be used together")
    sampling = SamplingConfig(every=None, frames=frames) if frames is not None else SamplingConfig(every=every or 10)
    return FaceConfig(detector=detector, sampling=sampling, min_face_size=min_face_size, score_threshold=min_score,
                      largest_only=largest_only, margin=margin, crop_size=crop_size, detect_size=detect_size,
                      redetect_every=redetect_every, max_megapixels=max_megapixels)


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
@cluster_options
def extract(inputs, out, labels, workers, jpeg_quality, quiet, device, scheduler, dask_workers, **face):
    """Find, crop and cache the faces of videos and images.

    INPUTS are video or image files or directories (walked recursively) [default: data/raw_videos].
    Exit status: 0 when every input was read; 1 when any input failed or does not exist (the others are
    still extracted) or no video or image was found at all; 2 on usage errors (an unreachable --scheduler
    included); 130 when interrupted (Ctrl-C or SIGTERM): what was done is kept, and the same command resumes.
    With --scheduler or --dask-workers, Dask workers decode and crop, one task per input; this process still
    writes the manifest.
    """
    from pipeline.extract import ExtractConfig, extract as run_extract

    config = ExtractConfig(faces=build_face_config(**face), out_dir=out, workers=workers, labels_csv=labels,
                           device=device, jpeg_quality=jpeg_quality,
                           cluster=build_cluster_config(scheduler, dask_workers))
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


def parse_fractions(ctx, param, value):
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not three comma-separated fractions, e.g. 0.7,0.15,0.15") from None


def parse_json_object(ctx, param, value):
    if value is None:
        return {}
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON ({exc})") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter('expected a JSON object, e.g. \'{"depths": [2, 2, 2, 2]}\'')
    return parsed


@main.command()
@click.option("--net", default=None, help="lenet, minivgg, resnet, efficientnet or sface (required unless --resume).")
@click.option("--faces", type=click.Path(path_type=Path), default=Path("data/faces"), show_default=True,
              help="Face cache written by extract, or a folder of caches: its only one, or the one extract makes "
                   "with default settings.")
@click.option("--out", "run_dir", type=click.Path(path_type=Path), default=None,
              help="Run directory [default: runs/<net>-<time>]; never overwritten unless --resume.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Maximum epochs [default: 20].")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True,
              help="Peak AdamW learning rate (1 epoch warm-up, then cosine decay).")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=0.05, show_default=True)
@click.option("--patience", type=click.IntRange(min=1), default=4, show_default=True,
              help="Stop after this many epochs without a better validation ROC-AUC.")
@click.option("--augment", default="all", show_default=True,
              help="none, seeds, field, all, or a comma list of: flip, affine, grayscale, channel-shuffle, "
                   "color-jitter, blur, downscale, jpeg, noise.")
@click.option("--balance", type=click.Choice(["loss", "sampler", "none"]), default="loss", show_default=True,
              help="Class balance: weight FAKE in the loss, weighted sampling, or nothing.")
@click.option("--fakes", type=click.Choice(["dataset", "self-blend", "both"]), default="dataset", show_default=True,
              help="Where the FAKE training faces come from: the cache's FAKE faces; self-blended images of its REAL "
                   "faces (each real also blended into a pseudo-fake, needs MTCNN landmarks); or both. Validation "
                   "and test always use the cache's labels.")
@click.option("--blend-outlines", type=click.Path(path_type=Path), default=None,
              help="Blend self-blends through these dense face outlines (npz of bench/dense_landmarks.py outlines: "
                   "MediaPipe's face oval of each REAL crop) instead of the 5-point hull; crops it lacks keep the "
                   "5-point hull.")
@click.option("--lower-face-blends", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of the self-blends blended through the lower face only (cheeks, nose, mouth, chin; the "
                   "eyes untouched), the boundary lip-sync tools such as Wav2Lip leave.")
@click.option("--split", "fractions", default="0.7,0.15,0.15", show_default=True, callback=parse_fractions,
              help="Train,val,test fractions of the groups.")
@click.option("--split-file", type=click.Path(path_type=Path), default=None,
              help="Reuse a split (group,split CSV, e.g. another run's split.csv).")
@click.option("--net-kwargs", default=None, callback=parse_json_object,
              help='Net arguments as JSON, e.g. \'{"depths": [2, 2, 2, 2], "widths": [32, 64, 128, 256]}\'.')
@click.option("--limit", type=click.IntRange(min=3), default=None, help="Use about N faces (whole groups), for trials.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch threads [default: all cores].")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True, help="DataLoader processes.")
@click.option("--device", default=None, help="cpu or cuda [default: cuda when available, with mixed precision].")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default=None,
              help="Training arithmetic [default: auto, or the run's own on --resume]: auto is float16 mixed "
                   "precision on CUDA and float32 on the CPU; bf16 is bfloat16 mixed precision, about twice as fast "
                   "on CPUs with native bfloat16 (AVX512-BF16, AMX). Validation and test always score in float32.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint, with its saved "
                                             "settings (only --epochs, --threads, --workers, --device, --precision "
                                             "may change).")
@click.option("--init-from", type=click.Path(path_type=Path), default=None,
              help="Fine-tune: start from this checkpoint's weights and net (e.g. models/weights/resnet.pt), on a "
                   "split that keeps its training groups out of validation and test (its own: see the model card).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def train(quiet, **options):
    """Train a net on the faces of a face cache; split by group, early stopping on validation ROC-AUC.

    Writes RUN_DIR/checkpoint_best.pt (best validation epoch), checkpoint_last.pt (for --resume),
    metrics.json (per epoch, and the test split at the end), split.csv, config.json, curves.png, roc_test.png.
    """
    from models.train import TrainConfig, fit

    result = fit(TrainConfig(**options), progress=not quiet, report=click.echo)
    for line in result.lines():
        click.echo(line)


@main.command("export-checkpoint")
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("destination", type=click.Path(path_type=Path))
@click.option("--half", is_flag=True, help="Store the weights in float16: half the file size; they load back "
                                           "into float32 nets (build-ensemble on the exported file measures them).")
@click.option("--split-file", type=click.Path(path_type=Path), default=None,
              help="Record this split file's groups in the copy: the run's own --split-file, when the run had "
                   "only part of its groups (a bench/pack_faces.py copy keeps a few test groups), so that "
                   "evaluate --split test scores them all. Refused unless every training and validation group "
                   "of the run has the same role in it.")
def export_checkpoint(source, destination, half, split_file):
    """Copy a training checkpoint for shipping: without its resume state, optionally in half precision."""
    from models.checkpoint import export_checkpoint as export

    written = export(source, destination, half=half, split_file=split_file)
    click.echo(f"wrote {written} ({written.stat().st_size / 2**20:.1f} MiB)")


@main.command("self-blend-grid")
@click.option("--faces", type=click.Path(path_type=Path), default=Path("data/faces"), show_default=True,
              help="Face cache written by extract (with MTCNN landmarks), as for train.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("sbi_grid.png"), show_default=True)
@click.option("--n", type=click.IntRange(1, 64), default=8, show_default=True, help="REAL faces shown.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--size", "input_size", type=click.IntRange(16, 1024), default=112, show_default=True,
              help="Image side, as a net's input size (lenet 64, minivgg 96, resnet 112).")
@click.option("--blend-outlines", type=click.Path(path_type=Path), default=None,
              help="Dense face outlines to blend through, as for train --blend-outlines.")
@click.option("--lower-face-blends", "lower_face_share", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share blended through the lower face only, as for train --lower-face-blends.")
def self_blend_grid(**options):
    """Write a PNG grid of REAL faces, their blend masks and self-blended pseudo-fakes (what --fakes
    self-blend trains on)."""
    from models.blend_grid import write_self_blend_grid

    click.echo(f"wrote {write_self_blend_grid(**options)}")


@main.command()
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True, help="A checkpoint written by train.")
@click.option("--faces", type=click.Path(path_type=Path), default=Path("data/faces"), show_default=True,
              help="Face cache to score (any labelled manifest, e.g. another dataset).")
@click.option("--split", type=click.Choice(["all", "train", "val", "test"]), default="all", show_default=True,
              help="Score all faces, or only those of one split of the checkpoint's run.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch threads [default: all cores].")
@click.option("--device", default=None, help="cpu or cuda [default: cuda when available].")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def evaluate(as_json, quiet, **options):
    """Score the labelled faces of a face cache with a checkpoint: frame- and video-level metrics."""
    from models.evaluation import EvaluateConfig, evaluate_checkpoint

    result = evaluate_checkpoint(EvaluateConfig(**options), progress=not quiet)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        for line in result.lines():
            click.echo(line)


def classify_options(command):
    """Options shared by classify-video and classify-image."""
    options = [
        click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path)),
        click.option("--ensemble", "ensemble_file", type=click.Path(path_type=Path), default=None,
                     help="Ensemble file (JSON next to its checkpoints) [default: the shipped models]."),
        click.option("--json", "as_json", is_flag=True, help="One JSON object per file and line."),
        click.option("--report", "report_dir", type=click.Path(path_type=Path), default=None,
                     help="Write a PNG per file: the verdict in words, p_fake timeline per person, each net's "
                          "score and face thumbnails (named after the file; its path is in the JSON's `report`)."),
        click.option("--threshold", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
                     help="Override the ensemble's decision threshold (chosen on validation data)."),
        click.option("--device", default=None, help="torch device [default: cuda when available]."),
    ]
    return with_options(precision_option(max_megapixels_option(cluster_options(command))), options)


def video_sampling_options(command):
    """Options that only mean something for videos: which frames to search, and how often in full."""
    options = [
        click.option("--every", type=click.IntRange(min=1), default=None, help="Keep every Nth frame."),
        click.option("--frames", type=click.IntRange(min=1), default=None, help="Keep K evenly spaced frames."),
        redetect_option(default=None),
    ]
    return with_options(command, options)


CLASSIFY_EXIT_STATUS = """Exit status: 0 when every file was classified (REAL, FAKE or NO_FACE) from a complete read;
    1 when any path gave an ERROR (unreadable, not found, a folder without media), any file was damaged
    (a video shorter than it announced, an image cut short: its verdict is printed, with a warning) or a
    report could not be written; 2 on usage errors. A low-evidence warning does not change the exit status."""


def run_classification(paths, ensemble_file, as_json, report_dir, threshold, device, images_only, scheduler=None,
                       dask_workers=None, every=None, frames=None, redetect_every=None, max_megapixels=None,
                       precision="auto"):
    """Load the ensemble, classify every path, print one line (or JSON object) each as it is ready; exit 1 if
    any failed. On a Dask cluster the workers load the ensemble on `device`; this process only reads it."""
    from ensembles.detector import Detector

    if every is not None and frames is not None:
        raise UsageError("--every and --frames cannot be used together")
    cluster = build_cluster_config(scheduler, dask_workers)
    detector = Detector(ensemble_file, device=device if cluster is None else "cpu", threshold=threshold, every=every,
                        frames=frames, redetect_every=redetect_every, max_megapixels=max_megapixels,
                        precision=precision)
    failed = 0
    for verdict in detector.classify_paths(paths, report_dir=report_dir, images_only=images_only, cluster=cluster,
                                           worker_device=device):
        report_lost = report_dir is not None and verdict.verdict != "ERROR" and verdict.report is None
        failed += not verdict.complete or report_lost
        click.echo(verdict.to_json() if as_json else verdict.summary_line())
    if report_dir is not None and not as_json:
        click.echo(f"reports: {report_dir}")
    sys.exit(1 if failed else 0)


@main.command("classify-video", epilog=CLASSIFY_EXIT_STATUS)
@classify_options
@video_sampling_options
def classify_video(**options):
    """Say whether each video (or image) in PATHS is REAL or FAKE, with p_fake.

    PATHS are files or directories. Faces are found and cropped exactly as for training, scored by each
    net of the ensemble, combined, aggregated per face track, and the most suspicious track decides.
    A file with no face is NO_FACE. A verdict resting on fewer than 5 faces of the deciding person is
    flagged low-evidence; a file that decoded short of its announced length (or an image cut short) is
    flagged damaged.
    """
    run_classification(images_only=False, **options)


@main.command("classify-image", epilog=CLASSIFY_EXIT_STATUS)
@classify_options
def classify_image(**options):
    """Say whether each still image in PATHS is REAL or FAKE (every face scored; the most suspicious decides).

    PATHS are image files or directories; a video among them is an ERROR (use classify-video). A photo
    holds one face per person, so its verdict is a single-frame judgement and is never flagged low-evidence.
    """
    run_classification(images_only=True, **options)


@main.command("build-ensemble")
@click.option("--member", "members", multiple=True, required=True, type=click.Path(path_type=Path),
              help="A member checkpoint (repeat the option). All members must share one split.")
@click.option("--faces", type=click.Path(path_type=Path), required=True,
              help="The face cache the members were trained on (its validation split picks the threshold).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("models/weights/ensemble.json"),
              show_default=True)
@click.option("--combiner", type=click.Choice(["auto", "mean", "weighted", "logit_mean", "stacked"]),
              default="auto", show_default=True, help="auto: the best validation AUC of mean, logit_mean, stacked.")
@click.option("--aggregator", type=click.Choice(["mean", "median", "confident", "confidence_weighted"]),
              default="confident", show_default=True)
@click.option("--target-fpr", type=click.FloatRange(0, 1), default=None,
              help="Threshold at this validation false-positive rate [default: at the equal error rate].")
@click.option("--detect-size", type=click.IntRange(min=64), default=None,
              help="Detection size for classification [default: the training cache's].")
@redetect_option(default=None)
@click.option("--selection", type=click.Choice(["validation", "validation+self-blends"]), default="validation",
              show_default=True,
              help="What picks and fits the combiner: the validation video ROC-AUC, or its mean with the ROC-AUC of "
                   "the validation REAL faces against self-blends of them (a proxy for fakes unlike the training "
                   "set's; the stacked combiner is then fitted on both). The threshold is always set on validation.")
@click.option("--tta", type=click.Choice(["none", "flip"]), default="none", show_default=True,
              help="Test-time augmentation of every member, in validation and in every later verdict: flip averages "
                   "each face's logits with its mirror image's (the nets' share of classify time doubles).")
@click.option("--stack-weights", type=click.Choice(["non-negative", "any"]), default="non-negative",
              show_default=True,
              help="Whether a stacked combiner may give a member a negative weight. non-negative: each member can only "
                   "raise P(FAKE) with its own (Breiman's constraint; a negative weight fits how the members agree on "
                   "validation faces, which other fakes need not share).")
@click.option("--device", default=None, help="torch device that scores the validation crops [default: cuda when available].")
def build_ensemble(members, faces, out, combiner, aggregator, target_fpr, detect_size, redetect_every, selection,
                   tta, stack_weights, device):
    """Combine trained checkpoints into an ensemble file, choosing combiner and threshold on validation data."""
    from ensembles.build import BuildConfig, build_ensemble as run_build
    from models.metrics import format_interval

    ensemble = run_build(BuildConfig(members=tuple(members), faces=faces, out=out, combiner=combiner,
                                     aggregator=aggregator, target_fpr=target_fpr, detect_size=detect_size,
                                     redetect_every=redetect_every, device=device, selection=selection, tta=tta,
                                     stack_weights=stack_weights))
    test = ensemble.metrics.get("test", {})
    click.echo(f"wrote {out}: combiner {ensemble.combiner.kind}, threshold {ensemble.threshold:.4f} "
               f"({ensemble.threshold_rule}), test-time augmentation {ensemble.tta}")
    for kind, figures in ensemble.metrics.get("selection", {}).items():
        click.echo(f"  {kind}: " + ", ".join(f"{name.replace('_', ' ')} {value:.4f}" for name, value in figures.items()))
    for level in ("frame", "video"):
        if level in test:
            click.echo(f"test {level} AUC {test[level]['roc_auc']:.4f}{format_interval(test[level].get('roc_auc_ci'))}"
                       f" (n={test[level]['n']})")


@main.command("calibrate-motion")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@track_member_options("mouth-motion", 0.05, "face detection")
@click.option("--speech-only/--all-faces", default=True, show_default=True,
              help="Judge (and fit on) only the faces sampled while someone speaks in the file's audio; files "
                   "without speech are then not judged. --all-faces: every face, sound or not (before 2026-11-23).")
def calibrate_motion(paths, ensemble_file, out, alpha, speech_only, device, quiet):
    """Add the mouth-motion member (for one-photo talking heads) to an ensemble, fitted on REAL videos.

    PATHS are real videos of people talking, with their sound (files or folders; never the clips you
    evaluate on). A track whose mouth opens and closes less than all but ALPHA of these people's while they
    speak is pushed towards FAKE. Exit status 1 when any path could not be read (the others are used), 2 when
    too few tracks were found.
    """
    from ensembles.ensemble import DEFAULT_ENSEMBLE, Ensemble
    from ensembles.motion import calibrate_mouth_motion

    source = Path(ensemble_file) if ensemble_file else DEFAULT_ENSEMBLE
    ensemble = Ensemble.load(source, device=device)
    result = calibrate_mouth_motion(list(paths), ensemble, alpha, progress=not quiet, speech_only=speech_only)
    _save_track_member(source, ensemble, Path(out), result, "mouth_motion", "log spread", "a mouth spread")


@main.command("calibrate-background")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@track_member_options("still-background", 0.005, "face detection and the nets")
def calibrate_background(paths, ensemble_file, out, alpha, device, quiet):
    """Add the still-background member (for a photo brought to life) to an ensemble, fitted on REAL videos.

    PATHS are real videos of people, filmed by a camera (files or folders; never the clips you evaluate on). A
    track whose background changes less from frame to frame, against its face's change, than all but ALPHA of
    these people's is pushed towards FAKE. No shipped ensemble holds this member: a tripod camera and hard
    compression freeze a real background too (docs/experiments.md), so fit it on reals filmed as the footage
    you screen is. Exit status 1 when any path could not be read (the others are used), 2 when too few tracks
    were found.
    """
    from ensembles.ensemble import DEFAULT_ENSEMBLE, Ensemble
    from ensembles.stillness import calibrate_background_stillness

    source = Path(ensemble_file) if ensemble_file else DEFAULT_ENSEMBLE
    ensemble = Ensemble.load(source, device=device)
    result = calibrate_background_stillness(list(paths), ensemble, alpha, progress=not quiet)
    _save_track_member(source, ensemble, Path(out), result, "background_stillness", "log background ratio",
                       "a background ratio")


def _save_track_member(source: Path, ensemble, out: Path, result, field_name: str, measure: str, below: str) -> None:
    """Write `ensemble` with the track member of a calibration `result` (ensembles.motion.MotionCalibration) as
    its `field_name`, say what it rests on, and exit (1 when a path failed)."""
    import os
    from dataclasses import replace

    from models.metrics import rate_interval

    for line in result.failed:
        click.echo(f"FAILED   {line}", err=True)
    members = tuple(os.path.relpath((source.parent / m).resolve(), out.resolve().parent)
                    for m in ensemble.config.members)
    replace(ensemble.config, members=members, **{field_name: result.model}).save(out)
    model, threshold = result.model, ensemble.config.threshold
    click.echo(f"wrote {out}: {field_name.replace('_', ' ')} fitted on {model.calibration}; {measure} ~"
               f" N({model.mu:.3f}, {model.sigma:.3f}); a track alone reaches the threshold {threshold:.4f} below"
               f" {below} of {model.flagged_below:.4f}")
    low, high = rate_interval(result.held_out_flagged, result.clips)  # clips >= 1: calibration needs 10+ tracks
    click.echo(f"leave-one-clip-out: {result.held_out_flagged} of {result.clips} real clips would be called FAKE by"
               f" this member alone (false-alarm rate 95% interval {low:.2f}-{high:.2f}; alpha {model.alpha})")
    sys.exit(1 if result.failed else 0)


@main.command("set-threshold")
@click.option("--ensemble", "ensemble_file", type=click.Path(path_type=Path), default=None,
              help="Ensemble file whose threshold to set [default: the shipped models].")
@click.option("--faces", type=click.Path(path_type=Path), required=True,
              help="The face cache the members were trained on (its validation split is one of the two sets).")
@click.option("--dev-set", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="A labelled development set (a folder with labels.csv: file,label[,family]) whose REAL files "
                   "are classified end to end, e.g. ../shared/data/selection_dev. Never a set you report on.")
@click.option("--max-fpr", type=click.FloatRange(0, 1, max_open=True), default=0.05, show_default=True,
              help="The false-alarm budget: the share of real videos that may be called FAKE, on each set.")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Where to write the ensemble file (may be the --ensemble file).")
@click.option("--device", default=None, help="torch device [default: cuda when available].")
def set_threshold(ensemble_file, faces, dev_set, max_fpr, out, device):
    """Set an ensemble's threshold to a false-alarm budget: the lowest at which at most MAX_FPR of the real
    videos are called FAKE, on DFDC validation and on the development set's reals, read together.

    A FAKE verdict accuses someone, so the threshold answers to the reals (the mouth-motion member's flags
    included) rather than to the equal error rate. Exit status 1 when no threshold meets the budget.
    """
    from ensembles.budget import BudgetConfig, set_threshold as run_budget
    from ensembles.ensemble import DEFAULT_ENSEMBLE

    ensemble, report = run_budget(BudgetConfig(ensemble=Path(ensemble_file) if ensemble_file else DEFAULT_ENSEMBLE,
                                               faces=faces, dev_set=dev_set, out=out, max_fpr=max_fpr, device=device))
    click.echo(f"wrote {out}: threshold {ensemble.threshold:.4f} ({ensemble.threshold_rule})")
    for name, figures in report.items():
        if isinstance(figures, dict) and figures.get("reals_called_fake"):
            click.echo(f"  {name}: reals called FAKE: {', '.join(figures['reals_called_fake'])}")
        if isinstance(figures, dict) and figures.get("reals_very_likely_fake"):
            click.echo(f"  {name}: reals in 'very likely fake': {', '.join(figures['reals_very_likely_fake'])}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (loopback by default).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--max-upload-mb", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Inference threads.")
@click.option("--queue", "queue_size", type=click.IntRange(min=0), default=4, show_default=True,
              help="Complete uploads that may wait for a worker; beyond that the server answers 503.")
@click.option("--max-uploads", type=click.IntRange(min=1), default=16, show_default=True,
              help="Uploads received at once (they hold no inference slot); beyond that the server answers 503.")
@click.option("--upload-idle-timeout", "upload_idle_seconds", type=click.FloatRange(min=0), default=30.0,
              show_default=True, help="Seconds an upload may send nothing before it gets 408 (0: no limit).")
@click.option("--upload-min-rate", "upload_min_kb_per_second", type=click.FloatRange(min=0), default=10.0,
              show_default=True, help="KB/s an upload must average once its grace period is over, else 408 "
                                      "(0: no limit).")
@click.option("--upload-grace", "upload_grace_seconds", type=click.FloatRange(min=0), default=30.0,
              show_default=True, help="Seconds before --upload-min-rate applies.")
@click.option("--ensemble", "ensemble_file", type=click.Path(path_type=Path), default=None,
              help="Ensemble file [default: the shipped models].")
@click.option("--upload-dir", "tmp_dir", type=click.Path(path_type=Path), default=None,
              help="Where the server makes its own folder for uploads while they are classified, removed at "
                   "shutdown (a killed server's is swept by the next one) [default: the system temp directory].")
@click.option("--header-timeout", "header_seconds", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Seconds a connection may take to send a request's headers before it is closed (0: no limit).")
@click.option("--device", default=None, help="torch device [default: cuda when available].")
@max_megapixels_option
@precision_option
def serve(host, port, ensemble_file, device, precision, **server_options):
    """Serve the upload page and the JSON API (POST /api/v1/classify, GET /api/v1/health, /api/v1/models)."""
    from ensembles.ensemble import Ensemble
    from web.app import ServerConfig, create_app, listen, run_server

    sock = listen(host, port)  # a busy port fails here, before the models load
    app = create_app(Ensemble.load(ensemble_file, device=device, precision=precision), ServerConfig(**server_options))
    click.echo(f"serving on http://{f'[{host}]' if ':' in host else host}:{port}/  (API docs at /docs)")
    run_server(app, sock)


@main.command("evaluate-ensemble")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--ensemble", "ensemble_file", type=click.Path(path_type=Path), default=None,
              help="Ensemble file [default: the shipped models].")
@click.option("--labels", type=click.Path(path_type=Path), default=None,
              help="CSV of labels (as for extract); otherwise metadata.json or real/fake folder names.")
@click.option("--json", "as_json", is_flag=True, help="Print metrics and every verdict as JSON.")
@click.option("--device", default=None)
@precision_option
def evaluate_ensemble(paths, ensemble_file, labels, as_json, device, precision):
    """Classify labelled videos or images end to end and report AUC, accuracy etc. at the ensemble threshold.

    Missing paths, unreadable files and folders without media are listed as errors and left out of the
    metrics; the rest is scored. Exit status: 0 when every file was read completely, 1 when any path gave an
    error or a damaged file (or nothing could be scored), 2 on usage errors.
    """
    import json

    from ensembles.ensemble import Ensemble
    from ensembles.evaluate import evaluate_ensemble as run_evaluation
    from models.metrics import describe

    result = run_evaluation(list(paths), Ensemble.load(ensemble_file, device=device, precision=precision), labels,
                            progress=not as_json)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        for line in result.problem_lines():
            click.echo(line)
        click.echo(describe(result.metrics))
        click.echo(f"at threshold {result.metrics['threshold']:.4f}: confusion matrix [[TN, FP], [FN, TP]] = "
                   f"{result.metrics['confusion_matrix']}; no face: {result.n_no_face}, errors: {result.n_error}, "
                   f"damaged: {result.n_damaged}, unlabelled: {result.n_unlabelled}")
    sys.exit(1 if result.n_error or result.n_damaged else 0)


if __name__ == "__main__":
    main()
