"""Speech spans of a file's audio (pipeline/audio.py): no track, a silent track, real speech, a damaged file."""
from __future__ import annotations

import pytest

from pipeline.audio import SAMPLE_RATE, during_speech, read_audio, speech_spans
from pipeline.sample import write_sample_clip
from tests.conftest import shared_data, with_audio


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    return write_sample_clip(tmp_path_factory.mktemp("audio") / "picture.mp4", seconds=4.0, fps=15, width=320,
                             height=240)


def test_a_video_without_an_audio_track_has_no_spans(picture):
    assert read_audio(picture) is None and speech_spans(picture) is None


def test_a_silent_track_has_no_speech(picture, tmp_path):
    silent = with_audio(picture, tmp_path / "silent.mp4", silent_seconds=4.0)
    audio = read_audio(silent)
    assert audio is not None and abs(audio.size / SAMPLE_RATE - 4.0) < 0.2 and float(abs(audio).max()) < 1e-3
    assert speech_spans(silent) == []


def test_speech_is_found_where_someone_speaks(picture, tmp_path):
    clip = shared_data("dfdc_videos", "lynaeydofd.mp4")  # a real DFDC clip: a person talking for most of 10 s
    spans = speech_spans(clip)
    assert spans and all(0 <= start < end <= 10.5 for start, end in spans)
    assert sum(end - start for start, end in spans) > 5.0
    muxed = with_audio(picture, tmp_path / "speech.mp4", audio_source=clip)
    flat = [t for span in spans for t in span]
    assert [t for span in speech_spans(muxed) for t in span] == pytest.approx(flat, abs=0.05)  # same sound, new file
    first = speech_spans(clip, max_seconds=3.0)
    assert first and all(end <= 3.05 for _, end in first)


def test_an_unreadable_file_is_treated_as_without_audio(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    assert read_audio(broken) is None and speech_spans(broken) is None


def test_during_speech_pads_the_spans():
    spans = [(1.0, 2.0), (5.0, 6.0)]
    assert during_speech([0.5, 0.85, 1.5, 2.15, 3.0, 6.1], spans, pad=0.2) == [False, True, True, True, False, True]
    assert during_speech([1.0, 2.0], []) == [False, False]


def test_a_failing_voice_detector_leaves_the_sound_out(picture, tmp_path, monkeypatch):
    silent = with_audio(picture, tmp_path / "silent.mp4", silent_seconds=4.0)

    def broken(*args, **kwargs):
        raise RuntimeError("detector broke")

    monkeypatch.setattr("silero_vad.get_speech_timestamps", broken)
    assert speech_spans(silent) is None
