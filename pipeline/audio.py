"""When someone is speaking in a file's audio track: speech spans from Silero VAD.

The mouth-motion member (ensembles/motion.py) argues FAKE when a face's mouth barely moves; that is evidence of a
one-photo animation only while someone is speaking. A person listening, a streamer between sentences or a clip
without sound moves the mouth as little, so the member judges only the faces sampled during speech.

Audio is decoded with PyAV and resampled to 16 kHz mono; speech is found by Silero VAD (`silero-vad`, whose model
file ships inside the wheel: nothing is downloaded).
"""
from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000  # Silero VAD's rate
SPEECH_PAD = 0.2  # seconds a sampled frame may lie outside a speech span and still count as during speech

_model = None
_model_lock = threading.Lock()  # the VAD model carries state between chunks: one file at a time


def _vad_model():
    global _model
    if _model is None:
        from silero_vad import load_silero_vad

        with warnings.catch_warnings():  # torch.jit's and importlib's deprecation notices, not ours to act on
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            _model = load_silero_vad()
    return _model


def read_audio(path: str | Path, max_seconds: float | None = None) -> np.ndarray | None:
    """The first audio track of `path` as 16 kHz mono float32 (at most `max_seconds`); None when the file has no
    audio track or it cannot be decoded (a damaged track is treated as none, not as an error of the file)."""
    import av

    try:
        with av.open(str(path)) as container:
            streams = [s for s in container.streams if s.type == "audio"]
            if not streams:
                return None
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            chunks, total = [], 0
            limit = None if max_seconds is None else int(max_seconds * SAMPLE_RATE)
            for frame in container.decode(streams[0]):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
                    total += chunks[-1].size
                if limit is not None and total >= limit:
                    break
            else:
                chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    except (av.FFmpegError, OSError, ValueError) as exc:
        log.debug("no usable audio in %s: %s", path, exc)
        return None
    audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    return audio[:limit] if limit is not None else audio


def speech_spans(path: str | Path, max_seconds: float | None = None) -> list[tuple[float, float]] | None:
    """(start, end) seconds of each stretch of speech in `path`'s audio; [] for a silent track, None without one
    (or when the voice detector fails on it: the sound is then left out of the verdict, which goes on)."""
    audio = read_audio(path, max_seconds)
    if audio is None:
        return None
    if audio.size < SAMPLE_RATE // 10:
        return []
    import torch
    from silero_vad import get_speech_timestamps

    try:
        with _model_lock:
            found = get_speech_timestamps(torch.from_numpy(audio), _vad_model(), sampling_rate=SAMPLE_RATE,
                                          return_seconds=True)
    except (RuntimeError, ValueError) as exc:
        log.warning("%s: speech detection failed (%s); its sound is not used", path, exc)
        return None
    return [(float(s["start"]), float(s["end"])) for s in found]


def during_speech(timestamps: list[float], spans: list[tuple[float, float]], pad: float = SPEECH_PAD) -> list[bool]:
    """For each timestamp (seconds), whether it lies within `pad` seconds of a speech span."""
    return [any(start - pad <= t <= end + pad for start, end in spans) for t in timestamps]
