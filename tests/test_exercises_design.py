"""The design checkers pass the solution, and reject the stub and wrong answers.

The solution and the stub are the "exercise" cells of
solutions/10_design.ipynb and exercises/10_design.ipynb. Each wrong answer
is a slip written as a learner would write it, and each must be rejected
with the hint that names that slip. The references the checks build on
are compared with independent oracles first: torchvision's Bottleneck and
the paper's equations written out with torch.nn.functional.
"""
import math

import pytest
import torch
import torch.nn.functional as F
from exercise_cells import verdict
from torch import nn
from torchvision.models.resnet import Bottleneck as TorchvisionBottleneck

from cnnlab.exercises import design
from cnnlab.exercises.design import (ReferenceBottleneck, ReferencePreActBlock,
                                     check_block_params, check_bottleneck,
                                     check_inception_split, check_preact_block,
                                     check_thin_mobilenet, check_width_runs, one_thread)
from cnnlab.models import count_parameters, get_model
from cnnlab.models.mobilenet import SETTINGS, DepthwiseSeparable, conv_bn
from cnnlab.models.resnet import BasicBlock

NOTEBOOK = "10_design.ipynb"


def rejected(capsys, name: str, passed: bool) -> str:
    """The one ✗ line of the exercise ``name``."""
    out = verdict(capsys)
    assert passed is False, out
    assert out.startswith(f"✗ {name}: "), out
    return out


def not_done(capsys, name: str, passed: bool) -> None:
    out = verdict(capsys)
    assert passed is False
    assert out.startswith(f"… {name}: not done yet"), out


# --- the references against independent oracles ------------------------------------

def randomise(module):
    torch.manual_seed(1)
    design._randomise_batch_norms(module)


@pytest.mark.parametrize("cin, planes, stride", [(64, 16, 1), (32, 16, 1), (64, 32, 2)])
@pytest.mark.parametrize("stride_on", ["3x3", "1x1"])
def test_reference_bottleneck_is_torchvisions(cin, planes, stride, stride_on):
    torch.manual_seed(0)
    ours = ReferenceBottleneck(cin, planes, stride, stride_on)
    downsample = None
    if ours.downsample is not None:
        downsample = nn.Sequential(nn.Conv2d(cin, 4 * planes, 1, stride, bias=False),
                                   nn.BatchNorm2d(4 * planes))
    theirs = TorchvisionBottleneck(cin, planes, stride, downsample)
    if stride_on == "1x1":  # the paper's models: the stride on the first 1x1
        theirs.conv1.stride, theirs.conv2.stride = (stride, stride), (1, 1)
    randomise(ours)
    theirs.load_state_dict(ours.state_dict())  # the same names: conv1..bn3, downsample
    x = torch.randn(2, cin, 7, 7)
    for training in (False, True):
        assert torch.allclose(ours.train(training)(x), theirs.train(training)(x), atol=1e-5)
    assert count_parameters(ours) == count_parameters(theirs)


def preact_by_hand(block, x, reads):
    """The paper's full pre-activation unit, Fig. 4(e), written out (eval mode)."""
    def bn(layer, t):
        return F.batch_norm(t, layer.running_mean, layer.running_var, layer.weight,
                            layer.bias, training=False, eps=layer.eps)
    pre = F.relu(bn(block.bn1, x))
    h = F.conv2d(pre, block.conv1.weight, stride=block.conv1.stride, padding=1)
    residual = F.conv2d(F.relu(bn(block.bn2, h)), block.conv2.weight, padding=1)
    if block.projection is None:
        return residual + x
    source = pre if reads == "preactivated" else x
    return residual + F.conv2d(source, block.projection.weight, stride=block.conv1.stride)


@pytest.mark.parametrize("cin, cout, stride", [(16, 16, 1), (8, 16, 1), (16, 32, 2)])
@pytest.mark.parametrize("reads", ["preactivated", "input"])
def test_reference_preact_block_is_the_papers_equation(cin, cout, stride, reads):
    torch.manual_seed(0)
    block = ReferencePreActBlock(cin, cout, stride, reads).eval()
    randomise(block)
    x = torch.randn(2, cin, 6, 6)
    with torch.no_grad():
        assert torch.allclose(block(x), preact_by_hand(block, x, reads), atol=1e-5)
    # parameters: bn1, conv1, bn2, conv2, and the bare 1x1 projection where the shape changes
    expected = 2 * cin + 9 * cin * cout + 2 * cout + 9 * cout * cout
    expected += cin * cout if (stride, cin) != (1, cout) else 0
    assert count_parameters(block) == expected


