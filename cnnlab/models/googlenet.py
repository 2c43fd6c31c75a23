"""GoogLeNet (Inception-v1) for MNIST at 56 px.

Szegedy et al., "Going Deeper with Convolutions", CVPR 2015.

As in the paper: convs with bias and no batch norm (BN came a year later),
a real 5x5 branch (torchvision's copy uses 3x3 there), local response
normalisation in the stem. Unlike the paper: no auxiliary classifiers,
and a global average pool, since the last maps are 1x1 at 56 px, not 7x7:
the pools here use ``ceil_mode`` without padding, so 56 -> 28 -> 14 -> 7
-> 3 -> 1 (the paper's padded pools would give 7 -> 4 -> 2).

``googlenet(batch_norm=True)`` adds batch norm (Ioffe & Szegedy, 2015) the
way torchvision's copy does: every conv without bias and followed by BN,
and no local response normalisation, which BN replaces; the real 5x5
branch stays. It is this network with BN, not the BN paper's BN-Inception,
which also changed the modules.
The ``batch_norm`` experiment (``cnnlab.plan``) trains both, one epoch and
three seeds each, to see whether BN ends the slow start; chapter 6 shows its
records once they exist.
"""
from collections import OrderedDict
from typing import Callable

import torch
from torch import Tensor, nn


def conv_relu(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """Conv with bias, then ReLU: the paper's building unit."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2),
                         nn.ReLU(inplace=True))


def conv_bn_relu(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """Conv without bias, batch norm, ReLU: torchvision's ``BasicConv2d``
    (BN's shift makes a bias redundant; eps 0.001 as torchvision's)."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2,
                                   bias=False),
                         nn.BatchNorm2d(cout, eps=0.001), nn.ReLU(inplace=True))


ConvBlock = Callable[[int, int, int], nn.Module]  # (cin, cout, kernel[, stride])


class Inception(nn.Module):
    """Four parallel branches concatenated on the channel axis.

    Output channels = c1x1 + c3x3 + c5x5 + pool_proj.
    """

    def __init__(self, cin: int, c1x1: int, c3x3_reduce: int, c3x3: int,
                 c5x5_reduce: int, c5x5: int, pool_proj: int,
                 conv: ConvBlock = conv_relu) -> None:
        super().__init__()
        self.branch1 = conv(cin, c1x1, 1)
        self.branch2 = nn.Sequential(conv(cin, c3x3_reduce, 1),
                                     conv(c3x3_reduce, c3x3, 3))
        self.branch3 = nn.Sequential(conv(cin, c5x5_reduce, 1),
                                     conv(c5x5_reduce, c5x5, 5))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, padding=1),
                                     conv(cin, pool_proj, 1))
        self.out_channels = c1x1 + c3x3 + c5x5 + pool_proj

    def forward(self, x: Tensor) -> Tensor:
        branches = [self.branch1, self.branch2, self.branch3, self.branch4]
        return torch.cat([branch(x) for branch in branches], dim=1)


# The paper's Table 1, one row per Inception module:
#   name: (cin, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj)
INCEPTION = {
    "3a": (192, 64, 96, 128, 16, 32, 32),    # -> 256
    "3b": (256, 128, 128, 192, 32, 96, 64),  # -> 480
    "4a": (480, 192, 96, 208, 16, 48, 64),   # -> 512
    "4b": (512, 160, 112, 224, 24, 64, 64),  # -> 512
    "4c": (512, 128, 128, 256, 24, 64, 64),  # -> 512
    "4d": (512, 112, 144, 288, 32, 64, 64),  # -> 528
    "4e": (528, 256, 160, 320, 32, 128, 128),  # -> 832
    "5a": (832, 256, 160, 320, 32, 128, 128),  # -> 832
    "5b": (832, 384, 192, 384, 48, 128, 128),  # -> 1024
}


def _pool() -> nn.MaxPool2d:
    # 3x3 stride 2, rounding up: 28 -> 14 -> 7 -> 3 -> 1 at 56 px input.
    return nn.MaxPool2d(3, 2, ceil_mode=True)


def _group(*names: str, conv: ConvBlock, pool: bool = False) -> nn.Sequential:
    """Inception modules named as in the paper's Table 1, then a max-pool if asked."""
    layers = [(name, Inception(*INCEPTION[name], conv=conv)) for name in names]
    return nn.Sequential(OrderedDict(layers + ([("pool", _pool())] if pool else [])))


class GoogLeNet(nn.Module):
    """Stem, nine Inception modules with pools between, global pool, FC."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10,
                 dropout: float = 0.2, upsample: int = 2,
                 conv: ConvBlock = conv_relu) -> None:
        super().__init__()
        self.input_shape = (in_channels, 28, 28)
        self.upsample = nn.Upsample(scale_factor=upsample, mode="bilinear")
        # BN normalises every conv's output, so the LRN layers go with it.
        lrn = nn.Identity if conv is conv_bn_relu else lambda: nn.LocalResponseNorm(5)
        self.stem = nn.Sequential(
            conv(in_channels, 64, 7, stride=2), _pool(),  # (N, 64, 14, 14)
            lrn(),
            conv(64, 64, 1),
            conv(64, 192, 3),
            lrn(), _pool(),                               # (N, 192, 7, 7)
        )
        # Each module under the paper's name, so traces and parameter names
        # read inception3.3a, ..., inception5.5b.
        self.inception3 = _group("3a", "3b", conv=conv, pool=True)    # (N, 480, 3, 3)
        self.inception4 = _group("4a", "4b", "4c", "4d", "4e", conv=conv,
                                 pool=True)                          # (N, 832, 1, 1)
        self.inception5 = _group("5a", "5b", conv=conv)               # (N, 1024, 1, 1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(self.upsample(x))
        x = self.inception5(self.inception4(self.inception3(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(self.dropout(x))


def googlenet(in_channels: int = 1, num_classes: int = 10, dropout: float = 0.2,
              upsample: int = 2, batch_norm: bool = False) -> GoogLeNet:
    """GoogLeNet at 56 px (5,977,530 parameters at 1 channel, 10 classes).

    ``batch_norm=True``: BN after every conv (as in torchvision's copy) and no LRN.
    """
    conv = conv_bn_relu if batch_norm else conv_relu
    return GoogLeNet(in_channels, num_classes, dropout, upsample, conv)
