"""The report PNG answers what a person asks (issue 13): which face decided, how sure the verdict is, what each
member says, what the timeline's marks mean; NO_FACE and still images are shown for what they are.

Verdicts come from the shipped ensemble on real clips; a few are then changed with `dataclasses.replace` (a
second person, a low-confidence detection) to reach cases a small clip does not hold."""
from __future__ import annotations

import re
from dataclasses import replace

import cv2
import pytest
from click.testing import CliRunner
from matplotlib.text import Text

from cli import main
from ensembles.ensemble import Ensemble
from ensembles.explain import EXCLUDED_WORDS, confidence_band
from ensembles.explain import LOW_CONFIDENCE_WORDS, band_range
from ensembles.report import report_figure
from tests.conftest import shared_data


@pytest.fixture(scope="module")
def shipped() -> Ensemble:
    return Ensemble.load(device="cpu")


@pytest.fixture(scope="module")
def face_verdict(shipped, face_clip):
    """The shipped ensemble's verdict on the 2 s astronaut clip (3 faces: low evidence) and its thumbnails."""
    return shipped.classify(face_clip, keep_thumbnails=True)


def axes(figure, label: str) -> list:
    return [axis for axis in figure.axes if axis.get_label() == label]


def texts(artist) -> list[str]:
    return [t.get_text() for t in artist.findobj(Text) if t.get_text()]


def header(figure) -> str:
    return "\n".join(texts(axes(figure, "header")[0]))


def legend_texts(figure) -> list[str]:
    [legend_axis] = axes(figure, "legend")
    return [" ".join(t.get_text().split()) for t in legend_axis.get_legend().get_texts()]


