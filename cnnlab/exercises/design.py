"""Checkers for the design exercises (exercises/10_design.ipynb).

Each exercise builds something a paper describes, and the check builds the
paper's version beside it:

* ``check_bottleneck``: ResNet-50's bottleneck block (He et al., 2016,
  Deep Residual Learning), against ``ReferenceBottleneck``, with the
  stride on the 3x3 (torchvision, "ResNet v1.5") or on the first 1x1 (the
  paper): both are accepted.
* ``check_block_params``: a basic block's parameters against a
  bottleneck's at the same width.
* ``check_preact_block``: the pre-activation block (He et al., 2016,
  Identity Mappings), against ``ReferencePreActBlock``, and the gradient
  through its shortcut.
* ``check_thin_mobilenet``: MobileNetV1 at width multiplier alpha (Howard
  et al., 2017), against ``get_model("mobilenet_v1", width=alpha, upsample=1)``.
* ``check_width_runs``: widths 1.0 and 0.5 trained briefly; the cost and
  accuracy the learner reports, recomputed from the networks they return.
* ``check_inception_split``: an Inception module (Szegedy et al., 2015) with
  the learner's own channel split under a parameter budget.

A wrong answer is named by recomputing the answer under each known slip
and comparing; when none matches, the line says what was expected and
what came back.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import checker, expect, expect_equal, shown
# one_thread is imported by the design notebook from here, too
from ._harness import (allclose, as_count, as_real, close, equal, given,  # noqa: F401
                       load_shortcut, one_thread, shortcut_layers, tensor_answer)
from ..models import count_parameters, eval_mode, get_model
from ..models.googlenet import Inception
from ..models.mobilenet import SETTINGS
from ..models.resnet import BasicBlock, conv1x1, conv3x3

NOTEBOOK = "10_design.ipynb"

BOOK = "exercises/10_design"


# --- the references ------------------------------------------------------------

class ReferenceBottleneck(nn.Module):
    """ResNet-50's bottleneck block: 1x1 reduce, 3x3, 1x1 expand (x4), BN after each.

    ``out = relu(F(x) + shortcut(x))`` with ``F(x) = bn3(conv3(relu(bn2(conv2(
    relu(bn1(conv1(x))))))))``; the shortcut is x where the shape is kept,
    else a 1x1 conv (the block's stride, no bias) and a BN (option B).
    ``stride_on="3x3"`` puts the stride on conv2, as torchvision does
    ("ResNet v1.5"); ``"1x1"`` on conv1, as the paper's models did.
    """

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1,
                 stride_on: str = "3x3") -> None:
        super().__init__()
        if stride_on not in ("3x3", "1x1"):
            raise ValueError(f"stride_on must be '3x3' or '1x1', got {stride_on!r}")
        cout = planes * self.expansion
        first, middle = (stride, 1) if stride_on == "1x1" else (1, stride)
        self.conv1 = conv1x1(cin, planes, first)       # reduce
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, middle)   # the 3x3, on the reduced width
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, cout)             # expand
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample = (None if stride == 1 and cin == cout else
                           nn.Sequential(conv1x1(cin, cout, stride), nn.BatchNorm2d(cout)))

    def residual(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))

    def shortcut(self, x: Tensor) -> Tensor:
        return x if self.downsample is None else self.downsample(x)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.residual(x) + self.shortcut(x))


class ReferencePreActBlock(nn.Module):
    """The full pre-activation block of He et al. (2016), Fig. 4(e).

    ``out = F(x) + shortcut(x)`` with ``F(x) = conv2(relu(bn2(conv1(relu(bn1(x))))))``:
    nothing after the addition. The shortcut is x where the shape is kept,
    else a bare 1x1 conv (the block's stride, no bias, no BN). The code
    published with the paper (github.com/KaimingHe/resnet-1k-layers) feeds
    it the pre-activated input ``relu(bn1(x))`` (``projection_reads=
    "preactivated"``); ``"input"`` feeds it x.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1,
                 projection_reads: str = "preactivated") -> None:
        super().__init__()
        if projection_reads not in ("preactivated", "input"):
            raise ValueError(f"projection_reads must be 'preactivated' or 'input', "
                             f"got {projection_reads!r}")
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = conv3x3(cout, cout)
        self.projection = None if stride == 1 and cin == cout else conv1x1(cin, cout, stride)
        self.projection_reads = projection_reads

    def forward(self, x: Tensor) -> Tensor:
        pre = F.relu(self.bn1(x))
        residual = self.conv2(F.relu(self.bn2(self.conv1(pre))))
        if self.projection is None:
            return residual + x
        return residual + self.projection(pre if self.projection_reads == "preactivated" else x)


def _randomise_batch_norms(module: nn.Module) -> None:
    """Non-trivial BN scales, shifts and statistics, so that where each BN sits shows."""
    for bn in (m for m in module.modules() if isinstance(m, nn.BatchNorm2d)):
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.5, 0.5)
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 1.5)


def _module(block_cls: type, args: tuple, name: str) -> nn.Module:
    block = block_cls(*args)
    expect(isinstance(block, nn.Module),
           f"{name} returned a {type(block).__name__}, not an nn.Module: subclass "
           f"nn.Module and call super().__init__() first.")
    return block


def _named_layers(block: nn.Module, name: str, kinds: dict[str, type], why: str) -> None:
    missing = [a for a in kinds if not isinstance(getattr(block, a, None), nn.Module)]
    expect(not missing, f"{name} has no layer named {', '.join(missing)}. {why}")
    for attr, kind in kinds.items():
        layer = getattr(block, attr)
        expect(isinstance(layer, kind),
               f"{name}.{attr} is a {type(layer).__name__}; it should be an "
               f"nn.{kind.__name__}.")


def _size_mismatch(err: RuntimeError) -> bool:
    text = str(err)
    return "must match the size" in text or "The size of tensor" in text


