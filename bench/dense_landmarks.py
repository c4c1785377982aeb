"""Dense landmarks for the self-blend mask: MediaPipe's 468-point face mesh against the 5-point MTCNN hull.

Self-blended images (models/selfblend.py) are blended through a mean face outline placed by MTCNN's five
landmarks. This measures, on a seeded sample of crops of a face cache, what a dense landmark model would
change: its cost per crop, how often it finds the face, how well the two masks agree, and a picture.

MediaPipe is not a dependency of the project (and must not go into its .venv), so there are two steps:

1. `mesh`, in a separate virtualenv with mediapipe (it imports numpy, cv2, pandas and mediapipe only):

       python3 -m venv /tmp/mpvenv
       /tmp/mpvenv/bin/pip install mediapipe==0.10.14 opencv-python-headless pandas
       nice -n 15 unshare -rn /tmp/mpvenv/bin/python bench/dense_landmarks.py mesh [--faces DIR] [--n 500]
           [--seed 0] [--cpu 0] [--out reports/dense_landmarks/mesh.npz]

   runs `mediapipe.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
   refine_landmarks=False)` (face_detection_short_range.tflite + face_landmark.tflite, both inside the
   wheel) on n crops (half REAL, half FAKE, drawn with --seed), pinned to one CPU core, and writes the 468
   points of each crop, found or not, and the time of each `process` call. `unshare -rn` (no network in
   the process's namespace) proves that nothing is downloaded; the step also checks that no file appears
   in the mediapipe package during the run.

2. `compare`, in the project's virtualenv (it uses the project's own mask code, `face_hull`):

       nice -n 15 .venv/bin/python bench/dense_landmarks.py compare [--mesh reports/dense_landmarks/mesh.npz]
           [--png reports/dense_landmarks/outlines.png]

   compares, per crop where the mesh found a face, in the pixels of the 224 px crop: the IoU of the
   deterministic 5-point hull (scale 1, with and without the forehead arc that `face_hull` adds 3 times in
   4) and of a seeded random `face_hull` (what training draws, before the elastic warp and the blurs)
   with the convex hull of the 468 mesh points and with that of MediaPipe's FACE_OVAL; the same IoU inside
   the nets' view (the central FACE_FRACTION of the crop); which share of the mesh hull the 5-point hull
   misses above the eyes, between eyes and mouth, and below the mouth, and which share of the 5-point
   hull lies outside the mesh; and the distance between MTCNN's five points and the mesh's corresponding
   points (eye contour centres, nose tip 1, mouth corners 61 and 291), in pixels and in inter-eye
   distances. It prints tables and draws 8 crops (picked at evenly spaced IoU quantiles) with both
   outlines.

3. `outlines`, in the mediapipe virtualenv, for training (`train --blend-outlines`):

       nice -n 10 unshare -rn /tmp/mpvenv/bin/python bench/dense_landmarks.py outlines [--faces DIR]
           [--cpu 0] [--out DIR/mesh_outlines.npz]

   runs the same face mesh on every REAL crop of the cache and writes, atomically, `crop_path` (as in the
   manifest), `points`: float32 (N, 36, 2), MediaPipe's FACE_OVAL in order around the face, in pixels
   of the stored crop, NaN where no face was found, and `cache`, the cache's directory name (its
   configuration's key), which training checks. It prints its progress every 1000 crops.

Exit status 2 when `mesh` or `outlines` cannot import mediapipe (the message says how to get it).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import table  # noqa: E402  (numpy only: importable in the mediapipe venv too)

FACES = ROOT / "data" / "faces" / "mtcnn-0463e6a4ab"
OUT_DIR = ROOT / "reports" / "dense_landmarks"
LABELS = ("REAL", "FAKE")
NOSE_TIP, MOUTH_LEFT, MOUTH_RIGHT = 1, 61, 291  # mesh indices; "left" is the image's left (subject's right)
POINT_NAMES = ("left eye", "right eye", "nose", "left mouth", "right mouth")
HOW_TO_GET_MEDIAPIPE = ("mediapipe is not importable in this Python. It is not a project dependency; make a "
                        "separate virtualenv:\n  python3 -m venv /tmp/mpvenv\n  /tmp/mpvenv/bin/pip install "
                        "mediapipe==0.10.14 opencv-python-headless pandas\nand run this step with "
                        "/tmp/mpvenv/bin/python bench/dense_landmarks.py mesh|outlines ...")


# -- step 1: the mesh (mediapipe venv) ------------------------------------------------------------------
def sample_rows(manifest, n: int, seed: int):
    """n rows of the manifest, half of each label (fewer if a label has fewer), drawn with `seed`, in
    manifest order."""
    rng = np.random.default_rng(seed)
    picked = []
    for label in LABELS:
        positions = np.flatnonzero(manifest["label"].to_numpy() == label)
        picked.append(rng.choice(positions, size=min(n // 2, len(positions)), replace=False))
    return manifest.iloc[np.sort(np.concatenate(picked))]


def _package_files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


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


def run_mesh(args: argparse.Namespace) -> int:
    mp = import_mediapipe(args.cpu)
    if isinstance(mp, int):
        return mp
    from mediapipe.python.solutions import face_mesh_connections as connections
    import cv2
    import pandas as pd

    package = Path(mp.__file__).parent
    before = _package_files(package)

    manifest = pd.read_csv(args.faces / "manifest.csv", dtype={"video_id": str, "group": str, "label": str})
    rows = sample_rows(manifest, args.n, args.seed)
    points = np.full((len(rows), 468, 3), np.nan, dtype=np.float32)
    found = np.zeros(len(rows), dtype=bool)
    ms = np.zeros(len(rows), dtype=np.float64)
    load_before = os.getloadavg()
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False) as mesh:
        for index, crop_path in enumerate(rows["crop_path"]):
            image = cv2.imread(str(args.faces / crop_path), cv2.IMREAD_COLOR)
            if image is None:
                print(f"{args.faces / crop_path}: unreadable crop", file=sys.stderr)
                return 1
            rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            if index == 0:
                mesh.process(rgb)  # warm-up: graph start and XNNPACK set-up are not per-crop costs
            started = time.perf_counter()
            result = mesh.process(rgb)
            ms[index] = (time.perf_counter() - started) * 1000.0
            if result.multi_face_landmarks:
                height, width = rgb.shape[:2]
                found[index] = True
                points[index] = [(p.x * width, p.y * height, p.z * width)
                                 for p in result.multi_face_landmarks[0].landmark]
    load_after = os.getloadavg()
    after = _package_files(package)
    changed = sorted(name for name, mtime in after.items() if before.get(name) != mtime)

    indices = lambda edges: np.array(sorted({i for edge in edges for i in edge}), dtype=np.int32)  # noqa: E731
    args.out.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.out.with_name(f".{args.out.stem}.tmp{os.getpid()}.npz")
    np.savez_compressed(
        temporary, crop_path=rows["crop_path"].to_numpy(str), label=rows["label"].to_numpy(str), points=points,
        found=found, ms=ms, seed=args.seed, faces=str(args.faces), mediapipe=mp.__version__,
        cpu=-1 if args.cpu is None else args.cpu, load=np.array([load_before, load_after]),
        face_oval=indices(connections.FACEMESH_FACE_OVAL),
        left_eye=indices(connections.FACEMESH_RIGHT_EYE),  # the subject's right eye is on the image's left
        right_eye=indices(connections.FACEMESH_LEFT_EYE))
    os.replace(temporary, args.out)

    labels = rows["label"].to_numpy(str)
    lines = []
    for name, keep in [(label, labels == label) for label in LABELS] + [("all", np.ones(len(rows), bool))]:
        lines.append([name, int(keep.sum()), f"{found[keep].mean():.1%}", f"{np.median(ms[keep]):.1f}",
                      f"{np.percentile(ms[keep], 90):.1f}"])
    print(f"mediapipe {mp.__version__} face mesh on {len(rows)} crops of {args.faces.name} (seed {args.seed}), "
          f"{'CPU core ' + str(args.cpu) if args.cpu is not None else 'all cores'}; "
          f"load average {load_before[0]:.1f} -> {load_after[0]:.1f}")
    print(table(lines, ["label", "crops", "mesh found", "median ms/crop", "p90 ms/crop"]))
    print("files changed in the mediapipe package during the run:", ", ".join(changed) if changed else "none")
    print(f"wrote {args.out}")
    return 0


# -- step 3: every REAL crop's face outline, for training (mediapipe venv) ----------------------------------
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


# -- step 2: the comparison (project venv) ---------------------------------------------------------------
class FixedDraw:
    """Stands in for the numpy Generator that `face_hull` draws from: the forehead arc on or off, scale 1."""

    def __init__(self, forehead: bool):
        self.forehead = forehead

    def random(self) -> float:
        return 0.0 if self.forehead else 1.0

    def uniform(self, low, high, size=None):
        return np.ones(size)


def fill(polygon: np.ndarray, size: int) -> np.ndarray:
    """bool (size, size): the convex polygon filled (pixel centres inside; 1/16 px vertex precision)."""
    import cv2

    mask = np.zeros((size, size), dtype=np.uint8)
    cv2.fillConvexPoly(mask, np.round(np.asarray(polygon, dtype=np.float64) * 16).astype(np.int32), 1, shift=4)
    return mask.astype(bool)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else float("nan")


def face_frame_v(landmarks: np.ndarray, size: int) -> np.ndarray:
    """(size, size): each pixel's position along the face, 0 on the eye line and 1 on the mouth line, in
    the frame `face_hull` places its template in (x along the eyes, y from their midpoint to the mouth's)."""
    eyes_mid = (landmarks[0] + landmarks[1]) / 2.0
    basis = np.stack([landmarks[1] - landmarks[0], (landmarks[3] + landmarks[4]) / 2.0 - eyes_mid], axis=1)
    grid_x, grid_y = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64))
    offsets = np.stack([grid_x - eyes_mid[0], grid_y - eyes_mid[1]], axis=-1)
    return (offsets @ np.linalg.inv(basis).T)[..., 1]


