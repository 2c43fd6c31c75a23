"""Schematic figures of the blocks the chapters explain.

``cnnlab.architecture.architecture_figure`` draws a whole network from the model
object. The figures here draw one block each, the way a textbook does: the
residual block with its skip path, the Inception module's four branches, a
standard convolution against a depthwise-separable one, and a digit before
and after upsampling. Channel counts and shapes come from the package's
modules where a figure shows them, so they cannot drift from the code.
"""
from __future__ import annotations

import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch
from torch import Tensor

from .models.googlenet import INCEPTION

LAYER = "#dde4ff"    # a layer with weights
FREE = "#f2f2f2"     # an operation without weights (ReLU, pool, +, concat)
EDGE = "navy"


def _node(ax, x: float, y: float, text: str, width: float = 1.5, weighted: bool = True,
          fontsize: float = 8.5) -> None:
    """A rounded box centred on (x, y)."""
    ax.add_patch(FancyBboxPatch((x - width / 2, y - 0.22), width, 0.44,
                                boxstyle="round,pad=0.03", edgecolor=EDGE,
                                facecolor=LAYER if weighted else FREE))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)


def _arrow(ax, start: tuple[float, float], end: tuple[float, float], colour: str = "black",
           rad: float = 0.0) -> None:
    ax.annotate("", end, start, arrowprops={"arrowstyle": "->", "color": colour,
                                            "connectionstyle": f"arc3,rad={rad}",
                                            "shrinkA": 9, "shrinkB": 9})


def _canvas(width: float, height: float, xlim: tuple[float, float],
            ylim: tuple[float, float]):
    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.subplots()
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.axis("off")
    return fig, ax


def residual_block_figure() -> Figure:
    """The basic block: F(x) on the main path, the shortcut beside it, one addition.

    Left, a block that keeps the shape (the shortcut is x itself); right, one
    that halves the map and doubles the channels (the shortcut is a 1x1
    convolution with stride 2 and a BN: the paper's option B).
    """
    fig, ax = _canvas(8.8, 5.2, (-0.2, 9.1), (-0.6, 7.4))
    for x0, title, shortcut in ((2.0, "same shape: (N, 64, 14, 14)", None),
                                (6.4, "downsampling: 64 -> 128, 14 -> 7",
                                 "1x1 conv /2\n+ BN")):
        steps = [("x", False), ("conv 3x3" + (" /2" if shortcut else ""), True),
                 ("BN + ReLU", True), ("conv 3x3", True), ("BN", True), ("+", False),
                 ("ReLU", False)]
        ys = [6.6 - 1.0 * i for i in range(len(steps))]
        for (text, weighted), y in zip(steps, ys):
            _node(ax, x0, y, text, width=0.5 if text == "+" else 1.5, weighted=weighted)
        for y_from, y_to in zip(ys, ys[1:]):
            _arrow(ax, (x0, y_from), (x0, y_to))
        # The skip path: from x around the main path into the addition.
        side = x0 + (1.75 if shortcut else 1.35)
        if shortcut:
            _node(ax, side, 3.6, shortcut, width=1.1)
            _arrow(ax, (x0 + 0.4, ys[0]), (side, 3.6 + 0.25), colour="tab:red", rad=-0.25)
            _arrow(ax, (side, 3.6 - 0.25), (x0 + 0.3, ys[5]), colour="tab:red", rad=-0.25)
            label = "shortcut: a projection"
        else:
            _arrow(ax, (x0 + 0.4, ys[0]), (x0 + 0.3, ys[5]), colour="tab:red", rad=-0.6)
            label = "shortcut: x itself"
        ax.text(side + (0.0 if shortcut else 0.1), 5.1 if shortcut else 5.4, label, color="tab:red", fontsize=8,
                ha="left" if not shortcut else "center")
        ax.text(x0 - 0.95, 4.1, "F(x)", fontsize=10, style="italic", ha="right")
        ax.text(x0, 7.2, title, ha="center", fontsize=9, weight="bold")
    ax.set_title("The basic block: out = ReLU(F(x) + shortcut(x))", fontsize=10)
    return fig