def test_one_thread_restores_the_thread_count():
    threads = torch.get_num_threads()
    with pytest.raises(RuntimeError):
        with one_thread():
            assert torch.get_num_threads() == 1
            raise RuntimeError
    assert torch.get_num_threads() == threads


def test_every_check_is_registered_with_its_notebooks_answers():
    from cnnlab.exercises import CHECKERS
    mine = {name: r for name, r in CHECKERS.items() if r.notebook == NOTEBOOK}
    assert {r.answers for r in mine.values()} == {
        ("MyBottleneck",), ("block_params",), ("MyPreActBlock", "shortcut_gradient"),
        ("thin_mobilenet",), ("runs", "ratios"), ("SPLIT", "SPLIT_PARAMS")}


# --- Exercise 1a: the bottleneck block --------------------------------------------

BOTTLENECK = "Bottleneck block"


class Bottleneck(nn.Module):
    """A right block (stride on the 3x3), configurable into realistic wrong ones."""

    kernels = (1, 3, 1)
    expansion = 4
    stride_at = 1         # index of the conv with the stride
    bias = False
    relu_before_add = False
    final_relu = True
    projection_at_stride_1 = True
    projection_stride = True
    padding = None        # conv2's; None: k // 2

    def __init__(self, cin, planes, stride=1):
        super().__init__()
        cout = planes * self.expansion
        k1, k2, k3 = self.kernels
        strides = [1, 1, 1]
        strides[self.stride_at] = stride
        self.conv1 = nn.Conv2d(cin, planes, k1, strides[0], k1 // 2, bias=self.bias)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, k2, strides[1],
                               k2 // 2 if self.padding is None else self.padding, bias=self.bias)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, k3, strides[2], k3 // 2, bias=self.bias)
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or (self.projection_at_stride_1 and cin != cout):
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride if self.projection_stride else 1,
                          bias=self.bias),
                nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.relu_before_add:
            out = F.relu(out)
        out = out + (x if self.downsample is None else self.downsample(x))
        return F.relu(out) if self.final_relu else out


class PaperStride(Bottleneck):
    """The paper's models: the stride on the first 1x1."""
    stride_at = 0