def _gap(a: Tensor, b: Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


def _padding(conv: nn.Conv2d) -> int:
    """A conv's padding as one number ("same" is k // 2 for the odd kernels here)."""
    if conv.padding == "same":
        return conv.kernel_size[0] // 2
    if conv.padding == "valid":
        return 0
    return conv.padding[0]


def _same_dtype(out: Tensor, x: Tensor, call: str) -> None:
    """Name a dtype the answer changed (the checks compare in the input's dtype)."""
    expect(out.dtype == x.dtype,
           f"{call} returned a tensor of dtype {out.dtype} for an input of dtype {x.dtype}: "
           f"keep the input's dtype (a constant made with another dtype, or .double(), "
           f"changes it).")


# --- Exercise 1a: the bottleneck block ----------------------------------------

# (cin, planes, stride): a block that keeps the shape (cin = 4 * planes); one
# that widens at stride 1, as the first block of ResNet-50's first stage
# does (64 -> 256 there); one that halves the map and widens.
BOTTLENECK_CASES = [(64, 16, 1), (32, 16, 1), (64, 32, 2)]
BOTTLENECK_MAP = 7  # odd: a stride-2 block must give 4x4 whichever conv has the stride
BOTTLENECK_LAYERS = ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3")


def _bottleneck_name(cin: int, planes: int, stride: int) -> str:
    return f"MyBottleneck({cin}, {planes}, stride={stride})"


def _build_bottleneck(block_cls: type, cin: int, planes: int, stride: int) -> nn.Module:
    name = _bottleneck_name(cin, planes, stride)
    block = _module(block_cls, (cin, planes, stride), name)
    _named_layers(block, name, {n: (nn.Conv2d if n.startswith("conv") else nn.BatchNorm2d)
                                for n in BOTTLENECK_LAYERS},
                  "Name the residual's layers conv1, bn1, conv2, bn2, conv3, bn3, in the "
                  "order they run (as torchvision's Bottleneck does): the check mutes bn3 "
                  "and reads each conv's kernel, channels and stride.")
    return block


def _check_bottleneck_layout(block: nn.Module, cin: int, planes: int, stride: int) -> None:
    name = _bottleneck_name(cin, planes, stride)
    convs = [block.conv1, block.conv2, block.conv3]
    kernels = [c.kernel_size for c in convs]
    if kernels != [(1, 1), (3, 3), (1, 1)]:
        where = [f"conv{i + 1}" for i, k in enumerate(kernels) if k == (3, 3)]
        expect(False,
               f"{name}: the kernels of conv1, conv2, conv3 are "
               f"{[f'{k[0]}x{k[1]}' for k in kernels]}; a bottleneck's are 1x1, 3x3, 1x1."
               + (f" Your 3x3 is {', '.join(where)}: it belongs in the middle, between "
                  f"the 1x1 that reduces the channels to planes and the 1x1 that expands "
                  f"them, so that it works on the narrow planes-wide maps. That is where "
                  f"the saving comes from." if where and where != ["conv2"] else ""))
    cout = 4 * planes
    got = [(c.in_channels, c.out_channels) for c in convs]
    expected = [(cin, planes), (planes, planes), (planes, cout)]
    if got != expected:
        if got[2][1] == planes:
            hint = (f"conv3 outputs planes = {planes} channels: the expansion is missing. "
                    f"The block's output is expansion * planes = 4 * {planes} = {cout} "
                    f"channels; planes is only the width inside.")
        elif got[0][1] == cout:
            hint = (f"conv1 already gives 4 * planes = {cout} channels: conv1 reduces "
                    f"cin to planes, and only conv3 expands planes to 4 * planes.")
        else:
            hint = ("conv1 is cin -> planes, conv2 planes -> planes, conv3 planes -> "
                    "4 * planes.")
        expect_equal(f"(in, out) channels of conv1, conv2, conv3 of {name}",
                     expected, got, hint)
    paddings = [_padding(c) for c in convs]
    expect(paddings == [0, 1, 0],
           f"{name}: the paddings of conv1, conv2, conv3 are {paddings}; the 3x3 needs "
           f"padding 1 and the 1x1 convs none, so that F(x) keeps the map's size (halved "
           f"by the stride) and can be added to the shortcut.")
    strides = [c.stride[0] for c in convs]
    if stride == 1:
        expect(strides == [1, 1, 1],
               f"{name}: conv strides {strides}; a stride-1 block has none.")
        return
    expect(strides[2] == 1,
           f"{name}: conv3 (the last 1x1) has the stride. It then reads every second "
           f"pixel, in each direction, of maps that conv1 and the 3x3 computed in full: "
           f"three quarters of their work is thrown away. Put the stride on the 3x3 "
           f"(torchvision, 'ResNet v1.5') or on the first 1x1 (the paper's models); the "
           f"check accepts both.")
    expect(strides[:2] != [stride, stride],
           f"{name}: conv1 and conv2 both have stride {stride}, so the map shrinks "
           f"twice. Only one of them strides: the 3x3 (torchvision) or the first 1x1 "
           f"(the paper).")
    expect(stride in strides[:2],
           f"{name}: none of conv1, conv2, conv3 has the stride {stride} (their strides "
           f"are {strides}). Give it to the 3x3 (torchvision) or the first 1x1 (the "
           f"paper), and to the shortcut's 1x1 conv.")


def _check_bottleneck_shape(block: nn.Module, cin: int, planes: int, stride: int) -> None:
    name = _bottleneck_name(cin, planes, stride)
    x = torch.randn(2, cin, BOTTLENECK_MAP, BOTTLENECK_MAP)
    expected = tuple(ReferenceBottleneck(cin, planes, stride).eval()(x).shape)
    try:
        out = tensor_answer(block.eval()(x), f"{name}(x)")
    except RuntimeError as err:
        if not _size_mismatch(err):
            raise
        convs = [m for m in shortcut_layers(block, BOTTLENECK_LAYERS) if isinstance(m, nn.Conv2d)]
        if not convs and stride == 1:
            hint = (f"the output has 4 * {planes} = {4 * planes} channels but x has {cin}, "
                    f"so x cannot be added as it is, even at stride 1. The shortcut needs "
                    f"a projection wherever the shape changes, channels included: a 1x1 "
                    f"conv (no bias) + BN, as in the first block of ResNet-50's first "
                    f"stage (64 -> 256 channels).")
        elif not convs:
            hint = ("the block changes the shape, so x cannot be added as it is: the "
                    "shortcut is a 1x1 conv with the block's stride (no bias) + BN.")
        elif any(c.stride[0] != stride for c in convs):
            hint = (f"the shortcut's 1x1 conv has stride {convs[0].stride[0]}: it needs "
                    f"the block's stride {stride}, so that it halves the map as the "
                    f"residual does.")
        else:
            hint = "the residual and the shortcut must give the same shape."
        expect(False, f"{name} crashed on an input of shape {tuple(x.shape)}: "
                      f"\"{str(err).rstrip('.')}\". Expected an output of shape "
                      f"{expected}: {hint}")
    expect_equal(f"output shape of {name} for an input of shape {tuple(x.shape)}",
                 expected, tuple(out.shape),
                 "the output has 4 * planes channels and the map is divided by the stride "
                 "(the 3x3 has padding 1).")
    _same_dtype(out, x, f"{name}(x)")


def _check_bottleneck_identity(block_cls: type) -> None:
    cin, planes, stride = BOTTLENECK_CASES[0]
    name = _bottleneck_name(cin, planes, stride)
    block = _build_bottleneck(block_cls, cin, planes, stride)
    block.bn3.weight.zero_()  # F(x) = 0 exactly in eval mode (bn3's shift is 0)
    x = torch.randn(2, cin, BOTTLENECK_MAP, BOTTLENECK_MAP)
    out = tensor_answer(block.eval()(x), f"{name}(x)")
    if equal(out, F.relu(x)):
        return
    extra = shortcut_layers(block, BOTTLENECK_LAYERS)
    if extra:
        hint = (f"where the shape is kept the shortcut is x itself; your block has "
                f"{[type(m).__name__ for m in extra]} besides the six layers, which "
                f"changes x on its way round.")
    elif equal(out, x):
        hint = "there is no ReLU after the addition: forward returns relu(F(x) + x)."
    elif equal(out, torch.zeros_like(out)) or equal(out, F.relu(torch.zeros_like(out))):
        hint = "x is never added back: forward returns relu(F(x) + shortcut(x))."
    else:
        hint = f"it is off by up to {_gap(out, F.relu(x)):.3g}."
    expect(False, f"with bn3.weight = 0 (so F(x) = 0) and in eval mode, {name} must "
                  f"return relu(x) exactly: {hint}")


def _check_bottleneck_parameters(block: nn.Module, cin: int, planes: int, stride: int) -> None:
    name = _bottleneck_name(cin, planes, stride)
    reference = ReferenceBottleneck(cin, planes, stride)
    expected, got = count_parameters(reference), count_parameters(block)
    if got == expected:
        return
    cout = 4 * planes
    biases = sum(c.out_channels for c in block.modules() if isinstance(c, nn.Conv2d))
    projection = cin * cout + 2 * cout
    if got == expected + biases:
        hint = (f"your convs have biases ({biases} numbers): each is followed by a BN, "
                f"whose shift does a bias's job, so bias=False.")
    elif reference.downsample is not None and got == expected - projection:
        hint = ("the projection's parameters are missing: where the shape changes the "
                "exercise asks for the paper's option B, a 1x1 conv + BN.")
    elif reference.downsample is not None and got == expected - 2 * cout:
        hint = "the projection has no BN of its own: a 1x1 conv, then nn.BatchNorm2d(4 * planes)."
    elif got in (expected - 2 * planes, expected - 2 * cout):
        hint = "one of the BNs is missing: there is one after each of the three convs."
    else:
        hint = (f"conv1 {cin}*{planes}, conv2 3*3*{planes}*{planes}, conv3 {planes}*{cout} "
                f"(no biases), a BN (2 per channel) after each"
                + (f", and the projection {cin}*{cout} + 2*{cout}."
                   if reference.downsample is not None else "; no shortcut parameters."))
    expect_equal(f"parameters of {name}", expected, got, hint)


def _bottleneck_oracle(block: nn.Module, cin: int, planes: int,
                       stride: int) -> ReferenceBottleneck:
    """The reference holding the learner's weights, its stride where theirs is."""
    stride_on = "1x1" if block.conv1.stride[0] != 1 else "3x3"
    oracle = ReferenceBottleneck(cin, planes, stride, stride_on)
    for layer in BOTTLENECK_LAYERS:
        getattr(oracle, layer).load_state_dict(getattr(block, layer).state_dict())
    if oracle.downsample is not None:
        load_shortcut(shortcut_layers(block, BOTTLENECK_LAYERS), oracle.downsample,
                      _bottleneck_name(cin, planes, stride))
    return oracle


def _check_bottleneck_function(block_cls: type, cin: int, planes: int, stride: int) -> None:
    name = _bottleneck_name(cin, planes, stride)
    block = _build_bottleneck(block_cls, cin, planes, stride)
    _randomise_batch_norms(block)
    oracle = _bottleneck_oracle(block, cin, planes, stride)
    x = torch.randn(4, cin, BOTTLENECK_MAP, BOTTLENECK_MAP)
    for training in (False, True):
        mode = "train" if training else "eval"
        reference = copy.deepcopy(oracle).train(training)
        expected = reference(x)
        got = tensor_answer(block.train(training)(x), f"{name}(x)")
        if allclose(got, expected, atol=1e-5):
            oracle = reference  # its running statistics moved as the block's did
            continue
        ref = copy.deepcopy(oracle).train(training)
        residual, shortcut = ref.residual(x), ref.shortcut(x)
        if allclose(got, F.relu(F.relu(residual) + shortcut), atol=1e-5) or \
                allclose(got, F.relu(residual) + shortcut, atol=1e-5):
            hint = ("there is a ReLU on F(x) before the addition. F(x) ends with bn3, and "
                    "the only ReLU at the end is after the addition: relu(F(x) + "
                    "shortcut(x)). A ReLU before it would make F(x) >= 0, so the block "
                    "could only ever add to its input.")
        elif allclose(got, residual + shortcut, atol=1e-5):
            hint = "there is no ReLU after the addition: forward returns relu(F(x) + shortcut(x))."
        else:
            hint = ("F(x) is conv1 -> bn1 -> ReLU -> conv2 -> bn2 -> ReLU -> conv3 -> bn3, "
                    "the shortcut is x or bn(conv1x1(x)), and forward returns "
                    "relu(F(x) + shortcut(x)).")
        expect(False, f"with the same weights, {name}'s output differs from the reference "
                      f"bottleneck in {mode} mode by up to {_gap(got, expected):.3g}: {hint}")


@checker("Bottleneck block", answers="MyBottleneck")
def check_bottleneck(block_cls: type) -> None:
    """Check ``MyBottleneck(cin, planes, stride)``: layout, shapes, identity, size, function."""
    block_cls = given(block_cls)
    for cin, planes, stride in BOTTLENECK_CASES:
        _check_bottleneck_layout(_build_bottleneck(block_cls, cin, planes, stride),
                                 cin, planes, stride)
    for cin, planes, stride in BOTTLENECK_CASES:
        _check_bottleneck_shape(_build_bottleneck(block_cls, cin, planes, stride),
                                cin, planes, stride)
    _check_bottleneck_identity(block_cls)
    for cin, planes, stride in BOTTLENECK_CASES:
        _check_bottleneck_parameters(_build_bottleneck(block_cls, cin, planes, stride),
                                     cin, planes, stride)
    for cin, planes, stride in BOTTLENECK_CASES:
        _check_bottleneck_function(block_cls, cin, planes, stride)


# --- Exercise 1b: a bottleneck's parameters against a basic block's -------------

# Widths of blocks that keep the shape (stride 1): ResNet-50's four stage
# widths but the largest, and an invented one.
PARAM_WIDTHS = (256, 512, 1024, 40)


def _count_on_meta(build: Callable[[], nn.Module]) -> int:
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        return count_parameters(build())


def _block_counts(width: int) -> dict[str, int]:
    """The right counts, and each known slip's, for blocks of ``width`` channels."""
    planes = width // 4
    basic = _count_on_meta(lambda: BasicBlock(width, width))
    bottleneck = _count_on_meta(lambda: ReferenceBottleneck(width, planes))
    return {
        "basic": basic, "bottleneck": bottleneck,
        # BN's running mean and variance counted too: buffers, not parameters
        "basic+buffers": basic + 2 * (2 * width),
        "bottleneck+buffers": bottleneck + 2 * 6 * planes,
        # and each BN's step counter too, as sum(t.numel() for t in state_dict().values())
        "basic+state": basic + 2 * (2 * width) + 2,
        "bottleneck+state": bottleneck + 2 * 6 * planes + 3,
        "basic-bn": basic - 2 * (2 * width), "bottleneck-bn": bottleneck - 2 * 6 * planes,
        "basic+bias": basic + 2 * width, "bottleneck+bias": bottleneck + 6 * planes,
        "basic+projection": basic + width * width + 2 * width,
        "bottleneck+projection": bottleneck + width * width + 2 * width,
        # MyBottleneck(width, width): planes is the inner width, not the output's
        "bottleneck(width, width)": _count_on_meta(lambda: ReferenceBottleneck(width, width)),
    }


def _block_params_hint(which: str, got: int, counts: dict[str, int], width: int) -> str:
    other = "bottleneck" if which == "basic" else "basic"
    if got == counts[other]:
        return ("that is the other block's count: return (basic, bottleneck), in that "
                "order.")
    if got in (counts.get(f"{which}+buffers"), counts.get(f"{which}+state")):
        return ("you counted each BN's running mean and variance: they are buffers, not "
                "parameters (no gradient); a BN has 2 parameters per channel.")
    if got == counts.get(f"{which}-bn"):
        return "the BNs are missing: 2 parameters (scale and shift) per channel, after each conv."
    if got == counts.get(f"{which}+bias"):
        return "the convs have no bias (the BN after each has a shift)."
    if got == counts.get(f"{which}+projection"):
        return ("a stride-1 block that keeps the width has no projection: its shortcut is "
                "x itself.")
    if which == "bottleneck" and got == counts["bottleneck(width, width)"]:
        return (f"that is MyBottleneck({width}, {width}), which outputs 4 * {width} "
                f"channels. A bottleneck that returns {width} channels has planes = "
                f"{width} // 4 = {width // 4}: MyBottleneck({width}, {width // 4}).")
    if which == "basic":
        return (f"BasicBlock({width}, {width}): two 3x3 convs {width} -> {width} (no bias) "
                f"and two BNs (2 * {width} each).")
    return (f"MyBottleneck({width}, {width // 4}): 1x1 {width} -> {width // 4}, 3x3 "
            f"{width // 4} -> {width // 4}, 1x1 {width // 4} -> {width}, a BN after each.")


@checker("Bottleneck against basic block", answers="block_params")
def check_block_params(block_params: Callable[[int], tuple[int, int]]) -> None:
    """Check ``block_params(width) -> (basic, bottleneck)`` on several widths."""
    block_params = given(block_params)
    for width in PARAM_WIDTHS:
        call = f"block_params({width})"
        got = block_params(width)
        expect(isinstance(got, (tuple, list)) and len(got) == 2,
               f"{call} returned {shown(got)}; return a pair (basic, bottleneck).")
        basic, bottleneck = (as_count(v, f"{call}[{i}]") for i, v in enumerate(got))
        counts = _block_counts(width)
        for which, value in (("basic", basic), ("bottleneck", bottleneck)):
            if value != counts[which]:
                expect_equal(f"{call}: the {which} block's parameters", counts[which], value,
                             _block_params_hint(which, value, counts, width))


# --- Exercise 2: the pre-activation block ----------------------------------------

# (cin, cout, stride): a block that keeps the shape, one that widens at
# stride 1, one that halves the map and widens.
PREACT_CASES = [(16, 16, 1), (8, 16, 1), (16, 32, 2)]
PREACT_MAP = 6
PREACT_LAYERS = ("bn1", "conv1", "bn2", "conv2")


def _preact_name(cin: int, cout: int, stride: int) -> str:
    return f"MyPreActBlock({cin}, {cout}, stride={stride})"


def _build_preact(block_cls: type, cin: int, cout: int, stride: int) -> nn.Module:
    name = _preact_name(cin, cout, stride)
    block = _module(block_cls, (cin, cout, stride), name)
    _named_layers(block, name, {"bn1": nn.BatchNorm2d, "conv1": nn.Conv2d,
                                "bn2": nn.BatchNorm2d, "conv2": nn.Conv2d},
                  "Name the residual's layers bn1, conv1, bn2, conv2, in the order they "
                  "run: the check mutes conv2 and compares each layer with the paper's.")
    if block.bn1.num_features != cin:
        expect(block.bn1.num_features != cout or cin == cout,
               f"{name}: bn1 normalises {cout} channels, conv1's output: your BN comes "
               f"after the conv, as in the original block. In the pre-activation block "
               f"BN and ReLU come first, on the input: bn1 = nn.BatchNorm2d(cin), then "
               f"ReLU, then conv1.")
        expect_equal(f"{name}: bn1's channels", cin, block.bn1.num_features,
                     "bn1 normalises the block's input, which has cin channels.")
    return block


def _check_preact_layout(block: nn.Module, cin: int, cout: int, stride: int) -> None:
    name = _preact_name(cin, cout, stride)

    def layout(conv: nn.Conv2d) -> tuple:
        return (conv.in_channels, conv.out_channels, conv.kernel_size[0], conv.stride[0],
                _padding(conv))

    got = [layout(block.conv1), layout(block.conv2)]
    expected = [(cin, cout, 3, stride, 1), (cout, cout, 3, 1, 1)]
    if got == expected:
        return
    if stride != 1 and got[0][3] == 1 and got[1][3] == stride:
        hint = ("the stride is on conv2; it belongs to conv1, the first conv of the "
                "residual, as the projection on the shortcut reads the input with it.")
    else:
        hint = ("conv1: 3x3, cin -> cout, the block's stride, padding 1; conv2: 3x3, "
                "cout -> cout, stride 1, padding 1.")
    expect_equal(f"(in, out, kernel, stride, padding) of conv1 and conv2 of {name}",
                 expected, got, hint)


def _check_preact_shape(block: nn.Module, cin: int, cout: int, stride: int) -> None:
    name = _preact_name(cin, cout, stride)
    _check_preact_layout(block, cin, cout, stride)
    x = torch.randn(2, cin, PREACT_MAP, PREACT_MAP)
    expected = tuple(ReferencePreActBlock(cin, cout, stride).eval()(x).shape)
    try:
        out = tensor_answer(block.eval()(x), f"{name}(x)")
    except RuntimeError as err:
        if not _size_mismatch(err):
            raise
        expect(False, f"{name} crashed on an input of shape {tuple(x.shape)}: "
                      f"\"{str(err).rstrip('.')}\". Expected an output of shape "
                      f"{expected}: where the shape changes (stride {stride}, {cin} -> "
                      f"{cout} channels) x cannot be added as it is; the shortcut is a 1x1 "
                      f"conv with the block's stride and no bias.")
    expect_equal(f"output shape of {name} for an input of shape {tuple(x.shape)}",
                 expected, tuple(out.shape),
                 "conv1 has the block's stride, both 3x3 convs padding 1; the output has "
                 "cout channels.")
    _same_dtype(out, x, f"{name}(x)")


def _check_clean_identity(block_cls: type) -> None:
    """With conv2 muted, out = x and d(loss)/dx = upstream, bit for bit, in both modes."""
    cin, cout, stride = PREACT_CASES[0]
    name = _preact_name(cin, cout, stride)
    for training in (False, True):
        block = _build_preact(block_cls, cin, cout, stride)
        block.conv2.weight.zero_()
        if block.conv2.bias is not None:
            block.conv2.bias.zero_()
        block.train(training)
        mode = "train" if training else "eval"
        what = (f"with conv2's weights zero (so F(x) = 0), in {mode} mode, {name} must "
                f"return x exactly, and the gradient reaching x must be the upstream "
                f"gradient exactly")
        x = torch.randn(2, cin, PREACT_MAP, PREACT_MAP)
        upstream = torch.randn_like(x)
        # First the values, without autograd (where an in-place change of x shows).
        preactivated = F.relu(copy.deepcopy(block.bn1)(x))  # in train mode: its own batch
        given_x = x.clone()
        seen = []  # the BNs that read x itself: bn1, or a BN on the shortcut
        hooks = [m.register_forward_hook(
            lambda m, inp, _out: seen.append(m) if inp and inp[0] is given_x else None)
            for m in block.modules() if isinstance(m, nn.BatchNorm2d)]
        try:
            out = tensor_answer(block(given_x),
                                f"{name}(x)")
        finally:
            for hook in hooks:
                hook.remove()
        expect(equal(given_x, x),
               f"{name} changed its input x in place (an in-place ReLU on x, "
               f"nn.ReLU(inplace=True) or F.relu_, before the shortcut reads it?): the "
               f"shortcut must carry x as it came in. Apply the ReLU to bn1(x), which is "
               f"a new tensor.")
        if not equal(out, x):
            if equal(out, F.relu(x)):
                hint = ("your block returns relu(x): there is a ReLU after the addition. The "
                        "pre-activation block adds F(x) to x and stops; the next block's bn1 "
                        "and ReLU come after. A ReLU on the sum would zero every negative "
                        "value of the identity path, and its gradient.")
            elif allclose(out, preactivated, atol=1e-6):
                hint = ("your block returns relu(bn1(x)): the shortcut carries the "
                        "pre-activated input (x = F.relu(self.bn1(x)) rebinds x before it "
                        "is added back?). Where the shape is kept the shortcut is x itself, "
                        "as it came in; only the residual starts from relu(bn1(x)).")
            elif any(m is not block.bn1 for m in seen):
                hint = ("a BN reads x on the shortcut: the shortcut of a block that keeps "
                        "the shape is x itself, with no BN or conv on it.")
            elif shortcut_layers(block, PREACT_LAYERS):
                hint = ("the block has a conv besides conv1 and conv2, on its shortcut: "
                        "where the shape is kept the shortcut is x itself, with no conv "
                        "or BN on it.")
            else:
                hint = (f"it returns something else (off by up to {_gap(out, x):.3g}); "
                        f"forward returns F(x) + x.")
            expect(False, f"{what}: {hint}")
        # Then the gradient.
        x_in = x.clone().requires_grad_()
        with torch.enable_grad():
            out = tensor_answer(block(x_in), f"{name}(x)")
            out.backward(upstream)
        grad = x_in.grad
        expect(grad is not None and equal(grad, upstream),
               f"{what}: the output is x, but "
               + ("no gradient reached x" if grad is None or not grad.abs().sum() else
                  f"the gradient differs by up to {_gap(grad, upstream):.3g}")
               + ". The shortcut must carry x itself, not x.detach(), x.data or a copy "
                 "made under torch.no_grad().")


def _check_preact_parameters(block: nn.Module, cin: int, cout: int, stride: int) -> None:
    name = _preact_name(cin, cout, stride)
    reference = ReferencePreActBlock(cin, cout, stride)
    expected, got = count_parameters(reference), count_parameters(block)
    if got == expected:
        return
    biases = sum(c.out_channels for c in block.modules() if isinstance(c, nn.Conv2d))
    if got == expected + biases:
        hint = ("the convs have no bias (bias=False), as in the code published with the "
                "paper.")
    elif reference.projection is not None and got == expected + 2 * cout:
        hint = ("the projection has a BN: in the pre-activation block the shortcut is a "
                "bare 1x1 conv, as in the code published with the paper. A BN on it would "
                "normalise the shortcut's output, which the next block's bn1 does anyway.")
    elif reference.projection is None and got > expected:
        hint = "a block that keeps the shape has no shortcut parameters: its shortcut is x."
    else:
        hint = (f"bn1 (2*{cin}), conv1 3*3*{cin}*{cout}, bn2 (2*{cout}), conv2 "
                f"3*3*{cout}*{cout}, no biases"
                + (f", and the 1x1 projection {cin}*{cout}." if reference.projection is not None
                   else "."))
    expect_equal(f"parameters of {name}", expected, got, hint)


def _preact_variants(block: nn.Module, x: Tensor) -> list[tuple[Tensor, str]]:
    """Known wrong orders, computed with the learner's own layers (same-width block)."""
    bn1, conv1, bn2, conv2 = (getattr(block, n) for n in PREACT_LAYERS)
    relu = F.relu
    return [
        (relu(bn2(conv2(relu(bn1(conv1(x))))) + x),
         "your block is the original one, conv -> BN -> ReLU -> conv -> BN, with a ReLU "
         "after the addition (Fig. 4(a) of the paper)"),
        (bn2(conv2(relu(bn1(conv1(x))))) + x,
         "your residual is conv -> BN -> ReLU -> conv -> BN, the original order; "
         "pre-activation moves BN and ReLU in front of each conv"),
        (x + relu(bn2(conv2(relu(bn1(conv1(x)))))),
         "your residual ends with a ReLU before the addition (Fig. 4(c) of the paper): "
         "F(x) >= 0 can then only add to x"),
        (x + bn2(conv2(relu(bn1(conv1(relu(x)))))),
         "your residual is ReLU -> conv -> BN -> ReLU -> conv -> BN, the paper's "
         "'ReLU-only pre-activation' (Fig. 4(d)); full pre-activation puts each BN "
         "before its ReLU"),
        (x + conv2(relu(bn2(conv1(bn1(x))))),
         "the ReLU after bn1 is missing"),
        (x + conv2(bn2(conv1(relu(bn1(x))))),
         "the ReLU after bn2 is missing"),
        (x + conv2(bn2(relu(conv1(bn1(relu(x)))))),
         "each ReLU comes before its BN: the order is BN, then ReLU, then conv"),
    ]


def _check_preact_function(block_cls: type, cin: int, cout: int, stride: int) -> None:
    name = _preact_name(cin, cout, stride)
    block = _build_preact(block_cls, cin, cout, stride)
    _randomise_batch_norms(block)
    extra = [m for m in shortcut_layers(block, PREACT_LAYERS)]
    oracles = []
    for reads in ("preactivated", "input"):
        oracle = ReferencePreActBlock(cin, cout, stride, reads)
        for layer in PREACT_LAYERS:
            getattr(oracle, layer).load_state_dict(getattr(block, layer).state_dict())
        if oracle.projection is not None:
            convs = [m for m in extra if isinstance(m, nn.Conv2d)]
            expect(len(convs) == 1 and len(extra) == 1,
                   f"the shortcut of {name} should be one 1x1 Conv2d (no BN); it holds "
                   f"{[type(m).__name__ for m in extra]}.")
            oracle.projection.load_state_dict(convs[0].state_dict())
        oracles.append(oracle)
    x = torch.randn(4, cin, PREACT_MAP, PREACT_MAP)
    for training in (False, True):
        mode = "train" if training else "eval"
        expected = [copy.deepcopy(o).train(training)(x) for o in oracles]
        variants = (_preact_variants(copy.deepcopy(block).train(training), x)
                    if cin == cout and stride == 1 else [])
        got = tensor_answer(block.train(training)(x), f"{name}(x)")
        if any(allclose(got, e, atol=1e-5) for e in expected):
            for oracle in oracles:  # move the references' running statistics along
                oracle.train(training)(x)
            continue
        hint = next((h for v, h in variants if allclose(got, v, atol=1e-5)),
                    "the residual is bn1 -> ReLU -> conv1 -> bn2 -> ReLU -> conv2, and "
                    "forward returns F(x) + shortcut(x), with no ReLU after the addition")
        expect(False, f"with the same weights, {name}'s output differs from the paper's "
                      f"full pre-activation block in {mode} mode by up to "
                      f"{_gap(got, expected[0]):.3g}: {hint}.")


# The gradient exercise: the learner's function, on blocks the check builds.
def _muted_gradient(block: nn.Module, x: Tensor, upstream: Tensor, mute: bool = True,
                    ones: bool = False) -> Tensor:
    """The oracle: d(out)/dx applied to ``upstream``, conv2 zeroed, in training mode."""
    block = copy.deepcopy(block).train()
    if mute:
        block.conv2.weight.data.zero_()
    x = x.clone().requires_grad_()
    with torch.enable_grad():
        out = block(x)
        out.backward(torch.ones_like(out) if ones else upstream)
    return x.grad


def _check_shortcut_gradient(shortcut_gradient: Callable) -> None:
    cases = [("the paper's pre-activation block", ReferencePreActBlock(16, 16)),
             ("the package's BasicBlock(16, 16), which has a ReLU after the addition",
              BasicBlock(16, 16))]
    for what, block in cases:
        _randomise_batch_norms(block)
        x = torch.randn(2, 16, PREACT_MAP, PREACT_MAP)
        upstream = torch.randn_like(x)
        expected = _muted_gradient(block, x, upstream)
        call = f"shortcut_gradient(block, x, upstream) on {what}"
        with torch.enable_grad():
            got = shortcut_gradient(copy.deepcopy(block), x.clone(), upstream.clone())
        got = tensor_answer(got, call).detach()
        expect_equal(f"shape of {call}", tuple(x.shape), tuple(got.shape),
                     "return x.grad, the gradient with respect to the input.")
        got = got.to(expected.dtype)
        if allclose(got, expected, atol=1e-6):
            continue
        if allclose(got, _muted_gradient(block, x, upstream, ones=True), atol=1e-6):
            hint = ("you backpropagated a gradient of ones (out.sum().backward()): call "
                    "out.backward(upstream), so that the upstream gradient is what arrives "
                    "at the output.")
        elif allclose(got, _muted_gradient(block, x, upstream, mute=False), atol=1e-5):
            hint = ("this is the gradient through the whole block: zero block.conv2's "
                    "weights first (under torch.no_grad()), so that F(x) = 0 and only the "
                    "shortcut carries the gradient.")
        elif allclose(got, upstream, atol=1e-6):
            hint = ("you returned upstream itself. Measure it: x.requires_grad_(), run the "
                    "block, out.backward(upstream), return x.grad. Here a ReLU after the "
                    "addition zeroes the gradient wherever x < 0.")
        else:
            hint = ("zero block.conv2.weight, put the block in training mode, run x (with "
                    "requires_grad) through it, call out.backward(upstream), return x.grad.")
        expect(False, f"{call} differs from the gradient the check measured by up to "
                      f"{_gap(got, expected):.3g}: {hint}")


@checker("Pre-activation block", answers=("MyPreActBlock", "shortcut_gradient"))
def check_preact_block(block_cls: type, shortcut_gradient: Callable) -> None:
    """Check ``MyPreActBlock(cin, cout, stride)`` and ``shortcut_gradient(block, x, upstream)``."""
    block_cls, shortcut_gradient = given(block_cls), given(shortcut_gradient)
    # The block that keeps the shape first, whole: the clean identity, and the
    # known wrong orders, are named on it before a block that changes the shape
    # can fail for a less telling reason.
    for cin, cout, stride in PREACT_CASES:
        _check_preact_shape(_build_preact(block_cls, cin, cout, stride), cin, cout, stride)
        if (cin, cout, stride) == PREACT_CASES[0]:
            _check_clean_identity(block_cls)
        _check_preact_parameters(_build_preact(block_cls, cin, cout, stride), cin, cout, stride)
        _check_preact_function(block_cls, cin, cout, stride)
    _check_shortcut_gradient(shortcut_gradient)


# --- Exercise 3a: MobileNetV1 at width alpha ---------------------------------

# The paper's 1.0, 0.75 and 0.5, and 0.3, where alpha * channels is not a
# whole number: the rule (round down, as the package's thin) shows.
MOBILENET_WIDTHS = (1.0, 0.5, 0.75, 0.3)
INPUT = 28  # the exercise trains at 28 px (upsample=1) to keep the runs short


def package_mobilenet(width: float) -> nn.Module:
    """The package's MobileNetV1 at ``width``, taking the 28 px digit as it is."""
    return get_model("mobilenet_v1", width=width, upsample=1)


def _make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's MobileNetV2/V3 rounding: to a multiple of 8, never 10% below v."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def _channel_rules(width: float) -> dict[str, list[int]]:
    """Stem and the 13 pointwise widths under the right rule and each known slip."""
    full = [32] + [c for c, _s, n in SETTINGS for _ in range(n)]
    thin = lambda c: max(1, int(c * width))  # noqa: E731 (the package's thin)
    return {
        "right": [thin(c) for c in full],
        "round": [max(1, round(c * width)) for c in full],
        "ceil": [max(1, math.ceil(c * width)) for c in full],
        "divisible by 8": [_make_divisible(c * width) for c in full],
        "squared": [max(1, int(c * width * width)) for c in full],
        "stem only": [thin(32)] + full[1:],
        "stem left out": [32] + [thin(c) for c in full[1:]],
        "none": full,
    }


CHANNEL_SLIPS = {
    "round": "you rounded alpha * channels to the nearest whole number; the package (and "
             "this exercise) rounds down, int(alpha * channels), at least 1",
    "ceil": "you rounded alpha * channels up; the package rounds down, "
            "int(alpha * channels), at least 1",
    "divisible by 8": "you rounded the channels to a multiple of 8, as torchvision's "
                      "MobileNetV2 does; MobileNetV1's multiplier takes int(alpha * "
                      "channels), at least 1",
    "squared": "you multiplied the channels by alpha squared. The cost falls roughly with "
               "alpha^2 because both ends of each pointwise conv get alpha times thinner; "
               "each layer's channels are multiplied by alpha once",
    "stem only": "only the first conv is thinned: alpha multiplies the channels of every "
                 "layer, the 13 blocks' included",
    "stem left out": "the first conv (the stem) keeps its 32 channels: alpha thins every "
                     "layer, the stem included",
    "none": "the width is not applied at all",
}


def _leaves(model: nn.Module, x: Tensor) -> list[tuple[nn.Module, tuple[int, ...]]]:
    """Conv, BN and Linear layers in the order the forward pass runs them, with
    their output shapes."""
    ran: list[tuple[nn.Module, tuple[int, ...]]] = []
    hooks = [m.register_forward_hook(lambda m, _i, out: ran.append((m, tuple(out.shape))))
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear))]
    try:
        with eval_mode(model):
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return ran