def compare_crop(marks: np.ndarray, mesh: np.ndarray, oval: np.ndarray, size: int, view: np.ndarray,
                 picture: np.ndarray, rng: np.random.Generator) -> dict:
    """The two masks of one crop compared (see the module's docstring); `view`: the nets' view, `picture`:
    the pixels of the crop that come from the source picture (not the black padding around it)."""
    import cv2

    from models.selfblend import face_hull

    hulls = {"fh": face_hull(marks, FixedDraw(True)), "nofh": face_hull(marks, FixedDraw(False)),
             "random": face_hull(marks, rng)}
    five = {name: fill(hull, size) for name, hull in hulls.items()}
    dense = fill(cv2.convexHull(mesh.astype(np.float32)).reshape(-1, 2), size)
    oval_mask = fill(cv2.convexHull(mesh[oval].astype(np.float32)).reshape(-1, 2), size)
    v = face_frame_v(marks, size)
    regions = {"upper": v < 0.0, "middle": (v >= 0.0) & (v <= 1.0), "lower": v > 1.0}
    row = {f"iou_{name}": iou(mask, dense) for name, mask in five.items()}
    row.update({"iou_fh_view": iou(five["fh"] & view, dense & view), "iou_fh_oval": iou(five["fh"], oval_mask),
                "offpicture_mesh": (dense & ~picture).sum() / max(1, dense.sum())})
    for name, mask in five.items():
        missed, excess = dense & ~mask, mask & ~dense
        row.update({f"area_{name}": mask.sum() / max(1, dense.sum()),
                    f"missed_{name}": missed.sum() / max(1, dense.sum()),
                    f"excess_{name}": excess.sum() / max(1, mask.sum()),
                    f"offpicture_{name}": (mask & ~picture).sum() / max(1, mask.sum())})
        for region_name, region in regions.items():
            row[f"missed_{name}_{region_name}"] = (missed & region).sum() / max(1, dense.sum())
            row[f"excess_{name}_{region_name}"] = (excess & region).sum() / max(1, mask.sum())
    return row