class Modules(nn.Module):
    """Written another way: ReLU modules, an nn.Identity shortcut, the projection's
    layers under other names and declared BN first."""

    def __init__(self, cin, planes, stride=1):
        super().__init__()
        cout = 4 * planes
        self.conv1, self.bn1 = nn.Conv2d(cin, planes, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = nn.Conv2d(planes, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        if stride == 1 and cin == cout:
            self.shortcut = nn.Identity()
        else:
            self.proj_bn = nn.BatchNorm2d(cout)
            self.proj_conv = nn.Conv2d(cin, cout, 1, stride, bias=False)
            self.shortcut = lambda x: self.proj_bn(self.proj_conv(x))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


def test_bottleneck_passes_the_solution(solution, capsys):
    assert check_bottleneck(solution["MyBottleneck"]) is True
    assert verdict(capsys) == f"✓ {BOTTLENECK}: passed\n"


@pytest.mark.parametrize("right", [Bottleneck, PaperStride, Modules])
def test_bottleneck_passes_right_answers_written_differently(capsys, right):
    assert check_bottleneck(right) is True, capsys.readouterr().out


@pytest.mark.parametrize("answer", ["stub", None])
def test_bottleneck_stub_is_not_done(stub, capsys, answer):
    not_done(capsys, BOTTLENECK, check_bottleneck(stub["MyBottleneck"] if answer else None))


def wrong(base, **attributes):
    return type("MyBottleneck", (base,), attributes)


@pytest.mark.parametrize("answer, message", [
    (wrong(Bottleneck, kernels=(3, 1, 1)), "Your 3x3 is conv1: it belongs in the middle"),
    (wrong(Bottleneck, kernels=(1, 1, 3)), "Your 3x3 is conv3: it belongs in the middle"),
    (wrong(Bottleneck, expansion=1), "the expansion is missing"),
    # identity whenever the stride is 1, even where 32 channels meet 64
    (wrong(Bottleneck, projection_at_stride_1=False), "x cannot be added as it is, even at "
     "stride 1"),
    (wrong(Bottleneck, stride_at=2), "conv3 (the last 1x1) has the stride"),
    (wrong(Bottleneck, projection_stride=False), "the shortcut's 1x1 conv has stride 1"),
    (wrong(Bottleneck, relu_before_add=True), "there is a ReLU on F(x) before the addition"),
    # both slips at once: the muted-F test names the missing one first
    (wrong(Bottleneck, relu_before_add=True, final_relu=False),
     "there is no ReLU after the addition"),
    (wrong(Bottleneck, final_relu=False), "there is no ReLU after the addition"),
    (wrong(Bottleneck, bias=True), "your convs have biases"),
    (wrong(Bottleneck, kernels=(1, 3, 1), padding=0), "the 3x3 needs padding 1"),
])
def test_bottleneck_rejects_slips_with_their_hint(capsys, answer, message):
    out = rejected(capsys, BOTTLENECK, check_bottleneck(answer))
    assert message in out


def test_bottleneck_names_a_changed_dtype(capsys):
    class Double(Bottleneck):
        def forward(self, x):
            return super().forward(x).double()
    out = rejected(capsys, BOTTLENECK, check_bottleneck(Double))
    assert "returned a tensor of dtype torch.float64 for an input of dtype torch.float32" in out


def test_bottleneck_says_what_was_expected_when_no_slip_fits(capsys):
    class NoSecondRelu(Bottleneck):
        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            out = self.bn3(self.conv3(self.bn2(self.conv2(out))))  # no ReLU after bn2
            return F.relu(out + (x if self.downsample is None else self.downsample(x)))
    out = rejected(capsys, BOTTLENECK, check_bottleneck(NoSecondRelu))
    assert "differs from the reference bottleneck in eval mode" in out
    assert "conv1 -> bn1 -> ReLU -> conv2 -> bn2 -> ReLU -> conv3 -> bn3" in out


# --- Exercise 1b: parameters, bottleneck against basic -----------------------------

PARAMS = "Bottleneck against basic block"


def bn_free(width):  # the formulas without the BNs
    p = width // 4
    return 2 * 9 * width * width, width * p + 9 * p * p + p * width


def right_by_formula(width):
    p = width // 4
    basic = 2 * 9 * width * width + 2 * (2 * width)
    bottleneck = width * p + 9 * p * p + p * 4 * p + 2 * (p + p + 4 * p)
    return [basic, bottleneck]  # a list, and by formula


def test_block_params_passes_the_solution(solution, capsys):
    assert check_block_params(solution["block_params"]) is True
    assert verdict(capsys) == f"✓ {PARAMS}: passed\n"


def test_block_params_passes_a_formula(capsys):
    assert check_block_params(right_by_formula) is True, capsys.readouterr().out


@pytest.mark.parametrize("answer", ["stub", None])
def test_block_params_stub_is_not_done(stub, capsys, answer):
    not_done(capsys, PARAMS, check_block_params(stub["block_params"] if answer else None))


def state_dict_count(block):
    return sum(t.numel() for t in block.state_dict().values())


@pytest.mark.parametrize("answer, message", [
    (lambda w: tuple(reversed(right_by_formula(w))), "return (basic, bottleneck), in that order"),
    (lambda w: (state_dict_count(BasicBlock(w, w)),
                state_dict_count(ReferenceBottleneck(w, w // 4))), "they are buffers"),
    (lambda w: bn_free(w), "the BNs are missing"),
    (lambda w: (right_by_formula(w)[0] + 2 * w, right_by_formula(w)[1]), "have no bias"),
    (lambda w: (count_parameters(BasicBlock(w, w, 1, nn.Sequential(
        nn.Conv2d(w, w, 1, bias=False), nn.BatchNorm2d(w)))), right_by_formula(w)[1]),
     "has no projection"),
    (lambda w: (right_by_formula(w)[0], count_parameters(ReferenceBottleneck(w, w))),
     "planes = 256 // 4 = 64"),
])
def test_block_params_rejects_slips_with_their_hint(capsys, answer, message):
    out = rejected(capsys, PARAMS, check_block_params(answer))
    assert message in out


def test_block_params_names_a_float(capsys):
    out = rejected(capsys, PARAMS, check_block_params(
        lambda w: tuple(float(v) for v in right_by_formula(w))))
    assert "block_params(256)[0] returned 1180672.0 (float); return an int" in out


def test_block_params_names_what_was_expected(capsys):
    out = rejected(capsys, PARAMS, check_block_params(lambda w: (1, 2)))
    # BasicBlock(256, 256): 2 * 9 * 256^2 weights + 2 BNs of 2 * 256
    assert f"expected {2 * 9 * 256 * 256 + 4 * 256}, got 1" in out


# --- Exercise 2: the pre-activation block ------------------------------------------

PREACT = "Pre-activation block"


class PreAct(nn.Module):
    """A right pre-activation block, configurable into realistic wrong ones."""

    relu_after_add = False
    bn_on_projection = False
    reads = "preactivated"

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            layers = [nn.Conv2d(cin, cout, 1, stride, bias=False)]
            if self.bn_on_projection:
                layers.append(nn.BatchNorm2d(cout))
            self.shortcut = nn.Sequential(*layers)

    def forward(self, x):
        pre = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(pre))))
        if self.shortcut is None:
            out = out + x
        else:
            out = out + self.shortcut(pre if self.reads == "preactivated" else x)
        return F.relu(out) if self.relu_after_add else out


class ReadsInput(PreAct):
    """The projection fed x rather than relu(bn1(x)): accepted too."""
    reads = "input"


class PreActModules(nn.Module):
    """Written another way: ReLU modules (not in place), an nn.Identity shortcut."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.bn1, self.relu1 = nn.BatchNorm2d(cin), nn.ReLU()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.relu2 = nn.BatchNorm2d(cout), nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        same = stride == 1 and cin == cout
        self.shortcut = nn.Identity() if same else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        residual = self.conv2(self.relu2(self.bn2(self.conv1(self.relu1(self.bn1(x))))))
        return residual + self.shortcut(x)


def gradient_by_autograd(block, x, upstream):
    """Right, written another way: conv2 zeroed through .data, torch.autograd.grad."""
    block.conv2.weight.data.zero_()
    block.train()
    x = x.clone().requires_grad_()
    out = block(x)
    (grad,) = torch.autograd.grad(out, x, upstream)
    return grad


def test_preact_passes_the_solution(solution, capsys):
    assert check_preact_block(solution["MyPreActBlock"], solution["shortcut_gradient"]) is True
    assert verdict(capsys) == f"✓ {PREACT}: passed\n"


@pytest.mark.parametrize("right", [PreAct, ReadsInput, PreActModules])
def test_preact_passes_right_answers_written_differently(capsys, right):
    assert check_preact_block(right, gradient_by_autograd) is True, capsys.readouterr().out


def test_shortcut_gradient_in_float64_is_right(capsys):
    def in_float64(block, x, upstream):
        return gradient_by_autograd(block, x, upstream).double()
    assert check_preact_block(PreAct, in_float64) is True, capsys.readouterr().out


@pytest.mark.parametrize("which", ["block", "gradient", "both"])
def test_preact_stub_is_not_done(stub, capsys, which):
    block = stub["MyPreActBlock"] if which != "gradient" else PreAct
    grad = stub["shortcut_gradient"] if which != "block" else gradient_by_autograd
    not_done(capsys, PREACT, check_preact_block(block, grad))
    not_done(capsys, PREACT, check_preact_block(None, grad))


class PostActivation(nn.Module):
    """The original block, order conv-BN-ReLU-conv-BN, the final ReLU dropped."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = (None if stride == 1 and cin == cout
                         else nn.Conv2d(cin, cout, 1, stride, bias=False))

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return out + (x if self.shortcut is None else self.shortcut(x))


class ReluOnly(PostActivation):
    """The paper's Fig. 4(d): ReLU -> conv -> BN -> ReLU -> conv -> BN."""

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(F.relu(x))))))
        return out + (x if self.shortcut is None else self.shortcut(F.relu(x)))


