"""The chapter 6 (GoogLeNet) checkers reject plausible wrong answers with a specific
message, and accept right answers written differently.

(tests/test_exercise_registry.py runs every checker on the notebooks'
solution, stub and a None answer.)
"""

import pytest
from exercise_cells import verdict
import torch
from torch import nn

from cnnlab.exercises.googlenet import (check_inception, check_inception_out_channels,
                                        check_inception_params)

NOTEBOOK = "06_googlenet.ipynb"


# Exercise 1: output channels

@pytest.mark.parametrize("wrong, message", [
    (lambda row: sum(row[1:]), "you added the reduce convs' channels"),
    (lambda row: row[1] + row[3] + row[5], "add its pool proj channels"),
    (lambda row: row[1] + row[3] + row[5] + row[0], "pool proj channels, not cin"),
    # 3b's output: #1x1 + #3x3 + #5x5 + pool proj = 128 + 192 + 96 + 64 = 480.
    (lambda row: 256, "inception_out_channels((256, 128, 128, 192, 32, 96, 64)): "
     f"expected {128 + 192 + 96 + 64}, got 256"),  # 3a's answer for every row
])
def test_out_channels_reject_wrong_answers(capsys, wrong, message):
    assert check_inception_out_channels(wrong) is False
    out = verdict(capsys)
    assert out.startswith("✗ Inception output channels: ")
    assert message in out


# Exercise 2: the module

def conv_relu(cin, cout, k, bn=False):
    if bn:  # torchvision's BasicConv2d: conv without bias, BN, ReLU
        return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False),
                             nn.BatchNorm2d(cout, eps=0.001), nn.ReLU())
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2), nn.ReLU())


class Inception(nn.Module):
    """A right module, configurable into plausible wrong ones."""

    k5, bn, order = 5, False, (0, 1, 2, 3)

    def __init__(self, cin, c1, c3r, c3, c5r, c5, pool_proj):
        super().__init__()
        self.branches = nn.ModuleList([
            conv_relu(cin, c1, 1, self.bn),
            nn.Sequential(conv_relu(cin, c3r, 1, self.bn), conv_relu(c3r, c3, 3, self.bn)),
            nn.Sequential(conv_relu(cin, c5r, 1, self.bn), conv_relu(c5r, c5, self.k5, self.bn)),
            nn.Sequential(nn.MaxPool2d(3, 1, padding=1), conv_relu(cin, pool_proj, 1, self.bn)),
        ])

    def forward(self, x):
        return torch.cat([self.branches[i](x) for i in self.order], dim=1)


class TorchvisionBranch(Inception):
    """torchvision's GoogLeNet: a 3x3 kernel in the "5x5" branch."""
    k5 = 3


class TorchvisionWithBN(TorchvisionBranch):
    """torchvision's module as it is: 3x3 in the 5x5 branch, and BN."""
    bn = True


class WithBN(Inception):
    bn = True


class PoolFirst(Inception):
    """Branches concatenated in another order."""
    order = (3, 0, 1, 2)


class NoPadding5x5(Inception):
    def __init__(self, *row):
        super().__init__(*row)
        self.branches[2][1][0].padding = (0, 0)


def test_the_right_module_the_wrong_ones_change_passes():
    assert check_inception(Inception) is True


# 16 -> 32: module 3a's #5x5 reduce and #5x5. The channel ranges: the checker's
# invented row (10, 3, 4, 5, 6, 7, 8) concatenates 3, 5, 7 and 8 channels (23 in all).
@pytest.mark.parametrize("wrong, message", [
    (TorchvisionBranch, "the 5x5 branch uses a 3x3 conv (16 -> 32 channels). That is "
     "torchvision's GoogLeNet"),
    (TorchvisionWithBN, "That is torchvision's GoogLeNet"),
    (WithBN, "has batch norm layers (BatchNorm2d). Inception-v1 has none"),
    (PoolFirst, "these branches' outputs differ from the package's Inception: 1x1 "
     "(channels 0:3), 3x3 (channels 3:8), 5x5 (channels 8:15), pool (channels 15:23)"),
    (NoPadding5x5, "padding 1 for the 3x3 conv, 2 for the 5x5"),
])
def test_inception_rejects_wrong_modules(capsys, wrong, message):
    assert check_inception(wrong) is False
    out = verdict(capsys)
    assert out.startswith("✗ Inception module: ")
    assert message in out


# Exercise 3: parameters

def weights_only(row):
    cin, c1, c3r, c3, c5r, c5, pool = row
    return cin * c1 + cin * c3r + 9 * c3r * c3 + cin * c5r + 25 * c5r * c5 + cin * pool


# Module 3a of the paper's Table 1 (cin 192; #1x1 64; #3x3 reduce 96, #3x3
# 128; #5x5 reduce 16, #5x5 32; pool proj 32): each conv holds k*k*cin*cout
# weights and cout biases.
INCEPTION_3A = ((192 * 64 + 64) + (192 * 96 + 96) + (9 * 96 * 128 + 128)
                + (192 * 16 + 16) + (25 * 16 * 32 + 32) + (192 * 32 + 32))  # 163,696


def torchvision_params(row):
    cin, c1, c3r, c3, c5r, c5, pool = row
    # A 3x3 instead of the 5x5: 25 - 9 = 16 fewer weights per (c5r, c5) pair.
    return (weights_only(row) - 16 * c5r * c5) + c1 + c3r + c3 + c5r + c5 + pool


@pytest.mark.parametrize("wrong, message", [
    (weights_only, "that is the weights alone: each conv also has one bias"),
    (torchvision_params, "that counts a 3x3 conv in the 5x5 branch"),
    (lambda row: weights_only(row) - row[0] * (row[2] + row[4]) + sum(row[1:]),
     # Module 3a: six convs, each k*k*cin*cout weights + cout biases.
     f"inception_params((192, 64, 96, 128, 16, 32, 32)): expected {INCEPTION_3A}, got"),
])
def test_params_reject_wrong_answers(capsys, wrong, message):
    assert check_inception_params(wrong) is False
    out = verdict(capsys)
    assert out.startswith("✗ Inception parameter count: ")
    assert message in out
