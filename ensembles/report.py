"""A PNG per classified file: the verdict in words, the p_fake timeline of each person, each net's score and the
faces, marking the person who decided."""
from __future__ import annotations

import hashlib
import os
import re
import textwrap
from pathlib import Path

import cv2
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from ensembles.explain import (EXCLUDED_WORDS, LOW_CONFIDENCE_WORDS, MEMBER_WORDS, band_range, duration_words,
                               raising_member, short_track_name)
from ensembles.verdict import FAKE, REAL, TrackScore, VideoVerdict

MAX_THUMBNAILS = 12


def _safe(part: str) -> str:
    return re.sub(r"[^\w.~-]+", "_", part).strip("_.") or "video"


def report_name(verdict: VideoVerdict) -> str:
    return f"{_safe(verdict.video_id)}.png"


class ReportNames:
    """Report names for one run, unique and deterministic: no input's report overwrites another's.

    An input found in a folder is named by its path relative to that folder (`clips/a/x.mp4` given as
    `clips` -> `a/x.png`, a subfolder of the report directory); a file named on the command line by its
    own name. When that name is already another input's (`a/clip.mp4` and `b/clip.mp4` both named, or
    `clip.mp4` beside `clip.avi`), `~` and a short hash of the file's absolute path are added, as
    `extract` does for video ids. The same file met twice keeps its one name.
    """

    def __init__(self):
        self._by_source: dict[str, Path] = {}
        self._taken: set[str] = set()

    def name_for(self, root: Path, file: Path) -> Path:
        """The report's path relative to the report directory, for `file` found under `root`."""
        source = os.path.abspath(file)
        if source in self._by_source:
            return self._by_source[source]
        try:
            parts = Path(file).relative_to(root).with_suffix("").parts
        except ValueError:
            parts = (Path(file).stem,)
        parts = tuple(_safe(part) for part in parts) or ("video",)
        name = Path(*parts[:-1], f"{parts[-1]}.png")
        digest = hashlib.sha1(source.encode()).hexdigest()
        width = 8
        while name.as_posix().lower() in self._taken:  # lower case: reports may land on a case-blind disk
            name = Path(*parts[:-1], f"{parts[-1]}~{digest[:width]}.png")
            width += 4
        self._taken.add(name.as_posix().lower())
        self._by_source[source] = name
        return name


def write_report(verdict: VideoVerdict, thumbnails: list[np.ndarray], out_dir: Path,
                 name: str | Path | None = None) -> Path:
    """Draw the report of one verdict into `out_dir` (as `name`, default from its video id); return the PNG's path."""
    path = out_dir / (name or report_name(verdict))
    path.parent.mkdir(parents=True, exist_ok=True)
    report_figure(verdict, thumbnails).savefig(path)
    return path


# -- the figure --------------------------------------------------------------------------------------
WIDTH, HEIGHT = 12.0, 7.0  # inches, at 100 dpi
VERDICT_COLOURS = {FAKE: "firebrick", REAL: "seagreen"}
# Twelve colours apart from each other and from the verdict colours and the excluded persons' grey: as many
# persons as the faces row can show (MAX_THUMBNAILS) never share one.
PERSON_COLOURS = ("tab:blue", "tab:orange", "tab:purple", "tab:cyan", "tab:olive", "tab:pink", "tab:brown", "navy",
                  "gold", "magenta", "lightskyblue", "darkslateblue")
EXCLUDED_MARKERS = ("s", "D", "^", "v", "P", "X", "<", ">", "p", "h", "*", "d")
SIDE_LEGEND_LINES = 11  # more legend lines than fit beside the timeline: the legend gets a row of its own
LEGEND_COLUMNS = 3
LEGEND_ROW_INCHES = 0.2  # one line of the legend in its own row (7.5 pt type)
OTHER_LEGEND_ENTRIES = 4  # besides the persons: the decider's score, low confidence, threshold, borderline band


