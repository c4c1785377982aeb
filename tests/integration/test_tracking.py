"""Re-finding known faces between full detections (FaceConfig.redetect_every) on real video."""
import cv2
import numpy as np

from pipeline.faces import FaceConfig, FaceExtractor
from pipeline.media import MediaReader
from pipeline.sampling import SamplingConfig
from tests.conftest import shared_data, write_video

EVERY_FRAME = SamplingConfig(every=1)


class CountingDetector:
    """The real MTCNN detector, counting how often each of its two paths runs."""

    def __init__(self, detector):
        self.inner, self.full_frames, self.refines = detector, 0, 0
        self.name, self.default_score_threshold = detector.name, detector.default_score_threshold

    def detect(self, frames_rgb):
        self.full_frames += len(frames_rgb)
        return self.inner.detect(frames_rgb)

    def refine(self, frame_rgb, boxes):
        self.refines += 1
        return self.inner.refine(frame_rgb, boxes)


def crop_boxes(clip, config, detector):
    with MediaReader(clip) as reader:
        return [[c.crop_box for c in crops] for _, crops in FaceExtractor(config, detector=detector).faces_in_file(reader)]


def iou(a, b):
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h)


def test_tracked_faces_match_full_detection_at_a_third_of_the_cost(face_clip):
    detector = FaceExtractor(FaceConfig()).detector
    full = crop_boxes(face_clip, FaceConfig(sampling=EVERY_FRAME, redetect_every=1), detector)
    counting = CountingDetector(detector)
    tracked = crop_boxes(face_clip, FaceConfig(sampling=EVERY_FRAME, redetect_every=3), counting)
    assert len(full) == len(tracked) == 30 and all(len(boxes) == 1 for boxes in full)
    assert all(len(boxes) == 1 for boxes in tracked)
    assert min(iou(a[0], b[0]) for a, b in zip(full, tracked)) > 0.85
    assert counting.full_frames == 10 and counting.refines == 20  # positions 0, 3, 6, ... ran the full cascade


def test_a_new_face_waits_for_the_next_full_detection_and_a_face_that_leaves_is_dropped(tmp_path, astronaut):
    background = np.full((360, 640, 3), (60, 70, 80), np.uint8)
    one = background.copy()
    one[40:320, 40:320] = cv2.resize(astronaut, (280, 280), interpolation=cv2.INTER_AREA)
    two = one.copy()
    two[100:300, 400:600] = cv2.resize(astronaut, (200, 200), interpolation=cv2.INTER_AREA)
    clip = write_video(tmp_path / "arrivals.mp4", [one] * 4 + [two] * 5 + [background] * 3)
    detector = FaceExtractor(FaceConfig()).detector
    counts = [len(b) for b in crop_boxes(clip, FaceConfig(sampling=EVERY_FRAME, redetect_every=3), detector)]
    # position 4 and 5 only re-find the first face; position 6 runs the full detector and finds the second;
    # at position 9 neither face is re-found, so the full detector runs and finds nobody
    assert counts == [1, 1, 1, 1, 1, 1, 2, 2, 2, 0, 0, 0]
    full = [len(b) for b in crop_boxes(clip, FaceConfig(sampling=EVERY_FRAME, redetect_every=1), detector)]
    assert full == [1, 1, 1, 1, 2, 2, 2, 2, 2, 0, 0, 0]


def test_still_images_and_detectors_without_refine_always_run_full_detection(face_clip, astronaut, tmp_path):
    image = tmp_path / "face.png"
    cv2.imwrite(str(image), astronaut)
    counting = CountingDetector(FaceExtractor(FaceConfig()).detector)
    assert [len(b) for b in crop_boxes(image, FaceConfig(redetect_every=3), counting)] == [1]
    assert counting.refines == 0
    dnn = FaceExtractor(FaceConfig(detector="opencv-dnn")).detector
    boxes = crop_boxes(face_clip, FaceConfig(detector="opencv-dnn", sampling=EVERY_FRAME, redetect_every=3), dnn)
    assert sum(len(b) for b in boxes) >= 28



def test_a_woman_walking_fast_past_the_camera_is_one_person(small_ensemble):
    """multi_face/crowd.mp4: she crosses 1920 px in 4 sampled frames (3.3 face sizes a step); she was three
    one-face 'persons', each excluded as too short, so her face could not vote."""
    from ensembles.ensemble import Ensemble

    crowd = shared_data("multi_face", "crowd.mp4")
    verdict, _ = Ensemble.load(small_ensemble, device="cpu").classify(crowd)
    faces = {(f.frame_index, f.track): f.box for f in verdict.faces}
    [(_, walker)] = [key for key, box in faces.items() if key[0] == 0 and 280 < box[0] < 300 and box[1] > 700]
    hers = sorted((frame, box) for (frame, track), box in faces.items() if track == walker)
    assert [frame for frame, _ in hers] == [0, 10, 20, 30]
    assert hers[-1][1][0] > 1300  # she reached the right-hand side
    track = next(t for t in verdict.tracks if t.track == walker)
    assert track.counted and track.n_faces == 4
