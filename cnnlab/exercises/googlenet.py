"""Checkers for the GoogLeNet exercises (chapter 6).

A row of the channel table is the paper's Table 1 as the package stores it
in ``INCEPTION``: (cin, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj).

* ``check_inception_out_channels``: a row's output channels, against a
  forward pass through the package's ``Inception``.
* ``check_inception``: the learner's ``MyInception`` against the package's.
* ``check_inception_params``: a row's parameter count, against the
  package's module.
"""
from __future__ import annotations

from functools import cache
from typing import Callable

import torch
from torch import nn

from . import checker, expect, expect_equal
from ._harness import allclose, as_count, tensor_answer
from ..models import count_parameters
from ..models.googlenet import INCEPTION, Inception

CHAPTER = "chapter 6 (GoogLeNet)"
NOTEBOOK = "06_googlenet.ipynb"

Row = tuple[int, int, int, int, int, int, int]

# Invented rows besides the paper's nine. In SMALL_ROW every conv has a
# different (in, out, kernel), so the learner's convs can be matched to the
# package's one to one; (1, 2, ...) puts a different number in every slot.
SMALL_ROW: Row = (10, 3, 4, 5, 6, 7, 8)
INVENTED_ROWS: list[Row] = [SMALL_ROW, (1, 2, 3, 4, 5, 6, 7), (64, 16, 8, 32, 4, 8, 24)]
ROWS: list[Row] = list(INCEPTION.values()) + INVENTED_ROWS

# (row, map size) for the shape checks: paper modules at the sizes they see
# at 56 px, invented ones at an odd and an even size.
SHAPE_CASES: list[tuple[Row, int]] = [(INCEPTION["3a"], 7), (INCEPTION["4a"], 4),
                                      (SMALL_ROW, 5), (INVENTED_ROWS[2], 6)]


@cache
def _package_module(row: Row) -> Inception:
    """The oracle: the package's Inception module for ``row`` (built once)."""
    return Inception(*row).eval()


@cache
def _package_out_channels(row: Row) -> int:
    """Output channels of the package's module, by running a tensor through it."""
    with torch.no_grad():
        return _package_module(row)(torch.zeros(1, row[0], 4, 4)).shape[1]


def _as_int(call: str, got) -> int:
    return as_count(got, call)  # None is a missing return: as_count says so


@checker("Inception output channels", answers="inception_out_channels")
def check_inception_out_channels(fn: Callable[[Row], int]) -> None:
    """Check ``inception_out_channels(row)`` on the paper's rows and invented ones."""
    for row in ROWS:
        cin, c1, c3r, c3, c5r, c5, pool = row
        call = f"inception_out_channels({row})"
        got = _as_int(call, fn(row))
        expected = _package_out_channels(row)
        if got == c1 + c3r + c3 + c5r + c5 + pool:
            hint = ("you added the reduce convs' channels: they feed the 3x3 and 5x5 "
                    "convs inside their branches and are not concatenated.")
        elif got == c1 + c3 + c5:
            hint = "the pool branch is concatenated too: add its pool proj channels."
        elif got == c1 + c3 + c5 + cin:
            hint = ("the pool branch ends with its 1x1 projection, so it gives pool proj "
                    "channels, not cin.")
        else:
            hint = "only each branch's last layer sets the channels that are concatenated."
        expect_equal(call, expected, got,
                     hint + f" See {CHAPTER}, 'The Inception module'.")


