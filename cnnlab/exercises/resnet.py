"""Checkers for the ResNet-18 exercises (chapter 4).

* ``check_basic_block``: the learner's ``MyBasicBlock(cin, cout, stride)``
  against the package's ``BasicBlock`` with a projection shortcut.
* ``check_smallest_upsample``: the learner's
  ``smallest_upsample_for_resnet(min_size)`` against layer4's measured size.
* ``check_batch_norm``: the learner's ``batch_norm`` against ``F.batch_norm``.
* ``check_zero_pad_shortcut``: the learner's option A against the subsampled input.
* ``check_plain_vs_residual``: the learner's ``verdict(runs)`` on training
  curves, synthetic ones and the plain and residual runs the notebook trained.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Callable

import torch
# The first model built on the meta device imports torch._dynamo: seconds of
# work, more on a busy CPU. Imported here, with the checkers, so that those
# seconds are never charged to a learner's answer inside a check's time limit.
import torch._dynamo  # noqa: F401
import torch.nn.functional as F
from torch import Tensor, nn

from . import checker, expect, expect_equal, shown
from ._harness import (allclose, as_count, equal, float_answer, load_shortcut, plain_str,
                       plain_tensor, shortcut_layers, tensor_answer)
from ..models import count_parameters, get_model
from ..models.resnet import BasicBlock, make_downsample

CHAPTER = "chapter 4 (ResNet-18)"
NOTEBOOK = "04_resnet.ipynb"

# (cin, cout, stride): a block that keeps the shape; the first blocks of
# stages 2 and 3, which halve the map and double the channels; and two that
# change only one of the two (a stride-1 block that doubles the channels, a
# stride-2 block that keeps them), so that an identity shortcut chosen by
# the stride alone, or by the channels alone, meets a block it cannot add.
BLOCK_SHAPES = [(64, 64, 1), (64, 128, 2), (128, 256, 2), (64, 128, 1), (64, 64, 2)]
MAP_SIZE = 8  # small maps keep the checks fast; a block works on any size


def _package_block(cin: int, cout: int, stride: int) -> BasicBlock:
    """The oracle: the package's block with the paper's option B shortcut."""
    return BasicBlock(cin, cout, stride, make_downsample(cin, cout, stride, "projection"))


def _build(block_cls: type, cin: int, cout: int, stride: int) -> nn.Module:
    """Build the learner's block and check it has the layers the checks use."""
    block = block_cls(cin, cout, stride)
    name = f"MyBasicBlock({cin}, {cout}, stride={stride})"
    expect(isinstance(block, nn.Module),
           f"{name} returned a {type(block).__name__}, not an nn.Module: "
           f"subclass nn.Module and call super().__init__() first.")
    missing = [a for a in ("conv1", "bn1", "conv2", "bn2")
               if not isinstance(getattr(block, a, None), nn.Module)]
    expect(not missing,
           f"{name} has no layer named {', '.join(missing)}. Name the residual's "
           f"layers conv1, bn1, conv2, bn2 as the package's BasicBlock does: "
           f"the checks mute bn2 and change conv1.")
    expect(isinstance(block.bn2, nn.BatchNorm2d) and isinstance(block.conv1, nn.Conv2d),
           f"{name}: conv1 must be an nn.Conv2d and bn2 an nn.BatchNorm2d, got "
           f"{type(block.conv1).__name__} and {type(block.bn2).__name__}.")
    return block


def _mute_residual(block: nn.Module) -> nn.Module:
    """bn2's scale = 0 makes F(x) = 0 exactly (in eval mode): only the shortcut is left."""
    block.bn2.weight.zero_()  # the checks run under no_grad (quiet_torch)
    return block.eval()


def _check_shapes(block_cls: type) -> None:
    for cin, cout, stride in BLOCK_SHAPES:
        block = _build(block_cls, cin, cout, stride).eval()
        x = torch.rand(2, cin, MAP_SIZE, MAP_SIZE)
        expected = tuple(_package_block(cin, cout, stride).eval()(x).shape)
        name = f"MyBasicBlock({cin}, {cout}, stride={stride})"
        try:
            out = tensor_answer(block(x), f"{name}(x)")
        except RuntimeError as err:
            if "must match the size" not in str(err):
                raise
            # Bug 2 of the report: the residual F(x) and x have different shapes.
            expect(False,
                   f"{name} crashed on an input of shape {tuple(x.shape)}: "
                   f"\"{str(err).rstrip('.')}\". "
                   f"This block changes the shape: F(x) is {expected} but x is "
                   f"{tuple(x.shape)}, so x cannot be added as it is. Where stride != 1 "
                   f"or cin != cout the shortcut must be a 1x1 conv (that stride, no "
                   f"bias) followed by a BatchNorm2d. See {CHAPTER}, 'Bug 2: the "
                   f"addition fails when the block changes shape' and 'Fix 3'.")
        expect_equal(f"output shape of {name} for an input of shape {tuple(x.shape)}",
                     expected, tuple(out.shape),
                     "conv1 has the block's stride and padding 1, conv2 stride 1 and "
                     "padding 1; the output has cout channels.")


