"""Checkers for the MobileNetV1 exercises (chapter 5).

* ``check_param_counts``: ``standard_params`` and ``separable_params``
  against the parameters of real ``nn.Conv2d`` layers.
* ``check_depthwise_separable``: the learner's ``MyDepthwiseSeparable``
  against the package's ``DepthwiseSeparable``.
* ``check_macs_ratio``: a predicted mult-adds ratio against torchinfo's
  count for real layers.
"""
from __future__ import annotations

from functools import cache
from typing import Callable

import torch
from torch import Tensor, nn
from torchinfo import summary

from . import checker, expect, expect_equal
from ._harness import (allclose, as_count, as_real, close, equal, plain_tensor, quiet_torch,
                       tensor_answer)
from ..models import count_parameters
from ..models.mobilenet import DepthwiseSeparable

CHAPTER = "chapter 5 (MobileNetV1)"
NOTEBOOK = "05_mobilenet.ipynb"

# (cin, cout, k): MobileNet's own shapes, a square 512 block, and shapes
# where cin != cout and k != 3, so that a formula mixing them up fails.
PARAM_CASES = [(32, 64, 3), (512, 512, 3), (3, 16, 5), (10, 20, 7), (64, 128, 1)]

# (cin, cout, stride, map size): stride 1 and 2, even and odd maps.
BLOCK_CASES = [(32, 64, 1, 14), (64, 128, 2, 14), (128, 128, 1, 7), (128, 256, 2, 7)]

# (cin, cout, k, H, W) for the mult-adds ratio.
MACS_CASES = [(32, 64, 3, 28, 28), (512, 512, 3, 14, 14), (64, 128, 5, 7, 7),
              (16, 10, 7, 12, 9)]