def inception_figure(name: str = "3a") -> Figure:
    """Module ``name`` of the paper's Table 1 (the package's INCEPTION): four
    branches on the same input, their outputs stacked on the channel axis."""
    cin, c1, c3r, c3, c5r, c5, pool = INCEPTION[name]
    fig, ax = _canvas(8.4, 4.2, (-0.2, 8.6), (-0.4, 4.6))
    _node(ax, 4.2, 4.0, f"input: {cin} channels", width=8.2, weighted=False)
    branches = [[(f"1x1 conv -> {c1}", True)],
                [(f"1x1 conv -> {c3r}", True), (f"3x3 conv -> {c3}", True)],
                [(f"1x1 conv -> {c5r}", True), (f"5x5 conv -> {c5}", True)],
                [("3x3 max-pool /1", False), (f"1x1 conv -> {pool}", True)]]
    xs = [1.0, 3.1, 5.3, 7.4]
    for x, layers in zip(xs, branches):
        ys = [2.9, 1.9][:len(layers)]
        if len(layers) == 1:
            ys = [2.4]
        _arrow(ax, (x, 4.0), (x, ys[0]))
        for (text, weighted), y in zip(layers, ys):
            _node(ax, x, y, text, width=1.9, weighted=weighted, fontsize=8)
        for y_from, y_to in zip(ys, ys[1:]):
            _arrow(ax, (x, y_from), (x, y_to))
        _arrow(ax, (x, ys[-1]), (x, 0.4))
    total = c1 + c3 + c5 + pool
    _node(ax, 4.2, 0.4, f"concatenate: {c1} + {c3} + {c5} + {pool} = {total} channels",
          width=8.2, weighted=False)
    ax.set_title(f"Inception module {name}: four branches, stacked on the channel axis "
                 "(ReLU after every conv)", fontsize=10)
    return fig


def separable_figure(cin: int = 4, cout: int = 6, k: int = 3) -> Figure:
    """A standard k x k convolution against its depthwise-separable split.

    Each filter is drawn as a stack of squares, one per input channel it
    reads: a standard filter spans all ``cin`` channels; a depthwise filter
    reads one; a pointwise filter is 1 x 1 across all of them.
    """
    fig = Figure(figsize=(9.4, 2.6), layout="constrained")
    axes = fig.subplots(1, 2, width_ratios=[1, 1.15])
    panels = [("standard conv", [("", cout, cin, k)], k * k * cin * cout),
              ("depthwise + pointwise", [("depthwise", cin, 1, k), ("pointwise", cout, cin, 1)],
               k * k * cin + cin * cout)]
    unit, lift = 0.4, 0.16  # side of one kernel cell; offset between stacked slices
    for ax, (title, groups, weights) in zip(axes, panels):
        x = 0.2
        for label, filters, depth, size in groups:
            start = x
            for f in range(filters):
                for d in range(depth):  # one slice per input channel the filter reads
                    ax.add_patch(FancyBboxPatch((x + lift * d, 1.0 + lift * d), unit * size,
                                                unit * size, boxstyle="square,pad=0",
                                                edgecolor=EDGE, facecolor=f"C{f % 10}",
                                                alpha=0.8))
                x += unit * size + lift * depth + 0.3
            if label:
                ax.text((start + x - 0.3) / 2, 0.45, label, ha="center", fontsize=9)
            x += 0.6
        ax.set_xlim(0, max(x, 9))
        ax.set_ylim(0.3, 2.6)
        ax.set_aspect("equal")
        ax.axis("off")
        per_group = " + ".join(f"{n} filters of {s}x{s}x{d}" for _, n, d, s in groups)
        ax.set_title(f"{title}: {per_group}\n= {weights} weights ({cin} -> {cout} channels, "
                     f"{k}x{k} kernels)", fontsize=9)
    return fig


def upsampled_digit_figure(image: Tensor, factors: tuple[int, ...] = (1, 2, 8)) -> Figure:
    """A 28 px digit as the networks see it after bilinear upsampling.

    Upsampling adds pixels, not information: every new pixel is interpolated
    from its neighbours, so the digit only gets smoother and larger.
    """
    x = image.float().reshape(1, 1, *image.shape[-2:]) / 255
    fig = Figure(figsize=(2.6 * len(factors), 2.9), layout="constrained")
    for ax, f in zip(fig.subplots(1, len(factors)), factors):
        big = x if f == 1 else F.interpolate(x, scale_factor=f, mode="bilinear")
        ax.imshow(big[0, 0].numpy(), cmap="gray", interpolation="nearest")
        side = big.shape[-1]
        ax.set_title(f"x{f}: {side} x {side} px" + (" (the data)" if f == 1 else ""),
                     fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    return fig
