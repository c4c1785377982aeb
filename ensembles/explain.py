"""A verdict in words: how sure it is (a band around the threshold), which person decided, on what evidence.

One owner for these words: the CLI's JSON, the report PNG and the web page all show what is written here.
"""
from __future__ import annotations

from dataclasses import replace

from ensembles.verdict import ERROR, FAKE, NO_FACE, TrackScore, VideoVerdict
from pipeline.sampling import SamplingConfig

# Bands by margin: how far p_fake lies from the threshold, as a fraction of the room on that side (the
# threshold maps to 0, p_fake 1 to +1, p_fake 0 to -1). Near the threshold a verdict is a coin toss in words too.
BANDS = ((0.6, "very likely fake"), (0.25, "likely fake"), (-0.25, "borderline"), (-0.6, "likely real"))
LOWEST_BAND = "very likely real"
# the highest band one track member can reach on its own evidence (mouth motion or still background, where the
# nets call the face REAL): a FAKE verdict accuses someone, so "very likely fake" needs the nets to agree
MEMBER_ALONE_BAND = "likely fake"
# each track member in words: (the check's name, a track's line, what it saw); see raising_member
MEMBER_WORDS = {
    "mouth motion": ("mouth-motion", "from its mouth motion", "the mouth barely moves while someone speaks"),
    "still background": ("still-background", "from its still background",
                         "the background barely changes from frame to frame while the face moves, as in a photo "
                         "brought to life"),
}
BAND_WORDS = {
    "very likely fake": "well above",
    "likely fake": "above",
    "borderline": "just {side}",
    "likely real": "below",
    "very likely real": "well below",
}
BORDERLINE_ADVICE = "treat it as undecided and look closer"

# Why a track takes no part in the verdict, in words (ensembles.tracks.rule_tracks gives the short reason).
EXCLUDED_WORDS = {
    "short": "seen in too few sampled frames",
    "static": "never moves or changes expression (a photo or a picture in the frame?)",
    "small": "far smaller than the main faces (in the background)",
}

# A detection scoring in the lowest LOW_CONFIDENCE_SHARE of the range between the detector's threshold and 1
# is shown as low-confidence: it may be a hand, a pattern or a face seen badly.
LOW_CONFIDENCE_SHARE = 2 / 3
LOW_CONFIDENCE_WORDS = "low-confidence detection (may not be a face)"


def margin(p_fake: float, threshold: float) -> float:
    """Where p_fake lies relative to the threshold, in [-1, 1] (0 at the threshold)."""
    if p_fake >= threshold:
        return (p_fake - threshold) / max(1e-9, 1.0 - threshold)
    return (p_fake - threshold) / max(1e-9, threshold)


def confidence_band(p_fake: float | None, threshold: float) -> str | None:
    """The verdict's band in words (None without a score)."""
    if p_fake is None:
        return None
    value = margin(p_fake, threshold)
    return next((name for lower, name in BANDS if value >= lower), LOWEST_BAND)


def band_range(band: str, threshold: float) -> tuple[float, float]:
    """The p_fake range whose confidence band is `band` (the inverse of `margin` at the bands' edges)."""
    lowers = [lower for lower, _ in BANDS] + [-1.0]
    uppers = [1.0] + lowers[:-1]
    k = ([name for _, name in BANDS] + [LOWEST_BAND]).index(band)

    def p_at(value: float) -> float:
        return threshold + value * ((1.0 - threshold) if value >= 0 else threshold)

    return p_at(lowers[k]), p_at(uppers[k])


def low_confidence_floor(detector_threshold: float) -> float:
    """Detector scores below this are low-confidence detections."""
    return detector_threshold + LOW_CONFIDENCE_SHARE * (1.0 - detector_threshold)


def sampling_words(sampling: SamplingConfig) -> str:
    if sampling.every is not None:
        return "every frame" if sampling.every == 1 else f"every {ordinal(sampling.every)} frame"
    return f"{sampling.frames} frames spread over the clip"


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def percent(share: float) -> str:
    return "<1%" if 0 < share < 0.005 else f"{share:.0%}"


def name_tracks(tracks: list[TrackScore], n_frames: int, frames_seen: dict[int, int]) -> list[TrackScore]:
    """The tracks with a person's name ("person 1": the most-seen face first) and their share of the sampled
    frames (`frames_seen`: per track, the sampled frames it has a face in)."""
    order = sorted(tracks, key=lambda t: (-t.n_faces, t.first_frame, t.track))
    names = {t.track: f"person {rank}" for rank, t in enumerate(order, start=1)}
    return [replace(t, label=names[t.track], frame_share=round(frames_seen.get(t.track, 0) / max(1, n_frames), 4))
            for t in tracks]


def raising_member(track: TrackScore) -> str | None:
    """The track member ("mouth motion" or "still background") that gave the track its score, where one did rather
    than the nets (the higher of the two where both exceed the nets); None otherwise."""
    if track.p_nets is None:
        return None
    raised = [(p, name) for p, name in ((track.p_motion, "mouth motion"), (track.p_still, "still background"))
              if p is not None and p > track.p_nets]
    return max(raised)[1] if raised else None