class BNShortcut(PreAct):
    """A BN on the identity path."""

    def __init__(self, cin, cout, stride=1):
        super().__init__(cin, cout, stride)
        if self.shortcut is None:
            self.shortcut = nn.BatchNorm2d(cin)

    def forward(self, x):
        pre = F.relu(self.bn1(x))
        return self.conv2(F.relu(self.bn2(self.conv1(pre)))) + self.shortcut(
            x if isinstance(self.shortcut, nn.BatchNorm2d) else pre)


class Rebinds(PreAct):
    """x = relu(bn1(x)) rebinds x: the shortcut carries the pre-activated input."""

    def forward(self, x):
        x = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(x))))
        return out + (x if self.shortcut is None else self.shortcut(x))


class InPlace(PreAct):
    """An in-place ReLU on the input, written before the BN (ReLU first)."""

    def forward(self, x):
        pre = self.bn1(F.relu_(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(pre))))
        return out + (x if self.shortcut is None else self.shortcut(x))


class StrideOnConv2(PreAct):
    def __init__(self, cin, cout, stride=1):
        super().__init__(cin, cout, stride)
        self.conv1.stride, self.conv2.stride = (1, 1), (stride, stride)


class AlwaysProjects(PreAct):
    """A 1x1 conv on every shortcut, the shape kept or not."""

    def __init__(self, cin, cout, stride=1):
        super().__init__(cin, cout, stride)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)


class Detached(PreAct):
    def forward(self, x):
        pre = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(pre))))
        return out + (x.detach() if self.shortcut is None else self.shortcut(pre))