def _check_identity(block_cls: type) -> None:
    # The muted-F test of the chapter: with F(x) muted, a block that keeps
    # the shape must be relu(x), bit for bit. randn (not rand) also catches a
    # ReLU applied before the addition instead of after it.
    block = _mute_residual(_build(block_cls, 64, 64, 1))
    x = torch.randn(2, 64, MAP_SIZE, MAP_SIZE)
    want = F.relu(x)
    out = tensor_answer(block(x), "MyBasicBlock(64, 64, stride=1)(x)")
    if not equal(out, want):
        gap = (out - want).abs().max().item()
        expect(False,
               f"with bn2.weight = 0 (so F(x) = 0) and in eval mode, MyBasicBlock(64, 64, "
               f"stride=1) must return relu(x) exactly; yours is off by up to {gap:.3g}. "
               f"Where the shape does not change the shortcut is x itself (no conv, no "
               f"BN), F(x) ends with bn2, and forward returns relu(F(x) + shortcut(x)), "
               f"the ReLU after the addition. See {CHAPTER}, 'The muted-F test'.")


def _check_own_shortcut(block_cls: type) -> None:
    # With F(x) muted, what is left of a down-sampling block is its shortcut.
    # That must be its own 1x1 projection: changing conv1 (which belongs to
    # F) must not change the output. The report's fix fails here.
    for cin, cout, stride in BLOCK_SHAPES:
        if stride == 1 and cin == cout:
            continue  # no projection: the identity test above covers it
        block = _mute_residual(_build(block_cls, cin, cout, stride))
        x = torch.rand(2, cin, MAP_SIZE, MAP_SIZE)
        call = f"MyBasicBlock({cin}, {cout}, stride={stride})(x)"
        before = tensor_answer(block(x), call)
        block.conv1.weight.add_(torch.randn_like(block.conv1.weight))
        after = tensor_answer(block(x), call)
        expect(equal(before, after),
               f"with F(x) muted (bn2.weight = 0), the output of MyBasicBlock({cin}, "
               f"{cout}, stride={stride}) changed when conv1's weights changed: your "
               f"shortcut reuses conv1's weights, which is the report's fix (Fix 1). Then "
               f"the shortcut is no identity, conv1 serves two jobs, and there is no BN "
               f"on it. Give the shortcut its own nn.Conv2d(cin, cout, 1, stride, "
               f"bias=False) and its own nn.BatchNorm2d(cout). See {CHAPTER}, 'Fix 1, "
               f"the report's: conv1's weights on the shortcut'.")


def _check_parameters(block_cls: type) -> None:
    for cin, cout, stride in BLOCK_SHAPES:
        expected = count_parameters(_package_block(cin, cout, stride))
        got = count_parameters(_build(block_cls, cin, cout, stride))
        projection = cin * cout + 2 * cout  # 1x1 conv weights + BN's scale and shift
        changes_shape = stride != 1 or cin != cout
        if changes_shape and got == expected - projection:
            hint = ("exactly the projection's parameters are missing: this exercise asks "
                    "for the paper's option B, a 1x1 conv + BN on the shortcut where the "
                    "shape changes, not option A's zero padding (or no shortcut at all).")
        else:
            hint = (f"conv1 (3*3*{cin}*{cout}) and conv2 (3*3*{cout}*{cout}) have no bias, "
                    f"bn1 and bn2 have 2*{cout} each"
                    + (f", and the projection has {cin}*{cout} + 2*{cout}" if changes_shape
                       else "; a block that keeps the shape has no shortcut parameters")
                    + f". See {CHAPTER}, 'Fix 3, the paper's option B'.")
        expect_equal(f"parameters of MyBasicBlock({cin}, {cout}, stride={stride})",
                     expected, got, hint)


def _randomise_batch_norms(block: nn.Module) -> None:
    """Non-trivial BN scales, shifts and statistics, so that where a BN sits shows."""
    for bn in (m for m in block.modules() if isinstance(m, nn.BatchNorm2d)):
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 1.5)


def _copy_into_package_block(block: nn.Module, cin: int, cout: int,
                             stride: int) -> BasicBlock:
    """The package's block holding the learner's weights (after the parameter check)."""
    oracle = _package_block(cin, cout, stride)
    for name in ("conv1", "bn1", "conv2", "bn2"):
        getattr(oracle, name).load_state_dict(getattr(block, name).state_dict())
    if oracle.downsample is not None:  # the learner's own 1x1 conv and BN
        load_shortcut(shortcut_layers(block, ("conv1", "bn1", "conv2", "bn2")),
                      oracle.downsample, f"MyBasicBlock({cin}, {cout}, stride={stride})",
                      f"See {CHAPTER}, 'Fix 3'.")
    return oracle