def short_track_name(track: TrackScore, media_type: str = "video") -> str:
    """'person 1, 62% of frames' ('person 1' in an image)."""
    name = track.label or f"track {track.track}"
    if media_type != "image" and track.frame_share is not None:
        name += f", {percent(track.frame_share)} of frames"
    return name


def track_words(track: TrackScore, media_type: str = "video") -> str:
    """'person 1 (62% of sampled frames)', or '(in the image)' for a photo."""
    where = "in the image" if media_type == "image" else f"{percent(track.frame_share or 0.0)} of sampled frames"
    return f"{track.label or f'track {track.track}'} ({where})"


def describe_track(track: TrackScore, deciding: int | None, media_type: str = "video") -> str:
    """One line per track: who, how often, its score, and its part in the verdict."""
    line = f"{track_words(track, media_type)}: p_fake {track.p_fake:.2f}"
    if member := raising_member(track):
        line += f" ({MEMBER_WORDS[member][1]})"
    if track.track == deciding:
        return line + ", decided the verdict"
    if track.excluded:
        return line + f", not counted: {EXCLUDED_WORDS.get(track.excluded, track.excluded)}"
    return line + ", counted"


def duration_words(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds:.1f} s" if seconds < 60 else f"{int(seconds // 60)} min {seconds % 60:04.1f} s"


def evidence_words(verdict: VideoVerdict, sampling: SamplingConfig | None) -> str:
    """'14 faces scored in 30 sampled frames (every 10th frame) of a 10.0 s clip'."""
    if verdict.verdict == ERROR:
        return ""
    if verdict.media_type == "image":
        return f"{verdict.n_faces} face{'s' * (verdict.n_faces != 1)} scored in one image"
    how = f" ({sampling_words(sampling)})" if sampling is not None else ""
    clip = f" of a {duration_words(verdict.duration)} clip" if verdict.duration else ""
    return (f"{verdict.n_faces} face{'s' * (verdict.n_faces != 1)} scored in {verdict.n_frames} sampled "
            f"frame{'s' * (verdict.n_frames != 1)}{how}{clip}")


def explanation(verdict: VideoVerdict) -> str:
    """The verdict in one or two sentences."""
    if verdict.verdict == ERROR:
        return verdict.message
    if verdict.verdict == NO_FACE:
        return (f"No face was found in the {verdict.n_frames} sampled frame{'s' * (verdict.n_frames != 1)}, so there "
                "is nothing to judge: this detector judges faces only.")
    band = verdict.band or confidence_band(verdict.p_fake, verdict.threshold)
    side = "above" if verdict.p_fake >= verdict.threshold else "below"
    text = (f"{band.capitalize()}: p_fake {verdict.p_fake:.2f} is {BAND_WORDS[band].format(side=side)} the "
            f"threshold {verdict.threshold:.2f}" + (f"; {BORDERLINE_ADVICE}." if band == "borderline" else "."))
    decider = next((t for t in verdict.tracks if t.track == verdict.deciding_track), None)
    if decider is not None:
        text += f" Decided by {track_words(decider, verdict.media_type)}."
        if member := raising_member(decider):
            check, _, seen = MEMBER_WORDS[member]
            if decider.p_nets < verdict.threshold:
                text += (f" Only the {check} check calls it fake ({seen}); the nets alone give {decider.p_nets:.2f},"
                         f" below the threshold, so one check alone carries this verdict and it is held at"
                         f" \"{MEMBER_ALONE_BAND}\" at most.")
            else:
                text += (f" Its score comes from the {check} check ({seen}); the nets alone give"
                         f" {decider.p_nets:.2f}, also above the threshold.")
    elif verdict.tracks:
        text += " Decided by the counted persons together."
    left_out = [t for t in verdict.tracks if t.excluded]
    if left_out:
        text += " Not counted: " + "; ".join(
            f"{t.label or f'track {t.track}'}, {EXCLUDED_WORDS.get(t.excluded, t.excluded)}" for t in left_out) + "."
    return text


def explained(verdict: VideoVerdict, sampling: SamplingConfig | None = None) -> VideoVerdict:
    """The verdict with its words filled in: band, who decided, evidence, explanation, track descriptions."""
    band = confidence_band(verdict.p_fake, verdict.threshold) if verdict.verdict in (FAKE, "REAL") else None
    tracks = [replace(t, description=describe_track(t, verdict.deciding_track, verdict.media_type))
              for t in verdict.tracks]
    decider = next((t for t in tracks if t.track == verdict.deciding_track), None)
    verdict = replace(verdict, band=band, tracks=tracks,
                      decided_by=None if decider is None else track_words(decider, verdict.media_type))
    return replace(verdict, evidence=evidence_words(verdict, sampling), explanation=explanation(verdict))
