"""Real MTCNN and real OpenCV DNN on a real face."""
import cv2
import numpy as np
import pytest

from pipeline.detectors import create_detector, detector_names
from pipeline.errors import UsageError
from pipeline.faces import FaceConfig, FaceExtractor

# scikit-image's astronaut: the face lies roughly in x 150-260, y 40-190 of the 512x512 photo
FACE_CENTRE = (205, 115)


@pytest.mark.parametrize("name", ["mtcnn", "opencv-dnn"])
def test_detector_finds_the_astronaut(name, astronaut):
    detections = create_detector(name, device="cpu").detect([cv2.cvtColor(astronaut, cv2.COLOR_BGR2RGB)])
    assert len(detections) == 1
    best = max(detections[0], key=lambda d: d.score)
    x1, y1, x2, y2 = best.box
    assert x1 < FACE_CENTRE[0] < x2 and y1 < FACE_CENTRE[1] < y2
    assert 60 < x2 - x1 < 250
    assert (best.landmarks is not None) == (name == "mtcnn")


@pytest.mark.parametrize("name", ["mtcnn", "opencv-dnn"])
def test_faceless_frames_give_empty_lists_not_none(name):
    frames = [np.full((240, 320, 3), 128, np.uint8), np.zeros((240, 320, 3), np.uint8)]
    assert FaceExtractor(FaceConfig(detector=name)).detect(frames) == [[], []]


def test_unknown_detector_lists_known_ones():
    with pytest.raises(UsageError, match="mtcnn"):
        create_detector("haar")
    assert {"mtcnn", "opencv-dnn"} <= set(detector_names())


def test_downscaled_detection_maps_boxes_back_to_full_resolution(astronaut):
    big = cv2.resize(astronaut, (2048, 2048))  # 4x: a 4K-class frame
    small_config = FaceExtractor(FaceConfig(detect_size=512))
    full_config = FaceExtractor(FaceConfig(detect_size=2048), detector=small_config.detector)
    small = small_config.detect([big])[0][0].box
    full = full_config.detect([big])[0][0].box
    assert np.allclose(small, full, atol=0.06 * (full[2] - full[0]))


def test_largest_only_and_min_face_size(astronaut):
    two_faces = np.hstack([astronaut, cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA).repeat(2, 0)[:512]])
    everyone = FaceExtractor(FaceConfig(detect_size=1024)).detect([two_faces])[0]
    largest = FaceExtractor(FaceConfig(detect_size=1024, largest_only=True)).detect([two_faces])[0]
    assert len(everyone) >= 2 and len(largest) == 1
    assert largest[0].width == max(d.width for d in everyone)
    big_only = FaceExtractor(FaceConfig(detect_size=1024, min_face_size=100)).detect([two_faces])[0]
    assert all(max(d.width, d.height) >= 100 for d in big_only) and len(big_only) < len(everyone)


def test_mtcnn_cascade_gives_facenet_pytorchs_detections(astronaut):
    """Our faster arrangement of the cascade finds what facenet-pytorch's own MTCNN.detect finds."""
    from facenet_pytorch import MTCNN

    from pipeline.mtcnn import MTCNNCascade

    frames = [cv2.cvtColor(astronaut, cv2.COLOR_BGR2RGB)]
    frames.append(cv2.cvtColor(cv2.copyMakeBorder(astronaut, 0, 0, 256, 256, cv2.BORDER_REFLECT), cv2.COLOR_BGR2RGB)[:, :768])
    frames = np.stack([cv2.resize(f, (640, 360), interpolation=cv2.INTER_AREA) for f in frames])
    reference = MTCNN(keep_all=True, min_face_size=20, device="cpu")
    ref_boxes, ref_probs, ref_points = reference.detect(frames, landmarks=True)
    ours = MTCNNCascade("cpu", min_face_size=20).detect(frames)
    assert sum(len(b) for b, _ in ours) >= 2
    for (boxes, points), expected_boxes, expected_probs, expected_points in zip(ours, ref_boxes, ref_probs, ref_points):
        order = np.argsort(-(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), kind="stable")
        assert np.allclose(boxes[order, :4], np.asarray(expected_boxes, np.float32), atol=0.01)
        assert np.allclose(boxes[order, 4], np.asarray(expected_probs, np.float32), atol=1e-4)
        assert np.allclose(points[order], np.asarray(expected_points, np.float32), atol=0.01)