def _check_same_function(block_cls: type) -> None:
    # Output for output against the package's block with the same weights, in
    # eval mode (running statistics) and train mode (batch statistics): this
    # checks the order of the layers and where the ReLUs and the addition sit.
    for cin, cout, stride in BLOCK_SHAPES:
        block = _build(block_cls, cin, cout, stride)
        _randomise_batch_norms(block)
        oracle = _copy_into_package_block(block, cin, cout, stride)
        x = torch.randn(4, cin, MAP_SIZE, MAP_SIZE)
        for training in (False, True):
            expected = oracle.train(training)(x)
            got = tensor_answer(block.train(training)(x),
                                f"MyBasicBlock({cin}, {cout}, stride={stride})(x)")
            gap = (got - expected).abs().max().item()
            mode = "train" if training else "eval"
            expect(allclose(got, expected, atol=1e-5),
                   f"with the same weights, MyBasicBlock({cin}, {cout}, stride={stride})"
                   f"'s output differs from the package's block in {mode} mode by up to "
                   f"{gap:.3g}. F(x) is conv1 -> bn1 -> ReLU -> conv2 -> bn2 (no ReLU at "
                   f"its end), the shortcut is x or bn(conv1x1(x)), and forward returns "
                   f"relu(F(x) + shortcut(x)). See {CHAPTER}, 'The basic block'.")


@checker("BasicBlock with a projection shortcut", answers="MyBasicBlock")
def check_basic_block(block_cls: type) -> None:
    """Check ``MyBasicBlock(cin, cout, stride)``: shapes, identity, own shortcut, size."""
    _check_shapes(block_cls)
    _check_identity(block_cls)
    # Before the parameter count: the report's fix has option A's count,
    # and the specific message here says what is wrong with it.
    _check_own_shortcut(block_cls)
    _check_parameters(block_cls)
    _check_same_function(block_cls)


@cache
def _stage_sizes(factor: int) -> dict[str, tuple[int, int]]:
    """(H, W) of ResNet-18's layer3 and layer4 outputs for a 28x28 input upsampled
    by ``factor``.

    Measured with forward hooks on the package's model, built on the meta
    device: meta tensors have shapes but no data, so even a 252 px forward
    pass does no arithmetic.
    """
    with torch.device("meta"):
        model = get_model("resnet18", upsample=factor)
    sizes: dict[str, tuple[int, int]] = {}
    handles = []
    for stage in ("layer3", "layer4"):
        def hook(_module: nn.Module, _inputs, output: Tensor, stage: str = stage) -> None:
            sizes[stage] = tuple(output.shape[2:])
        handles.append(getattr(model, stage).register_forward_hook(hook))
    model.eval()
    model(torch.zeros(1, 1, 28, 28, device="meta"))
    for handle in handles:
        handle.remove()
    return sizes


def _smallest_factor(min_size: int, stage: str = "layer4") -> int:
    """The oracle: try factors 1, 2, 3, ... on the package's model."""
    factor = 1
    while min(_stage_sizes(factor)[stage]) < min_size:
        factor += 1
    return factor


# 2 is the chapter's case; 1, 4 and 8 keep a hard-coded answer (or "return
# min_size", right up to 7) from passing; 7 tells "maps strictly bigger than
# min_size" from "layer4's side is 28 * f / 32, rounded down" (they agree on
# the other four).
MIN_SIZES = (2, 1, 4, 8, 7)