@pytest.mark.parametrize("answer, message", [
    (wrong(PreAct, relu_after_add=True), "there is a ReLU after the addition"),
    (PostActivation, "the original order; pre-activation moves BN and ReLU in front"),
    (ReluOnly, "'ReLU-only pre-activation' (Fig. 4(d))"),
    (BNShortcut, "a BN reads x on the shortcut"),
    (wrong(PreAct, bn_on_projection=True), "the projection has a BN"),
    (Rebinds, "the shortcut carries the pre-activated input"),
    (InPlace, "changed its input x in place"),
    (Detached, "no gradient reached x"),
    (StrideOnConv2, "the stride is on conv2; it belongs to conv1"),
    (AlwaysProjects, "the block has a conv besides conv1 and conv2, on its shortcut"),
])
def test_preact_rejects_slips_with_their_hint(capsys, answer, message):
    out = rejected(capsys, PREACT, check_preact_block(answer, gradient_by_autograd))
    assert message in out


def test_preact_post_activation_on_a_widening_block_is_named(capsys, monkeypatch):
    # Only the widening block, where bn1's width gives the order away at once.
    monkeypatch.setattr(design, "PREACT_CASES", [(8, 16, 1)])
    out = rejected(capsys, PREACT, check_preact_block(PostActivation, gradient_by_autograd))
    assert "bn1 normalises 16 channels, conv1's output: your BN comes after the conv" in out


def ones_backward(block, x, upstream):
    with torch.no_grad():
        block.conv2.weight.zero_()
    block.train()
    x = x.clone().requires_grad_()
    block(x).sum().backward()
    return x.grad


def not_muted(block, x, upstream):
    block.train()
    x = x.clone().requires_grad_()
    block(x).backward(upstream)
    return x.grad


@pytest.mark.parametrize("answer, message", [
    (ones_backward, "you backpropagated a gradient of ones"),
    (not_muted, "this is the gradient through the whole block"),
    (lambda block, x, upstream: upstream, "you returned upstream itself"),
    (lambda block, x, upstream: torch.zeros_like(x), "zero block.conv2.weight, put the block"),
    (lambda block, x, upstream: None, "returned a NoneType, not a tensor"),
])
def test_shortcut_gradient_rejects_slips_with_their_hint(capsys, answer, message):
    out = rejected(capsys, PREACT, check_preact_block(PreAct, answer))
    assert message in out


# --- Exercise 3a: MobileNetV1 at width alpha ---------------------------------------

THIN = "MobileNetV1 at width alpha"


def mobilenet(width, rule=lambda c, w: max(1, int(c * w)), stem_rule=None, block=None,
              repeats=True, upsample=False, dropout=0.5):
    """MobileNetV1 as a learner builds it; ``rule`` makes the channels."""
    stem_rule = stem_rule or rule
    block = block or DepthwiseSeparable
    cin = stem_rule(32, width)
    layers = ([nn.Upsample(scale_factor=2)] if upsample else []) + [conv_bn(1, cin, 3, 2)]
    for c, s, n in SETTINGS:
        for i in range(n if repeats else 1):
            layers.append(block(cin, rule(c, width), s if i == 0 else 1))
            cin = rule(c, width)
    head = [nn.Dropout(dropout)] if dropout else []
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), *head,
                         nn.Linear(cin, 10))


