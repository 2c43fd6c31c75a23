"""MobileNetV1 for MNIST at 56 px.

Howard et al., "MobileNets: Efficient Convolutional Neural Networks for
Mobile Vision Applications", arXiv:1704.04861, 2017.

A standard 3x3 conv costs k*k*cin*cout weights; the depthwise-separable
block splits it into a 3x3 depthwise conv (k*k*cin, one filter per
channel: ``groups=cin``) and a 1x1 pointwise conv (cin*cout).

The paper ends with a 7x7 average pool at 224 px. At 56 px the last maps
are 2x2, so a global average pool takes its place.
"""
import torch
from torch import Tensor, nn


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1,
            groups: int = 1) -> nn.Sequential:
    """Conv (no bias: BN follows) + BN + ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2,
                  groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise conv (BN, ReLU) then 1x1 pointwise conv (BN, ReLU)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.depthwise = conv_bn(cin, cin, 3, stride, groups=cin)
        self.pointwise = conv_bn(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


# The paper's Table 1 after the stem, one row per block:
#   c: output channels, s: stride of the depthwise conv, n: repeats
SETTINGS = [
    # c, s, n
    (64, 1, 1),
    (128, 2, 1),
    (128, 1, 1),
    (256, 2, 1),
    (256, 1, 1),
    (512, 2, 1),
    (512, 1, 5),
    (1024, 2, 1),
    (1024, 1, 1),
]


def thin(channels: int, width: float) -> int:
    """The paper's width multiplier alpha applied to a layer's channels."""
    return max(1, int(channels * width))


class MobileNetV1(nn.Module):
    """Stem conv, 13 depthwise-separable blocks, global average pool, FC.

    ``width`` is the paper's width multiplier alpha (every layer's channels
    times alpha); ``upsample`` sets the input size, 28 px times the factor,
    which plays the part of the paper's resolution multiplier rho.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10,
                 dropout: float = 0.5, upsample: int = 2, width: float = 1.0) -> None:
        super().__init__()
        if not 0 < width <= 4:
            raise ValueError(f"width (the multiplier alpha) must be in (0, 4], got {width!r}")
        self.input_shape = (in_channels, 28, 28)
        self.upsample = nn.Upsample(scale_factor=upsample, mode="bilinear")
        cin = thin(32, width)
        layers: list[nn.Module] = [conv_bn(in_channels, cin, 3, stride=2)]
        for cout, stride, repeats in SETTINGS:
            for i in range(repeats):  # as in the paper's table: only the first repeat strides
                layers.append(DepthwiseSeparable(cin, thin(cout, width), stride if i == 0 else 1))
                cin = thin(cout, width)
        self.features = nn.Sequential(*layers)  # (N, 1024, 2, 2) at 56 px, width 1
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(self.upsample(x))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(self.dropout(x))


def mobilenet_v1(in_channels: int = 1, num_classes: int = 10, dropout: float = 0.5,
                 upsample: int = 2, width: float = 1.0) -> MobileNetV1:
    """MobileNetV1 at 56 px (3,216,650 parameters at 1 channel, 10 classes, width 1)."""
    return MobileNetV1(in_channels, num_classes, dropout, upsample, width)
