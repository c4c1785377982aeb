"""Combining the nets' per-face scores and aggregating frames and face tracks into a video verdict."""