def _signature(layer: nn.Module) -> tuple:
    if isinstance(layer, nn.Conv2d):
        return ("conv", layer.in_channels, layer.out_channels, layer.kernel_size[0],
                layer.stride[0], layer.groups, _padding(layer))
    if isinstance(layer, nn.Linear):
        return ("linear", layer.in_features, layer.out_features)
    return ("bn", layer.num_features)


def _mobilenet_channels(ran: list) -> list[int]:
    """Stem's and pointwise convs' output channels, from the layers that ran."""
    convs = [m for m, _ in ran if isinstance(m, nn.Conv2d)]
    return [c.out_channels for i, c in enumerate(convs)
            if i == 0 or (c.kernel_size == (1, 1) and c.groups == 1)]


def _check_mobilenet_model(model: object, width: float, name: str) -> None:
    """``model`` is MobileNetV1 at ``width`` as the package builds it, at 28 px."""
    expect(isinstance(model, nn.Module),
           f"{name} is a {type(model).__name__}, not an nn.Module.")
    x = torch.randn(2, 1, INPUT, INPUT)
    ran = _leaves(model, x)
    reference = package_mobilenet(width)
    expected_ran = _leaves(reference, x)
    convs = [m for m, _ in ran if isinstance(m, nn.Conv2d)]
    expected_convs = [m for m, _ in expected_ran if isinstance(m, nn.Conv2d)]
    if convs and ran[0][1][-1] != expected_ran[0][1][-1]:
        expect(ran[0][1][-1] != 2 * expected_ran[0][1][-1],
               f"{name}: the first conv outputs {ran[0][1][-1]}x{ran[0][1][-1]} maps for a "
               f"28x28 digit, twice the {expected_ran[0][1][-1]}x"
               f"{expected_ran[0][1][-1]} expected: the model upsamples the digit to 56 px "
               f"(get_model's default upsample=2). This exercise works at 28 px: no "
               f"upsampling (get_model(..., upsample=1)).")
    expect(len(convs) == len(expected_convs),
           f"{name} runs {len(convs)} convs; MobileNetV1 runs {len(expected_convs)}: the "
           f"stem, then 13 blocks of a depthwise and a pointwise conv (SETTINGS' rows, "
           f"each repeated n times).")
    theirs = [_signature(m) for m, _ in ran]
    ours = [_signature(m) for m, _ in expected_ran]
    if theirs == ours:
        return
    channels = _mobilenet_channels(ran)
    for rule, hint in CHANNEL_SLIPS.items():
        if channels == _channel_rules(width)[rule] != _channel_rules(width)["right"]:
            expect(False, f"{name}: the channels of the stem and the 13 pointwise convs are "
                          f"{channels}, expected {_channel_rules(width)['right']}: {hint}.")
    for i, (mine, right) in enumerate(zip(convs, expected_convs)):
        if _signature(mine) == _signature(right):
            continue
        if right.groups > 1 and mine.groups == 1 and mine.kernel_size == right.kernel_size:
            expect(False, f"{name}: conv {i + 1} is a standard 3x3 conv; in MobileNetV1 it "
                          f"is depthwise: groups = its input channels ({right.groups}).")
        after = convs[i + 1] if i + 1 < len(convs) else None
        if right.groups > 1 and right.stride != (1, 1) and mine.stride == (1, 1) \
                and after is not None and after.kernel_size == (1, 1) \
                and after.stride == right.stride:
            expect(False, f"{name}: conv {i + 2}, a pointwise 1x1 conv, has stride "
                          f"{after.stride[0]}, and the depthwise conv before it none: a "
                          f"block's stride belongs to its depthwise 3x3 conv (a strided 1x1 "
                          f"conv skips three quarters of the pixels without looking at them).")
        break
    keys = ("kind", "in", "out", "kernel", "stride", "groups", "padding")
    first = next(i for i, (a, b) in enumerate(zip(theirs + [None], ours + [None])) if a != b)
    expect(False, f"{name}: layer {first + 1} (in the order the forward pass runs them) is "
                  f"{_describe(theirs, first, keys)}, expected {_describe(ours, first, keys)} "
                  f"(MobileNetV1 at width {width}: a stem conv_bn, 13 DepthwiseSeparable "
                  f"blocks, global average pool, Linear).")


