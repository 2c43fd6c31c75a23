"""Schematic figures of the two later residual blocks the ResNet chapter explains.

``cnnlab.diagrams.residual_block_figure`` draws the basic block of ResNet-18.
The figures here draw, in the same style, the two blocks that came after it:

* the *bottleneck* block of ResNet-50/101/152 (He et al., CVPR 2016, Fig. 5):
  1x1 -> 3x3 -> 1x1 convolutions, the last one widening by the expansion 4,
  drawn beside a basic block of about the same cost;
* the *pre-activation* block (He et al. 2016, "Identity Mappings in Deep
  Residual Networks", Fig. 4): BN and ReLU before each convolution, nothing
  after the addition, drawn beside the original (post-activation) block.

The weight counts a figure prints come from ``conv_weights``, which the tests
check against torchvision's own blocks.
"""
from __future__ import annotations

from matplotlib.figure import Figure

from .diagrams import _arrow, _canvas, _node

SHORTCUT = "tab:red"  # the skip path, as in residual_block_figure


def conv_weights(cin: int, cout: int, k: int) -> int:
    """Weights of a k x k convolution from ``cin`` to ``cout`` channels, no bias
    (ResNet's convolutions have none: a BN follows each)."""
    return cin * cout * k * k


def basic_block_weights(width: int) -> int:
    """Convolution weights of a basic block that keeps ``width`` channels:
    two 3x3 convolutions."""
    return 2 * conv_weights(width, width, 3)


def bottleneck_weights(width: int, expansion: int = 4) -> int:
    """Convolution weights of a bottleneck block with ``width`` inner channels
    and ``width * expansion`` channels in and out: 1x1 down, 3x3, 1x1 up."""
    outer = width * expansion
    return (conv_weights(outer, width, 1) + conv_weights(width, width, 3)
            + conv_weights(width, outer, 1))


def _column(ax, x0: float, title: str, steps: list[tuple[str, bool]],
            skip_to: int, top: float = 6.6, width: float = 1.9,
            step: float = 1.0) -> list[float]:
    """One block drawn top to bottom: its steps, the arrows between them, and
    the red skip path from the input (step 0) into step ``skip_to`` (the +).
    Returns the y of every step."""
    ys = [top - step * i for i in range(len(steps))]
    for (text, weighted), y in zip(steps, ys):
        _node(ax, x0, y, text, width=0.5 if text == "+" else width, weighted=weighted,
              fontsize=8)
    for y_from, y_to in zip(ys, ys[1:]):
        _arrow(ax, (x0, y_from), (x0, y_to))
    _arrow(ax, (x0 + 0.5, ys[0]), (x0 + 0.3, ys[skip_to]), colour=SHORTCUT, rad=-0.55)
    ax.text(x0, top + 0.55, title, ha="center", fontsize=9, weight="bold")
    return ys


def bottleneck_figure(width: int = 64, expansion: int = 4) -> Figure:
    """A basic block at ``width`` channels beside a bottleneck block whose 3x3
    convolution works on ``width`` channels between two 1x1 convolutions, at
    ``width * expansion`` channels outside (the paper's Fig. 5: 64 and 256)."""
    outer = width * expansion
    fig, ax = _canvas(9.2, 5.6, (-0.4, 10.0), (-1.2, 7.6))
    basic = [(f"x: {width} channels", False), (f"conv 3x3, {width} -> {width}", True),
             ("BN + ReLU", True), (f"conv 3x3, {width} -> {width}", True), ("BN", True),
             ("+", False), ("ReLU", False)]
    _column(ax, 2.2, f"basic block ({width} channels)", basic, skip_to=5)
    bottleneck = [(f"x: {outer} channels", False), (f"conv 1x1, {outer} -> {width}", True),
                  ("BN + ReLU", True), (f"conv 3x3, {width} -> {width}", True),
                  ("BN + ReLU", True), (f"conv 1x1, {width} -> {outer}", True),
                  ("BN", True), ("+", False), ("ReLU", False)]
    ys = _column(ax, 7.2, f"bottleneck block ({outer} channels outside)", bottleneck,
                 skip_to=7, step=0.75)
    ax.text(6.1, ys[3], f"{width}-channel\nbottleneck", fontsize=8, va="center",
            ha="right", color="dimgray")
    ax.text(2.2, -0.3, f"{basic_block_weights(width):,} conv weights",
            ha="center", fontsize=9)
    ax.text(7.2, -0.3, f"{bottleneck_weights(width, expansion):,} conv weights",
            ha="center", fontsize=9)
    ax.text(7.2, -0.75, f"(two 3x3 convs at {outer} channels: "
            f"{basic_block_weights(outer):,})", ha="center", fontsize=8, color="dimgray")
    ax.set_title("The bottleneck block: 1x1 convolutions shrink the channels "
                 "around the 3x3 one, then widen them again", fontsize=10)
    return fig


def preactivation_figure() -> Figure:
    """The original (post-activation) basic block beside the pre-activation
    block: same layers, BN and ReLU moved in front of each convolution, and
    no ReLU after the addition, so the skip path reaches the output untouched."""
    fig, ax = _canvas(9.2, 5.0, (-0.4, 10.0), (-0.2, 7.5))
    post = [("x", False), ("conv 3x3", True), ("BN + ReLU", True), ("conv 3x3", True),
            ("BN", True), ("+", False), ("ReLU", False)]
    ys = _column(ax, 2.2, "original (He et al., CVPR 2016)", post, skip_to=5)
    ax.text(3.35, ys[6], "ReLU after the +:\ngates the skip path\n"
            "(no gradient where\nthe sum is negative)", fontsize=8, va="center",
            color=SHORTCUT)
    pre = [("x", False), ("BN + ReLU", True), ("conv 3x3", True), ("BN + ReLU", True),
           ("conv 3x3", True), ("+", False)]
    ys = _column(ax, 7.2, "pre-activation (He et al., ECCV 2016)", pre, skip_to=5)
    ax.text(7.2, ys[5] - 0.75, "nothing after the +:\nout = x + F(x)", ha="center",
            fontsize=8, va="top", color=SHORTCUT)
    ax.set_title("Post- against pre-activation: the same layers, BN and ReLU moved "
                 "before each convolution", fontsize=10)
    return fig
