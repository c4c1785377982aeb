"""The two video decoders give the same frames (indices, timestamps and pixels)."""
import cv2
import numpy as np
import pytest

from pipeline.errors import MediaError, MediaTooLarge
from pipeline.media import MediaReader, image_header_size
from pipeline.sampling import SamplingConfig
from tests.conftest import sample_frames, set_mp4_rotation, shared_data, write_gap_mkv, write_png_bomb, write_video


def frames_of(path, decoder, sampling):
    with MediaReader(path, decoder=decoder) as reader:
        assert reader.decoder == decoder
        return [(f.index, f.timestamp, f.image) for f in reader.frames(sampling)]


def assert_same(path, sampling=SamplingConfig(every=10)):
    pyav, opencv = frames_of(path, "pyav", sampling), frames_of(path, "opencv", sampling)
    assert [(i, t) for i, t, _ in pyav] == [(i, t) for i, t, _ in opencv]
    assert all(np.array_equal(a, b) for (_, _, a), (_, _, b) in zip(pyav, opencv))
    return pyav


def test_same_frames_every_nth_and_k_evenly_spaced(face_clip):
    assert [i for i, _, _ in assert_same(face_clip)] == [0, 10, 20]
    assert [i for i, _, _ in assert_same(face_clip, SamplingConfig(every=None, frames=4))] == [0, 10, 19, 29]


def test_same_frames_on_a_rotated_phone_clip(tmp_path):
    clip = write_video(tmp_path / "phone.mp4", [np.ascontiguousarray(np.rot90(f, 1)) for f in sample_frames(12, 640, 360)])
    set_mp4_rotation(clip, 90)
    frames = assert_same(clip, SamplingConfig(every=5))
    assert frames[0][2].shape == (360, 640, 3)


def test_same_frames_on_dfdc_h264_clips():
    for clip in sorted(shared_data("dfdc_videos").glob("*.mp4"))[:2]:
        assert len(assert_same(clip)) == 30


@pytest.mark.parametrize("decoder", ["pyav", "opencv"])
def test_text_file_is_refused_by_both(decoder, tmp_path):
    path = tmp_path / "x.mp4"
    path.write_text("no video here\n" * 20)
    with pytest.raises(MediaError, match="not a readable video"):
        MediaReader(path, decoder=decoder)


@pytest.mark.parametrize("kind, words", [("pdf", "a PDF document"), ("svg", "an SVG drawing .vector graphics.")])
def test_a_document_named_like_a_photo_is_called_what_it_is(tmp_path, kind, words):
    """A PDF or SVG renamed .jpg was told "the video has no decodable picture stream"."""
    from matplotlib.figure import Figure

    figure = Figure()
    figure.add_subplot().plot([0, 1], [1, 0])
    drawing = tmp_path / f"drawing.{kind}"
    figure.savefig(drawing)
    photo = drawing.rename(tmp_path / "photo.jpg")
    with pytest.raises(MediaError, match=f"photo.jpg: not a video or image: the content is {words}, whatever its name"):
        MediaReader(photo)


def test_sparse_sampling_of_an_intact_video_is_not_called_truncated(face_clip):
    """--frames 1 stops decoding after the middle frame on purpose: that is no sign of damage."""
    with MediaReader(face_clip) as reader:
        assert len(list(reader.frames(SamplingConfig(every=None, frames=1)))) == 1
        assert reader.frames_decoded < reader.info.frame_count  # decoding did stop early
        assert reader.truncation_note() == ""


def test_a_cut_video_is_called_truncated(face_clip, tmp_path):
    """The control: a video cut short (index at the front, so it still opens) is reported as such."""
    import av

    faststart = tmp_path / "faststart.mp4"
    with av.open(str(face_clip)) as source, av.open(str(faststart), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(faststart.read_bytes()[: faststart.stat().st_size // 2])
    with MediaReader(cut) as reader:
        list(reader.frames(SamplingConfig(every=10)))
        assert "decoded 0.9 s of the 2.0 s the file announces (truncated or damaged" in reader.truncation_note()


def test_an_image_that_decodes_huge_is_refused_from_its_header(tmp_path):
    bomb = write_png_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 2 * 2**20 and image_header_size(bomb) == (20000, 20000)
    with pytest.raises(MediaTooLarge, match="20000x20000 pixels .400 megapixels. is over the limit of 64 megapixels"):
        MediaReader(bomb)
    with MediaReader(bomb, max_pixels=None) as reader:  # the limit is what refuses it: the file itself is valid
        assert (reader.info.width, reader.info.height) == (20000, 20000)


@pytest.mark.parametrize("decoder", ["pyav", "opencv"])
def test_a_video_over_the_pixel_limit_is_refused_before_decoding(face_clip, decoder):
    with MediaReader(face_clip, decoder=decoder) as reader:
        width, height = reader.info.width, reader.info.height
    with pytest.raises(MediaTooLarge, match=f"frames are of {width}x{height} pixels"):
        MediaReader(face_clip, decoder=decoder, max_pixels=width * height - 1)


@pytest.mark.parametrize("decoder", ["pyav", "opencv"])
def test_variable_frame_rate_gets_true_times_and_a_length(tmp_path, decoder):
    clip = write_gap_mkv(tmp_path / "gap.mkv")
    with MediaReader(clip, decoder=decoder) as reader:
        assert reader.info.duration == pytest.approx(8.2, abs=0.05)  # Matroska states no frame count, but a length
        frames = list(reader.frames(SamplingConfig(every=1)))
        assert reader.truncation_note() == ""  # intact, though fewer frames than 8.2 s at 25 fps would hold
    times = [frame.timestamp for frame in frames]
    assert times[:2] == [0.0, 0.04] and times[39] == pytest.approx(1.56)
    assert times[40] == pytest.approx(6.6)  # after the gap: not 1.6 s (frame number / nominal rate)
    assert times == sorted(times) and len(times) == 80


@pytest.mark.parametrize("decoder", ["pyav", "opencv"])
def test_a_cut_matroska_file_is_called_truncated(tmp_path, decoder):
    """No frame count to compare with: the decoded time falls short of the length the header states."""
    whole = write_gap_mkv(tmp_path / "whole.mkv", gap_seconds=0.0)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with MediaReader(cut, decoder=decoder) as reader:
        list(reader.frames(SamplingConfig(every=10)))
        note = reader.truncation_note()
    assert "truncated or damaged" in note and ("3.2 s the file announces" in note or "announced frames" in note)


@pytest.mark.parametrize("kind", [".jpg", ".png"])
def test_an_image_cut_short_is_called_damaged(astronaut, tmp_path, kind):
    whole = tmp_path / f"whole{kind}"
    cv2.imwrite(str(whole), astronaut)
    cut = tmp_path / f"cut{kind}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with MediaReader(whole) as reader:
        assert reader.truncation_note() == ""
    if kind == ".png":  # libpng refuses a cut file (an error, which it was always)
        with pytest.raises(MediaError, match="PNG file ends before its IEND chunk: cut short or damaged"):
            MediaReader(cut)
        return
    with MediaReader(cut) as reader:  # libjpeg fills the missing half with grey and warns only on stderr
        assert reader.info.media_type == "image" and "JPEG file ends before its end-of-image marker: cut short" \
            in reader.truncation_note()
