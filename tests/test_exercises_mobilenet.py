"""The chapter 5 checkers pass the solution, and reject the stub and wrong answers.

The solution and the stub are the "exercise" cells of
solutions/05_mobilenet.ipynb and exercises/05_mobilenet.ipynb, so these
tests test what the notebooks contain.
"""

import pytest
from exercise_cells import verdict
import torch
from torch import nn

from cnnlab.exercises.mobilenet import (check_depthwise_separable, check_macs_ratio,
                                        check_param_counts)

NOTEBOOK = "05_mobilenet.ipynb"


# Exercise 1: parameter counts

def standard_params(cin, cout, k=3):
    return k * k * cin * cout


def separable_without_groups(cin, cout, k=3):
    """The depthwise conv counted as a full conv: the forgotten groups=cin."""
    return k * k * cin * cin + cin * cout


def separable_with_biases(cin, cout, k=3):
    return k * k * cin + cin * cout + cin + cout


def separable_fixed_k(cin, cout, k=3):
    """Always 3x3: right for MobileNet, wrong for other kernels."""
    return 9 * cin + cin * cout


def test_param_counts_pass_the_solution(solution, capsys):
    assert check_param_counts(solution["standard_params"], solution["separable_params"])
    assert verdict(capsys) == "✓ parameters: standard vs depthwise-separable: passed\n"


def test_param_counts_stub_is_not_done(stub, capsys):
    assert check_param_counts(stub["standard_params"], stub["separable_params"]) is False
    assert "not done yet" in verdict(capsys)


def test_param_counts_half_done_is_not_done(solution, stub, capsys):
    assert check_param_counts(solution["standard_params"], stub["separable_params"]) is False
    assert "not done yet" in verdict(capsys)


@pytest.mark.parametrize("standard, separable, message", [
    (standard_params, separable_without_groups,
     "you counted the depthwise conv as a standard one (3*3*32*32). It has groups=cin"),
    (standard_params, separable_with_biases, "no biases (BN follows each conv)"),
    # depthwise k*k*cin + pointwise cin*cout: 5*5*3 + 3*16 = 75 + 48 = 123;
    # with k fixed at 3 the answer is 3*3*3 + 3*16 = 75.
    (standard_params, separable_fixed_k,
     f"separable_params(3, 16, k=5): expected {5 * 5 * 3 + 3 * 16}, got {3 * 3 * 3 + 3 * 16}"),
    # a standard conv, k*k*cin*cout = 3*3*32*64 = 18432; its bias adds cout = 64.
    (lambda cin, cout, k=3: k * k * cin * cout + cout, separable_with_biases,
     f"standard_params(32, 64, k=3): expected {3 * 3 * 32 * 64}, "
     f"got {3 * 3 * 32 * 64 + 64}. Hint: no bias"),
])
def test_param_counts_reject_wrong_answers(capsys, standard, separable, message):
    assert check_param_counts(standard, separable) is False
    out = verdict(capsys)
    assert out.startswith("✗ parameters: standard vs depthwise-separable: ")
    assert message in out


# Exercise 2: the block