def _describe(signatures: list, i: int, keys: tuple) -> str:
    if i >= len(signatures):
        return "missing (the network ends earlier)"
    return ", ".join(f"{k} {v}" for k, v in zip(keys, signatures[i]))


def _check_mobilenet_function(model: nn.Module, width: float, name: str) -> None:
    """The package's network holding the learner's weights gives the same logits."""
    x = torch.randn(3, 1, INPUT, INPUT)
    _randomise_batch_norms(model)
    reference = package_mobilenet(width)
    mine = [m for m, _ in _leaves(model, x)]
    ours = [m for m, _ in _leaves(reference, x)]
    for source, target in zip(mine, ours):
        target.load_state_dict(source.state_dict())
    with eval_mode(model), eval_mode(reference):
        got = tensor_answer(model(x), f"{name}(x)")
        expected = reference(x)
    expect(allclose(got, expected, atol=1e-4),
           f"with the same weights, {name}'s logits differ from the package's MobileNetV1 "
           f"in eval mode by up to {_gap(got, expected):.3g}: each conv is followed by BN "
           f"and ReLU (conv_bn), the stem and every depthwise and pointwise conv alike; "
           f"then global average pooling, flatten, (dropout,) Linear.")


def _check_dropout(model: nn.Module, name: str) -> None:
    """Dropout 0.5 before the classifier, as in the package's network."""
    layers = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    if layers:
        expect(all(m.p == 0.5 for m in layers),
               f"{name}: dropout p = {[m.p for m in layers]}; the exercise's network has "
               f"nn.Dropout(0.5) before the Linear layer, as the package's has.")
        return
    x = torch.randn(4, 1, INPUT, INPUT)  # a functional dropout shows as two different draws
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        first = model.train()(x)
        torch.manual_seed(2)
        second = model(x)
    expect(not equal(first, second),
           f"{name} has no dropout: in training mode two passes of the same batch give the "
           f"same logits. Put nn.Dropout(0.5) between the flattened features and the Linear "
           f"layer, as the package's network has.")