def report_figure(verdict: VideoVerdict, thumbnails: list[np.ndarray]) -> Figure:
    """The report as a matplotlib Figure: a header in words, then the p_fake timeline of each person (a bar per
    person for an image), each net's score and the faces; for NO_FACE or ERROR the header and one message.
    Axes carry labels ("header", "timeline", "persons", "per-net", "legend", "thumbnail", "message")."""
    header = _header_lines(verdict, words=verdict.p_fake is not None)
    header_height = 0.45 + 0.2 * (len(header) - 1)  # inches
    styles = _track_styles(verdict) if verdict.p_fake is not None else {}
    # a legend too long for its place beside the timeline gets a row of its own, in columns of one line per
    # entry, and the figure grows by that row
    legend_lines = sum(style["label"].count("\n") + 1 for style in styles.values()) + OTHER_LEGEND_ENTRIES
    legend_row = 0.0 if legend_lines <= SIDE_LEGEND_LINES else \
        LEGEND_ROW_INCHES * -(-(len(styles) + OTHER_LEGEND_ENTRIES) // LEGEND_COLUMNS) + 0.45  # + the x label
    height = HEIGHT + legend_row
    figure = Figure(figsize=(WIDTH, height), dpi=100)
    top = 1 - header_height / height
    _draw_header(figure.add_axes((0.01, top, 0.98, 1 - top), label="header"), header)
    if verdict.p_fake is None:
        _draw_message(figure.add_axes((0.15, 0.12, 0.7, top - 0.2), label="message"), verdict)
        return figure
    grid_top, grid_bottom, hspace = top - 0.045 * HEIGHT / height, 0.035 * HEIGHT / height, 0.32
    ratios = (3.3, 1.35)
    if legend_row:  # the ratio that gives the legend's row `legend_row` inches (matplotlib's GridSpec geometry)
        spread = (grid_top - grid_bottom) * height * 3 / (3 + 2 * hspace)
        ratios = (3.3, legend_row * sum(ratios) / (spread - legend_row), 1.35)
    rows = figure.add_gridspec(len(ratios), 1, left=0.075, right=0.985, top=grid_top, bottom=grid_bottom,
                               height_ratios=ratios, hspace=hspace)
    main = rows[0].subgridspec(1, 2, width_ratios=(2.15, 1), wspace=0.22)
    if verdict.media_type == "image":
        handles = _draw_persons(figure.add_subplot(main[0], label="persons"), verdict, styles)
    else:
        handles = _draw_timeline(figure.add_subplot(main[0], label="timeline"), verdict, styles)
    if legend_row:  # the per-net scores alone beside the timeline, the legend below both
        _draw_per_net(figure.add_subplot(main[1], label="per-net"), verdict)
        legend = figure.add_subplot(rows[1], label="legend")
        legend.axis("off")
        legend.legend([h for h, _ in handles], [" ".join(label.split()) for _, label in handles], loc="lower left",
                      ncol=LEGEND_COLUMNS, fontsize=7.5, frameon=False, borderaxespad=0, handlelength=2.5,
                      columnspacing=1.5)
    else:
        side = main[1].subgridspec(2, 1, height_ratios=(len(verdict.per_model) + 1.6, 5.5), hspace=0.3)
        _draw_per_net(figure.add_subplot(side[0], label="per-net"), verdict)
        legend = figure.add_subplot(side[1], label="legend")
        legend.axis("off")
        legend.legend(*zip(*handles), loc="upper left", fontsize=8, frameon=False, borderaxespad=0, handlelength=2.5)
    _draw_thumbnails(figure, rows[-1], verdict, thumbnails, styles)
    return figure


def _header_lines(verdict: VideoVerdict, words: bool) -> list[tuple[str, dict]]:
    """The header, line by line with its text style: verdict and band, file and length, then (with `words`)
    the explanation and the evidence, then the warnings."""
    file_name = verdict.file_name or Path(verdict.path).name
    if len(file_name) > 56:  # the title stays on its line
        file_name = f"{file_name[:32]}…{file_name[-23:]}"
    length = "image" if verdict.media_type == "image" else duration_words(verdict.duration)
    title = ", ".join(w for w in (verdict.verdict, verdict.band) if w) + f"    {file_name}"
    title += f"  ({length})" if length else ""
    lines = [(title, dict(fontsize=min(16, 16 * 90 / len(title)), weight="bold", color=VERDICT_COLOURS.get(verdict.verdict, "black")))]
    for line in textwrap.wrap(verdict.explanation or verdict.message, 145) if words else []:
        lines.append((line, dict(fontsize=10)))
    if verdict.evidence and words:
        lines.append((verdict.evidence, dict(fontsize=10, color="dimgrey")))
    for warning in verdict.warnings:
        for k, line in enumerate(textwrap.wrap(f"warning: {warning}", 125)):
            lines.append((line if k == 0 else "    " + line, dict(fontsize=10, color="darkorange", weight="bold")))
    return lines


def _draw_header(axis, lines: list[tuple[str, dict]]) -> None:
    axis.axis("off")
    height = axis.get_position().height * axis.figure.get_figheight()  # inches
    y = 1 - 0.3 / height
    for k, (text, style) in enumerate(lines):
        axis.text(0, y, text, transform=axis.transAxes, va="baseline", **style)
        y -= (0.27 if k == 0 else 0.2) / height


def _draw_message(axis, verdict: VideoVerdict) -> None:
    """NO_FACE or ERROR: one message where the timeline would be."""
    axis.axis("off")
    words = verdict.explanation or verdict.message or "no face found"
    text = "\n".join(textwrap.wrap(words, 70))
    if verdict.evidence:
        text += "\n\n" + "\n".join(textwrap.wrap(verdict.evidence, 70))
    axis.text(0.5, 0.5, text, ha="center", va="center", fontsize=14, transform=axis.transAxes, linespacing=1.5,
              bbox=dict(boxstyle="round,pad=1.2", facecolor="whitesmoke", edgecolor="silver"))


def _track_styles(verdict: VideoVerdict) -> dict[int, dict]:
    """Per track: colour, marker, line and legend text; the deciding person bold, excluded ones grey."""
    styles, colours, markers = {}, iter(PERSON_COLOURS * 10), iter(EXCLUDED_MARKERS * 10)
    for track in sorted(verdict.tracks, key=_person_order):
        deciding = track.track == verdict.deciding_track
        if track.excluded and not deciding:
            style = dict(color="grey", marker=next(markers), linestyle=":", linewidth=1, markersize=5)
        else:
            style = dict(color=next(colours), marker="o", linestyle="-", linewidth=3 if deciding else 1.3,
                         markersize=6 if deciding else 4.5)
        styles[track.track] = dict(style, deciding=deciding, grey=style["color"] == "grey",
                                   label=_track_label(track, verdict))
    return styles


def _person_order(track: TrackScore) -> tuple:
    """'person 2' before 'person 10'; unnamed tracks by number."""
    number = re.search(r"\d+$", track.label or "")
    return (int(number.group()) if number else 10**6, track.track)


def _track_label(track: TrackScore, verdict: VideoVerdict) -> str:
    """'person 1, 62% of frames: 0.91, decided', or the reason it was not counted."""
    name = short_track_name(track, verdict.media_type)
    member = raising_member(track)
    score = f"{track.p_fake:.2f}{f' ({MEMBER_WORDS[member][1]})' if member else ''}"
    if track.track == verdict.deciding_track:
        part = "decided"
    elif track.excluded:
        part = f"not counted: {EXCLUDED_WORDS.get(track.excluded, track.excluded)}"
    else:
        part = "counted"
    return textwrap.fill(f"{name}: {score}, {part}", 44, subsequent_indent="  ")


def _threshold_and_band(axis, verdict: VideoVerdict, vertical: bool) -> list[tuple]:
    """The threshold line and the shaded borderline band; their legend handles."""
    low, high = band_range("borderline", verdict.threshold)
    line = (axis.axvline if vertical else axis.axhline)(verdict.threshold, color="black", linestyle="--", linewidth=1,
                                                         zorder=1.5)
    band = (axis.axvspan if vertical else axis.axhspan)(low, high, color="gold", alpha=0.18, linewidth=0, zorder=0)
    return [(line, f"threshold {verdict.threshold:.2f}: FAKE at or above"),
            (band, f"borderline band ({low:.2f} to {high:.2f})")]


def _draw_timeline(axis, verdict: VideoVerdict, styles: dict[int, dict]) -> list[tuple]:
    """Per person, p_fake in each sampled frame over time; low-confidence detections hollow."""
    handles = []
    for track in sorted(verdict.tracks, key=_person_order):
        style = dict(styles[track.track])
        faces = sorted((f for f in verdict.faces if f.track == track.track), key=lambda f: f.timestamp)
        deciding, label, _ = style.pop("deciding"), style.pop("label"), style.pop("grey")
        line, = axis.plot([f.timestamp for f in faces], [f.p_fake for f in faces], zorder=3 if deciding else 2,
                          **style)
        doubtful = [f for f in faces if f.low_confidence]
        if doubtful:
            axis.plot([f.timestamp for f in doubtful], [f.p_fake for f in doubtful], linestyle="none",
                      marker=style["marker"], markersize=style["markersize"] + 1, markerfacecolor="white",
                      markeredgecolor=style["color"], markeredgewidth=1.3, zorder=4)
        handles.append((line, label))
        if deciding and faces:  # the person's score of the clip, which the verdict compares with the threshold
            score, = axis.plot([faces[0].timestamp, faces[-1].timestamp], [track.p_fake] * 2, color=style["color"],
                               linestyle="-.", linewidth=1.5, zorder=1.8)
            handles.append((score, textwrap.fill(f"{track.label or 'the deciding person'}'s score of the clip: "
                                                 f"{track.p_fake:.2f}", 44, subsequent_indent="  ")))
    if any(f.low_confidence for f in verdict.faces):
        hollow = Line2D([], [], linestyle="none", marker="o", markerfacecolor="white", markeredgecolor="black")
        handles.append((hollow, LOW_CONFIDENCE_WORDS))
    handles += _threshold_and_band(axis, verdict, vertical=False)
    axis.text(0.995, verdict.threshold, f"threshold {verdict.threshold:.2f}", transform=axis.get_yaxis_transform(),
              ha="right", va="bottom", fontsize=8, bbox=dict(facecolor="white", alpha=0.7, linewidth=0, pad=1))
    end = max([verdict.duration or 0.0] + [f.timestamp for f in verdict.faces])
    axis.set_xlim(0, end * 1.01 if end > 0 else 1.0)
    axis.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g} s"))
    axis.set_xlabel("time in the clip")
    axis.set_ylim(-0.02, 1.02)
    axis.set_ylabel("p_fake per face (ensemble)")
    axis.set_title("p_fake of each person, frame by frame", fontsize=10, loc="left")
    axis.grid(alpha=0.3)
    return handles


