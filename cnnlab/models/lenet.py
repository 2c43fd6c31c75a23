"""LeNet-5 for 28x28 MNIST.

LeCun, Bottou, Bengio and Haffner, "Gradient-Based Learning Applied to
Document Recognition", Proc. IEEE 1998.

The paper feeds 32x32 images, so its C5 layer sees 16 maps of 5x5. MNIST as
torchvision ships it is 28x28, so here the maps are 4x4 and the first fully
connected layer takes 16*4*4 = 256 inputs (bug 1 of the report):

    28 -conv5-> 24 -pool2-> 12 -conv5-> 8 -pool2-> 4
"""
from torch import Tensor, nn

# The activations the chapters compare: the package's sigmoid, and the ReLU
# that AlexNet brought in (chapter 2, "Why later networks use ReLU").
ACTIVATIONS = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU}


class LeNet5(nn.Module):
    """Sigmoid LeNet-5 with max-pooling and a fully connected C3 layer.

    ``activation="relu"`` swaps every sigmoid for a ReLU, nothing else.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10,
                 activation: str = "sigmoid") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, "
                             f"got {activation!r}")
        act = ACTIVATIONS[activation]
        self.input_shape = (in_channels, 28, 28)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5),  # C1: (N, 6, 24, 24)
            act(),
            nn.MaxPool2d(2),                           # S2: (N, 6, 12, 12)
            # C3: every S2 map feeds every C3 map. The paper used a sparse
            # table instead (fewer connections, and maps forced to differ).
            nn.Conv2d(6, 16, kernel_size=5),           # C3: (N, 16, 8, 8)
            act(),
            nn.MaxPool2d(2),                           # S4: (N, 16, 4, 4)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 4 * 4, 120),  # C5 as a linear layer: 256 inputs
            act(),
            nn.Linear(120, 84),          # F6
            act(),
            nn.Linear(84, num_classes),  # logits; the loss applies softmax
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def lenet(in_channels: int = 1, num_classes: int = 10,
          activation: str = "sigmoid") -> LeNet5:
    """LeNet-5 at 28x28 (44,426 parameters for 1 channel, 10 classes)."""
    return LeNet5(in_channels, num_classes, activation)