@checker("MobileNetV1 at width alpha", answers="thin_mobilenet")
def check_thin_mobilenet(thin_mobilenet: Callable[[float], nn.Module]) -> None:
    """Check ``thin_mobilenet(width)`` against the package's MobileNetV1 at 28 px."""
    thin_mobilenet = given(thin_mobilenet)
    for width in MOBILENET_WIDTHS:
        name = f"thin_mobilenet({width})"
        model = thin_mobilenet(width)
        expect(isinstance(model, nn.Module),
               f"{name} returned a {type(model).__name__}, not an nn.Module.")
        x = torch.randn(2, 1, INPUT, INPUT)
        with eval_mode(model):
            out = tensor_answer(model(x), f"{name}(x)")
        expect_equal(f"output shape of {name} for a (2, 1, 28, 28) batch", (2, 10),
                     tuple(out.shape), "one logit per class.")
        _same_dtype(out, x, f"{name}(x)")
        _check_mobilenet_model(model, width, name)
        expect_equal(f"parameters of {name}", count_parameters(package_mobilenet(width)),
                     count_parameters(model),
                     "every conv without bias (BN follows), a BN with 2 parameters per "
                     "channel after each, and the Linear layer with its bias.")
        _check_mobilenet_function(model, width, name)
        _check_dropout(model, name)