# The usual slips, each as the answer it amounts to, and what to tell the learner.
RESNET_UPSAMPLE_SLIPS: list[tuple[Callable[[int], int], str]] = [
    (lambda m: _smallest_factor(m, "layer3"),
     "every answer fits layer3's maps: measure layer4's output, not layer3's."),
    (lambda m: _smallest_factor(m) - 1,
     "every answer is one less than the smallest factor that works: return the first "
     "factor whose layer4 maps are big enough, not the one before it."),
    # Maps strictly bigger than m are maps of at least m + 1 (sides are whole).
    (lambda m: _smallest_factor(m + 1),
     "every answer makes the maps strictly bigger than min_size: 'at least' means >=, "
     "not >."),
    # The smallest f with floor(28 * f / 32) >= m.
    (lambda m: -(-32 * m // 28),
     "every answer takes layer4's side as 28 * f / 32 rounded DOWN; each stride-2 layer "
     "(3x3, padding 1) rounds UP, ceil(n / 2), so the side is ceil(28 * f / 32). Measure "
     "it rather than derive it: a forward hook on model.layer4."),
]


def _answers(fn: Callable[[int], int]) -> dict[int, object]:
    """The learner's answer for every case, to name a slip only if all fit it."""
    answers = {}
    for m in MIN_SIZES:
        try:
            answers[m] = fn(m)
        except Exception:  # naming a slip must not hide the real failure
            answers[m] = None
    return answers


def _hint(fn: Callable[[int], int], min_size: int, expected: int, got: int) -> str:
    """Why ``got`` is not the answer: a slip that fits every case, else the facts."""
    answers = _answers(fn)
    for slip, hint in RESNET_UPSAMPLE_SLIPS:
        if all(answers[m] == slip(m) for m in MIN_SIZES):
            return hint
    if got < 1:
        return "the factor is at least 1 (1 means no upsampling)."
    h, w = _stage_sizes(expected)["layer4"]
    gh, gw = _stage_sizes(got)["layer4"]
    return (f"at x{got} ({28 * got} px) layer4's maps are {gh}x{gw}; x{expected} is the "
            f"first factor that gives at least {min_size}x{min_size} ({h}x{w}). Measure "
            f"layer4's output for f = 1, 2, 3, ... and return the first f that is enough.")


@checker("smallest upsampling factor for ResNet-18", answers="smallest_upsample_for_resnet")
def check_smallest_upsample(fn: Callable[[int], int]) -> None:
    """Check ``smallest_upsample_for_resnet(min_size)`` for several ``min_size``."""
    for min_size in MIN_SIZES:
        expected = _smallest_factor(min_size)  # first: the answer runs after
        got = fn(min_size)  # None here is a missing return, not an untouched cell
        call = f"smallest_upsample_for_resnet({min_size})"
        got = as_count(got, call)
        if got != expected:
            expect_equal(call, expected, got, _hint(fn, min_size, expected, got)
                         + f" See {CHAPTER}, 'Bug 4: 28x28 digits shrink to 1x1 maps'.")


# --- Exercise 3: batch normalization by hand ---------------------------------

def _bn_case(seed: int, shape: tuple[int, int, int, int]) -> dict:
    """A batch whose channels have different means and scales, BN's parameters
    and running statistics away from their defaults (so that every term shows)."""
    g = torch.Generator().manual_seed(seed)
    n, c, h, w = shape
    x = (torch.randn(shape, generator=g) * torch.linspace(0.5, 3.0, c).view(1, c, 1, 1)
         + torch.linspace(-2.0, 4.0, c).view(1, c, 1, 1))
    return {"x": x, "gamma": torch.rand(c, generator=g) + 0.5,
            "beta": torch.randn(c, generator=g),
            "running_mean": torch.randn(c, generator=g),
            "running_var": torch.rand(c, generator=g) + 0.5}


def _bn_oracle(case: dict, training: bool) -> tuple[Tensor, Tensor, Tensor]:
    """PyTorch's own BatchNorm2d on a copy of the case: (y, running_mean, running_var)."""
    mean, var = case["running_mean"].clone(), case["running_var"].clone()
    y = F.batch_norm(case["x"], mean, var, case["gamma"], case["beta"],
                     training=training, momentum=0.1, eps=1e-5)
    return y, mean, var


def _bn_slip(case: dict, got_y: Tensor, got_mean: Tensor, got_var: Tensor) -> str:
    """Name the mistake behind a wrong training-mode answer, if a known one fits."""
    x, dims = case["x"], (0, 2, 3)
    count = x.numel() // x.shape[1]
    batch_mean, biased = x.mean(dims), x.var(dims, unbiased=False)
    unbiased = biased * count / (count - 1)
    shape = (1, -1, 1, 1)
    ref = lambda v, m=batch_mean: (case["gamma"].view(shape) * (x - m.view(shape))  # noqa: E731
                                   / torch.sqrt(v.view(shape) + 1e-5) + case["beta"].view(shape))
    batch = x.shape[0]
    by_batch = biased * batch / (batch - 1)  # Bessel's correction with N, not N*H*W
    if allclose(got_var, 0.9 * case["running_var"] + 0.1 * by_batch, atol=1e-5):
        return (f"Bessel's correction divides by n - 1 with n the number of values per "
                f"channel, N*H*W = {count} here, not the batch size N = {batch}: "
                f"running_var gets biased * n / (n - 1)")
    if allclose(got_var, 0.9 * case["running_var"] + 0.1 * biased, atol=1e-5):
        return ("running_var must be updated with the UNBIASED batch variance (divide by "
                "n - 1, with n = N*H*W values per channel); only the normalisation "
                "itself uses the biased one")
    if allclose(got_y, ref(unbiased), atol=1e-4) or allclose(got_y, ref(by_batch), atol=1e-4):
        return ("normalise with the BIASED batch variance (divide by n, "
                "x.var(dims, unbiased=False)); the unbiased one is for running_var only")
    if allclose(got_mean, 0.1 * case["running_mean"] + 0.9 * batch_mean, atol=1e-5):
        return ("the momentum weighs the NEW batch: running = (1 - momentum) * running + "
                "momentum * batch statistic")
    if allclose(got_mean, case["running_mean"]):
        return "in training mode, update running_mean and running_var in place"
    whole = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-5)
    if allclose(got_y, case["gamma"].view(shape) * whole + case["beta"].view(shape),
                      atol=1e-4):
        return ("one mean and one variance PER CHANNEL: reduce over dims (0, 2, 3), not "
                "over the whole tensor")
    return ("y = gamma * (x - mean) / sqrt(var + eps) + beta, with the batch's per-channel "
            "mean and biased variance in training mode; running = 0.9 * running + 0.1 * "
            "batch statistic, with the unbiased variance (n - 1, n = N*H*W)")