def _draw_persons(axis, verdict: VideoVerdict, styles: dict[int, dict]) -> list[tuple]:
    """An image has no time: one bar per person."""
    tracks = sorted(verdict.tracks, key=_person_order)
    names = [t.label or f"track {t.track}" for t in tracks]
    bars = axis.barh(range(len(tracks)), [t.p_fake for t in tracks], height=0.5,
                     color=[styles[t.track]["color"] for t in tracks],
                     edgecolor=["black" if styles[t.track]["deciding"] else "none" for t in tracks], linewidth=2)
    for k, track in enumerate(tracks):
        axis.text(track.p_fake + 0.01, k, f"{track.p_fake:.2f}", va="center", fontsize=9)
    handles = [(bar, styles[t.track]["label"]) for bar, t in zip(bars, tracks)]
    handles += _threshold_and_band(axis, verdict, vertical=True)
    axis.text(verdict.threshold + 0.005, 0.99, f"threshold {verdict.threshold:.2f}", va="top", fontsize=8,
              transform=axis.get_xaxis_transform())
    axis.set_yticks(range(len(tracks)), names)
    axis.set_ylim(max(len(tracks), 3) - 0.5, -0.5)  # a lone person's bar stays a bar, not a block
    axis.set_xlim(0, 1)
    axis.set_xlabel("p_fake (ensemble)")
    axis.set_title("p_fake of each person in the image", fontsize=10, loc="left")
    axis.grid(axis="x", alpha=0.3)
    return handles