def _convs(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def _check_structure(module: nn.Module, row: Row) -> None:
    """A true 5x5 branch, no batch norm, convs with bias."""
    cin, c1, c3r, c3, c5r, c5, pool = row
    name = f"MyInception{row}"
    convs = _convs(module)
    if not any(c.kernel_size == (5, 5) and c.in_channels == c5r and c.out_channels == c5
               for c in convs):
        if any(c.kernel_size == (3, 3) and c.in_channels == c5r and c.out_channels == c5
               for c in convs):
            expect(False,
                   f"{name}: the 5x5 branch uses a 3x3 conv ({c5r} -> {c5} channels). "
                   f"That is torchvision's GoogLeNet, which has a 3x3 kernel there (a "
                   f"known slip, kept for its pretrained weights). The paper's branch is "
                   f"a 1x1 reduce conv, then a 5x5 conv with padding 2. See {CHAPTER}, "
                   f"'What the package keeps from the paper, and what it changes'.")
        expect(False,
               f"{name} has no 5x5 conv from {c5r} to {c5} channels (#5x5 reduce -> "
               f"#5x5). The third branch is a 1x1 conv cin -> #5x5 reduce, then a 5x5 "
               f"conv #5x5 reduce -> #5x5 with padding 2. See {CHAPTER}, 'The Inception "
               f"module'.")
    norms = sorted({type(m).__name__ for m in module.modules()
                    if isinstance(m, nn.modules.batchnorm._NormBase)})
    expect(not norms,
           f"{name} has batch norm layers ({', '.join(norms)}). Inception-v1 has none "
           f"(batch norm came a year later, with Inception-v2): each conv has a bias "
           f"and is followed by a ReLU. See {CHAPTER}, 'What the package keeps from "
           f"the paper, and what it changes'.")
    no_bias = [c for c in convs if c.bias is None]
    expect(not no_bias,
           f"{name}: {len(no_bias)} of its convs have no bias. Without batch norm, "
           f"each conv needs its own bias (nn.Conv2d's default, bias=True).")


def _check_same_function(block_cls: type) -> None:
    # Copy the package's weights into the learner's module, matching the
    # convs by (in, out, kernel), which are all different in SMALL_ROW, and
    # compare the outputs branch by branch (channel slices).
    row = SMALL_ROW
    name = f"MyInception{row}"
    module = block_cls(*row).eval()
    oracle = Inception(*row).eval()

    def signature(conv: nn.Conv2d) -> tuple[int, int, int]:
        return conv.in_channels, conv.out_channels, conv.kernel_size[0]

    ours = {signature(c): c for c in _convs(oracle)}
    theirs = sorted(signature(c) for c in _convs(module))
    expect(theirs == sorted(ours),
           f"{name} has convs (in, out, kernel) {theirs}; expected the six convs "
           f"{sorted(ours)}: the 1x1 branch, the 1x1 reduce and 3x3, the 1x1 reduce "
           f"and 5x5, and the pool projection.")
    for conv in _convs(module):
        source = ours[signature(conv)]
        conv.weight.copy_(source.weight)
        conv.bias.copy_(source.bias)
    x = torch.randn(2, row[0], 6, 6)
    expected = oracle(x)
    got = tensor_answer(module(x), f"{name}(x)")
    widths = {"1x1": row[1], "3x3": row[3], "5x5": row[5], "pool": row[6]}
    start, wrong = 0, []
    for branch, width in widths.items():
        part = slice(start, start + width)
        if not allclose(got[:, part], expected[:, part], atol=1e-5):
            wrong.append(f"{branch} (channels {start}:{start + width})")
        start += width
    expect(not wrong,
           f"with the package's weights copied into {name}, these branches' outputs "
           f"differ from the package's Inception: {', '.join(wrong)}. Check the order "
           f"of torch.cat(..., dim=1) (1x1, 3x3, 5x5, pool), a ReLU after every conv "
           f"(the reduce convs too), and the pool branch: nn.MaxPool2d(3, stride=1, "
           f"padding=1), then its 1x1 conv. See {CHAPTER}, 'The Inception module'.")


@checker("Inception module", answers="MyInception")
def check_inception(block_cls: type) -> None:
    """Check ``MyInception(cin, c1, c3r, c3, c5r, c5, pool_proj)`` against the package's."""
    for row, size in SHAPE_CASES:
        name = f"MyInception{row}"
        module = block_cls(*row)
        expect(isinstance(module, nn.Module),
               f"{name} returned a {type(module).__name__}, not an nn.Module.")
        x = torch.randn(1, row[0], size, size)
        try:
            out = tensor_answer(module.eval()(x), f"{name}(x)")
        except RuntimeError as err:
            if "Sizes of tensors must match" not in str(err):
                raise
            expect(False,
                   f"{name} crashed on an input of shape {tuple(x.shape)}: "
                   f"\"{str(err).rstrip('.')}\". The "
                   f"four branches must keep H and W so torch.cat can stack them on the "
                   f"channels: padding 1 for the 3x3 conv, 2 for the 5x5, and the "
                   f"max-pool with stride 1 and padding 1.")
        expected = tuple(_package_module(row)(x).shape)
        expect_equal(f"output shape of {name} for an input of shape {tuple(x.shape)}",
                     expected, tuple(out.shape),
                     "the output has #1x1 + #3x3 + #5x5 + pool proj channels "
                     "and the input's H and W.")
        _check_structure(module, row)
        expect_equal(f"parameters of {name}", count_parameters(_package_module(row)),
                     count_parameters(module),
                     "six convs with bias (1x1, 1x1 reduce + 3x3, 1x1 reduce + 5x5, "
                     "pool projection); the max-pool and the ReLUs have none.")
    _check_same_function(block_cls)


@checker("Inception parameter count", answers="inception_params")
def check_inception_params(fn: Callable[[Row], int]) -> None:
    """Check ``inception_params(row)`` against the package's module, row by row."""
    for row in ROWS:
        cin, c1, c3r, c3, c5r, c5, pool = row
        call = f"inception_params({row})"
        got = _as_int(call, fn(row))
        expected = count_parameters(_package_module(row))
        biases = c1 + c3r + c3 + c5r + c5 + pool  # one per conv output channel
        if got == expected - biases:
            hint = (f"that is the weights alone: each conv also has one bias per output "
                    f"channel ({biases} in all), since there is no batch norm.")
        elif got == expected - 16 * c5r * c5:
            hint = ("that counts a 3x3 conv in the 5x5 branch (torchvision's slip); the "
                    "paper's is 5x5: 25 * #5x5 reduce * #5x5 weights.")
        else:
            hint = ("each conv has k*k*in*out weights + out biases; the six convs are 1x1 "
                    "cin -> #1x1, 1x1 cin -> #3x3 reduce, 3x3 #3x3 reduce -> #3x3, 1x1 "
                    "cin -> #5x5 reduce, 5x5 #5x5 reduce -> #5x5, 1x1 cin -> pool proj; "
                    "the max-pool has none.")
        expect_equal(call, expected, got, hint + f" See {CHAPTER}, 'The channel "
                     f"arithmetic, module by module'.")