def _layers(cin: int, cout: int, k: int) -> tuple[nn.Module, nn.Module]:
    """The oracle layers: a standard k x k conv and a depthwise + pointwise pair."""
    standard = nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)
    separable = nn.Sequential(
        nn.Conv2d(cin, cin, k, padding=k // 2, groups=cin, bias=False),  # depthwise
        nn.Conv2d(cin, cout, 1, bias=False),                             # pointwise
    )
    return standard, separable


def _as_int(call: str, got) -> int:
    return as_count(got, call)  # None is a missing return: as_count says so


@checker("parameters: standard vs depthwise-separable",
         answers=("standard_params", "separable_params"))
def check_param_counts(standard_params: Callable[..., int],
                       separable_params: Callable[..., int]) -> None:
    """Check both parameter-count functions on several (cin, cout, k)."""
    for cin, cout, k in PARAM_CASES:
        standard, separable = _layers(cin, cout, k)
        expected = count_parameters(standard)
        call = f"standard_params({cin}, {cout}, k={k})"
        got = _as_int(call, standard_params(cin, cout, k=k))
        hint = (f"no bias (BN follows the conv): {cout} too many." if got == expected + cout
                else "a k x k conv has one k*k*cin filter per output channel.")
        expect_equal(call, expected, got, hint + f" See {CHAPTER}, 'Counting weights "
                     f"and mult-adds'.")

        expected = count_parameters(separable)
        call = f"separable_params({cin}, {cout}, k={k})"
        got = _as_int(call, separable_params(cin, cout, k=k))
        if got == k * k * cin * cin + cin * cout and k * k * cin * cin != k * k * cin:
            hint = (f"you counted the depthwise conv as a standard one ({k}*{k}*{cin}*{cin}). "
                    f"It has groups=cin: one {k}x{k} filter per input channel, {k}*{k}*{cin} "
                    f"weights. See {CHAPTER}, 'A silent pitfall: forgetting groups'.")
        elif got == expected + cin + cout:
            hint = "no biases (BN follows each conv): the count includes cin + cout too many."
        else:
            hint = (f"depthwise {k}x{k} (k*k*cin) plus pointwise 1x1 (cin*cout). "
                    f"See {CHAPTER}, 'Counting weights and mult-adds'.")
        expect_equal(call, expected, got, hint)


def _check_convs(block: nn.Module, cin: int, cout: int, stride: int) -> None:
    """The block's convolutions, found by kernel size: a real depthwise 3x3, a 1x1."""
    name = f"MyDepthwiseSeparable({cin}, {cout}, stride={stride})"
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    k3 = [c for c in convs if c.kernel_size == (3, 3)]
    k1 = [c for c in convs if c.kernel_size == (1, 1)]
    expect(len(k3) == 1 and len(k1) == 1 and len(convs) == 2,
           f"{name} has {len(convs)} Conv2d layers ({len(k3)} with a 3x3 kernel, "
           f"{len(k1)} with 1x1); expected exactly two: the 3x3 depthwise conv and "
           f"the 1x1 pointwise conv.")
    depthwise, pointwise = k3[0], k1[0]
    expect(depthwise.in_channels == cin and depthwise.out_channels == cin,
           f"{name}: the 3x3 depthwise conv maps {depthwise.in_channels} -> "
           f"{depthwise.out_channels} channels; it must keep the {cin} input channels "
           f"(cin -> cin). The 1x1 pointwise conv changes the channels.")
    if depthwise.groups != cin:
        dense = count_parameters(nn.Conv2d(cin, cin, 3, groups=depthwise.groups, bias=False))
        expect(False,
               f"{name}: the 3x3 conv has groups={depthwise.groups}, so it is not "
               f"depthwise: each filter sees {cin // depthwise.groups} channels and it "
               f"has {dense:,} weights instead of 3*3*{cin} = {9 * cin:,} "
               f"({dense // (9 * cin)} times too many). It runs and gives the same "
               f"output shape, so only the weight count shows it. Pass groups=cin "
               f"to nn.Conv2d. See {CHAPTER}, 'A silent pitfall: forgetting groups'.")
    expect(depthwise.stride == (stride, stride) and depthwise.padding == (1, 1),
           f"{name}: the 3x3 depthwise conv has stride {depthwise.stride} and padding "
           f"{depthwise.padding}; it carries the block's stride ({stride}) and padding 1.")
    expect(pointwise.in_channels == cin and pointwise.out_channels == cout
           and pointwise.groups == 1 and pointwise.stride == (1, 1),
           f"{name}: the 1x1 pointwise conv must map {cin} -> {cout} channels with "
           f"stride 1 and groups=1; yours maps {pointwise.in_channels} -> "
           f"{pointwise.out_channels} with stride {pointwise.stride} and groups="
           f"{pointwise.groups}.")
    with_bias = [c for c in convs if c.bias is not None]
    expect(not with_bias,
           f"{name}: {len(with_bias)} of the convs have a bias; pass bias=False: the BN "
           f"after each conv has its own shift, so a bias would be redundant.")


def _check_same_function(block: nn.Module, cin: int, cout: int, stride: int) -> None:
    # Copy the learner's weights into the package's block and compare outputs:
    # this checks the order conv -> BN -> ReLU -> conv -> BN -> ReLU. With
    # cin != cout the two BNs are told apart by their number of features.
    name = f"MyDepthwiseSeparable({cin}, {cout}, stride={stride})"
    bns = [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)]
    expect(sorted(b.num_features for b in bns) == sorted([cin, cout]),
           f"{name} has BatchNorm2d layers for {[b.num_features for b in bns]} channels; "
           f"expected two: BatchNorm2d({cin}) after the depthwise conv and "
           f"BatchNorm2d({cout}) after the pointwise conv.")
    bn_dw = next(b for b in bns if b.num_features == cin)
    bn_pw = next(b for b in bns if b.num_features == cout)
    for bn in bns:  # non-trivial statistics, so where each BN sits matters
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 1.5)
    convs = {m.kernel_size: m for m in block.modules() if isinstance(m, nn.Conv2d)}
    oracle = DepthwiseSeparable(cin, cout, stride)
    oracle.depthwise[0].weight.copy_(convs[(3, 3)].weight)
    oracle.depthwise[1].load_state_dict(bn_dw.state_dict())
    oracle.pointwise[0].weight.copy_(convs[(1, 1)].weight)
    oracle.pointwise[1].load_state_dict(bn_pw.state_dict())
    x = torch.randn(2, cin, 9, 9)
    expected = oracle.eval()(x)
    got = tensor_answer(block.eval()(x), f"{name}(x)")
    expect(allclose(got, expected, atol=1e-5),
           f"with the same weights, {name}'s output differs from the package's "
           f"DepthwiseSeparable by up to {(got - expected).abs().max().item():.3g}. The "
           f"order is: depthwise 3x3 conv -> BN -> ReLU -> pointwise 1x1 conv -> BN -> "
           f"ReLU. See {CHAPTER}, 'Depthwise-separable convolution'.")