def _draw_per_net(axis, verdict: VideoVerdict) -> None:
    """Each member's score of the clip beside the ensemble's; a member that abstained says so."""
    names = ["ensemble", *verdict.per_model]
    scores = [verdict.p_fake, *verdict.per_model.values()]
    for k, score in enumerate(scores):
        if score is None:
            axis.text(0.02, k, "abstained", va="center", fontsize=9, color="dimgrey", style="italic")
            continue
        colour = VERDICT_COLOURS[FAKE if score >= verdict.threshold else REAL]
        axis.barh(k, score, height=0.6, color=colour, alpha=1.0 if k == 0 else 0.55, zorder=2)
        axis.text(score + 0.015, k, f"{score:.2f}", va="center", fontsize=9, weight="bold" if k == 0 else "normal",
                  bbox=dict(facecolor="white", alpha=0.7, linewidth=0, pad=0.5), zorder=3)
    _threshold_and_band(axis, verdict, vertical=True)
    axis.set_yticks(range(len(names)), names, fontsize=9)
    axis.get_yticklabels()[0].set_fontweight("bold")
    axis.set_ylim(len(names) - 0.4, -0.6)
    axis.set_xlim(0, 1.1)
    axis.set_xticks([0, 0.5, 1])
    axis.tick_params(labelsize=8)
    axis.set_title("the ensemble's score and each member's", fontsize=10, loc="left")