def test_classify_video_writes_a_readable_report(face_clip, faceless_clip, tmp_path):
    result = CliRunner().invoke(main, ["classify-video", str(face_clip), str(faceless_clip), "--report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for name in ("astronaut.png", "landscape.png"):
        image = cv2.imread(str(tmp_path / name))
        assert image is not None and image.shape[:2] == (700, 1200)


def test_a_video_report_says_who_decided_how_sure_and_what_each_member_says(face_verdict):
    verdict, thumbnails = face_verdict
    figure = report_figure(verdict, thumbnails)
    figure.draw_without_rendering()  # tick labels are made at drawing time
    title = header(figure).splitlines()[0]
    assert verdict.verdict in title and verdict.band in title and "astronaut.mp4" in title and "2.0 s" in title
    assert verdict.explanation[:60] in header(figure) and verdict.evidence in header(figure)
    assert "warning: low evidence" in header(figure)  # 3 faces: the warning is in the figure, not only the CLI
    legend = legend_texts(figure)
    assert any(line.startswith("person 1, 100% of frames:") and line.endswith("decided") for line in legend)
    assert any(line.startswith(f"threshold {verdict.threshold:.2f}") for line in legend)
    assert LOW_CONFIDENCE_WORDS not in legend  # no detection here is doubtful, so nothing to explain
    [timeline] = axes(figure, "timeline")
    ticks = [t.get_text() for t in timeline.get_xticklabels() if t.get_text()]
    assert ticks and all(t.endswith(" s") for t in ticks) and "0 s" in ticks
    assert f"threshold {verdict.threshold:.2f}" in texts(timeline)  # the line is labelled where it is drawn
    [per_net] = axes(figure, "per-net")
    assert [t.get_text() for t in per_net.get_yticklabels()] == ["ensemble", *verdict.per_model]
    assert verdict.per_model["mouth motion"] is None and "abstained" in texts(per_net)  # too short to judge
    shown = axes(figure, "thumbnail")
    assert len(shown) == verdict.n_faces == 3
    assert all(axis.get_title().startswith("person 1\n") and " s: " in axis.get_title() for axis in shown)
    assert all(axis.spines["top"].get_linewidth() == 4 for axis in shown)  # the deciding person's thick frame


def test_low_confidence_detections_are_drawn_hollow_and_explained(face_verdict):
    verdict, thumbnails = face_verdict
    doubtful = replace(verdict, faces=[replace(verdict.faces[1], low_confidence=True), *verdict.faces[:1],
                                       *verdict.faces[2:]])
    figure = report_figure(doubtful, [thumbnails[1], thumbnails[0], *thumbnails[2:]])
    assert LOW_CONFIDENCE_WORDS in legend_texts(figure)
    [timeline] = axes(figure, "timeline")
    hollow = [line for line in timeline.lines if line.get_markerfacecolor() in ("white", (1.0, 1.0, 1.0, 1.0))]
    assert [list(line.get_xdata()) for line in hollow] == [[verdict.faces[1].timestamp]]
    labels = {axis.get_title().split("\n")[1]: axis.get_xlabel() for axis in axes(figure, "thumbnail")}
    assert labels[f"{verdict.faces[1].timestamp:.1f} s: {verdict.faces[1].p_fake:.2f}"] == "low confidence"
    assert sum(label == "low confidence" for label in labels.values()) == 1


def test_an_excluded_person_is_greyed_with_the_reason_and_still_shown(face_verdict):
    """A second person (the same faces, excluded as static) beside the deciding one."""
    verdict, thumbnails = face_verdict
    [person] = verdict.tracks
    photo = replace(person, track=7, label="person 2", counted=False, excluded="static", p_fake=0.93)
    faces = verdict.faces + [replace(face, track=7, p_fake=0.93) for face in verdict.faces]
    figure = report_figure(replace(verdict, tracks=[person, photo], faces=faces), thumbnails * 2)
    legend = legend_texts(figure)
    assert any(line.startswith("person 2") and line.endswith(f"not counted: {EXCLUDED_WORDS['static']}")
               for line in legend)
    [timeline] = axes(figure, "timeline")
    grey = [line for line in timeline.lines if line.get_color() == "grey"]
    assert [list(line.get_ydata()) for line in grey] == [[0.93] * 3]
    titles = [axis.get_title().split("\n")[0] for axis in axes(figure, "thumbnail")]
    assert titles[0] == "person 1" and "person 2" in titles  # the deciding person first, every person shown


def test_the_shaded_band_is_the_borderline_band():
    for threshold in (0.2, 0.472, 0.8):
        low, high = band_range("borderline", threshold)
        assert low < threshold < high
        assert confidence_band(low + 1e-6, threshold) == confidence_band(high - 1e-6, threshold) == "borderline"
        assert confidence_band(low - 1e-3, threshold) == "likely real"
        assert confidence_band(high + 1e-3, threshold) == "likely fake"
    assert band_range("very likely fake", 0.5) == (pytest.approx(0.8), 1.0)


def test_no_face_is_one_message_without_empty_axes(shipped, faceless_clip):
    verdict, thumbnails = shipped.classify(faceless_clip, keep_thumbnails=True)
    figure = report_figure(verdict, thumbnails)
    assert {axis.get_label() for axis in figure.axes} == {"header", "message"}
    assert header(figure).startswith("NO_FACE") and "landscape.mp4" in header(figure)
    [message] = axes(figure, "message")
    words = " ".join(" ".join(texts(message)).split())
    assert verdict.explanation in words and verdict.evidence in words
    assert verdict.explanation not in header(figure)  # said once


def test_an_image_has_a_bar_per_person_instead_of_a_time_axis(shipped, astronaut, tmp_path):
    cv2.imwrite(str(tmp_path / "portrait.jpg"), astronaut)
    verdict, thumbnails = shipped.classify(tmp_path / "portrait.jpg", keep_thumbnails=True)
    figure = report_figure(verdict, thumbnails)
    assert not axes(figure, "timeline") and len(axes(figure, "persons")) == 1
    assert "portrait.jpg  (image)" in header(figure).splitlines()[0]
    assert any(line.startswith("person 1: ") and line.endswith("decided") for line in legend_texts(figure))
    [thumbnail] = axes(figure, "thumbnail")
    assert thumbnail.get_title() == f"person 1\n{verdict.faces[0].p_fake:.2f}"  # no time for a photo


def test_the_photo_on_the_wall_is_named_not_counted_and_its_doubtful_faces_explained(shipped):
    """DFDC clip yhffcuhhjy: a verdict decided by the person (its band depends on the shipped models of the
    day: borderline to very likely fake), its band in the title; two static tracks (the photo) left out."""
    verdict, thumbnails = shipped.classify(shared_data("dfdc_videos", "yhffcuhhjy.mp4"), keep_thumbnails=True)
    figure = report_figure(verdict, thumbnails)
    assert verdict.band == confidence_band(verdict.p_fake, verdict.threshold)
    assert header(figure).startswith(f"{verdict.verdict}, {verdict.band}")
    legend = legend_texts(figure)
    assert sum("not counted: never moves" in line for line in legend) == 2
    assert LOW_CONFIDENCE_WORDS in legend
    titles = {axis.get_title().split("\n")[0] for axis in axes(figure, "thumbnail")}
    assert titles == {track.label for track in verdict.tracks}


def assert_legend_holds(figure, persons: int) -> None:
    """Every person's entry in the legend, the legend inside the figure and clear of the plots and the faces,
    and no two persons (counted ones) in one colour."""
    import matplotlib.colors as colours
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    [legend_axis] = axes(figure, "legend")
    legend = legend_axis.get_legend()
    labels = [" ".join(t.get_text().split()) for t in legend.get_texts()]
    entries = [label for label in labels if re.match(r"person \d+(, \d+% of frames)?: ", label)]
    assert len(entries) == persons
    box = legend.get_window_extent(renderer)
    assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= figure.bbox.width and box.y1 <= figure.bbox.height
    for label in ("thumbnail", "timeline", "persons", "per-net"):
        for axis in axes(figure, label):
            assert not box.overlaps(axis.get_tightbbox(renderer)), f"the legend runs into the {label}"
    [timeline] = axes(figure, "timeline") or axes(figure, "persons")
    drawn = {colours.to_hex(line.get_color()) for line in timeline.lines if line.get_color() != "grey"
             and line.get_linestyle() == "-"}
    assert len(drawn) == sum("not counted" not in entry for entry in entries)


def test_a_report_of_a_crowd_keeps_its_legend_clear_of_the_faces(shipped):
    crowd = shared_data("multi_face", "crowd.mp4")
    verdict, thumbnails = shipped.classify(crowd, keep_thumbnails=True)
    assert len(verdict.tracks) >= 8
    assert_legend_holds(report_figure(verdict, thumbnails), len(verdict.tracks))


def test_a_report_of_twelve_persons_gives_each_its_own_colour_and_entry(face_verdict):
    """Twelve counted persons, each a copy of the clip's face at another score."""
    verdict, thumbnails = face_verdict
    [person] = verdict.tracks
    tracks, faces = [], []
    for k in range(12):
        score = round(0.05 + 0.075 * k, 3)
        tracks.append(replace(person, track=k, label=f"person {k + 1}", p_fake=score, counted=True, excluded=None))
        faces += [replace(face, track=k, p_fake=score) for face in verdict.faces]
    many = replace(verdict, tracks=tracks, faces=faces, deciding_track=11, p_fake=tracks[-1].p_fake)
    figure = report_figure(many, thumbnails * 12)
    assert_legend_holds(figure, 12)
    assert len(axes(figure, "thumbnail")) == 12
