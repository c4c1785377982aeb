"""Dense face outlines for the self-blend mask (`train --blend-outlines`): MediaPipe's face-mesh FACE_OVAL of
every REAL crop of a face cache.

Self-blended images (models/selfblend.py) are blended through a mean face outline placed by MTCNN's five
landmarks; with `--blend-outlines` they follow each face's own outline instead. MediaPipe is not a
dependency of the project (and must not go into its .venv), so this runs in a separate virtualenv (it imports
numpy, cv2, pandas and mediapipe only):

    python3 -m venv /tmp/mpvenv
    /tmp/mpvenv/bin/pip install mediapipe==0.10.14 opencv-python-headless pandas
    nice -n 10 unshare -rn /tmp/mpvenv/bin/python bench/dense_landmarks.py outlines [--faces DIR]
        [--cpu 0] [--out DIR/mesh_outlines.npz]

It runs `mediapipe.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
refine_landmarks=False)` (its models ship inside the wheel; `unshare -rn` proves nothing is downloaded) on
every REAL crop and writes, atomically, `crop_path` (as in the manifest), `points`: float32 (N, 36, 2),
FACE_OVAL in order around the face, in pixels of the stored crop, NaN where no face was found, and `cache`,
the cache's directory name (its configuration's key), which training checks. It prints its progress every
1000 crops. Exit status 2 when mediapipe cannot be imported (the message says how to get it).

How the five-point mask and the mesh compared (IoU, cost, what each misses) is in docs/experiments.md; the
comparison's code is in git history (before 2026-12-07).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT / "data" / "faces" / "mtcnn-0463e6a4ab"
HOW_TO_GET_MEDIAPIPE = ("mediapipe is not importable in this Python. It is not a project dependency; make a "
                        "separate virtualenv:\n  python3 -m venv /tmp/mpvenv\n  /tmp/mpvenv/bin/pip install "
                        "mediapipe==0.10.14 opencv-python-headless pandas\nand run this step with "
                        "/tmp/mpvenv/bin/python bench/dense_landmarks.py outlines ...")


# -- mediapipe, from its own virtualenv ----------------------------------------------------------------
def import_mediapipe(cpu: int | None):
    """The mediapipe module, pinned to CPU core `cpu` (None: not pinned), or an exit status (2: not
    importable, 1: its models are missing)."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})  # before mediapipe starts its threads: they inherit it
    try:
        import mediapipe as mp
    except ImportError:
        print(HOW_TO_GET_MEDIAPIPE, file=sys.stderr)
        return 2
    package = Path(mp.__file__).parent
    models = [package / "modules" / "face_landmark" / "face_landmark.tflite",
              package / "modules" / "face_detection" / "face_detection_short_range.tflite"]
    missing = [str(m) for m in models if not m.is_file()]
    if missing:
        print(f"mediapipe {mp.__version__} lacks {', '.join(missing)}: install mediapipe==0.10.14", file=sys.stderr)
        return 1
    return mp


# -- every REAL crop's face outline, for training -----------------------------------------------------
def ordered_loop(edges) -> list[int]:
    """The point indices of a closed chain of edges (pairs), in order along it, starting at the smallest."""
    neighbours: dict[int, list[int]] = {}
    for a, b in edges:
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    if any(len(n) != 2 for n in neighbours.values()):
        raise ValueError("the edges do not form one closed loop")
    loop = [min(neighbours)]
    previous = None
    while True:
        following = [n for n in neighbours[loop[-1]] if n != previous]
        previous, point = loop[-1], following[0]
        if point == loop[0]:
            break
        loop.append(point)
    if len(loop) != len(neighbours):
        raise ValueError("the edges form more than one loop")
    return loop


def run_outlines(args: argparse.Namespace) -> int:
    mp = import_mediapipe(args.cpu)
    if isinstance(mp, int):
        return mp
    from mediapipe.python.solutions import face_mesh_connections as connections
    import cv2
    import pandas as pd

    oval = ordered_loop(connections.FACEMESH_FACE_OVAL)
    manifest = pd.read_csv(args.faces / "manifest.csv", dtype={"video_id": str, "group": str, "label": str})
    crop_paths = manifest.loc[manifest["label"] == "REAL", "crop_path"].drop_duplicates().to_numpy(str)
    points = np.full((len(crop_paths), len(oval), 2), np.nan, dtype=np.float32)
    started = time.perf_counter()
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False) as mesh:
        for index, crop_path in enumerate(crop_paths):
            image = cv2.imread(str(args.faces / crop_path), cv2.IMREAD_COLOR)
            if image is None:
                print(f"{args.faces / crop_path}: unreadable crop", file=sys.stderr)
                return 1
            result = mesh.process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
            if result.multi_face_landmarks:
                height, width = image.shape[:2]
                landmarks = result.multi_face_landmarks[0].landmark
                points[index] = [(landmarks[i].x * width, landmarks[i].y * height) for i in oval]
            if (index + 1) % 1000 == 0 or index + 1 == len(crop_paths):
                found = int(np.isfinite(points[:index + 1, 0, 0]).sum())
                print(f"{index + 1}/{len(crop_paths)} crops, {found} with a face, "
                      f"{time.perf_counter() - started:.0f} s", flush=True)
    seconds = time.perf_counter() - started

    out = args.out or args.faces / "mesh_outlines.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.stem}.tmp{os.getpid()}.npz")
    np.savez_compressed(temporary, crop_path=crop_paths, points=points, oval=np.array(oval, dtype=np.int32),
                        cache=args.faces.resolve().name, mediapipe=mp.__version__)
    os.replace(temporary, out)
    found = int(np.isfinite(points[:, 0, 0]).sum())
    print(f"mediapipe {mp.__version__} face mesh on the {len(crop_paths)} REAL crops of {args.faces.name}, "
          f"{'CPU core ' + str(args.cpu) if args.cpu is not None else 'all cores'}: outline found on {found}, "
          f"not on {len(crop_paths) - found}; {seconds:.0f} s ({1000 * seconds / max(1, len(crop_paths)):.1f} ms a "
          f"crop, reading included)")
    print(f"wrote {out}")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    steps = parser.add_subparsers(dest="step", required=True)
    outlines = steps.add_parser("outlines", help="the mesh's face outline of every REAL crop, for training "
                                                 "(mediapipe venv)")
    outlines.add_argument("--faces", type=Path, default=FACES, help=f"face cache directory (default {FACES})")
    outlines.add_argument("--cpu", type=int, default=0, help="CPU core to pin to (default 0; -1: do not pin)")
    outlines.add_argument("--out", type=Path, default=None, help="default: FACES/mesh_outlines.npz")
    args = parser.parse_args()
    if not (args.faces / "manifest.csv").is_file():
        parser.error(f"{args.faces}: no manifest.csv (not a face cache)")
    args.cpu = None if args.cpu < 0 else args.cpu
    sys.exit(run_outlines(args))


if __name__ == "__main__":
    main()