def _shown_faces(verdict: VideoVerdict, available: int) -> list[int]:
    """The faces to show, at most MAX_THUMBNAILS: every person at least once, the deciding one most, each
    person's spread over time; the deciding person first, then the others in order."""
    tracks = sorted(verdict.tracks, key=lambda t: (t.track != verdict.deciding_track, _person_order(t)))
    faces = {t.track: [k for k, f in enumerate(verdict.faces[:available]) if f.track == t.track] for t in tracks}
    tracks = [t for t in tracks if faces[t.track]][:MAX_THUMBNAILS]
    counts = {t.track: 1 for t in tracks}
    # the deciding person takes up to half the row, then every person in turn one more, while faces are left
    turns = [tracks[0]] * (MAX_THUMBNAILS // 2 - 1) if tracks and tracks[0].track == verdict.deciding_track else []
    for track in turns + tracks * MAX_THUMBNAILS:
        if sum(counts.values()) >= MAX_THUMBNAILS:
            break
        counts[track.track] = min(counts[track.track] + 1, len(faces[track.track]))
    shown = []
    for track in tracks:
        indices = faces[track.track]
        picks = np.linspace(0, len(indices) - 1, counts[track.track]).round().astype(int)
        shown += [indices[p] for p in picks]
    return shown


def _draw_thumbnails(figure: Figure, cell, verdict: VideoVerdict, thumbnails: list[np.ndarray],
                     styles: dict[int, dict]) -> None:
    """The faces, framed in their person's colour (thick for the deciding person), captioned with who, when
    and the score."""
    grid = cell.subgridspec(1, MAX_THUMBNAILS, wspace=0.12)
    for slot, index in enumerate(_shown_faces(verdict, len(thumbnails))):
        face, style = verdict.faces[index], styles[verdict.faces[index].track]
        axis = figure.add_subplot(grid[0, slot], label="thumbnail")
        axis.imshow(cv2.cvtColor(thumbnails[index], cv2.COLOR_BGR2RGB))
        axis.set_xticks([])
        axis.set_yticks([])
        for spine in axis.spines.values():
            spine.set_edgecolor(style["color"])
            spine.set_linewidth(4 if style["deciding"] else 1.5)
            spine.set_linestyle("--" if style["grey"] else "-")
        person = next(t.label or f"track {t.track}" for t in verdict.tracks if t.track == face.track)
        when = "" if verdict.media_type == "image" else f"{face.timestamp:.1f} s: "
        axis.set_title(f"{person}\n{when}{face.p_fake:.2f}", fontsize=8, pad=3,
                       weight="bold" if style["deciding"] else "normal")
        if face.low_confidence:
            axis.set_xlabel("low confidence", fontsize=7, style="italic", labelpad=2)
