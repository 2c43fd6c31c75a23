"""ResNet-18 for MNIST at 56 px.

He, Zhang, Ren and Sun, "Deep Residual Learning for Image Recognition",
CVPR 2016.

The 28 px digit is upsampled x2 first: at 28 px the stride-2 stem and the
max-pool leave layer3 at 2x2 and layer4 at 1x1 (bug 4 of the report); at
56 px layer4 still sees 2x2 maps.

Where a block changes the shape (stride 2, more channels) the identity
cannot be added as it is (bug 2). The paper gives two shortcuts:

* option B, ``shortcut="projection"`` (default): a 1x1 conv + BN.
* option A, ``shortcut="zero_pad"``: subsample by 2 and pad the new
  channels with zeros. It has no parameters.

The report's own fix is here too, as ``shortcut="reuse_conv1"``, so that it
can be trained and measured: where the shape changes, the shortcut
convolves x with the block's own ``conv1`` weights (tied weights, and no BN
of its own). It has as many parameters as option A.

For the degradation problem that motivated ResNet, ``shortcut="none"``
drops every shortcut: the same 18 layers as a *plain* net (the paper's
"plain-18"), with as many parameters as option A.
"""
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Shortcut = Literal["projection", "zero_pad", "reuse_conv1", "none"]
SHORTCUTS = ("projection", "zero_pad", "reuse_conv1", "none")


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    """3x3 conv with padding 1; no bias, the BN after it has one."""
    return nn.Conv2d(cin, cout, 3, stride, padding=1, bias=False)


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    """1x1 conv, no bias (followed by BN)."""
    return nn.Conv2d(cin, cout, 1, stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """The paper's option A: take every stride-th pixel, pad channels with zeros."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.extra, self.stride = cout - cin, stride

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra))  # pads dim 1, channels


class BasicBlock(nn.Module):
    """Two 3x3 convs with BN; the input is added back before the last ReLU.

    The block receives its ``downsample`` (the shortcut for a shape change)
    and does not decide it; ``None`` means the identity.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = downsample

    def residual(self, x: Tensor) -> Tensor:
        """F(x): conv-BN-ReLU-conv-BN."""
        out = F.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))

    def shortcut(self, x: Tensor) -> Tensor:
        """x, or its projection/zero-padding when the shape changes."""
        return x if self.downsample is None else self.downsample(x)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.residual(x) + self.shortcut(x))


class ReuseConv1Block(BasicBlock):
    """The report's block: where the shape changes, the shortcut is conv1(x).

    ``conv1``'s 3x3 weights then serve two jobs, the first layer of F and
    the shortcut, and the shortcut has no BN. Kept to train and measure it.
    Its shortcut is a functional ``F.conv2d``, not a module, so torchinfo
    and forward hooks do not see it: their mult-add counts leave it out.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__(cin, cout, stride)  # no module of its own on the shortcut
        self.changes_shape = stride != 1 or cin != cout

    def shortcut(self, x: Tensor) -> Tensor:
        if not self.changes_shape:
            return x
        return F.conv2d(x, self.conv1.weight, stride=self.conv1.stride, padding=1)


class PlainBlock(BasicBlock):
    """No shortcut: relu(F(x)). Stacked, these make the paper's plain net."""

    def __init__(self, cin: int, cout: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__(cin, cout, stride)  # nothing to add back, so no shortcut module

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.residual(x))


def make_downsample(cin: int, cout: int, stride: int,
                    shortcut: Shortcut) -> nn.Module | None:
    """The shortcut a block needs: None where the shape is unchanged."""
    if stride == 1 and cin == cout:
        return None
    if shortcut == "projection":
        return nn.Sequential(conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))
    if shortcut == "zero_pad":
        return ZeroPadShortcut(cin, cout, stride)
    if shortcut in ("reuse_conv1", "none"):
        return None  # ReuseConv1Block builds its own; PlainBlock has none
    raise ValueError(f"shortcut must be one of {', '.join(SHORTCUTS)}, got {shortcut!r}")


class ResNet(nn.Module):
    """Stem, four stages of blocks, global average pool, dropout, FC."""

    def __init__(self, block: type[BasicBlock], layers: list[int],
                 in_channels: int = 1, num_classes: int = 10,
                 dropout: float = 0.5, upsample: int = 2,
                 shortcut: Shortcut = "projection") -> None:
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {', '.join(SHORTCUTS)}, "
                             f"got {shortcut!r}")
        if shortcut == "reuse_conv1":
            block = ReuseConv1Block
        elif shortcut == "none":
            block = PlainBlock
        self.input_shape = (in_channels, 28, 28)
        self.shortcut_kind = shortcut
        self.upsample = nn.Upsample(scale_factor=upsample, mode="bilinear")
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        self.width = 64
        self.layer1 = self._make_layer(block, 64, layers[0], 1)
        self.layer2 = self._make_layer(block, 128, layers[1], 2)
        self.layer3 = self._make_layer(block, 256, layers[2], 2)
        self.layer4 = self._make_layer(block, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block: type[BasicBlock], width: int, blocks: int,
                    stride: int) -> nn.Sequential:
        downsample = make_downsample(self.width, width, stride, self.shortcut_kind)
        layers = [block(self.width, width, stride, downsample)]
        self.width = width
        layers += [block(width, width) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.upsample(x)                         # (N, 1, 56, 56)
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))  # (N, 64, 14, 14)
        x = self.layer1(x)                           # (N, 64, 14, 14)
        x = self.layer2(x)                           # (N, 128, 7, 7)
        x = self.layer3(x)                           # (N, 256, 4, 4)
        x = self.layer4(x)                           # (N, 512, 2, 2)
        x = torch.flatten(self.avgpool(x), 1)        # (N, 512)
        return self.fc(self.dropout(x))


def resnet18(in_channels: int = 1, num_classes: int = 10, dropout: float = 0.5,
             shortcut: Shortcut = "projection", upsample: int = 2) -> ResNet:
    """ResNet-18 at 56 px: 11,175,370 parameters (projection), 11,001,546
    (zero_pad, reuse_conv1 the report's block, and none the plain net)."""
    return ResNet(BasicBlock, [2, 2, 2, 2], in_channels, num_classes,
                  dropout, upsample, shortcut)


def resnet34(in_channels: int = 1, num_classes: int = 10, dropout: float = 0.5,
             shortcut: Shortcut = "projection", upsample: int = 2) -> ResNet:
    """The paper's 34-layer net: 3, 4, 6 and 3 basic blocks per stage.

    Not one of the course's six models (it is not in the registry): the
    ResNet chapter builds it, and its plain twin (``shortcut="none"``), to
    show the degradation problem next to ResNet-18.
    """
    return ResNet(BasicBlock, [3, 4, 6, 3], in_channels, num_classes,
                  dropout, upsample, shortcut)