@checker("depthwise-separable convolution", answers="MyDepthwiseSeparable")
def check_depthwise_separable(block_cls: type) -> None:
    """Check ``MyDepthwiseSeparable(cin, cout, stride)`` against the package's block."""
    for cin, cout, stride, size in BLOCK_CASES:
        name = f"MyDepthwiseSeparable({cin}, {cout}, stride={stride})"
        block = block_cls(cin, cout, stride)
        expect(isinstance(block, nn.Module),
               f"{name} returned a {type(block).__name__}, not an nn.Module.")
        _check_convs(block, cin, cout, stride)
        x = torch.randn(2, cin, size, size)
        out = tensor_answer(block.eval()(x), f"{name}(x)")
        expected = tuple(DepthwiseSeparable(cin, cout, stride).eval()(x).shape)
        expect_equal(f"output shape of {name} for an input of shape {tuple(x.shape)}",
                     expected, tuple(out.shape),
                     "the depthwise conv has the block's stride and padding 1.")
        expect(bool((out >= 0).all()),
               f"{name} returns negative values: the block ends with a ReLU "
               f"(after the pointwise conv's BN).")
        expect_equal(f"parameters of {name}",
                     count_parameters(DepthwiseSeparable(cin, cout, stride)),
                     count_parameters(block),
                     f"3*3*{cin} (depthwise) + 2*{cin} (its BN) + {cin}*{cout} "
                     f"(pointwise) + 2*{cout} (its BN), no conv biases.")
        if cin != cout:
            _check_same_function(block, cin, cout, stride)


@checker("mult-adds: separable / standard", answers="macs_ratio")
def check_macs_ratio(fn: Callable[..., float]) -> None:
    """Check ``macs_ratio(cin, cout, k, h, w)`` against torchinfo on real layers."""
    for cin, cout, k, h, w in MACS_CASES:
        standard, separable = _layers(cin, cout, k)
        # torchinfo counts each conv's weights times its output pixels.
        macs = [summary(layer, input_size=(1, cin, h, w), verbose=0).total_mult_adds
                for layer in (separable, standard)]
        expected = macs[0] / macs[1]
        call = f"macs_ratio(cin={cin}, cout={cout}, k={k}, h={h}, w={w})"
        got = as_real(fn(cin, cout, k, h, w), call)
        if close(got, expected):
            continue
        if close(got, 1 / expected):
            hint = "that is standard / separable, upside down."
        elif close(got, 1 / k**2):
            hint = "that is the depthwise conv alone; the pointwise 1x1 conv costs mult-adds too."
        else:
            hint = (f"torchinfo counts {macs[0]:,} mult-adds for the separable pair and "
                    f"{macs[1]:,} for the standard conv: each conv costs its weights times "
                    f"its output pixels (H*W).")
        expect(False, f"{call}: expected {expected:.10g}, got {got!r}. Hint: {hint} "
                      f"See {CHAPTER}, 'Counting weights and mult-adds'.")


# --- Exercise 4: recompute the batch-norm statistics ---------------------------

