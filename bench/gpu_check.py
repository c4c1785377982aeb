"""GPU check: every stage on two devices (default cuda and cpu) gives the same results; timings on the first.

    .venv/bin/python -m bench.gpu_check [--quick] [--device-a cuda] [--device-b cpu] [--keep DIR]
    make gpu-check

Each stage runs on device A and on device B from the same inputs (real data from ../shared/data):

  extract            the DFDC clips, through `cli.py extract` in a fresh process: on A with one worker and
                     with the default workers, on B with the default workers. Same inputs, same sampled frames
                     with faces, same face count per frame, boxes within --box-tol pixels of the full frame.
                     The DFDC face crops used for training below are extracted and compared the same way.
  MTCNN itself       full detection on every frame extract samples, by facenet-pytorch's own MTCNN and by our
                     cascade, on both devices: our cascade must give facenet-pytorch's detections on each
                     device; how far facenet-pytorch moves between the devices is printed (on an H200 it
                     kept a face on 6 frames of 30 that the CPU dropped: README, "Running on a GPU").
  train              a short LeNet run on those crops on each device: both finish, with finite metrics.
  evaluate           both checkpoints on both devices (a CUDA-saved checkpoint read on the CPU and the reverse):
                     test ROC-AUC and log loss within --metric-tol.
  build-ensemble     the two checkpoints as members, built on each device: thresholds within --p-tol, the
                     chosen combiner's validation AUC within --metric-tol.
  evaluate-ensemble  the shipped ensemble on the labelled clips: ROC-AUC within --metric-tol, per-clip as below.
  classify-video, classify-image, web upload (FastAPI's TestClient, as `serve` answers)
                     the shipped ensemble: p_fake within --p-tol and the same verdict. A verdict may differ only
                     when both p_fake lie within --p-tol of the threshold (float noise, not a device bug).

Timings on device A: extract sampled frames/s against the plain facenet-pytorch loop on the same device (cv2
reads every frame, facenet_pytorch.MTCNN at full resolution on every 10th), train images/s, classify-video
seconds per clip, and MTCNN milliseconds per frame at several batch sizes (batching should pay on a GPU even
though it does not on a CPU).

Exit status: 0 everything matches; 1 a mismatch or a failed stage (all listed at the end); 2 a CUDA device was
asked for and none is present, or ../shared/data is missing.
"""
from __future__ import annotations

import argparse
import csv
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from bench.common import ROOT, SHARED, dfdc_clips, table

QUICK_CLIPS = ("lynaeydofd.mp4", "brtujopkby.mp4")  # one REAL, one FAKE: the ensemble's AUC is defined


class Check:
    """Collects mismatches; prints each comparison as it is made."""

    def __init__(self):
        self.mismatches: list[str] = []

    def expect(self, ok: bool, stage: str, message: str) -> None:
        if not ok:
            self.mismatches.append(f"{stage}: {message}")
            print(f"  MISMATCH {stage}: {message}")


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


# -- extract ------------------------------------------------------------------------------------------
def run_extract(inputs: list[Path], out: Path, device: str, workers: int,
                labels: Path | None = None) -> tuple[float, Path]:
    """Wall seconds of `cli.py extract` in a fresh process (start-up included, as a user runs it), and its cache."""
    from pipeline.cache import find_cache_dir

    command = [sys.executable, str(ROOT / "cli.py"), "extract", *map(str, inputs), "--out", str(out),
               "--device", device, "--workers", str(workers), "--quiet"]
    if labels is not None:
        command += ["--labels", str(labels)]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"extract on {device} ({workers} workers) exited {result.returncode}: "
                           f"{(result.stdout + result.stderr)[-1500:]}")
    return seconds, find_cache_dir(out)


