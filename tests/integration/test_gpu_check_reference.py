"""bench/gpu_check.py's MTCNN reference stage: facenet-pytorch's own MTCNN and our cascade on two devices.
Here both devices are the CPU (the stage's own logic); on a GPU it tells MTCNN's own cross-device
differences from a departure of our cascade (README, "GPU")."""
from __future__ import annotations

import argparse

import numpy as np

from bench.gpu_check import Check, box_differences, check_mtcnn_reference, detection_frames


def test_box_differences_count_frames_and_measure_boxes_in_any_order():
    a = [np.array([[0, 0, 10, 10], [50, 50, 70, 70]], np.float32), np.zeros((0, 4), np.float32),
         np.array([[5, 5, 25, 25]], np.float32)]
    b = [np.array([[51, 50, 70, 72], [0, 0, 10, 10]], np.float32),  # the same faces listed in another order
         np.array([[1, 1, 9, 9]], np.float32),  # a face on one side only
         np.array([[5, 5, 25, 25]], np.float32)]
    assert box_differences(a, b) == (1, 2.0)
    assert box_differences(a, a) == (0, 0.0)


def test_reference_stage_on_a_real_face_passes_and_reports_each_clip(face_clip, capsys):
    frames = detection_frames(face_clip)
    assert len(frames) == 3 and max(frames[0].shape[:2]) <= 640 and frames[0].shape[2] == 3
    check = Check()
    check_mtcnn_reference(argparse.Namespace(device_a="cpu", device_b="cpu", box_tol=3.0), [face_clip], check)
    assert check.mismatches == []
    row = next(line for line in capsys.readouterr().out.splitlines() if face_clip.name in line)
    assert [cell.strip() for cell in row.strip("|").split("|")][1:] == ["3", "0", "0.00", "0", "0.00",
                                                                        "0 / 0.00", "0 / 0.00"]


def test_a_cascade_that_departs_from_facenet_is_a_mismatch(face_clip, monkeypatch):
    import bench.gpu_check as gpu_check

    real = gpu_check.cascade_boxes
    monkeypatch.setattr(gpu_check, "cascade_boxes", lambda frames, device: [b + 5 for b in real(frames, device)])
    check = Check()
    check_mtcnn_reference(argparse.Namespace(device_a="cpu", device_b="cpu", box_tol=3.0), [face_clip], check)
    assert len(check.mismatches) == 2 and "departs from facenet-pytorch's MTCNN on cpu" in check.mismatches[0]
    assert "boxes up to 5.00 px apart" in check.mismatches[0]
