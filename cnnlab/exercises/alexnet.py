"""Checkers for the AlexNet exercises (chapter 3).

* ``check_linear_params``: the learner's ``linear_params(in, out)`` against
  the parameter count of a real ``nn.Linear``.
* ``check_fc1_share``: the learner's ``fc1_share(model_name)`` against the
  package models' own first fully connected layer and total.
* ``check_smallest_upsample``: the learner's ``smallest_upsample(model_name,
  min_map)`` against forward passes through the package models' ``features``.
"""
from __future__ import annotations

from functools import cache
from typing import Callable

import torch
from torch import nn

from . import checker, expect, expect_equal
from ._harness import allclose, as_count, as_real, close, float_answer, quiet_torch
from ..models import count_parameters, get_model

CHAPTER = "chapter 3 (AlexNet)"
NOTEBOOK = "03_alexnet.ipynb"
INPUT_SIZE = 28  # the digit's side, before any upsampling


def _on_meta(name: str) -> nn.Module:
    """The package model with shapes but no data: free to build and count."""
    with torch.device("meta"):
        return get_model(name)


# --- Exercise 1: linear_params ---------------------------------------------

# (in_features, out_features): LeNet's and both AlexNets' FC layers, and
# tiny ones where a formula's slip is easy to see.
LINEAR_CASES = [(256, 120), (84, 10), (128 * 7 * 7, 4096), (256 * 6 * 6, 4096),
                (4096, 10), (1, 1), (3, 5)]


@checker("linear_params", answers="linear_params")
def check_linear_params(linear_params: Callable[[int, int], int]) -> None:
    """Check ``linear_params(in_features, out_features)`` against nn.Linear."""
    for n_in, n_out in LINEAR_CASES:
        call = f"linear_params({n_in}, {n_out})"
        got = linear_params(n_in, n_out)
        expected = count_parameters(nn.Linear(n_in, n_out, device="meta"))
        got = as_count(got, call)
        if got != expected:
            if got == n_in * n_out:
                hint = (f"that is the weights alone; each of the {n_out} outputs "
                        f"has a bias too")
            elif got == (n_in + 1) * (n_out + 1):
                hint = "only the outputs have biases: (n_in + 1) * n_out"
            else:
                hint = "n_in * n_out weights plus n_out biases"
            expect_equal(f"{call} (what nn.Linear({n_in}, {n_out}) holds)",
                         expected, got,
                         f"{hint}; see {CHAPTER}, 'Where the parameters sit'.")


# --- Exercise 2: fc1_share -------------------------------------------------

FC1_MODELS = ["alexnet", "alexnet_large", "lenet"]


def _first_linear(model: nn.Module) -> nn.Linear:
    return next(m for m in model.modules() if isinstance(m, nn.Linear))


@checker("fc1_share", answers="fc1_share")
def check_fc1_share(fc1_share: Callable[[str], float]) -> None:
    """Check ``fc1_share(model_name)``: the first FC layer's share of all parameters."""
    for name in FC1_MODELS:
        call = f"fc1_share({name!r})"
        got = fc1_share(name)
        got = as_real(got, call)
        model = _on_meta(name)
        fc1 = _first_linear(model)
        expected = count_parameters(fc1) / count_parameters(model)
        if not close(got, expected):
            if close(got, 100 * expected):
                hint = "return a fraction between 0 and 1, not a percentage"
            elif close(got, fc1.in_features * fc1.out_features
                       / count_parameters(model)):
                hint = "count the layer's biases too"
            else:
                hint = (f"the first Linear layer of {name} is "
                        f"Linear({fc1.in_features}, {fc1.out_features}); divide its "
                        f"parameters by count_parameters(get_model({name!r}))")
            expect(False, f"{call}: expected {expected:.6f}, got {got!r}. Hint: "
                          f"{hint}; see {CHAPTER}, 'Where the parameters sit'.")


# --- Exercise 3: smallest_upsample -----------------------------------------

# (model, min_map): the answers run from x1 to x8, so no single number
# passes; ("alexnet_large", 6) is the package's own choice, x8.
UPSAMPLE_CASES = [("alexnet_large", 1), ("alexnet_large", 2), ("alexnet_large", 6),
                  ("alexnet", 1), ("alexnet", 7), ("alexnet", 10)]
MAX_FACTOR = 16


@cache
def _features(name: str, device: str) -> nn.Module:
    """The package model's feature extractor, on "meta" or the CPU.

    On the meta device a pass computes shapes only, instantly: the search
    runs there. For the confirming passes on the CPU the same layers get
    real tensors, zeros: output sizes do not depend on the weights' values,
    and this skips initialising the 58 M parameters of the classifier.
    """
    features = _on_meta(name).features
    if device != "meta":
        zeros = {k: torch.zeros(v.shape, device=device)
                 for k, v in features.state_dict().items()}
        features.load_state_dict(zeros, assign=True)
    return features.eval()


