"""The chapter 5 (MobileNetV1) checkers reject plausible wrong answers with a specific
message, and accept right answers written differently.

(tests/test_exercise_registry.py runs every checker on the notebooks'
solution, stub and a None answer.) Some tests use the solution notebook's
answers, as the ``solution`` fixture gives them.
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


# --- recompute_bn_stats -------------------------------------------------------------

def _recompute(reset=True, cumulative=True, train_mode=True, restore=True, step=False):
    def recompute_bn_stats(model, batches):
        was_training = model.training
        bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        momenta = [bn.momentum for bn in bns]
        for bn in bns:
            if reset:
                bn.reset_running_stats()
            if cumulative:
                bn.momentum = None
        model.train(train_mode)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for x in batches:
            if step:  # a training step slipped in
                model(x).sum().backward()
                optimizer.step()
            else:
                with torch.no_grad():
                    model(x)
        for bn, m in zip(bns, momenta):
            bn.momentum = m
        if restore:
            model.train(was_training)
    return recompute_bn_stats


def test_recompute_bn_written_as_update_bn_itself_passes(capsys):
    from torch.optim.swa_utils import update_bn

    from cnnlab.exercises.mobilenet import check_recompute_bn

    assert check_recompute_bn(lambda model, batches: update_bn(batches, model))
    assert capsys.readouterr().out == "✓ recompute_bn_stats: passed\n"


@pytest.mark.parametrize("slip, hint", [
    ({"cumulative": False}, "the last batches dominate"),
    ({"reset": False}, "the stale values stay in the average"),
    # the checker's 5 batches, each keeping 1 - 0.1 (the default momentum) of the old
    ({"reset": False, "cumulative": False}, "still weigh 0.9^5"),
    ({"train_mode": False}, "only in training mode"),
    ({"restore": False}, "left it in training mode"),
    ({"step": True}, "changed"),
])
def test_recompute_bn_slips_get_a_hint_that_names_them(slip, hint, capsys):
    from cnnlab.exercises.mobilenet import check_recompute_bn

    assert not check_recompute_bn(_recompute(**slip))
    out = capsys.readouterr().out
    assert hint in out and out.count("\n") == 1


# --- recompute_bn_stats: state put back, and reset in the right place (issue 24) ---------

def recompute_momentum_left_none(model, batches):
    was_training = model.training
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        bn.reset_running_stats()
        bn.momentum = None  # never put back
    model.train()
    with torch.no_grad():
        for x in batches:
            model(x)
    model.train(was_training)


def recompute_momentum_set_to_default(model, batches):
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    recompute_momentum_left_none(model, batches)
    for bn in bns:
        bn.momentum = 0.1  # "PyTorch's default", not what this model had


def recompute_ending_in_eval(model, batches):
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [bn.momentum for bn in bns]
    recompute_momentum_left_none(model, batches)
    for bn, momentum in zip(bns, momenta):
        bn.momentum = momentum
    model.eval()  # "we are done: back to evaluation"


def recompute_resetting_after_the_loop(model, batches):
    was_training = model.training
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [bn.momentum for bn in bns]
    model.train()
    with torch.no_grad():
        for bn in bns:
            bn.momentum = None
        for x in batches:
            model(x)
    for bn, momentum in zip(bns, momenta):
        bn.reset_running_stats()  # in the clean-up, with the momenta
        bn.momentum = momentum
    model.train(was_training)


@pytest.mark.parametrize("wrong, message", [
    # The checker's first model has PyTorch's default momenta; its second, 0.01, 0.05, 0.3.
    (recompute_momentum_left_none, "had momentum 0.1 before recompute_bn_stats and None"),
    (recompute_momentum_set_to_default, "had momentum 0.01 before recompute_bn_stats and 0.1"),
    (recompute_ending_in_eval, "the model was in training mode and recompute_bn_stats left it "
                               "in eval mode"),
    (recompute_resetting_after_the_loop, "you reset the statistics AFTER the batches ran"),
])
def test_recompute_bn_state_slips_are_named(wrong, message, capsys):
    from cnnlab.exercises.mobilenet import check_recompute_bn
    assert check_recompute_bn(wrong) is False
    assert message in verdict(capsys)


def test_recompute_bn_with_a_fresh_model_copy_of_the_statistics_passes(capsys):
    # A right answer written differently: the averages computed by hand with forward
    # hooks would be long; this one resets, uses momentum None through a context of
    # its own making, and restores everything in a finally: block.
    from cnnlab.exercises.mobilenet import check_recompute_bn

    def recompute(model, batches):
        bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        saved = [(bn.momentum, bn.training) for bn in bns]
        mode = model.training
        try:
            for bn in bns:
                bn.reset_running_stats()
                bn.momentum = None
                bn.train()  # only the BN layers in training mode: dropout stays off
            with torch.no_grad():
                for x in batches:
                    model(x)
        finally:
            for bn, (momentum, training) in zip(bns, saved):
                bn.momentum = momentum
                bn.train(training)
            model.train(mode)

    assert check_recompute_bn(recompute) is True
    assert verdict(capsys) == "✓ recompute_bn_stats: passed\n"