class Separable(nn.Module):
    """A right block, for the wrong ones below to change one thing each."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, stride, padding=1, groups=cin, bias=False)
        self.bn1 = nn.BatchNorm2d(cin)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x):
        x = torch.relu(self.bn1(self.depthwise(x)))
        return torch.relu(self.bn2(self.pointwise(x)))


class WithoutGroups(Separable):
    """A "depthwise" conv that forgot groups=cin: runs, same shapes, cin x the weights."""

    def __init__(self, cin, cout, stride=1):
        super().__init__(cin, cout, stride)
        self.depthwise = nn.Conv2d(cin, cin, 3, stride, padding=1, bias=False)


class WithBias(Separable):
    def __init__(self, cin, cout, stride=1):
        super().__init__(cin, cout, stride)
        self.depthwise = nn.Conv2d(cin, cin, 3, stride, padding=1, groups=cin)
        self.pointwise = nn.Conv2d(cin, cout, 1)


class NoReluInside(Separable):
    """Right layers, but no ReLU between the depthwise and the pointwise conv."""

    def forward(self, x):
        return torch.relu(self.bn2(self.pointwise(self.bn1(self.depthwise(x)))))


class StrideOnPointwise(Separable):
    """The stride on the 1x1 conv instead of the depthwise one."""

    def __init__(self, cin, cout, stride=1):
        super().__init__(cin, cout, stride)
        self.depthwise = nn.Conv2d(cin, cin, 3, 1, padding=1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, stride, bias=False)


def test_depthwise_separable_passes_the_solution(solution, capsys):
    assert check_depthwise_separable(solution["MyDepthwiseSeparable"]) is True
    assert verdict(capsys) == "✓ depthwise-separable convolution: passed\n"


@pytest.mark.parametrize("answer", ["stub", None])
def test_depthwise_separable_stub_is_not_done(stub, capsys, answer):
    assert check_depthwise_separable(stub["MyDepthwiseSeparable"] if answer else None) is False
    assert "… depthwise-separable convolution: not done yet" in verdict(capsys)


@pytest.mark.parametrize("wrong, message", [
    (WithoutGroups, "the 3x3 conv has groups=1, so it is not depthwise"),
    (WithBias, "pass bias=False"),
    (NoReluInside, "differs from the package's DepthwiseSeparable"),
    (StrideOnPointwise, "it carries the block's stride (2)"),
])
def test_depthwise_separable_rejects_wrong_blocks(capsys, wrong, message):
    assert check_depthwise_separable(wrong) is False
    out = verdict(capsys)
    assert out.startswith("✗ depthwise-separable convolution: ")
    assert message in out


def test_the_right_block_the_wrong_ones_change_passes():
    assert check_depthwise_separable(Separable) is True


def test_forgotten_groups_message_names_the_blow_up(capsys):
    check_depthwise_separable(WithoutGroups)
    out = capsys.readouterr().out
    # Without groups the 3x3 conv holds 3*3*32*32 = 9,216 weights, not 3*3*32 = 288.
    assert f"{3 * 3 * 32 * 32:,} weights instead of 3*3*32 = {3 * 3 * 32} (32 times too many)" in out
    assert "Pass groups=cin" in out


# Exercise 3: the mult-adds ratio

def test_macs_ratio_passes_the_solution(solution, capsys):
    assert check_macs_ratio(solution["macs_ratio"]) is True
    assert verdict(capsys) == "✓ mult-adds: separable / standard: passed\n"


def test_macs_ratio_stub_is_not_done(stub, capsys):
    assert check_macs_ratio(stub["macs_ratio"]) is False
    assert "not done yet" in verdict(capsys)


@pytest.mark.parametrize("wrong, message", [
    (lambda cin, cout, k, h, w: 1 / k**2, "that is the depthwise conv alone"),
    (lambda cin, cout, k, h, w: 1 / (1 / cout + 1 / k**2), "upside down"),
    (lambda cin, cout, k, h, w: 1 / cin + 1 / k**2,
     # The paper's ratio (section 3.1): separable / standard = 1/cout + 1/k^2
     # = 1/64 + 1/9 = 0.1267361111 (10 significant digits, as printed).
     f"macs_ratio(cin=32, cout=64, k=3, h=28, w=28): expected {1 / 64 + 1 / 3**2:.10g}, got"),
    (lambda cin, cout, k, h, w: 1 / cout + 1 / 9, "k=5"),  # right only for k = 3
    (lambda cin, cout, k, h, w: "0.127", "return a number"),
])
def test_macs_ratio_rejects_wrong_answers(capsys, wrong, message):
    assert check_macs_ratio(wrong) is False
    out = verdict(capsys)
    assert out.startswith("✗ mult-adds: separable / standard: ")
    assert message in out