# --- Exercise 3b: widths 1.0 and 0.5, trained briefly ----------------------------



RUN_WIDTHS = (1.0, 0.5)
HELD_OUT = 1_000       # accuracy on the first 1,000 validation images
MIN_ACCURACY = 0.3     # an untrained net scores about 0.1 (chance)
RUN_KEYS = ("model", "params", "mult_adds", "accuracy")


def _mult_adds(width: float, size: int = INPUT) -> dict[str, int]:
    """Mult-adds of one image: torchinfo's rule, and the paper's (weights only)."""
    model = package_mobilenet(width)
    ran = _leaves(model, torch.zeros(1, 1, size, size))
    torchinfo_rule = paper = 0
    for layer, shape in ran:
        params = sum(p.numel() for p in layer.parameters(recurse=False))
        positions = shape[2] * shape[3] if isinstance(layer, nn.Conv2d) else 1
        torchinfo_rule += params * positions if isinstance(layer, nn.Conv2d) else params
        if not isinstance(layer, nn.BatchNorm2d):
            paper += layer.weight.numel() * positions
    return {"torchinfo": torchinfo_rule, "paper": paper}


# Two logits closer than this may swap places when the same network runs with
# another number of threads (float32 sums in another order): such an image
# may be counted right in the learner's kernel and wrong in the check.
NEAR_TIE = 1e-3