def faces_by_frame(cache_dir: Path) -> tuple[dict, dict]:
    """({(input name, frame index): boxes sorted by x1}, {input name: (status, sampled frames)})."""
    faces: dict = defaultdict(list)
    with open(cache_dir / "manifest.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            box = tuple(float(row[k]) for k in ("x1", "y1", "x2", "y2"))
            faces[(Path(row["source_path"]).name, int(row["frame_index"]))].append(box)
    with open(cache_dir / "inputs.csv", newline="") as handle:
        inputs = {Path(r["source_path"]).name: (r["status"], int(r["n_frames"])) for r in csv.DictReader(handle)}
    return {key: sorted(boxes) for key, boxes in faces.items()}, inputs


def compare_extractions(stage: str, reference, other, box_tol: float, check: Check) -> float:
    """Check `other` against `reference` (both from `faces_by_frame`); the largest box difference in px."""
    (ref_faces, ref_inputs), (faces, inputs) = reference, other
    check.expect(inputs == ref_inputs, stage, f"inputs, statuses or sampled frames differ: {inputs} vs {ref_inputs}")
    only = sorted(set(ref_faces) ^ set(faces))
    check.expect(not only, stage, f"{len(only)} frame(s) with faces on one device only, e.g. {only[:3]}")
    largest = 0.0
    for key in sorted(set(ref_faces) & set(faces)):
        if len(ref_faces[key]) != len(faces[key]):
            check.expect(False, stage, f"{key}: {len(faces[key])} faces against {len(ref_faces[key])}")
            continue
        difference = float(np.abs(np.array(ref_faces[key]) - np.array(faces[key])).max())
        largest = max(largest, difference)
        check.expect(difference <= box_tol, stage, f"{key}: boxes differ by {difference:.2f} px (> {box_tol})")
    return largest


def face_image_subset(folder: Path, groups: int) -> tuple[list[Path], Path]:
    """Links to the DFDC face crops of the first `groups` identity groups, and the labels CSV to use."""
    labels = SHARED / "dfdc_faces" / "metadata.csv"
    with open(labels, newline="") as handle:
        rows = list(csv.DictReader(handle))
    chosen = set(sorted({r["group"] for r in rows})[:groups])
    folder.mkdir(parents=True, exist_ok=True)
    links = []
    for row in rows:
        if row["group"] in chosen:
            link = folder / row["file"]
            if not link.exists():
                link.symlink_to(SHARED / "dfdc_faces" / "faces" / row["file"])
            links.append(link)
    return links, labels


def plain_loop_seconds(clips: list[Path], device: str) -> tuple[float, int]:
    """The plain approach on `device` (bench/extract_speed.py): seconds and sampled frames for `clips`."""
    from facenet_pytorch import MTCNN

    from bench.extract_speed import plain_extract

    mtcnn = MTCNN(keep_all=True, device=device)
    capture = cv2.VideoCapture(str(clips[0]))
    mtcnn.detect(cv2.cvtColor(capture.read()[1], cv2.COLOR_BGR2RGB))  # warm-up: CUDA context and kernels
    capture.release()
    started, frames = time.perf_counter(), 0
    for clip in clips:
        frames += len(plain_extract(clip, mtcnn))
    return time.perf_counter() - started, frames


def check_extract(args, clips: list[Path], scratch: Path, check: Check) -> Path:
    """Extract the clips and the training crops on both devices; compare; time against the plain loop.
    Returns device A's face cache of the training crops."""
    a, b = args.device_a, args.device_b
    runs = {  # labelled A and B: the two devices may have the same name (a self-check of this script)
        f"A {a}, 1 worker": run_extract(clips, scratch / "clips_a1", a, 1),
        f"A {a}, default workers": run_extract(clips, scratch / "clips_an", a, 0),
        f"B {b}, default workers": run_extract(clips, scratch / "clips_bn", b, 0),
    }
    reference = faces_by_frame(runs[f"B {b}, default workers"][1])
    frames = sum(n for _, n in reference[1].values())
    rows = []
    for name, (seconds, cache_dir) in runs.items():
        found = faces_by_frame(cache_dir)
        largest = compare_extractions(f"extract clips ({name} vs B)", reference, found, args.box_tol, check)
        rows.append([name, frames, seconds, frames / seconds, len(found[0]), largest])
    plain_seconds, plain_frames = plain_loop_seconds(clips, a)
    rows.append([f"plain facenet-pytorch loop, {a}", plain_frames, plain_seconds, plain_frames / plain_seconds, "", ""])
    print(table(rows, ["extract", "sampled frames", "seconds", "frames/s", "frames with faces", "max box diff px"]))
    best = max(frames / runs[f"A {a}, 1 worker"][0], frames / runs[f"A {a}, default workers"][0])
    print(f"extract on {a} against the plain loop on {a}: {best / (plain_frames / plain_seconds):.1f}x "
          "(start-up of the extract process included)")

    images, labels = face_image_subset(scratch / "face_images", args.groups)
    crops = {tag: run_extract(images, scratch / f"crops_{tag}", device, 0, labels)
             for tag, device in (("a", a), ("b", b))}
    largest = compare_extractions(f"extract face images (A {a} vs B {b})", faces_by_frame(crops["b"][1]),
                                  faces_by_frame(crops["a"][1]), args.box_tol, check)
    print(f"{len(images)} DFDC face crops: {crops['a'][0]:.1f} s on {a}, {crops['b'][0]:.1f} s on {b}, "
          f"max box diff {largest:.3f} px")
    return crops["a"][1]


# -- MTCNN itself on the two devices --------------------------------------------------------------------
def detection_frames(clip: Path) -> list[np.ndarray]:
    """The frames extract samples from `clip` (every 10th), RGB, at the size its detector sees them."""
    from pipeline.faces import FaceConfig, _to_rgb
    from pipeline.media import MediaReader
    from pipeline.sampling import SamplingConfig

    with MediaReader(clip) as reader:
        frames = [frame.image for frame in reader.frames(SamplingConfig(every=10))]
    scale = min(1.0, FaceConfig().detect_size / max(frames[0].shape[:2]))
    return [_to_rgb(frame, scale) for frame in frames]


def facenet_boxes(frames: list[np.ndarray], device: str) -> list[np.ndarray]:
    """facenet-pytorch's own MTCNN (the reference our cascade reproduces), one frame at a time: (K, 4) boxes."""
    from facenet_pytorch import MTCNN

    from pipeline.detectors import MTCNNDetector

    mtcnn = MTCNN(keep_all=True, device=device, min_face_size=MTCNNDetector.min_size_in_frame)
    boxes = [mtcnn.detect(frame)[0] for frame in frames]
    return [np.zeros((0, 4), np.float32) if b is None else np.asarray(b, np.float32) for b in boxes]


def cascade_boxes(frames: list[np.ndarray], device: str, batch: int = 8) -> list[np.ndarray]:
    """Our cascade (pipeline/mtcnn.py), in extract's batches: (K, 4) boxes per frame."""
    from pipeline.detectors import create_detector

    detector = create_detector("mtcnn", device=device)
    found = [faces for start in range(0, len(frames), batch) for faces in detector.detect(frames[start:start + batch])]
    return [np.array([d.box for d in faces], np.float32).reshape(-1, 4) for faces in found]


def box_differences(reference: list[np.ndarray], other: list[np.ndarray]) -> tuple[int, float]:
    """Frames whose face count differs, and the largest box difference (px) where the counts agree."""
    differing, largest = 0, 0.0
    for a, b in zip(reference, other):
        if len(a) != len(b):
            differing += 1
        elif len(a):
            a, b = a[np.lexsort(a.T[::-1])], b[np.lexsort(b.T[::-1])]
            largest = max(largest, float(np.abs(a - b).max()))
    return differing, largest


def check_mtcnn_reference(args, clips: list[Path], check: Check) -> None:
    """Full detection on every frame extract samples, by facenet-pytorch's MTCNN and by our cascade, on both
    devices. Our cascade must give facenet-pytorch's detections on each device (a mismatch otherwise); how far
    facenet-pytorch itself moves between the devices (a face whose score lies near one of the cascade's stage
    thresholds can be kept on one device and dropped on the other) is printed beside extract's differences."""
    rows = []
    for clip in clips:
        frames = detection_frames(clip)
        facenet = {d: facenet_boxes(frames, d) for d in (args.device_a, args.device_b)}
        ours = {d: cascade_boxes(frames, d) for d in (args.device_a, args.device_b)}
        row = [clip.name, len(frames)]
        for boxes in (facenet, ours):
            row += list(box_differences(boxes[args.device_a], boxes[args.device_b]))
        for device in (args.device_a, args.device_b):
            differing, largest = box_differences(facenet[device], ours[device])
            check.expect(differing == 0 and largest <= args.box_tol, "MTCNN reference",
                         f"{clip.name}: our cascade on {device} departs from facenet-pytorch's MTCNN on {device}: "
                         f"{differing} frame(s) with another face count, boxes up to {largest:.2f} px apart")
            row.append(f"{differing} / {largest:.2f}")
        rows.append(row)
    a, b = args.device_a, args.device_b
    print(table(rows, ["clip", "frames", f"facenet {a} vs {b}: frames with another face count", "largest box px",
                       f"ours {a} vs {b}: frames with another face count", "largest box px",
                       f"ours vs facenet on {a}: frames / px", f"ours vs facenet on {b}: frames / px"]))


# -- train, evaluate, build-ensemble --------------------------------------------------------------
def train_images_per_second(device: str, cache_dir: Path, augment: str, epochs: int) -> float:
    """Training throughput of the real loop (`make_loader` + `train_one_epoch`, mixed precision on CUDA) for
    LeNet on all the cached faces, after one warm-up epoch."""
    import torch

    from models.data import Preprocess, labels_of, load_crops
    from models.registry import create_model
    from models.train import TrainConfig, make_loader, make_scheduler, train_one_epoch, training_autocast
    from pipeline.cache import load_manifest
    from pipeline.detectors import resolve_device

    device = resolve_device(device)
    rows, _ = load_manifest(cache_dir)
    model = create_model("lenet").to(device, memory_format=torch.channels_last)
    preprocess = Preprocess(model.input_size)
    config = TrainConfig(net="lenet", faces=cache_dir, augment=augment, epochs=epochs + 1)
    loader = make_loader(load_crops(rows["crop_file"].tolist(), preprocess), labels_of(rows), config,
                         torch.Generator().manual_seed(0), device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch=len(loader))
    autocast_dtype = training_autocast(config.precision, device)
    scaler = torch.amp.GradScaler("cuda", enabled=autocast_dtype == torch.float16)
    criterion = torch.nn.BCEWithLogitsLoss()
    started = 0.0
    for epoch in range(epochs + 1):
        if epoch == 1:
            started = time.perf_counter()
        train_one_epoch(model, criterion, optimizer, scheduler, loader, preprocess, device, scaler, epoch, False,
                        autocast_dtype=autocast_dtype)
    return epochs * len(loader.dataset) / (time.perf_counter() - started)


def check_training(args, cache_dir: Path, scratch: Path, check: Check) -> None:
    from ensembles.build import BuildConfig, build_ensemble
    from models.evaluation import EvaluateConfig, evaluate_checkpoint
    from models.train import TrainConfig, fit

    devices = {"a": args.device_a, "b": args.device_b}
    checkpoints, rows = {}, []
    for tag, device in devices.items():
        run_dir = scratch / f"train_{tag}"
        result = fit(TrainConfig(net="lenet", faces=cache_dir, run_dir=run_dir, epochs=args.epochs, augment="none",
                                 patience=args.epochs, device=device), progress=False)
        loss = result.test["frame"]["log_loss"]
        check.expect(np.isfinite(loss), "train", f"{device}: test log loss {loss}")
        speeds = [train_images_per_second(device, cache_dir, augment, args.epochs) for augment in ("none", "all")]
        rows.append([f"{tag.upper()} {device}", result.epochs_run, result.split_sizes["train"]["faces"], loss, *speeds])
        checkpoints[tag] = run_dir / "checkpoint_best.pt"
    print(table(rows, ["train on", "epochs", "train faces", "test log loss", "images/s, no augmentation",
                       "images/s, --augment all (the default)"]))

    rows = []
    for tag, checkpoint in checkpoints.items():
        ma, mb = (evaluate_checkpoint(EvaluateConfig(checkpoint=checkpoint, faces=cache_dir, split="test",
                                                     device=device), progress=False).metrics["frame"]
                  for device in devices.values())
        for key in ("roc_auc", "log_loss"):
            if ma[key] is not None and mb[key] is not None:
                check.expect(abs(ma[key] - mb[key]) <= args.metric_tol, "evaluate",
                             f"checkpoint trained on {devices[tag]}: {key} {ma[key]:.4f} vs {mb[key]:.4f}")
        rows.append([f"{tag.upper()} {devices[tag]}", ma["roc_auc"], mb["roc_auc"], ma["log_loss"], mb["log_loss"]])
    print(table(rows, ["checkpoint trained on", f"AUC on A {args.device_a}", f"AUC on B {args.device_b}",
                       f"log loss on A {args.device_a}", f"log loss on B {args.device_b}"]))

    built = {}
    for tag, device in devices.items():
        config = build_ensemble(BuildConfig(members=tuple(checkpoints.values()), faces=cache_dir,
                                            out=scratch / f"ensemble_{tag}.json", device=device))
        built[tag] = (f"{tag.upper()} {device}", config.combiner.kind, config.threshold,
                      config.metrics["selection"][config.combiner.kind]["val_video_auc"])
    (_, _, threshold_a, auc_a), (_, _, threshold_b, auc_b) = built["a"], built["b"]
    check.expect(abs(threshold_a - threshold_b) <= args.p_tol, "build-ensemble",
                 f"thresholds {threshold_a:.4f} vs {threshold_b:.4f}")
    check.expect(abs(auc_a - auc_b) <= args.metric_tol, "build-ensemble", f"validation AUC {auc_a} vs {auc_b}")
    print(table(list(built.values()), ["build-ensemble on", "combiner", "threshold", "validation video AUC"]))


# -- the shipped ensemble: classify, evaluate-ensemble, web ----------------------------------------
def compare_verdict(stage: str, name: str, a: dict, b: dict, threshold: float, p_tol: float, check: Check) -> None:
    """Verdict dicts (`verdict`, `p_fake`) of one file on the two devices."""
    pa, pb = a["p_fake"], b["p_fake"]
    if pa is None or pb is None:
        check.expect(a["verdict"] == b["verdict"], stage, f"{name}: {a['verdict']} vs {b['verdict']}")
        return
    check.expect(abs(pa - pb) <= p_tol, stage, f"{name}: p_fake {pa:.4f} vs {pb:.4f}")
    borderline = abs(pa - threshold) <= p_tol and abs(pb - threshold) <= p_tol
    check.expect(a["verdict"] == b["verdict"] or borderline, stage, f"{name}: {a['verdict']} vs {b['verdict']}")


def web_upload(ensemble, path: Path) -> dict:
    """One upload through the real FastAPI app (FastAPI's TestClient), as `serve` answers it."""
    import warnings

    with warnings.catch_warnings():  # starlette's notice about its httpx client, not about this project
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from web.app import ServerConfig, create_app

    with TestClient(create_app(ensemble, ServerConfig(workers=1, queue_size=1))) as client, open(path, "rb") as handle:
        response = client.post("/api/v1/classify", files={"file": (path.name, handle, "video/mp4")})
    if response.status_code != 200:
        raise RuntimeError(f"web upload of {path.name}: HTTP {response.status_code} {response.text[:300]}")
    return response.json()


def check_classification(args, clips: list[Path], images: list[Path], check: Check) -> None:
    from ensembles.ensemble import Ensemble
    from ensembles.evaluate import evaluate_ensemble
    from pipeline.faces import FaceExtractor

    results: dict[str, dict] = {}
    for tag, device in (("a", args.device_a), ("b", args.device_b)):
        ensemble = Ensemble.load(None, device=device)
        extractor = FaceExtractor(ensemble.face_config(), device=str(ensemble.device))
        ensemble.classify(images[0], extractor)  # warm-up: CUDA context, kernels, cuDNN choices
        per_file, seconds = {}, {}
        for path in clips + images:
            started = time.perf_counter()
            verdict, _ = ensemble.classify(path, extractor, expected_type="image" if path in images else "video")
            seconds[path.name] = time.perf_counter() - started
            per_file[path.name] = {"verdict": verdict.verdict, "p_fake": verdict.p_fake, "message": verdict.message}
            check.expect(verdict.verdict != "ERROR", "classify", f"{path.name} on {device}: {verdict.message}")
        evaluation = evaluate_ensemble(clips, ensemble, progress=False)
        web = web_upload(ensemble, clips[0])
        results[tag] = {"device": device, "files": per_file, "seconds": seconds, "evaluation": evaluation, "web": web,
                        "threshold": ensemble.config.threshold}

    ra, rb = results["a"], results["b"]
    threshold = ra["threshold"]
    rows = []
    for path in clips + images:
        stage = "classify-image" if path in images else "classify-video"
        a, b = ra["files"][path.name], rb["files"][path.name]
        compare_verdict(stage, path.name, a, b, threshold, args.p_tol, check)
        rows.append([path.name, a["verdict"], a["p_fake"], b["verdict"], b["p_fake"],
                     ra["seconds"][path.name], rb["seconds"][path.name]])
    a, b = f"A {args.device_a}", f"B {args.device_b}"
    print(table(rows, ["file", f"verdict {a}", f"p_fake {a}", f"verdict {b}", f"p_fake {b}", f"s on {a}", f"s on {b}"]))
    for tag, result in results.items():
        video_seconds = [result["seconds"][c.name] for c in clips]
        print(f"classify-video on {tag.upper()} {result['device']}: {statistics.median(video_seconds):.2f} s per clip "
              f"(median of {len(clips)}), the shipped ensemble loaded once")

    ea, eb = ra["evaluation"], rb["evaluation"]
    for row_a, row_b in zip(ea.verdicts, eb.verdicts):
        compare_verdict("evaluate-ensemble", Path(row_a["path"]).name, row_a, row_b, threshold, args.p_tol, check)
    auc_a, auc_b = ea.metrics["roc_auc"], eb.metrics["roc_auc"]
    if auc_a is not None and auc_b is not None:
        check.expect(abs(auc_a - auc_b) <= args.metric_tol, "evaluate-ensemble", f"ROC-AUC {auc_a} vs {auc_b}")
    print(f"evaluate-ensemble on {len(clips)} clips: ROC-AUC {auc_a} on A {args.device_a}, {auc_b} on B "
          f"{args.device_b}; accuracy {ea.metrics['accuracy']:.3f} / {eb.metrics['accuracy']:.3f}")

    compare_verdict("web upload", clips[0].name, ra["web"], rb["web"], threshold, args.p_tol, check)
    compare_verdict("web upload vs classify-video", clips[0].name, ra["web"], ra["files"][clips[0].name], threshold,
                    args.p_tol, check)
    print(f"web upload of {clips[0].name}: {ra['web']['verdict']} p_fake {ra['web']['p_fake']} on A {args.device_a}, "
          f"{rb['web']['verdict']} p_fake {rb['web']['p_fake']} on B {args.device_b}")


# -- MTCNN batch sweep ----------------------------------------------------------------------------
def mtcnn_sweep(device: str, clip: Path, n_frames: int, batches: list[int], full_resolution: bool) -> None:
    """Milliseconds per frame of our MTCNN cascade at each batch size, at the detection size extract uses
    (longer side 640) and, unless --quick, at full resolution."""
    from pipeline.detectors import create_detector
    from pipeline.faces import FaceConfig
    from pipeline.media import MediaReader
    from pipeline.sampling import SamplingConfig

    with MediaReader(clip) as reader:
        frames = [f.image for _, f in zip(range(n_frames), reader.frames(SamplingConfig(every=10)))]
    detector = create_detector("mtcnn", device=device)
    sizes = [FaceConfig().detect_size] + ([max(frames[0].shape[:2])] if full_resolution else [])
    rows = []
    for size in sizes:
        scale = min(1.0, size / max(frames[0].shape[:2]))
        rgb = [cv2.cvtColor(cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
               for f in frames]
        detector.detect(rgb[:max(batches)])  # warm-up at the largest batch
        row = [f"{rgb[0].shape[1]}x{rgb[0].shape[0]}"]
        for batch in batches:
            started = time.perf_counter()
            for start in range(0, len(rgb), batch):
                detector.detect(rgb[start : start + batch])
            row.append(1000 * (time.perf_counter() - started) / len(rgb))
        rows.append(row)
    print(f"MTCNN cascade on {device}, {len(frames)} frames of {clip.name}, ms per frame:")
    print(table(rows, ["frame size"] + [f"batch {b}" for b in batches]))


# -- main -----------------------------------------------------------------------------------------
def run_stage(check: Check, title: str, function, *args):
    """`function(*args)` under a heading; a stage that raises is a mismatch, and the next stages still run."""
    section(title)
    started = time.perf_counter()
    try:
        return function(*args)
    except Exception as exc:
        check.expect(False, title, f"failed: {type(exc).__name__}: {exc}")
        return None
    finally:
        print(f"({time.perf_counter() - started:.0f} s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device-a", default="cuda", help="The device under test [cuda]; timings are taken on it.")
    parser.add_argument("--device-b", default="cpu", help="The reference device [cpu].")
    parser.add_argument("--quick", action="store_true", help="Two clips, a few images, a tiny training run.")
    parser.add_argument("--box-tol", type=float, default=3.0,
                        help="Largest box difference, in pixels of the full frame [3.0: about 1 px at the "
                             "640-px detection size of a 1080p frame].")
    parser.add_argument("--p-tol", type=float, default=0.05, help="Largest p_fake or threshold difference [0.05].")
    parser.add_argument("--metric-tol", type=float, default=0.02, help="Largest ROC-AUC or log-loss difference [0.02].")
    parser.add_argument("--keep", type=Path, default=None, help="Keep the caches and runs here [a temp dir, removed].")
    args = parser.parse_args()

    import torch

    if any(torch.device(d).type == "cuda" for d in (args.device_a, args.device_b)) and not torch.cuda.is_available():
        print("gpu_check: no CUDA device is present (torch.cuda.is_available() is False), so there is nothing to "
              "check on a GPU. Run it on a machine with one, or compare two other devices, e.g. "
              "--device-a cpu --device-b cpu.", file=sys.stderr)
        return 2
    if not dfdc_clips() or not (SHARED / "dfdc_faces" / "metadata.csv").is_file():
        print(f"gpu_check: the real data is missing ({SHARED}/dfdc_videos and dfdc_faces)", file=sys.stderr)
        return 2
    clips = [c for c in dfdc_clips() if not args.quick or c.name in QUICK_CLIPS]
    stylegan = SHARED / "stylegan_faces"
    per_class = 2 if args.quick else 10
    images = [path for label in ("real", "fake") for path in sorted((stylegan / label).glob("*.jpg"))[:per_class]]
    args.groups, args.epochs = (80, 2) if args.quick else (400, 5)
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    scratch.mkdir(parents=True, exist_ok=True)
    names = {d: torch.cuda.get_device_name(torch.device(d)) if torch.device(d).type == "cuda" else "CPU"
             for d in (args.device_a, args.device_b)}
    print(f"gpu_check: {args.device_a} ({names[args.device_a]}) against {args.device_b} ({names[args.device_b]}), "
          f"torch {torch.__version__}, {'quick' if args.quick else 'full'}: {len(clips)} clips, {len(images)} images; "
          f"tolerances: boxes {args.box_tol} px, p_fake {args.p_tol}, metrics {args.metric_tol}")

    check = Check()
    try:
        cache_dir = run_stage(check, "extract (clips and training crops)", check_extract, args, clips, scratch, check)
        run_stage(check, "MTCNN itself: facenet-pytorch's detector and our cascade on both devices",
                  check_mtcnn_reference, args, clips, check)
        if cache_dir is not None:
            run_stage(check, "train, evaluate, build-ensemble", check_training, args, cache_dir, scratch, check)
        run_stage(check, "classify-video, classify-image, evaluate-ensemble, web upload (the shipped ensemble)",
                  check_classification, args, clips, images, check)
        run_stage(check, f"MTCNN batch sweep on {args.device_a}", mtcnn_sweep, args.device_a, clips[0],
                  8 if args.quick else 32, [1, 4, 8] if args.quick else [1, 4, 8, 16, 32], not args.quick)
    finally:
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)

    section("result")
    if check.mismatches:
        print(f"{len(check.mismatches)} mismatch(es) between {args.device_a} and {args.device_b}:")
        for line in check.mismatches:
            print(f"  {line}")
        return 1
    print(f"every stage gives the same results on {args.device_a} and {args.device_b} within the tolerances")
    return 0


if __name__ == "__main__":
    sys.exit(main())