@checker("batch_norm", answers="batch_norm")
def check_batch_norm(batch_norm: Callable) -> None:
    """Check ``batch_norm(x, gamma, beta, running_mean, running_var, training)``
    against PyTorch's BatchNorm2d in training and eval mode (momentum 0.1,
    eps 1e-5), running statistics updated in place."""
    for seed, shape in ((0, (8, 3, 5, 5)), (1, (2, 4, 3, 7))):
        for training in (True, False):
            case = _bn_case(seed, shape)
            mean, var = case["running_mean"].clone(), case["running_var"].clone()
            x_before = case["x"].clone()
            want_y, want_mean, want_var = _bn_oracle(case, training)  # before the answer runs
            y = batch_norm(case["x"], case["gamma"], case["beta"], mean, var, training)
            mode = "training" if training else "eval"
            call = f"batch_norm(x of shape {shape}, ..., training={training})"
            y = float_answer(y, call)
            # Updated in place by the answer, which could also have set their
            # __class__ to a tensor subclass of its own.
            mean, var = plain_tensor(mean), plain_tensor(var)
            expect(y.shape == x_before.shape,
                   f"{call} returned a tensor of shape {tuple(y.shape)}; return y, a "
                   f"tensor of the input's shape {shape}.")
            y = y.float()  # float64 is as right: compare in the oracle's float32
            expect(equal(case["x"], x_before),
                   f"{call} changed x; compute y as a new tensor.")
            if not training:
                expect(equal(mean, case["running_mean"])
                       and equal(var, case["running_var"]),
                       f"{call} changed the running statistics; in eval mode they are "
                       f"only read. See {CHAPTER}, 'Batch normalisation, which every block "
                       f"uses'.")
                expect(allclose(y, want_y, atol=1e-4),
                       f"{call}: y differs from nn.BatchNorm2d in eval mode by up to "
                       f"{(y - want_y).abs().max().item():.3g}. In eval mode normalise with "
                       f"running_mean and running_var, not the batch's statistics. See "
                       f"{CHAPTER}, 'Batch normalisation, which every block uses'.")
                continue
            right = (allclose(y, want_y, atol=1e-4)
                     and allclose(mean, want_mean, atol=1e-5)
                     and allclose(var, want_var, atol=1e-5))
            expect(right,
                   f"{call} differs from nn.BatchNorm2d in {mode} mode (y by up to "
                   f"{(y - want_y).abs().max().item():.3g}, running_var by up to "
                   f"{(var - want_var).abs().max().item():.3g}). Hint: "
                   f"{_bn_slip(case, y, mean, var)}. See {CHAPTER}, 'Batch normalisation, "
                   f"which every block uses'.")


# --- Exercise 4: option A, the zero-padding shortcut ---------------------------

# (cin, cout, stride, map size): ResNet-18's three stage changes, an odd map,
# and strides 1 and 3, so that an answer that always halves the map fails.
SHORTCUT_CASES = [(64, 128, 2, 14), (128, 256, 2, 7), (256, 512, 2, 4), (3, 8, 2, 9),
                  (16, 32, 1, 5), (8, 24, 3, 7)]