class Standard(nn.Module):
    """A "separable" block whose first conv forgot groups."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.depthwise = conv_bn(cin, cin, 3, stride)
        self.pointwise = conv_bn(cin, cout, 1)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


class StrideOnPointwise(Standard):
    def __init__(self, cin, cout, stride):
        super().__init__(cin, cout, stride)
        self.depthwise = conv_bn(cin, cin, 3, 1, groups=cin)
        self.pointwise = conv_bn(cin, cout, 1, stride)


def test_thin_mobilenet_passes_the_solution(solution, capsys):
    assert check_thin_mobilenet(solution["thin_mobilenet"]) is True
    assert verdict(capsys) == f"✓ {THIN}: passed\n"


class Functional(nn.Module):
    """Written another way: its own blocks (padding="same" where the stride is 1),
    a functional dropout."""

    def __init__(self, width):
        super().__init__()
        thin = lambda c: max(1, math.floor(c * width))  # noqa: E731
        cin = thin(32)
        layers = [conv_bn(1, cin, 3, 2)]
        for c, s, n in SETTINGS:
            for i in range(n):
                stride = s if i == 0 else 1
                layers += [nn.Conv2d(cin, cin, 3, stride, "same" if stride == 1 else 1,
                                     groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU(),
                           nn.Conv2d(cin, thin(c), 1, bias=False), nn.BatchNorm2d(thin(c)),
                           nn.ReLU()]
                cin = thin(c)
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, 10)

    def forward(self, x):
        x = self.features(x).mean(dim=(2, 3))
        return self.fc(F.dropout(x, 0.5, self.training))


@pytest.mark.parametrize("right", [
    lambda w: get_model("mobilenet_v1", width=w, upsample=1),  # the package's own
    Functional,
])
def test_thin_mobilenet_passes_right_answers_written_differently(capsys, right):
    assert check_thin_mobilenet(right) is True, capsys.readouterr().out


@pytest.mark.parametrize("answer", ["stub", None])
def test_thin_mobilenet_stub_is_not_done(stub, capsys, answer):
    not_done(capsys, THIN, check_thin_mobilenet(stub["thin_mobilenet"] if answer else None))


def torchvision_divisible(v, d=8):
    new = max(d, int(v + d / 2) // d * d)
    return new + d if new < 0.9 * v else new


@pytest.mark.parametrize("answer, message", [
    (lambda w: mobilenet(w, rule=lambda c, a: c, stem_rule=lambda c, a: int(c * a)),
     "only the first conv is thinned"),
    (lambda w: mobilenet(w, stem_rule=lambda c, a: c), "the stem) keeps its 32 channels"),
    (lambda w: mobilenet(w, rule=lambda c, a: max(1, round(c * a))), "rounded alpha * channels "
     "to the nearest whole number"),
    (lambda w: mobilenet(w, rule=lambda c, a: math.ceil(c * a)), "rounded alpha * channels up"),
    (lambda w: mobilenet(w, rule=lambda c, a: torchvision_divisible(c * a)), "multiple of 8"),
    (lambda w: mobilenet(w, rule=lambda c, a: int(c * a * a)), "alpha squared"),
    (lambda w: mobilenet(w, upsample=True), "upsamples the digit to 56 px"),
    (lambda w: mobilenet(w, block=Standard), "is a standard 3x3 conv"),
    (lambda w: mobilenet(w, block=StrideOnPointwise), "a pointwise 1x1 conv, has stride 2"),
    (lambda w: mobilenet(w, repeats=False), "each repeated n times"),
    (lambda w: mobilenet(w, dropout=0), "has no dropout"),
    (lambda w: mobilenet(w, dropout=0.2), "dropout p = [0.2]"),
])
def test_thin_mobilenet_rejects_slips_with_their_hint(capsys, answer, message):
    out = rejected(capsys, THIN, check_thin_mobilenet(answer))
    assert message in out


def test_thin_mobilenet_names_a_missing_relu_by_the_logits(capsys):
    def no_relu(width):
        model = mobilenet(width)
        for m in model.modules():
            if isinstance(m, nn.Sequential) and isinstance(m[-1], nn.ReLU):
                m[-1] = nn.Identity()
        return model
    out = rejected(capsys, THIN, check_thin_mobilenet(no_relu))
    assert "logits differ from the package's MobileNetV1" in out


# --- Exercise 3b: the two runs ------------------------------------------------------

RUNS = "Width 0.5 against width 1.0"


@pytest.fixture(scope="module")
def trained(solution):
    """The solution's runs and ratios (trained once, when the notebook's cells ran)."""
    return solution["runs"], solution["ratios"]


def edit(trained, width=None, **changes):
    runs, ratios = trained
    runs = {w: dict(run) for w, run in runs.items()}
    ratios = dict(ratios)
    for key, value in changes.items():
        if key.startswith("ratio_"):
            ratios[key[len("ratio_"):]] = value
        else:
            runs[width][key] = value
    return runs, ratios


def test_width_runs_pass_the_solution(trained, capsys):
    assert check_width_runs(*trained) is True
    assert verdict(capsys) == f"✓ {RUNS}: passed\n"


def test_width_runs_pass_numbers_written_differently(trained, capsys):
    import numpy as np
    runs, ratios = trained
    model = runs[0.5]["model"]
    paper = design._mult_adds(0.5)["paper"]  # the paper's count: weights only
    runs, ratios = edit(trained, 0.5, accuracy=100 * runs[0.5]["accuracy"],  # a percentage
                        params=np.int64(runs[0.5]["params"]), mult_adds=paper,
                        ratio_mult_adds=paper / runs[1.0]["mult_adds"])
    runs = {1: runs[1.0], 0.5: runs[0.5]}  # 1 rather than 1.0
    runs[1]["accuracy"] = torch.tensor(runs[1]["accuracy"])
    assert model is runs[0.5]["model"]
    assert check_width_runs(runs, ratios) is True, capsys.readouterr().out


@pytest.mark.parametrize("which", ["runs", "ratios"])
def test_width_runs_stub_is_not_done(stub, trained, capsys, which):
    assert stub["runs"] is None and stub["ratios"] is None
    answer = (None, trained[1]) if which == "runs" else (trained[0], None)
    not_done(capsys, RUNS, check_width_runs(*answer))


def accuracy_on(model, split):
    from cnnlab.train import evaluate
    return evaluate(model, split.head(1000))[1]


def distinct(accuracy, run):
    if math.isclose(accuracy, run["accuracy"]):  # the slip would give the right number
        pytest.skip("the two accuracies happen to be equal on this machine")
    return accuracy


def test_width_runs_reject_training_accuracy(trained, mnist, capsys):
    runs, _ = trained
    train = distinct(accuracy_on(runs[0.5]["model"], mnist.train), runs[0.5])
    answer = edit(trained, 0.5, accuracy=train)
    out = rejected(capsys, RUNS, check_width_runs(*answer))
    assert "the accuracy on the first 1,000 training images" in out


def test_width_runs_reject_test_accuracy(trained, mnist, capsys):
    runs, _ = trained
    test = distinct(accuracy_on(runs[1.0]["model"], mnist.test), runs[1.0])
    answer = edit(trained, 1.0, accuracy=test)
    out = rejected(capsys, RUNS, check_width_runs(*answer))
    assert "the accuracy on the first 1,000 test images" in out


def test_width_runs_reject_an_accuracy_the_network_does_not_have(trained, capsys):
    runs, _ = trained
    # each run's accuracy under the other's name
    answer = edit(trained, 0.5, accuracy=runs[1.0]["accuracy"])
    out = rejected(capsys, RUNS, check_width_runs(*answer))
    assert "but the network in runs[0.5]['model'] scores" in out


def test_width_runs_reject_the_loss_as_accuracy(trained, mnist, capsys):
    from cnnlab.train import evaluate
    runs, _ = trained
    answer = edit(trained, 0.5, accuracy=evaluate(runs[0.5]["model"], mnist.val.head(1000))[0])
    out = rejected(capsys, RUNS, check_width_runs(*answer))
    assert "the cross-entropy loss on the first 1,000 validation images" in out


def test_width_runs_reject_an_accuracy_one_image_off(trained, mnist, capsys):
    runs, _ = trained
    model = runs[1.0]["model"]
    _, ties, _ = design._accuracy(model, mnist.val.images[:1000], mnist.val.labels[:1000])
    # one image more than the near-ties, which another thread count could flip
    answer = edit(trained, 1.0, accuracy=runs[1.0]["accuracy"] - (ties + 1) / 1000)
    out = rejected(capsys, RUNS, check_width_runs(*answer))
    assert "but the network in runs[1.0]['model'] scores" in out


def test_near_ties_are_counted():
    class Fixed(nn.Module):  # logits with margins 0, 0.0005 and 2 between the top two
        def forward(self, x):
            return torch.tensor([[1.0, 1.0, 0.0], [0.0, 3.0, 2.9995], [2.0, 0.0, 0.0]])
    images, labels = torch.zeros(3, 28, 28, dtype=torch.uint8), torch.tensor([1, 1, 0])
    accuracy, ties, _ = design._accuracy(Fixed(), images, labels)
    assert (accuracy, ties) == (2 / 3, 2)  # argmax takes the first of a tie: class 0


def test_width_runs_reject_an_untrained_network(trained, solution, mnist, capsys):
    torch.manual_seed(0)
    fresh = solution["thin_mobilenet"](0.5)
    answer = edit(trained, 0.5, model=fresh, accuracy=accuracy_on(fresh, mnist.val))
    out = rejected(capsys, RUNS, check_width_runs(*answer))
    assert "no better than an untrained one" in out


def test_width_runs_reject_one_network_for_both(trained, capsys):
    runs, _ = trained
    answer = edit(trained, 0.5, model=runs[1.0]["model"])
    out = rejected(capsys, RUNS, check_width_runs(*answer))
    assert "runs[0.5]['model'] is MobileNetV1 at width 1.0, not 0.5" in out


@pytest.mark.parametrize("key, slip, message", [
    ("params", lambda run: sum(t.numel() for t in run["model"].state_dict().values()),
     "you counted the buffers too"),
    ("mult_adds", lambda run: 64 * run["mult_adds"], "you counted a batch of 64"),
    ("mult_adds", lambda run: design._mult_adds(0.5, 56)["torchinfo"], "the count at 56 px"),
    ("mult_adds", lambda run: run["params"], "that is the parameter count"),
])
def test_width_runs_reject_cost_slips(trained, capsys, key, slip, message):
    answer = edit(trained, 0.5, **{key: slip(trained[0][0.5])})
    out = rejected(capsys, RUNS, check_width_runs(*answer))
    assert message in out


@pytest.mark.parametrize("key, slip, message", [
    ("mult_adds", lambda runs, ratios: 0.25, "alpha^2, the paper's rule of thumb"),
    ("params", lambda runs, ratios: 0.5, "0.5 is alpha"),
    ("mult_adds", lambda runs, ratios: 1 / ratios["mult_adds"], "width 1.0 over width 0.5"),
    ("params", lambda runs, ratios: ratios["mult_adds"], "the ratio of the mult-adds"),
])
def test_width_runs_reject_ratio_slips(trained, capsys, key, slip, message):
    answer = edit(trained, **{f"ratio_{key}": slip(*trained)})
    out = rejected(capsys, RUNS, check_width_runs(*answer))
    assert message in out


# --- Exercise 4: an Inception module under a budget --------------------------------

SPLIT = "Inception module under a budget"


def params(split, cin=192, bias=True):
    c1, c3r, c3, c5r, c5, pool = split
    b = 1 if bias else 0
    return ((cin + b) * c1 + (cin + b) * c3r + (9 * c3r + b) * c3 + (cin + b) * c5r
            + (25 * c5r + b) * c5 + (cin + b) * pool)


def test_inception_split_passes_the_solution(solution, capsys):
    assert check_inception_split(solution["SPLIT"], solution["SPLIT_PARAMS"]) is True
    assert verdict(capsys) == f"✓ {SPLIT}: passed\n"


@pytest.mark.parametrize("split", [(64, 48, 96, 16, 32, 64), [96, 32, 64, 16, 32, 64],
                                   (32, 48, 128, 8, 32, 64)])
def test_inception_split_passes_other_splits_within_the_rules(capsys, split):
    assert params(split) <= 100_000
    assert check_inception_split(split, torch.tensor(params(split))) is True, \
        capsys.readouterr().out


@pytest.mark.parametrize("which", ["SPLIT", "SPLIT_PARAMS"])
def test_inception_split_stub_is_not_done(stub, capsys, which):
    assert stub["SPLIT"] is None and stub["SPLIT_PARAMS"] is None
    answer = (None, 1) if which == "SPLIT" else ((64, 48, 96, 16, 32, 64), None)
    not_done(capsys, SPLIT, check_inception_split(*answer))


@pytest.mark.parametrize("split, count, message", [
    # the reduce channels counted in the 256: 64 + 48 + 64 + 16 + 32 + 32 = 256
    ((64, 48, 64, 16, 32, 32), None, "you counted the reduce convs' channels in the output"),
    # the pool branch as 192 channels: 32 + 32 + ... no: 1x1 + 3x3 + 5x5 + 192 = 256
    ((32, 16, 16, 8, 16, 64), None, "the pool branch as its input's 192 channels"),
    ((96, 48, 96, 16, 64, 32), None, "the pool branch's pool proj channels"),
    # 64 + 96 + 32 + 64 = 256, counted without biases
    ((64, 48, 96, 16, 32, 64), lambda s: params(s, bias=False), "leaves out the biases"),
    ((64, 48, 96, 16, 32, 64), lambda s: params(s) - (192 * s[5] + s[5]),
     "your count has no pool projection"),
    ((64, 48, 96, 16, 32, 64), lambda s: params(s) - 9 * 48 * 96 - 25 * 16 * 32
     + 9 * 192 * 96 + 25 * 192 * 32, "on all 192 input channels"),
    # the paper's own 3a: 163,696 parameters
    ((64, 96, 128, 16, 32, 32), None, "63,696 over the budget of 100,000"),
    ((128, 48, 64, 8, 16, 48), None, "#5x5 = 16: each branch gives at least 32"),
    # a 5x5 reduce wider than the 5x5 conv it feeds (89,920 parameters)
    ((64, 24, 96, 40, 32, 64), None, "#5x5 reduce = 40: a reduce conv narrows"),
])
def test_inception_split_rejects_slips_with_their_hint(capsys, split, count, message):
    count = params(split) if count is None else count(split)
    out = rejected(capsys, SPLIT, check_inception_split(split, count))
    assert message in out


def test_inception_split_refuses_a_conv_wider_than_the_output_before_building_it(capsys):
    split = (64, 10**9, 96, 16, 32, 64)  # a slip of the keyboard: 10**9 channels, 768 GB
    out = rejected(capsys, SPLIT, check_inception_split(split, 1))
    assert "#3x3 reduce = 1000000000 is more channels than the module's whole output" in out


def test_inception_split_says_what_was_expected(capsys):
    out = rejected(capsys, SPLIT, check_inception_split((64, 48, 96, 16, 32, 64), 12345))
    assert f"expected {params((64, 48, 96, 16, 32, 64))}, got 12345" in out