@cache  # a pure function of its arguments; the CPU passes cost a little
def _last_map(name: str, factor: int, device: str = "meta") -> int:
    """Side of the last feature map for a 28*factor input, 0 where it fails.

    PyTorch raises "Output size is too small" when a pool has no room left;
    that counts as a map of size 0.
    """
    side = INPUT_SIZE * factor
    with quiet_torch():
        try:
            out = _features(name, device)(torch.zeros(1, 1, side, side, device=device))
        except RuntimeError as err:
            if "too small" not in str(err):
                raise
            return 0
    return min(out.shape[-2:])


def _expected_factor(name: str, min_map: int) -> int:
    """The oracle: try f = 1, 2, ... until the features end at min_map or more.

    The search runs on the meta device (shapes only, instant); the answer is
    then confirmed by real forward passes on the CPU at f and f - 1.
    """
    factor = next(f for f in range(1, MAX_FACTOR + 1) if _last_map(name, f) >= min_map)
    if not (_last_map(name, factor, "cpu") >= min_map
            and (factor == 1 or _last_map(name, factor - 1, "cpu") < min_map)):
        raise RuntimeError(f"cnnlab's checker: the meta and CPU passes of {name} "
                           f"disagree at x{factor}; please report this")
    return factor


@checker("smallest_upsample", answers="smallest_upsample")
def check_smallest_upsample(smallest_upsample: Callable[[str, int], int]) -> None:
    """Check ``smallest_upsample(model_name, min_map)`` against the models' features."""
    for name, min_map in UPSAMPLE_CASES:
        call = f"smallest_upsample({name!r}, min_map={min_map})"
        expected = _expected_factor(name, min_map)  # first: the answer runs after
        with torch.random.fork_rng(devices=[]):
            got = smallest_upsample(name, min_map=min_map)
        got = as_count(got, call)
        if got != expected:
            if 1 <= got <= MAX_FACTOR:
                side = _last_map(name, got)
                what = (f"at x{got} the {INPUT_SIZE * got}px input "
                        + (f"ends in {side}x{side} maps" if side
                           else "does not get through the features (a pool has no room)"))
            else:
                what = f"x{got} is not a factor to try"
            hint = (f"{what}; at x{expected} the maps are "
                    f"{_last_map(name, expected)}x{_last_map(name, expected)}. Feed "
                    f"{INPUT_SIZE}*f pixels to model.features (not to the model: it "
                    f"would upsample once more) and take the FIRST f that works; see "
                    f"{CHAPTER}, 'Why upsample?'.")
            expect_equal(call, expected, got, hint)


# --- Exercise 4: local response normalisation by hand --------------------------

def _lrn_oracle(a: torch.Tensor, size: int, alpha: float, beta: float,
                k: float) -> torch.Tensor:
    """PyTorch's layer with the paper's alpha (PyTorch divides its alpha by size)."""
    return nn.LocalResponseNorm(size, alpha=alpha * size, beta=beta, k=k)(a)


@checker("lrn", answers="lrn")
def check_lrn(lrn: Callable) -> None:
    """Check ``lrn(a, size, alpha, beta, k)``: the paper's LRN across channels."""
    where = f"See {CHAPTER}, 'Local response normalisation'."
    g = torch.Generator().manual_seed(0)
    for channels, size, alpha, beta, k in ((8, 5, 1e-4, 0.75, 2.0), (6, 3, 1e-2, 0.5, 1.0),
                                           (11, 5, 1e-3, 0.75, 2.0)):
        a = torch.relu(10 * torch.randn(2, channels, 4, 3, generator=g))
        call = f"lrn(a with {channels} channels, size={size}, alpha={alpha}, beta={beta}, k={k})"
        want = _lrn_oracle(a, size, alpha, beta, k)  # first: the answer runs after
        got = float_answer(lrn(a.clone(), size=size, alpha=alpha, beta=beta, k=k), call)
        expect(got.shape == a.shape,
               f"{call} returned shape {tuple(got.shape)}; return a tensor of the input's "
               f"shape {tuple(a.shape)}.")
        # In float32, the oracle's precision: an answer computed in float64 is as right.
        dtype, got = got.dtype, got.float()
        if allclose(got, want, rtol=1e-5, atol=1e-6):
            continue
        if allclose(got, _lrn_oracle(a, size, alpha / size, beta, k), rtol=1e-5):
            hint = ("you divided alpha by the window size, as PyTorch's layer does; the "
                    "paper's formula multiplies the sum of squares by alpha itself")
        elif allclose(got, a / (k + alpha * a ** 2) ** beta, rtol=1e-5):
            hint = ("each channel was divided by its own square only; the sum runs over "
                    "the neighbouring channels i - n/2 .. i + n/2 too")
        else:
            hint = ("b_i = a_i / (k + alpha * sum over j = max(0, i - n//2) .. "
                    "min(N - 1, i + n//2) of a_j^2)^beta, the window cut at the first "
                    "and last channel")
        if dtype.itemsize < 4:  # float16, bfloat16: about 3 significant digits
            hint = f"your tensor is {dtype}, too coarse for these values: compute in float32"
        expect(False, f"{call} differs from the formula by up to "
                      f"{(got - want).abs().max().item():.3g}. Hint: {hint}. {where}")