def mesh_points(mesh: np.ndarray, left_eye: np.ndarray, right_eye: np.ndarray) -> np.ndarray:
    """(5, 2): the mesh's counterparts of MTCNN's five points, in MTCNN's order."""
    return np.stack([mesh[left_eye].mean(axis=0), mesh[right_eye].mean(axis=0), mesh[NOSE_TIP],
                     mesh[MOUTH_LEFT], mesh[MOUTH_RIGHT]])


def draw_grid(picked: list[dict], out: Path, title: str) -> None:
    import cv2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from models.selfblend import face_hull

    figure, axes = plt.subplots(2, 4, figsize=(13, 7.8))
    for axis, item in zip(axes.ravel(), picked):
        image = cv2.cvtColor(cv2.imread(item["crop_file"], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        size = image.shape[0]
        axis.imshow(image)
        for hull, style in ((face_hull(item["marks"], FixedDraw(True)), "-"),
                            (face_hull(item["marks"], FixedDraw(False)), "--")):
            closed = np.vstack([hull, hull[:1]])
            axis.plot(closed[:, 0], closed[:, 1], style, color="cyan", linewidth=1.5)
        dense = cv2.convexHull(item["mesh"].astype(np.float32)).reshape(-1, 2)
        closed = np.vstack([dense, dense[:1]])
        axis.plot(closed[:, 0], closed[:, 1], "-", color="magenta", linewidth=1.5)
        axis.plot(item["mesh"][:, 0], item["mesh"][:, 1], ".", color="magenta", markersize=0.6, alpha=0.5)
        axis.plot(item["marks"][:, 0], item["marks"][:, 1], "o", color="yellow", markersize=3.5)
        counterpart = item["counterpart"]
        axis.plot(counterpart[:, 0], counterpart[:, 1], "x", color="magenta", markersize=5)
        low, high = item["view"]
        axis.add_patch(plt.Rectangle((low - 0.5, low - 0.5), high - low, high - low, fill=False, color="white",
                                     linestyle=":", linewidth=1))
        axis.set_xlim(-0.5, size - 0.5)
        axis.set_ylim(size - 0.5, -0.5)
        axis.set_xticks([])
        axis.set_yticks([])
        axis.set_title(f"{item['label']} {Path(item['crop_file']).parent.name}  IoU {item['iou_fh']:.2f}", fontsize=9)
    for axis in axes.ravel()[len(picked):]:
        axis.axis("off")
    figure.suptitle(title + "\ncyan: 5-point hull (solid: with forehead arc, dashed: without); magenta: convex "
                    "hull of the 468 mesh points; yellow dots: MTCNN's 5 points; magenta x: mesh counterparts; "
                    "white dotted: the nets' view", fontsize=9)
    figure.tight_layout(rect=(0, 0, 1, 0.94), h_pad=2.0)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.stem}.tmp{os.getpid()}.png")
    figure.savefig(temporary, dpi=100)
    plt.close(figure)
    os.replace(temporary, out)


def run_compare(args: argparse.Namespace) -> int:
    import pandas as pd

    from models.data import FACE_FRACTION, Preprocess, landmarks_of, points_to_input
    from models.selfblend import sample_rng
    from pipeline.cache import load_manifest

    saved = np.load(args.mesh, allow_pickle=False)
    manifest, cache_dir = load_manifest(Path(str(saved["faces"])))
    crop_size = int(json.loads((cache_dir / "config.json").read_text())["crop_size"])
    by_path = manifest.drop_duplicates("crop_path").set_index("crop_path")
    rows = by_path.loc[saved["crop_path"]].reset_index()
    marks_all = landmarks_of(rows, cache_dir, Preprocess(input_size=crop_size, face_fraction=1.0))  # crop pixels
    side = max(1, int(round(crop_size * FACE_FRACTION)))  # as Preprocess.crop_resize
    low = (crop_size - side) // 2
    view = np.zeros((crop_size, crop_size), dtype=bool)
    view[low:low + side, low:low + side] = True

    found, points, seed = saved["found"], saved["points"][..., :2].astype(np.float64), int(saved["seed"])
    identity = Preprocess(input_size=crop_size, face_fraction=1.0)
    records = []
    for index in np.flatnonzero(found):
        marks, mesh = marks_all[index].astype(np.float64), points[index]
        row = rows.iloc[index]
        box = row[["crop_x1", "crop_y1", "crop_x2", "crop_y2"]].to_numpy(float)
        corners = points_to_input([[-0.5, -0.5], [row["frame_width"] - 0.5, row["frame_height"] - 0.5]], box,
                                  crop_size, identity)
        grid = np.arange(crop_size)
        picture = (((grid >= corners[0, 1]) & (grid <= corners[1, 1]))[:, None]
                   & ((grid >= corners[0, 0]) & (grid <= corners[1, 0]))[None, :])
        counterpart = mesh_points(mesh, saved["left_eye"], saved["right_eye"])
        distance = np.linalg.norm(counterpart - marks, axis=1)
        across = marks[1] - marks[0]
        eye_distance = float(np.linalg.norm(across))
        turn = abs(float(np.dot(marks[2] - (marks[0] + marks[1]) / 2.0, across))) / eye_distance ** 2
        record = {"index": int(index), "label": str(saved["label"][index]), "crop_file": rows["crop_file"][index],
                  "marks": marks, "mesh": mesh, "counterpart": counterpart, "view": (low, low + side),
                  "eye_distance": eye_distance, "turn": turn,
                  **{f"px {name}": float(d) for name, d in zip(POINT_NAMES, distance)},
                  **{f"ied {name}": float(d / eye_distance) for name, d in zip(POINT_NAMES, distance)}}
        record.update(compare_crop(marks, mesh, saved["face_oval"], crop_size, view, picture,
                                   sample_rng(seed, 0, int(index))))
        records.append(record)
    frame = pd.DataFrame([{k: v for k, v in r.items() if k not in ("marks", "mesh", "counterpart", "view")}
                          for r in records])
    labels = saved["label"].astype(str)
    ms = saved["ms"]
    groups = [(label, frame["label"] == label, labels == label) for label in LABELS]
    groups.append(("all", frame["label"].notna(), np.ones(len(labels), bool)))

    print(f"{len(labels)} crops of {cache_dir.name} (seed {seed}); mediapipe {saved['mediapipe']} on "
          f"{'CPU core ' + str(int(saved['cpu'])) if int(saved['cpu']) >= 0 else 'all cores'}, load average "
          f"{saved['load'][0][0]:.1f} -> {saved['load'][1][0]:.1f}; masks in {crop_size} px crop pixels, over the "
          "crops where the mesh found a face")
    print(table([[name, int(all_rows.sum()), f"{found[all_rows].mean():.1%}", f"{np.median(ms[all_rows]):.1f}",
                  f"{np.percentile(ms[all_rows], 90):.1f}"] for name, _, all_rows in groups],
                ["label", "crops", "mesh found", "median ms/crop", "p90 ms/crop"]))
    print("\nIoU of the 5-point hull with the mesh's convex hull, median (fh: with the forehead arc, no fh: without, "
          "random: face_hull as training draws it, view: inside the nets' view, oval: against FACE_OVAL's hull)")
    columns = ["iou_fh", "iou_nofh", "iou_random", "iou_fh_view", "iou_fh_oval"]
    print(table([[name, int(keep.sum())] + [f"{frame.loc[keep, c].median():.3f}" for c in columns]
                 + [f"{frame.loc[keep, 'iou_fh'].quantile(0.1):.3f}", f"{(frame.loc[keep, 'iou_fh'] < 0.6).mean():.1%}"]
                 for name, keep, _ in groups],
                ["label", "found", "fh", "no fh", "random", "fh view", "fh oval", "fh p10", "fh IoU<0.6"]))
    print("\nWhere they differ, all found crops, means: area of the 5-point hull / the mesh hull's; missed: share "
          "of the mesh hull outside the 5-point hull; excess: share of the 5-point hull outside the mesh hull "
          "(upper: above the eye line, middle: eyes to mouth, lower: below the mouth line); off picture: share "
          "of the hull on the black padding around the source picture")
    lines = []
    for name, title in (("fh", "5-pt, forehead"), ("nofh", "5-pt, no forehead"), ("random", "5-pt, as drawn")):
        lines.append([title, f"{frame[f'area_{name}'].mean():.2f}"]
                     + [f"{frame[f'missed_{name}{part}'].mean():.1%}" for part in ("", "_upper", "_middle", "_lower")]
                     + [f"{frame[f'excess_{name}{part}'].mean():.1%}" for part in ("", "_upper", "_middle", "_lower")]
                     + [f"{frame[f'offpicture_{name}'].mean():.1%}"])
    lines.append(["mesh hull", "1.00"] + ["-"] * 8 + [f"{frame['offpicture_mesh'].mean():.1%}"])
    print(table(lines, ["hull", "area", "missed", "upper", "middle", "lower", "excess", "upper", "middle", "lower",
                        "off picture"]))
    print("\nBy head turn (MTCNN's nose offset along the eye line, in inter-eye distances): median IoU, mean "
          "missed share")
    bins = [(0.0, 0.1), (0.1, 0.2), (0.2, 0.35), (0.35, np.inf)]
    print(table([[f"{a:.2f}-{b:.2f}", int(keep.sum()), f"{frame.loc[keep, 'iou_fh'].median():.3f}",
                  f"{frame.loc[keep, 'iou_random'].median():.3f}", f"{frame.loc[keep, 'missed_fh'].mean():.1%}"]
                 for a, b in bins for keep in [(frame["turn"] >= a) & (frame["turn"] < b)]],
                ["nose offset", "crops", "IoU fh", "IoU random", "missed (fh)"]))
    print("\nMTCNN's 5 points against the mesh's (eye contour centres, nose tip, mouth corners): distance in px of "
          f"the crop and in inter-eye distances (IED; median {frame['eye_distance'].median():.1f} px)")
    print(table([[point, f"{frame[f'px {point}'].median():.1f}", f"{frame[f'px {point}'].mean():.1f}",
                  f"{frame[f'ied {point}'].median():.3f}", f"{frame[f'ied {point}'].mean():.3f}",
                  f"{frame[f'ied {point}'].quantile(0.9):.3f}"] for point in POINT_NAMES],
                ["point", "median px", "mean px", "median / IED", "mean / IED", "p90 / IED"]))
    worst = frame[[f"ied {point}" for point in POINT_NAMES]].max(axis=1)
    print(f"crops where a point is more than 0.25 IED off: {(worst > 0.25).sum()}, more than 0.5 IED (another face?): "
          f"{(worst > 0.5).sum()}")

    ordered = sorted(records, key=lambda r: r["iou_fh"])
    picks = [ordered[round(q * (len(ordered) - 1))] for q in np.linspace(0.0, 1.0, 8)] if ordered else []
    draw_grid(picks, args.png, f"{cache_dir.name}: 8 of {len(records)} crops at evenly spaced IoU quantiles "
                               f"(worst to best), seed {seed}")
    print(f"\nwrote {args.png}")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    steps = parser.add_subparsers(dest="step", required=True)
    mesh = steps.add_parser("mesh", help="MediaPipe face mesh on a seeded sample of crops (mediapipe venv)")
    mesh.add_argument("--faces", type=Path, default=FACES, help=f"face cache directory (default {FACES})")
    mesh.add_argument("--n", type=int, default=500, help="crops, half REAL and half FAKE (default 500)")
    mesh.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")
    mesh.add_argument("--cpu", type=int, default=0, help="CPU core to pin to (default 0; -1: do not pin)")
    mesh.add_argument("--out", type=Path, default=OUT_DIR / "mesh.npz")
    outlines = steps.add_parser("outlines", help="the mesh's face outline of every REAL crop, for training "
                                                 "(mediapipe venv)")
    outlines.add_argument("--faces", type=Path, default=FACES, help=f"face cache directory (default {FACES})")
    outlines.add_argument("--cpu", type=int, default=0, help="CPU core to pin to (default 0; -1: do not pin)")
    outlines.add_argument("--out", type=Path, default=None, help="default: FACES/mesh_outlines.npz")
    compare = steps.add_parser("compare", help="the two masks compared with the project's mask code (.venv)")
    compare.add_argument("--mesh", type=Path, default=OUT_DIR / "mesh.npz", help="what `mesh` wrote")
    compare.add_argument("--png", type=Path, default=OUT_DIR / "outlines.png")
    args = parser.parse_args()
    if args.step == "mesh":
        if args.n < 2:
            parser.error(f"--n must be at least 2, got {args.n}")
        args.cpu = None if args.cpu < 0 else args.cpu
        sys.exit(run_mesh(args))
    if args.step == "outlines":
        if not (args.faces / "manifest.csv").is_file():
            parser.error(f"{args.faces}: no manifest.csv (not a face cache)")
        args.cpu = None if args.cpu < 0 else args.cpu
        sys.exit(run_outlines(args))
    if not args.mesh.is_file():
        parser.error(f"{args.mesh}: no mesh file; run the `mesh` step first (see --help)")
    sys.exit(run_compare(args))


if __name__ == "__main__":
    main()