@checker("zero_pad_shortcut", answers="zero_pad_shortcut")
def check_zero_pad_shortcut(shortcut: Callable) -> None:
    """Check ``zero_pad_shortcut(x, cout, stride)``: the paper's option A."""
    where = f"See {CHAPTER}, 'Fix 2, the paper's option A: zero padding, no parameters'."
    for cin, cout, stride, size in SHORTCUT_CASES:
        x = torch.randn(2, cin, size, size)
        before = x.clone()
        call = f"zero_pad_shortcut(x of shape {tuple(x.shape)}, cout={cout}, stride={stride})"
        # A stride-2 1x1 conv's pixels: 0, 2, 4, ...; taken first, the answer runs after.
        kept = x[:, :, ::stride, ::stride].clone()
        got = float_answer(shortcut(x, cout, stride), call)
        want_shape = (2, cout) + tuple(kept.shape[2:])
        if tuple(got.shape) != want_shape:
            halved = -(-size // 2)
            hint = (f"your map is {halved}x{halved}, halved whatever the stride: keep "
                    f"every stride-th pixel, x[:, :, ::stride, ::stride] (stride "
                    f"{stride} here)" if stride != 2 and got.shape[2:] == (halved, halved)
                    else "take every stride-th pixel and add zero channels")
            expect(False, f"{call} returned shape {tuple(got.shape)}; expected "
                          f"{want_shape}: the main path's shape, so that the two can be "
                          f"added. Hint: {hint}. {where}")
        got = got.float()  # float64 holds the same values: compare in float32
        expect(equal(x, before), f"{call} changed x; return a new tensor. {where}")
        # The zeros may sit before, after or around the kept channels: any
        # contiguous block of cin channels equal to the kept pixels will do.
        starts = [s for s in range(cout - cin + 1) if equal(got[:, s:s + cin], kept)]
        if not starts:
            averaged = F.avg_pool2d(x, stride, stride, ceil_mode=True)
            if any(part.shape == averaged.shape and allclose(part, averaged, atol=1e-6)
                   for part in (got[:, :cin], got[:, -cin:])):
                hint = ("you averaged the pixels; option A is an identity on the pixels "
                        "it keeps: x[:, :, ::stride, ::stride]")
            elif any(equal(got[:, s:s + cin], x[:, :, 1::stride, 1::stride])
                     for s in range(cout - cin + 1)):
                hint = ("you kept the odd pixels; a stride-2 1x1 convolution starts at "
                        "pixel 0: x[:, :, ::stride, ::stride]")
            else:
                hint = ("the input's channels must come through unchanged, subsampled "
                        "with x[:, :, ::stride, ::stride]")
            expect(False, f"{call}: no block of {cin} channels of your output equals the "
                          f"subsampled input. Hint: {hint}. {where}")
        s = starts[0]
        rest = torch.cat([got[:, :s], got[:, s + cin:]], dim=1)
        expect(bool((rest == 0).all()),
               f"{call}: the {cout - cin} extra channels must be zeros (option A adds no "
               f"parameters and no new signal); yours hold values up to "
               f"{rest.abs().max().item():.3g}. {where}")


# --- Exercise 5: plain against residual, and the seed-to-seed spread ------------

# The steps each run is summarised by: 11 to 30, counted from 1 (losses[10:30]).
# In steps 1-10 the loss still depends on where the random weights started;
# the runs end at 30.
FIRST_STEP, LAST_STEP = 11, 30
VERDICTS = ("residual", "plain", "no difference")
# The check reads lists of numbers: a right answer takes microseconds, so a few
# seconds stop an answer that loops forever without cutting a slow machine short.
VERDICT_SECONDS = 5.0
ARMS = ("plain", "residual")
_SWAPPED = {"residual": "plain", "plain": "residual", "no difference": "no difference"}
Runs = Mapping[str, Sequence[Sequence[float]]]


def _mean(values: Sequence[float]) -> float:
    values = [float(v) for v in values]
    return math.fsum(values) / len(values)


def _summaries(runs: Runs, start: int | None = FIRST_STEP - 1,
               stop: int | None = LAST_STEP) -> dict[str, list[float]]:
    """Each run's mean loss over ``losses[start:stop]``, per arm."""
    return {arm: [_mean(list(run)[start:stop]) for run in runs[arm]] for arm in ARMS}


def _by_ranges(s: dict[str, list[float]]) -> str:
    """The rule: an arm is better only if every run of it is below every run of the other."""
    if max(s["residual"]) < min(s["plain"]):
        return "residual"
    if max(s["plain"]) < min(s["residual"]):
        return "plain"
    return "no difference"


def _by_ranges_ties_win(s: dict[str, list[float]]) -> str:
    """The slip: ranges that only touch (equal at one end) still give a winner."""
    if max(s["residual"]) <= min(s["plain"]):
        return "residual"
    if max(s["plain"]) <= min(s["residual"]):
        return "plain"
    return "no difference"


def _lower(plain: float, residual: float) -> str:
    return "residual" if residual < plain else "plain" if plain < residual else "no difference"


def _by_means(s: dict[str, list[float]]) -> str:
    return _lower(_mean(s["plain"]), _mean(s["residual"]))


def _by_seed(i: int) -> Callable[[dict[str, list[float]]], str]:
    return lambda s: _lower(s["plain"][i], s["residual"][i])


def _by_pairs(s: dict[str, list[float]]) -> str:
    pairs = list(zip(s["plain"], s["residual"]))
    if all(r < p for p, r in pairs):
        return "residual"
    if all(p < r for p, r in pairs):
        return "plain"
    return "no difference"


def _rule(decide: Callable[[dict[str, list[float]]], str], start: int | None = FIRST_STEP - 1,
          stop: int | None = LAST_STEP, swap: bool = False) -> Callable[[Runs], str]:
    def verdict(runs: Runs) -> str:
        v = decide(_summaries(runs, start, stop))
        return _SWAPPED[v] if swap else v
    return verdict


_verdict_oracle = _rule(_by_ranges)

_WINDOW_HINT = (f"steps {FIRST_STEP} to {LAST_STEP} counted from 1 are losses[{FIRST_STEP - 1}:"
                f"{LAST_STEP}] in Python (index = step - 1): 20 losses per run")
_OVERLAP_RULE = ("call an arm better only when every one of its runs is below every run of "
                 "the other (the two ranges do not overlap), else return 'no difference'")


def _window_hint(start: int, stop: int) -> str:
    """What a window slip averaged, next to the right window."""
    return (f"you averaged losses[{start}:{stop}], which is steps {start + 1}-{stop} "
            f"({stop - start} losses); {_WINDOW_HINT}")

# The usual slips, each as the verdict it amounts to, and what to tell the learner.
PLAIN_VS_RESIDUAL_SLIPS: list[tuple[Callable[[Runs], str], str]] = [
    (_rule(_by_ranges, swap=True),
     "your labels are swapped: a LOWER training loss means faster learning, so return "
     "'residual' when the residual runs are all below the plain ones"),
    (_rule(_by_seed(0)),
     "you compared the first run of each arm only. One run is one sample: another seed "
     "can land on the other side. Summarise every run, and " + _OVERLAP_RULE),
    (_rule(_by_seed(-1)),
     "you compared the last run of each arm only. One run is one sample: another seed "
     "can land on the other side. Summarise every run, and " + _OVERLAP_RULE),
    (_rule(_by_pairs),
     "you compared the runs seed by seed, but seed 0 of the plain net and seed 0 of the "
     "residual net are not a pair (the two nets draw different weights): compare the "
     "arms as groups, and " + _OVERLAP_RULE),
    (_rule(_by_means),
     "you compared the arms' mean losses. Two means always differ a little, even between "
     "two groups of seeds of the same net; the question is whether the gap is larger than "
     "the spread between seeds, so " + _OVERLAP_RULE),
    (_rule(_by_ranges, 0, None),
     f"you averaged the whole curve; summarise each run by steps {FIRST_STEP}-{LAST_STEP} "
     f"only ({_WINDOW_HINT})"),
    (_rule(_by_ranges, 0, FIRST_STEP - 1),
     f"you averaged steps 1-{FIRST_STEP - 1}, where the loss still depends on where the "
     f"random weights started; summarise each run by steps {FIRST_STEP}-{LAST_STEP} "
     f"({_WINDOW_HINT})"),
    (_rule(_by_ranges_ties_win),
     "when the two ranges only touch (the lowest run of one arm equals the highest of "
     "the other), no arm has every run below every run of the other: that is 'no "
     "difference'. Compare with <, not <="),
    *[(_rule(_by_ranges, a, b), _window_hint(a, b))
      for a, b in ((11, 31), (9, 29), (10, 29), (11, 30), (9, 30), (10, 31))],
]


def _curve(start: float, window: float, edits: dict[int, float] | None = None,
           late: float = 0.3, steps: int = 40) -> list[float]:
    """A made-up training curve: steps 1-10 at ``start``, 11-30 at ``window``, then
    ``late``; ``edits`` sets single steps (counted from 1)."""
    curve = [start] * 10 + [window] * 20 + [late] * (steps - 30)
    for step, value in (edits or {}).items():
        curve[step - 1] = value
    return curve


def _plain_vs_residual_cases() -> list[tuple[str, dict]]:
    """Made-up runs, each built to catch one slip (see PLAIN_VS_RESIDUAL_SLIPS)."""
    import numpy as np

    c = _curve
    return [
        ("two seeds per arm whose ranges overlap",
         {"plain": [c(1.8, 0.60), c(1.8, 0.44)], "residual": [c(1.3, 0.50), c(1.3, 0.40)]}),
        ("residual better, though it starts worse",
         {"plain": [c(1.2, 0.70), c(1.2, 0.66)], "residual": [c(2.0, 0.48), c(2.0, 0.52)]}),
        ("plain better",
         {"plain": [c(1.5, 0.40), c(1.5, 0.43)], "residual": [c(1.4, 0.55), c(1.4, 0.50)]}),
        ("three seeds per arm, one residual run inside the plain range",
         {"plain": [c(1.5, 0.55), c(1.5, 0.62), c(1.5, 0.58)],
          "residual": [c(1.5, 0.40), c(1.5, 0.45), c(1.5, 0.57)]}),
        ("overlapping seeds, the first plain run the lowest",
         {"plain": [c(1.5, 0.50), c(1.5, 0.70)], "residual": [c(1.5, 0.55), c(1.5, 0.45)]}),
        ("overlapping seeds, the last plain run the lowest",
         {"plain": [c(1.5, 0.70), c(1.5, 0.50)], "residual": [c(1.5, 0.45), c(1.5, 0.55)]}),
        ("outliers at steps 10 and 30",
         {"plain": [c(1.0, 0.50, {30: 5.0}), c(1.0, 0.51, {30: 5.0})],
          "residual": [c(1.0, 0.55, {10: 5.0}), c(1.0, 0.56, {10: 5.0})]}),
        ("outliers at steps 11 and 31",
         {"plain": [c(1.0, 0.50, {11: 5.0}), c(1.0, 0.51, {11: 5.0})],
          "residual": [c(1.0, 0.55, {31: 5.0}), c(1.0, 0.56, {31: 5.0})]}),
        # One outlier in the plain runs at a step on either side of each end of the
        # window: each window slip counts a different set of them.
        *[(f"an outlier at step {step} in the plain runs",
           {"plain": [c(1.0, 0.50, {step: 5.0}), c(1.0, 0.51, {step: 5.0})],
            "residual": [c(1.0, 0.55), c(1.0, 0.56)]}) for step in (10, 11, 30, 31)],
        # 0.5, 0.375 and 0.625 are exact in binary: the two means are equal exactly.
        ("ranges that touch: the worst residual run equals the best plain run",
         {"plain": [c(1.5, 0.5), c(1.5, 0.625)], "residual": [c(1.5, 0.375), c(1.5, 0.5)]}),
        ("NumPy float32 arrays (a 2-D array for the plain runs), 30 steps each",
         {"plain": np.array([c(1.2, 0.70, steps=30), c(1.2, 0.66, steps=30)], np.float32),
          "residual": [np.array(c(2.0, 0.48, steps=30), np.float32),
                       np.array(c(2.0, 0.52, steps=30), np.float32)]}),
    ]


def _copy_runs(runs: Runs) -> dict:
    """A fresh copy for each call, so that an answer that changes its input cannot
    change what the next call or the oracle sees."""
    import copy
    return {arm: copy.deepcopy(runs[arm]) for arm in ARMS}


def _as_verdict(got: object, call: str) -> str:
    # An exact str: a subclass's __eq__ could say yes to every verdict.
    got = plain_str(got) if isinstance(got, str) else got
    expect(isinstance(got, str) and got in VERDICTS,
           f"{call} returned {shown(got)}; return one of "
           + ", ".join(repr(v) for v in VERDICTS) + ".")
    return got


def _check_real_runs(runs: object) -> dict:
    """The runs the notebook trained, as a dict of lists of curves."""
    where = "pass the `runs` the training cell above built"
    expect(isinstance(runs, Mapping) and set(ARMS) <= set(runs),
           f"the runs must be a dict with the keys 'plain' and 'residual': {where}.")
    for arm in ARMS:
        expect(len(runs[arm]) >= 2 and all(len(r) >= LAST_STEP for r in runs[arm]),
               f"runs[{arm!r}] should hold at least two runs of at least {LAST_STEP} "
               f"training losses each: {where}.")
    return {arm: [[float(x) for x in run] for run in runs[arm]] for arm in ARMS}


def _gap(s: dict[str, list[float]]) -> float:
    """How close the verdict is to flipping: the smaller distance between one arm's
    lowest run and the other arm's highest (0 when the two ranges just touch)."""
    return min(abs(min(s["plain"]) - max(s["residual"])),
               abs(min(s["residual"]) - max(s["plain"])))


@checker("plain_vs_residual", answers="verdict", seconds=VERDICT_SECONDS)
def check_plain_vs_residual(verdict: Callable[[Runs], str], runs: object) -> None:
    """Check ``verdict(runs) -> 'residual' | 'plain' | 'no difference'`` on made-up
    training curves and on ``runs``, the plain and residual runs the notebook
    trained (``{"plain": [losses, ...], "residual": [losses, ...]}``)."""
    where = f"See {CHAPTER}, 'The degradation problem: why the shortcut is there'."
    cases = _plain_vs_residual_cases()
    answers = [_as_verdict(verdict(_copy_runs(r)), f"verdict(runs) on {what}")
               for what, r in cases]
    for (what, case), got in zip(cases, answers):
        expected = _verdict_oracle(case)
        if got == expected:
            continue
        hint = next((h for slip, h in PLAIN_VS_RESIDUAL_SLIPS
                     if [slip(r) for _, r in cases] == answers), None)
        if hint is None:
            s = _summaries(case)
            hint = (f"the runs' mean losses over steps {FIRST_STEP}-{LAST_STEP} are plain "
                    f"{[round(v, 3) for v in s['plain']]}, residual "
                    f"{[round(v, 3) for v in s['residual']]}; " + _OVERLAP_RULE)
        expect_equal(f"verdict(runs) on made-up runs, {what}", expected, got,
                     f"{hint}. {where}")
    real = _check_real_runs(runs)
    got = _as_verdict(verdict(_copy_runs(real)), "verdict(runs) on your trained runs")
    s = _summaries(real)
    expected = _verdict_oracle(real)
    if got != expected and _gap(s) > 1e-6:  # float32 may flip a tie at the boundary
        expect_equal("verdict(runs) on your trained runs", expected, got,
                     f"the runs' mean losses over steps {FIRST_STEP}-{LAST_STEP} are plain "
                     f"{[round(v, 4) for v in s['plain']]}, residual "
                     f"{[round(v, 4) for v in s['residual']]}. {where}")