@cache  # built once per session: the check deep-copies it
def _stale_model(seed: int) -> nn.Module:
    """A thin MobileNet (width 0.25) after a few training steps, in eval mode,
    whose running statistics are stale: set to values no batch would give."""
    from ..data import load_mnist, preprocess
    from ..models import get_model

    torch.manual_seed(seed)
    model = get_model("mobilenet_v1", width=0.25)
    data = load_mnist().train
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with torch.enable_grad():
        for step in range(3):
            x = preprocess(data.images[64 * step:64 * (step + 1)])
            loss = nn.functional.cross_entropy(model(x), data.labels[64 * step:64 * (step + 1)])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        bn.running_mean.fill_(3.0)
        bn.running_var.fill_(0.01)
    return model.eval()


@cache
def _recompute_batches() -> list[Tensor]:
    from ..data import load_mnist, preprocess

    images = load_mnist().val.images[:160]
    return [preprocess(images[i:i + 32]) for i in range(0, 160, 32)]  # 5 batches of 32


def _bn_buffers(model: nn.Module) -> list[tuple[Tensor, Tensor]]:
    # plain_tensor: the answer could have set the buffers' __class__ to a subclass.
    return [(plain_tensor(m.running_mean).clone(), plain_tensor(m.running_var).clone())
            for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


def _bn_layers(model: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


# The usual slips, each as the way it recomputes (see _recomputed), and what to
# tell the learner.
RECOMPUTE_SLIPS: list[tuple[dict, str]] = [
    (dict(train=False),  # ran the batches in eval mode
     "a BatchNorm layer updates its statistics only in training mode: switch the model "
     "to train() while the batches go through (under torch.no_grad())"),
    (dict(cumulative=False),  # kept momentum 0.1
     "with momentum 0.1 the last batches dominate and the first are mostly forgotten; "
     "set each BN's momentum to None for an equal-weight (cumulative) average, then "
     "restore it"),
    (dict(reset=False),  # did not reset
     "reset each BN's statistics first (reset_running_stats()): without it the stale "
     "values stay in the average"),
    (dict(reset=False, cumulative=False),  # neither
     "with momentum 0.1 and no reset the stale statistics still weigh 0.9^5 ~ 0.59 "
     "after 5 batches; reset each BN, and set its momentum to None for an equal-weight "
     "average"),
    (dict(reset=False, reset_after=True),  # reset once the batches had run
     "you reset the statistics AFTER the batches ran, which throws away what they "
     "measured: reset first, then run the batches"),
]
# Momenta the second case gives its BN layers, none of them PyTorch's default
# 0.1, so that an answer that sets 0.1 back instead of what was there fails.
OTHER_MOMENTA = (0.01, 0.05, 0.3)


def _build_stale_model() -> None:
    """Build the stale model in the notebook's process, where the cache keeps it
    for the next run of the check (its three training steps take seconds)."""
    with quiet_torch():
        _stale_model(0)
        _recompute_batches()


@checker("recompute_bn_stats", answers="recompute_bn_stats", prepare=_build_stale_model)
def check_recompute_bn(recompute: Callable[[nn.Module, list], None]) -> None:
    """Check ``recompute_bn_stats(model, batches)`` against ``update_bn``, on a model
    in eval mode and on one in training mode with momenta of its own."""
    import copy

    stale, batches = copy.deepcopy(_stale_model(0)), _recompute_batches()
    _check_recompute_case(recompute, stale, batches)
    for i, bn in enumerate(_bn_layers(stale)):
        bn.momentum = OTHER_MOMENTA[i % len(OTHER_MOMENTA)]
    _check_recompute_case(recompute, stale.train(), batches)


def _check_recompute_case(recompute: Callable[[nn.Module, list], None], stale: nn.Module,
                          batches: list) -> None:
    """Run the answer on a copy of ``stale`` (which stays as it is); compare with
    update_bn on another copy, and the slips on others."""
    import copy

    from torch.optim.swa_utils import update_bn

    where = f"See {CHAPTER}, 'Run it yourself: training live' (the update_bn cells)."
    mode = "training" if stale.training else "eval"
    model, oracle = copy.deepcopy(stale), copy.deepcopy(stale)
    update_bn(batches, oracle)  # PyTorch's own: reset, cumulative average, mode restored
    weights = {k: v.clone() for k, v in model.named_parameters()}
    momenta = [bn.momentum for bn in _bn_layers(model)]
    modes: set[bool] = set()  # the mode the BN layers were in for each batch
    hooks = [bn.register_forward_pre_hook(lambda module, _: modes.add(module.training))
             for bn in _bn_layers(model)]
    with torch.enable_grad():  # as in a notebook: the learner's code decides
        recompute(model, [x.clone() for x in batches])  # theirs to change
    for hook in hooks:
        hook.remove()
    changed = [k for k, v in model.named_parameters() if not equal(v, weights[k])]
    expect(not changed, f"recompute_bn_stats changed {len(changed)} weights (e.g. "
                        f"{changed[0] if changed else ''}); only the running statistics may "
                        f"change: no optimiser step, no backward pass. {where}")
    expect(model.training == oracle.training,
           f"the model was in {mode} mode and recompute_bn_stats left it in "
           f"{'training' if model.training else 'eval'} mode; put the mode back as it was "
           f"(was_training = model.training first, model.train(was_training) last). {where}")
    after = [bn.momentum for bn in _bn_layers(model)]
    wrong = next(((i, a, b) for i, (a, b) in enumerate(zip(momenta, after)) if a != b), None)
    if wrong is not None:
        i, before, now = wrong
        expect(False, f"BatchNorm layer {i} had momentum {before} before recompute_bn_stats "
                      f"and {now} after; remember each BN's momentum before you change it "
                      f"and put that value back, whatever it was. {where}")
    got, want = _bn_buffers(model), _bn_buffers(oracle)
    worst = _gap(got, want)
    if worst <= 1e-4:
        return
    # Name the slip whose result the answer reproduces, on copies of the stale model,
    # among those that ran the batches with BN in the mode the answer did: reset
    # after the loop and run in eval mode both leave the reset statistics.
    for settings, advice in RECOMPUTE_SLIPS:
        if modes and modes != {settings.get("train", True)}:
            continue
        slipped = _recomputed(copy.deepcopy(stale), batches, **settings)
        if _gap(got, _bn_buffers(slipped)) <= 1e-4:
            expect(False, f"the running statistics differ from "
                          f"torch.optim.swa_utils.update_bn's by up to {worst:.3g}: "
                          f"{advice}. {where}")
    layer = next(i for i, (g, w) in enumerate(zip(got, want)) if _gap([g], [w]) > 1e-4)
    expect(False, f"the running statistics differ from torch.optim.swa_utils.update_bn's "
                  f"by up to {worst:.3g}: BatchNorm layer {layer}'s running_mean should "
                  f"start {_first(want[layer][0])}, yours starts {_first(got[layer][0])}. "
                  f"Reset each BN's statistics, set its momentum to None, run every batch in "
                  f"training mode under torch.no_grad(), then restore the momenta and the "
                  f"mode. {where}")


def _first(values: Tensor) -> list[float]:
    return [round(v, 4) for v in values[:3].tolist()]


def _gap(a: list[tuple[Tensor, Tensor]], b: list[tuple[Tensor, Tensor]]) -> float:
    """The largest difference between two models' BN statistics."""
    return max(max((x[0] - y[0]).abs().max().item(), (x[1] - y[1]).abs().max().item())
               for x, y in zip(a, b))


def _recomputed(model: nn.Module, batches: list, reset: bool = True,
                cumulative: bool = True, train: bool = True,
                reset_after: bool = False) -> nn.Module:
    """``model`` after a recomputation done one particular (possibly wrong) way."""
    bns = _bn_layers(model)
    for bn in bns:
        if reset:
            bn.reset_running_stats()
        if cumulative:
            bn.momentum = None
    model.train(train)
    with torch.no_grad():
        for x in batches:
            model(x)
    for bn in bns if reset_after else []:
        bn.reset_running_stats()
    return model
