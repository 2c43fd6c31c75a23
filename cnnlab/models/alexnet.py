"""AlexNet, two ways, for MNIST.

Krizhevsky, Sutskever and Hinton, "ImageNet Classification with Deep
Convolutional Neural Networks", NeurIPS 2012.

* ``alexnet``: a reduced AlexNet at 56 px (the 28 px digit upsampled x2):
  a 5x5 stride-1 first conv, half the paper's widths (48-128-192-192-128),
  2x2 max-pools 56 -> 28 -> 14 -> 7, so the classifier sees 128*7*7.
* ``alexnet_large``: the paper's layers at 224 px (upsampled x8), without
  the two-GPU grouping: 96-256-384-384-256, 11x11 stride 4, 3x3/2 pools,
  256*6*6 into the classifier.

Both keep the paper's classifier, 4096-4096 with dropout, which holds most
of the parameters.
"""
from torch import Tensor, nn


def _classifier(in_features: int, num_classes: int, dropout: float) -> nn.Sequential:
    """The paper's three fully connected layers with dropout before two."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(in_features, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(4096, 4096),
        nn.ReLU(inplace=True),
        nn.Linear(4096, num_classes),
    )


class AlexNet(nn.Module):
    """Feature extractor + classifier, with the input upsampled first."""

    def __init__(self, upsample: int, features: nn.Sequential,
                 feature_size: int, num_classes: int, dropout: float,
                 in_channels: int) -> None:
        super().__init__()
        self.input_shape = (in_channels, 28, 28)
        self.upsample = nn.Upsample(scale_factor=upsample, mode="bilinear")
        self.features = features
        self.classifier = _classifier(feature_size, num_classes, dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(self.upsample(x)))


def _conv(cin: int, cout: int, kernel: int, stride: int = 1,
          padding: int | None = None) -> list[nn.Module]:
    """Conv (with bias, as in the paper; there is no BN) then ReLU.

    The padding defaults to "same" (kernel // 2) for stride-1 convs.
    """
    if padding is None:
        padding = kernel // 2
    return [nn.Conv2d(cin, cout, kernel, stride, padding), nn.ReLU(inplace=True)]


def alexnet(in_channels: int = 1, num_classes: int = 10,
            dropout: float = 0.5) -> AlexNet:
    """Reduced AlexNet at 56 px (43,446,122 parameters at 1 channel, 10 classes)."""
    features = nn.Sequential(
        *_conv(in_channels, 48, 5), nn.MaxPool2d(2),   # (N, 48, 28, 28)
        *_conv(48, 128, 5), nn.MaxPool2d(2),           # (N, 128, 14, 14)
        *_conv(128, 192, 3),
        *_conv(192, 192, 3),
        *_conv(192, 128, 3), nn.MaxPool2d(2),          # (N, 128, 7, 7)
    )
    return AlexNet(2, features, 128 * 7 * 7, num_classes, dropout, in_channels)


def alexnet_large(in_channels: int = 1, num_classes: int = 10,
                  dropout: float = 0.5) -> AlexNet:
    """Paper-size AlexNet at 224 px (58,299,082 parameters at 1 channel, 10 classes)."""
    features = nn.Sequential(
        *_conv(in_channels, 96, 11, stride=4, padding=2),  # (N, 96, 55, 55)
        nn.MaxPool2d(3, 2),                            # (N, 96, 27, 27)
        *_conv(96, 256, 5), nn.MaxPool2d(3, 2),        # (N, 256, 13, 13)
        *_conv(256, 384, 3),
        *_conv(384, 384, 3),
        *_conv(384, 256, 3), nn.MaxPool2d(3, 2),       # (N, 256, 6, 6)
    )
    return AlexNet(8, features, 256 * 6 * 6, num_classes, dropout, in_channels)
