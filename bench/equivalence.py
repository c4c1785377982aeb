"""Check that the speed-ups keep crops and verdicts equivalent, on the benchmark clips.

    .venv/bin/python -m bench.equivalence

1. Detector: `pipeline.mtcnn.MTCNNCascade` against facenet-pytorch's own `MTCNN.detect` on every sampled
   frame (shrunk to the detection size as `extract` does): faces found, largest box and score difference.
2. Tracking: crop boxes with re-finding between full detections (the default `--redetect-every`) against
   full detection on every sampled frame (`--redetect-every 1`): IoU of matched crop boxes, faces missed or
   added, face-bearing frames lost.
3. Verdicts: the shipped ensemble's verdict and p_fake on each clip under both settings.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from bench.common import dfdc_clips, generated_clip, table
from ensembles.ensemble import Ensemble
from pipeline.faces import FaceConfig, FaceExtractor, _to_rgb
from pipeline.media import MediaReader


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h)


def detector_agreement(clips: list[Path], config: FaceConfig) -> str:
    from facenet_pytorch import MTCNN

    from pipeline.mtcnn import MTCNNCascade

    reference = MTCNN(keep_all=True, min_face_size=20, device="cpu")
    ours = MTCNNCascade("cpu", min_face_size=20)
    frames = faces = mismatched = 0
    box_diff = score_diff = 0.0
    for clip in clips:
        with MediaReader(clip) as reader:
            for frame in reader.frames(config.sampling):
                scale = min(1.0, config.detect_size / max(frame.image.shape[:2]))
                small = _to_rgb(frame.image, scale)[None]
                ref_boxes, ref_probs = reference.detect(small)
                (boxes, _), = ours.detect(small)
                expected = np.zeros((0, 4)) if ref_boxes[0] is None else np.asarray(ref_boxes[0], np.float32)
                frames += 1
                if len(expected) != len(boxes):
                    mismatched += 1
                    continue
                faces += len(boxes)
                if len(boxes):
                    order = np.argsort(-(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), kind="stable")
                    box_diff = max(box_diff, float(np.abs(boxes[order, :4] - expected).max()))
                    score_diff = max(score_diff, float(np.abs(boxes[order, 4] - np.asarray(ref_probs[0], np.float32)).max()))
    return (f"{frames} frames: {mismatched} with a different number of faces; over {faces} faces the largest "
            f"box difference is {box_diff:.5f} px and the largest score difference {score_diff:.6f}")


def crop_boxes(clips: list[Path], config: FaceConfig, detector) -> dict:
    extractor = FaceExtractor(config, detector=detector)
    boxes = {}
    for clip in clips:
        with MediaReader(clip) as reader:
            for frame, crops in extractor.faces_in_file(reader):
                boxes[(clip.name, frame.index)] = [c.crop_box for c in crops]
    return boxes


def tracking_agreement(clips: list[Path], full: FaceConfig, tracked: FaceConfig) -> str:
    detector = FaceExtractor(full).detector
    reference, ours = crop_boxes(clips, full, detector), crop_boxes(clips, tracked, detector)
    overlaps, missed, added, frames_lost = [], 0, 0, 0
    for key, expected in reference.items():
        found = ours[key]
        frames_lost += bool(expected) and not found
        for box in expected:
            best = max((iou(box, other) for other in found), default=0.0)
            missed += best < 0.5
            if best >= 0.5:
                overlaps.append(best)
        added += sum(max((iou(box, other) for other in expected), default=0.0) < 0.5 for box in found)
    return (f"{len(overlaps)} matched faces, crop-box IoU median {np.median(overlaps):.3f}, 5th percentile "
            f"{np.percentile(overlaps, 5):.3f}, minimum {min(overlaps):.3f}; {missed} faces missed, {added} "
            f"added; {frames_lost} of {sum(bool(b) for b in reference.values())} face-bearing frames lost")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    scratch = Path(tempfile.gettempdir()) / "deepfake-bench"
    clips = dfdc_clips() + [generated_clip(scratch / "gen_720p.mp4", 1280, 720, 10),
                            generated_clip(scratch / "gen_1080p.mp4", 1920, 1080, 10)]
    ensemble = Ensemble.load(device="cpu")
    tracked = ensemble.face_config()
    full = ensemble.face_config(redetect_every=1)
    print("1. detector:", detector_agreement(clips, full))
    print(f"2. tracking (redetect every {tracked.redetect_every} vs 1):", tracking_agreement(clips, full, tracked))
    rows = []
    detector = FaceExtractor(full).detector
    extractors = {n: FaceExtractor(c, detector=detector) for n, c in (("full", full), ("tracked", tracked))}
    for clip in clips:
        verdicts = {n: ensemble.classify(clip, e)[0] for n, e in extractors.items()}
        full_p, tracked_p = verdicts["full"].p_fake, verdicts["tracked"].p_fake
        rows.append([clip.name, verdicts["full"].verdict, f"{full_p:.3f}", verdicts["tracked"].verdict,
                     f"{tracked_p:.3f}", f"{abs(full_p - tracked_p):.3f}"])
    print("3. verdicts:")
    print(table(rows, ["clip", "full", "p_fake", f"redetect every {tracked.redetect_every}", "p_fake", "|difference|"]))


if __name__ == "__main__":
    main()