def _accuracy(model: nn.Module, images: Tensor, labels: Tensor) -> tuple[float, int, float]:
    """Accuracy (0-1) on ``images`` in eval mode, in one batch as ``evaluate``
    runs it; how many of them are near-ties between the two top classes; and
    the mean cross-entropy, ``evaluate``'s other number."""
    from ..data import preprocess
    with eval_mode(model):
        logits = model(preprocess(images)).float()
    top2 = logits.topk(2, dim=1).values
    ties = int((top2[:, 0] - top2[:, 1] < NEAR_TIE).sum())
    loss = F.cross_entropy(logits, labels).item()
    return (logits.argmax(1) == labels).sum().item() / len(labels), ties, loss


def _as_fraction(value: object, call: str) -> float:
    got = as_real(value, call)
    expect(0 <= got <= 100, f"{call} is {got:g}; an accuracy is a fraction (0 to 1) or a "
                            f"percentage.")
    return got / 100 if got > 1 else got


def _check_run(runs: Mapping, width: float, data) -> dict:
    where = f"runs[{width}]"
    run = runs[width]
    expect(isinstance(run, Mapping),
           f"{where} is a {type(run).__name__}; make it a dict with the keys "
           f"{', '.join(map(repr, RUN_KEYS))}.")
    missing = [k for k in RUN_KEYS if k not in run]
    expect(not missing, f"{where} has no {', '.join(map(repr, missing))}.")
    model = run["model"]
    other = RUN_WIDTHS[1] if width == RUN_WIDTHS[0] else RUN_WIDTHS[0]
    if isinstance(model, nn.Module):
        x = torch.zeros(1, 1, INPUT, INPUT)
        if [_signature(m) for m, _ in _leaves(model, x)] == \
                [_signature(m) for m, _ in _leaves(package_mobilenet(other), x)]:
            expect(False, f"{where}['model'] is MobileNetV1 at width {other}, not {width}: "
                          f"build each run's network with its own width.")
    _check_mobilenet_model(model, width, f"{where}['model']")

    params = as_count(run["params"], f"{where}['params']")
    expected = count_parameters(model)
    if params != expected:
        buffers = sum(b.numel() for b in model.buffers())
        if params == expected + buffers:
            hint = ("you counted the buffers too (BN's running mean and variance, and its "
                    "step counter), which model.state_dict() holds: count the parameters, "
                    "count_parameters(model).")
        elif params == count_parameters(package_mobilenet(other)):
            hint = f"that is the width-{other} network's count."
        else:
            hint = "count_parameters(model): every number the optimiser trains."
        expect_equal(f"{where}['params']", expected, params, hint)

    mult_adds = as_count(run["mult_adds"], f"{where}['mult_adds']")
    counts = _mult_adds(width)
    if mult_adds not in counts.values():
        bigger = _mult_adds(width, 2 * INPUT)
        if mult_adds in bigger.values():
            hint = ("that is the count at 56 px; this exercise's networks see the digit at "
                    "28 px: input_size=(1, 1, 28, 28).")
        elif any(mult_adds == k * c for c in counts.values() for k in range(2, 513)):
            k = next(k for c in counts.values() for k in range(2, 513) if mult_adds == k * c)
            hint = (f"that is {k} times the count of one image: you counted a batch of {k}; "
                    f"report the mult-adds of one 28x28 image, input_size=(1, 1, 28, 28).")
        elif mult_adds == expected:
            hint = "that is the parameter count, not the mult-adds."
        elif mult_adds in _mult_adds(other).values():
            hint = f"that is the width-{other} network's count."
        else:
            hint = ("torchinfo's summary(model, input_size=(1, 1, 28, 28), "
                    "verbose=0).total_mult_adds, as chapter 5 counts (the paper's count, "
                    "the conv and Linear weights times their output positions, is "
                    "accepted too).")
        expect_equal(f"{where}['mult_adds']", counts["torchinfo"], mult_adds, hint)

    accuracy = _as_fraction(run["accuracy"], f"{where}['accuracy']")
    head = lambda split: (split.images[:HELD_OUT], split.labels[:HELD_OUT])  # noqa: E731
    measured, ties, loss = _accuracy(model, *head(data.val))
    if not close(accuracy, measured):
        expect(not math.isclose(accuracy, loss, rel_tol=1e-4),
               f"{where}['accuracy'] is {accuracy:.4f}, the cross-entropy loss on the first "
               f"{HELD_OUT:,} validation images: evaluate returns (loss, accuracy); the "
               f"accuracy is its second number, evaluate(...)[1] ({measured:.4f}).")
        train, _, _ = _accuracy(model, *head(data.train))
        test, _, _ = _accuracy(model, *head(data.test))
        if close(accuracy, train):
            expect(False, f"{where}['accuracy'] is {accuracy:.4f}, the accuracy on the first "
                          f"{HELD_OUT:,} training images: images the network may have "
                          f"trained on say little about new ones. Report it on the first "
                          f"{HELD_OUT:,} validation images, data.val.head({HELD_OUT}): "
                          f"{measured:.4f}.")
        if close(accuracy, test):
            expect(False, f"{where}['accuracy'] is {accuracy:.4f}, the accuracy on the first "
                          f"{HELD_OUT:,} test images. This exercise compares on validation "
                          f"images (the test set is kept for one final number): "
                          f"data.val.head({HELD_OUT}), {measured:.4f}.")
        # Only the near-ties may come out otherwise in the learner's kernel.
        expect(abs(accuracy - measured) <= ties / HELD_OUT + 1e-9,
               f"{where}['accuracy'] is {accuracy:.4f}, but the network in "
               f"{where}['model'] scores {measured:.4f} on the first {HELD_OUT:,} "
               f"validation images (in eval mode). Report the accuracy of the network you "
               f"return, measured after its training, with evaluate(model, "
               f"data.val.head({HELD_OUT})) (which puts it in eval mode).")
    expect(measured >= MIN_ACCURACY,
           f"the network in {where}['model'] scores {measured:.4f} on the first "
           f"{HELD_OUT:,} validation images, no better than an untrained one (about 0.1): "
           f"train it with train_losses before measuring it.")
    return {"params": params, "mult_adds": mult_adds}


