"""Combining the nets' per-face scores and aggregating frames and face tracks into a video verdict.

`Detector` (ensembles.detector) is the Python API: `from ensembles import Detector`.
"""


def __getattr__(name: str):
    if name == "Detector":  # imported on first use: the package's modules do not all need torch and the models
        from ensembles.detector import Detector

        return Detector
    raise AttributeError(f"module 'ensembles' has no attribute {name!r}")
