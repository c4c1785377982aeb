"""Shared fixtures: real faces, small real videos written to temp dirs, and the shared data when present."""
from __future__ import annotations

import contextlib
import io
import struct
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.sample import astronaut_bgr, sample_frames, write_sample_clip  # noqa: E402


def make_small_ensemble(folder: Path) -> Path:
    """Write an ensemble of two freshly initialised nets (real components; their scores carry no meaning)."""
    import torch

    from ensembles.ensemble import EnsembleConfig
    from models.checkpoint import make_checkpoint, save_checkpoint
    from models.data import Preprocess
    from models.registry import create_model

    torch.manual_seed(0)
    for name in ("lenet", "minivgg"):
        model = create_model(name)
        checkpoint = make_checkpoint(model, Preprocess(model.input_size), train_config={},
                                     split={"train": [], "val": [], "test": []}, epoch=0, val_metrics={})
        save_checkpoint(checkpoint, folder / f"{name}.pt")
    path = folder / "ensemble.json"
    EnsembleConfig(members=("lenet.pt", "minivgg.pt"), threshold=0.5).save(path)
    return path


SHARED_DATA = ROOT.parent / "shared" / "data"


def run_main(main, *args) -> tuple[int, str]:
    """Run a script's `main(argv)` in-process: its exit status and what it printed, an error message included
    (SystemExit("message") exits with status 1 and prints the message)."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
            printed.write("" if isinstance(exc.code, int) or exc.code is None else str(exc.code))
    return code, printed.getvalue()


def shared_data(*parts: str) -> Path:
    """A path inside ../shared/data, or skip the test when that data is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


def write_video(path: Path, frames, fps: int = 15) -> Path:
    frames = list(frames)
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def write_gap_mkv(path, gap_seconds: float = 5.0):
    """80 frames of a face at 25 fps in Matroska (which states no frame count), with `gap_seconds` of nothing
    between frames 39 and 40: variable frame rate, as screen recorders and phones write it."""
    from fractions import Fraction

    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for number, image in enumerate(sample_frames(80, 640, 360)):
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts = number * 40 + (int(gap_seconds * 1000) if number >= 40 else 0)
            frame.time_base = Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def write_labelled_set(folder: Path, clip: Path, photo: np.ndarray, fakes: dict[str, np.ndarray], labels: str) -> Path:
    """A labelled set as selection_dev is laid out: real/clip.mp4 (a copy of `clip`), real/photo.jpg (`photo`),
    fake/NAME.jpg for each of `fakes`, and `labels` as its labels.csv."""
    (folder / "real").mkdir(parents=True)
    (folder / "fake").mkdir()
    (folder / "real" / "clip.mp4").write_bytes(clip.read_bytes())
    cv2.imwrite(str(folder / "real" / "photo.jpg"), photo)
    for name, image in fakes.items():
        cv2.imwrite(str(folder / "fake" / f"{name}.jpg"), image)
    (folder / "labels.csv").write_text(labels)
    return folder


def write_png_bomb(path: Path, side: int = 20000) -> Path:
    """A valid 1-bit PNG of side x side black pixels: about 1 MB on disk, 1.2 GB once decoded to BGR."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" * (1 + (side + 7) // 8)  # filter byte, then the row's bits
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def set_mp4_rotation(path: Path, degrees: int = 90) -> None:
    """Rewrite the track header's display matrix of an MP4 so that players rotate it by `degrees`."""
    matrices = {90: (0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30), 270: (0, -65536, 0, 65536, 0, 0, 0, 0, 1 << 30)}
    data = bytearray(path.read_bytes())
    at = data.find(b"tkhd")
    offset = at + 4 + (52 if data[at + 4] == 1 else 40)
    data[offset : offset + 36] = struct.pack(">9i", *matrices[degrees])
    path.write_bytes(bytes(data))


@pytest.fixture(scope="session")
def small_ensemble(tmp_path_factory) -> Path:
    return make_small_ensemble(tmp_path_factory.mktemp("ensemble"))


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    return astronaut_bgr()


@pytest.fixture(scope="session")
def face_clip(tmp_path_factory) -> Path:
    """A 2-second 640x360 clip of a real face (30 frames at 15 fps)."""
    return write_sample_clip(tmp_path_factory.mktemp("clip") / "astronaut.mp4", seconds=2.0, fps=15)


@pytest.fixture(scope="session")
def faceless_clip(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    frames = [cv2.GaussianBlur(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8), (9, 9), 3) for _ in range(20)]
    return write_video(tmp_path_factory.mktemp("noface") / "landscape.mp4", frames)


def with_audio(video: Path, out: Path, audio_source: Path | None = None, silent_seconds: float = 0.0) -> Path:
    """`video`'s picture (stream-copied) with an audio track: `audio_source`'s first audio stream (stream-copied),
    or `silent_seconds` of AAC silence."""
    import av

    with av.open(str(video)) as picture, av.open(str(out), "w") as muxed:
        video_in = picture.streams.video[0]
        video_out = muxed.add_stream_from_template(video_in)
        if audio_source is not None:
            sound = av.open(str(audio_source))
            audio_in = sound.streams.audio[0]
            audio_out = muxed.add_stream_from_template(audio_in)
        else:
            sound, audio_out = None, muxed.add_stream("aac", rate=16000, layout="mono")
        for packet in picture.demux(video_in):
            if packet.dts is not None:
                packet.stream = video_out
                muxed.mux(packet)
        if sound is not None:
            for packet in sound.demux(audio_in):
                if packet.dts is not None:
                    packet.stream = audio_out
                    muxed.mux(packet)
            sound.close()
        else:
            samples = np.zeros((1, int(silent_seconds * 16000)), dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = 16000
            for packet in audio_out.encode(frame):
                muxed.mux(packet)
            for packet in audio_out.encode(None):
                muxed.mux(packet)
    return out