RATIO_SLIPS = {
    0.25: "0.25 is alpha^2, the paper's rule of thumb, not what you measured: the stem, the "
          "depthwise convs and the classifier do not fall with alpha^2",
    0.5: "0.5 is alpha: the cost falls faster than the width, because a pointwise conv "
         "thins at both ends",
}


@checker("Width 0.5 against width 1.0", answers=("runs", "ratios"), seconds=90)
def check_width_runs(runs: Mapping, ratios: Mapping) -> None:
    """Check the two runs' cost and accuracy against the networks they return."""
    from ..data import load_mnist
    runs, ratios = given(runs), given(ratios)
    expect(isinstance(runs, Mapping) and all(w in runs for w in RUN_WIDTHS),
           f"runs should be a dict with the keys 1.0 and 0.5 (the widths); got "
           f"{shown(list(runs) if isinstance(runs, Mapping) else runs)}.")
    data = load_mnist()
    counted = {width: _check_run(runs, width, data) for width in RUN_WIDTHS}
    expect(isinstance(ratios, Mapping) and {"params", "mult_adds"} <= set(ratios),
           f"ratios should be a dict with the keys 'params' and 'mult_adds'; got "
           f"{shown(ratios)}.")
    for key in ("params", "mult_adds"):
        call = f"ratios[{key!r}]"
        got = as_real(ratios[key], call)
        expected = counted[0.5][key] / counted[1.0][key]
        if close(got, expected):
            continue
        other = "mult_adds" if key == "params" else "params"
        if close(got, 1 / expected):
            hint = "that is width 1.0 over width 0.5: divide the 0.5 run's count by the 1.0 run's."
        elif close(got, counted[0.5][other] / counted[1.0][other]):
            hint = f"that is the ratio of the {other.replace('_', '-')}."
        elif got in RATIO_SLIPS:
            hint = RATIO_SLIPS[got]
        else:
            hint = f"runs[0.5][{key!r}] / runs[1.0][{key!r}], from your own counts."
        expect_equal(call, round(expected, 6), got, hint + ".")


# --- Exercise 4: an Inception module under a parameter budget ----------------------

SPLIT_CIN = 192            # module 3a's input
SPLIT_OUT = 256            # and its output
SPLIT_BUDGET = 100_000     # module 3a itself has 163,696 parameters
MIN_BRANCH = 32            # each branch gives at least an eighth of the output
MIN_REDUCE = 8
SPLIT_FIELDS = ("#1x1", "#3x3 reduce", "#3x3", "#5x5 reduce", "#5x5", "pool proj")


def _conv(cin: int, cout: int, k: int, bias: bool = True) -> int:
    return k * k * cin * cout + (cout if bias else 0)


@checker("Inception module under a budget", answers=("SPLIT", "SPLIT_PARAMS"))
def check_inception_split(split: Sequence[int], split_params: int) -> None:
    """Check the learner's split: output channels, their count, the budget, a forward pass."""
    split, split_params = given(split), given(split_params)
    expect(isinstance(split, (tuple, list)) and len(split) == 6,
           f"SPLIT is {shown(split)}; give six numbers: {', '.join(SPLIT_FIELDS)}.")
    values = [as_count(v, f"SPLIT's {f}") for v, f in zip(split, SPLIT_FIELDS)]
    c1, c3r, c3, c5r, c5, pool = values
    expect(all(v > 0 for v in values),
           f"SPLIT = {tuple(values)}: every branch needs at least one channel in each conv.")
    too_wide = [f"{f} = {v}" for v, f in zip(values, SPLIT_FIELDS) if v > SPLIT_OUT]
    expect(not too_wide,
           f"SPLIT = {tuple(values)}: {', '.join(too_wide)} is more channels than the "
           f"module's whole output ({SPLIT_OUT}); no conv of this module has more.")
    module = Inception(SPLIT_CIN, *values)
    out = module(torch.randn(2, SPLIT_CIN, 7, 7))
    width = out.shape[1]
    if width != SPLIT_OUT:
        if c1 + c3r + c3 + c5r + c5 + pool == SPLIT_OUT:
            hint = ("you counted the reduce convs' channels in the output: they feed the 3x3 "
                    "and 5x5 convs inside their branches, and only each branch's last conv "
                    "is concatenated.")
        elif c1 + c3 + c5 + SPLIT_CIN == SPLIT_OUT:
            hint = ("you counted the pool branch as its input's 192 channels: the branch "
                    "ends with its 1x1 projection, which gives pool proj channels.")
        elif c1 + c3 + c5 == SPLIT_OUT:
            hint = "the pool branch's pool proj channels are concatenated too."
        else:
            hint = "the output has #1x1 + #3x3 + #5x5 + pool proj channels."
        expect_equal(f"output channels of Inception({SPLIT_CIN}, *SPLIT)", SPLIT_OUT, width, hint)
    real = count_parameters(module)
    counted = as_count(split_params, "SPLIT_PARAMS")
    if counted != real:
        biases = c1 + c3r + c3 + c5r + c5 + pool
        over = (f" That is {'over' if real > SPLIT_BUDGET else 'within'} the budget of "
                f"{SPLIT_BUDGET:,}.")
        if counted == real - biases:
            hint = (f"your count leaves out the biases: without batch norm each conv has one "
                    f"per output channel, {biases} in all.")
        elif counted == real - _conv(SPLIT_CIN, pool, 1):
            hint = ("your count has no pool projection: the pool branch is a 3x3 max-pool "
                    f"(no parameters) and then a 1x1 conv, {SPLIT_CIN} -> pool proj.")
        elif counted == real - _conv(c3r, c3, 3) - _conv(c5r, c5, 5) \
                + _conv(SPLIT_CIN, c3, 3) + _conv(SPLIT_CIN, c5, 5):
            hint = ("you counted the 3x3 and 5x5 convs on all 192 input channels: they read "
                    "their reduce convs' outputs, which is what the reduction is for.")
        elif counted == real - _conv(c5r, c5, 5) + _conv(c5r, c5, 3):
            hint = ("the 5x5 branch's conv has 5 * 5 weights per input and output channel, "
                    "not 3 * 3.")
        else:
            hint = ("each conv has k*k*in*out weights + out biases: 1x1 192 -> #1x1, 1x1 192 "
                    "-> #3x3 reduce, 3x3 reduce -> #3x3, 1x1 192 -> #5x5 reduce, 5x5 reduce "
                    "-> #5x5, 1x1 192 -> pool proj.")
        expect_equal(f"SPLIT_PARAMS, the parameters of Inception({SPLIT_CIN}, *SPLIT)",
                     real, counted, hint + over)
    expect(real <= SPLIT_BUDGET,
           f"Inception({SPLIT_CIN}, *{tuple(values)}) has {real:,} parameters, "
           f"{real - SPLIT_BUDGET:,} over the budget of {SPLIT_BUDGET:,}. The 3x3 and 5x5 "
           f"convs cost the most (9 and 25 weights per pair of channels): narrow their "
           f"reduce convs, or move channels to the 1x1 and pool branches.")
    branches = {"#1x1": c1, "#3x3": c3, "#5x5": c5, "pool proj": pool}
    thin = [f"{k} = {v}" for k, v in branches.items() if v < MIN_BRANCH]
    expect(not thin,
           f"{', '.join(thin)}: each branch gives at least {MIN_BRANCH} of the "
           f"{SPLIT_OUT} channels, so that the module still looks at every scale.")
    for name, reduce, conv in (("#3x3 reduce", c3r, c3), ("#5x5 reduce", c5r, c5)):
        expect(MIN_REDUCE <= reduce < SPLIT_CIN and reduce <= conv,
               f"{name} = {reduce}: a reduce conv narrows the input before the expensive "
               f"conv: at least {MIN_REDUCE}, fewer than the {SPLIT_CIN} input channels, and "
               f"no more than the conv it feeds ({conv}).")
    expect(out.shape[2:] == (7, 7), f"the module changed the map size to {tuple(out.shape[2:])}.")
