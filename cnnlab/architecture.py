"""Architecture diagrams drawn from the model object itself.

``architecture_units`` walks a model in call order (one forward pass at the
given input size) and turns each layer or block into a box: its name, what
it does, its output shape and its parameters, with activations, norms and
dropout folded into the box before them. ``architecture_figure`` draws the
boxes, with a residual block's shortcut as an arc and an Inception module's
branches as bars, so a diagram cannot drift from the code.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import nn

from .models import get_model
from .plots import model_name
from .shapes import forward_shapes


@dataclass
class Unit:
    """One box of an architecture diagram: a layer or block, with what follows it.

    Activations, batch norms, local response norms, dropout and flatten carry
    no shape change worth a box of their own, so they are folded into the
    box before them ("conv 5x5 + sigmoid").
    """

    name: str
    label: str
    output_shape: tuple[int, ...]
    parameters: int
    skip: str = ""                      # a residual block's shortcut: "x" or "projection"
    branches: tuple[int, ...] = ()      # an Inception module's output channels per branch


# Layers folded into the box before them, and how they are written there.
_FOLDED = {nn.ReLU: "ReLU", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh",
           nn.BatchNorm2d: "BN", nn.LocalResponseNorm: "LRN", nn.Dropout: "dropout",
           nn.Flatten: "flatten"}


def _pair(v) -> int:
    return v[0] if isinstance(v, tuple) else v


def _label(module: nn.Module) -> str:
    """A short description of one layer or block, as a diagram box shows it."""
    stride = _pair(getattr(module, "stride", 1) or 1)
    step = f" /{stride}" if stride > 1 else ""
    if isinstance(module, nn.Conv2d):
        k = _pair(module.kernel_size)
        depthwise = " depthwise" if module.groups > 1 else ""
        return f"conv {k}x{k}{step}{depthwise}"
    if isinstance(module, nn.MaxPool2d):
        k = _pair(module.kernel_size)
        return f"max-pool {k}x{k}{step}"
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return "global avg-pool"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.Upsample):
        return f"upsample x{module.scale_factor:g}"
    if type(module) in _FOLDED:
        return _FOLDED[type(module)]
    if isinstance(module, nn.Sequential):
        kinds = {type(m) for m in module}
        if len(kinds) == 1 and len(module) > 1:  # a stage of identical blocks
            return f"{len(module)} x {type(module[0]).__name__}"
        return " + ".join(_label(m) for m in module)
    # A block named after the paper (BasicBlock, Inception, ...), with the
    # stride of its convolutions where it shrinks the map.
    block_stride = max((_pair(m.stride) for m in module.modules()
                        if isinstance(m, nn.Conv2d)), default=1)
    return type(module).__name__ + (f" /{block_stride}" if block_stride > 1 else "")


def architecture_units(model: nn.Module, size: int = 28,
                       expand: tuple[str, ...] | None = None) -> list[Unit]:
    """The boxes of ``architecture_figure``: the input, then layers in call order.

    Output shapes are measured by a forward pass at ``size`` px, parameters
    counted from the modules, so the boxes add up to the whole model.

    ``expand`` names the top-level children to open one level (by default
    every top-level ``nn.Sequential``); the others stay one box each.
    """
    children = list(model.named_children())
    if expand is None:
        expand = tuple(n for n, c in children if isinstance(c, nn.Sequential))
    parts = [(f"{n}.{k}", m) for n, c in children for k, m in
             (c.named_children() if n in expand else [("", c)])]
    parts = [(name.rstrip("."), m) for name, m in parts]
    shapes: dict[str, tuple[int, ...]] = {}
    for name, _, shape in forward_shapes(model, parts, size):
        shapes.setdefault(name, shape)  # a part called twice: its first output
    units = [Unit("input", f"{size} px image", (model.input_shape[0], size, size), 0)]
    for name, module in parts:
        params = sum(p.numel() for p in module.parameters())
        if type(module) in _FOLDED and len(units) > 1:
            last = units[-1]
            units[-1] = Unit(last.name, f"{last.label} + {_FOLDED[type(module)]}",
                             shapes.get(name, last.output_shape), last.parameters + params)
        else:
            units.append(Unit(name, _label(module), shapes[name], params,
                              *_paths(module)))
    return units


def _paths(module: nn.Module) -> tuple[str, tuple[int, ...]]:
    """What a block does besides its main path: (skip, branches) for ``Unit``."""
    if hasattr(module, "residual") and hasattr(module, "shortcut"):  # a residual block
        downsample = getattr(module, "downsample", None)
        return ("x" if downsample is None else "projection"), ()
    if all(hasattr(module, f"branch{i}") for i in range(1, 5)):  # an Inception module
        widths = []
        for i in range(1, 5):
            convs = [m for m in getattr(module, f"branch{i}").modules()
                     if isinstance(m, nn.Conv2d)]
            widths.append(convs[-1].out_channels)  # the branch's last conv: its output
        return "", tuple(widths)
    return "", ()


def architecture_figure(model: nn.Module | str, size: int = 28, title: str | None = None,
                        expand: tuple[str, ...] | None = None,
                        per_row: int = 5) -> Figure:
    """A diagram drawn from the model object itself, so it cannot drift from the code.

    One box per layer or block (see ``architecture_units``): its name, what
    it does, its output shape at ``size`` px and its parameters. Darker
    boxes hold more parameters. Read the rows left to right, top to bottom.
    """
    name = model_name(model) if isinstance(model, str) else type(model).__name__
    if isinstance(model, str):
        model = get_model(model)
    units = architecture_units(model, size, expand)
    rows = -(-len(units) // per_row)
    cols = min(len(units), per_row)
    pitch = 1.3  # rows apart: room for the skip arcs above the boxes
    fig = Figure(figsize=(1.55 * cols + 0.3, 1.5 * pitch * rows + 0.45), layout="constrained")
    ax = fig.subplots()
    ax.set_xlim(-0.15, cols)
    ax.set_ylim(-pitch * (rows - 1) - 0.1, 1.3)
    ax.axis("off")
    for i, unit in enumerate(units):
        x, y = i % per_row, -pitch * (i // per_row)
        ax.add_patch(_box(x, y, unit.parameters))
        _draw_paths(ax, x, y, unit)
        ax.text(x + 0.45, y + 0.77, unit.name, ha="center", va="center", fontsize=8.5,
                weight="bold")
        ax.text(x + 0.45, y + 0.56, textwrap.fill(unit.label, 16, break_long_words=False),
                ha="center", va="center", fontsize=7.5, linespacing=1.1)
        ax.text(x + 0.45, y + 0.34, "x".join(map(str, unit.output_shape)), ha="center",
                va="center", fontsize=8, family="monospace")
        ax.text(x + 0.45, y + 0.18, f"{unit.parameters:,} p", ha="center", va="center",
                fontsize=7.5, color="0.3")
        if x:  # arrows inside a row; a new row starts where the last one ended
            ax.annotate("", (x, y + 0.5), (x - 0.1, y + 0.5),
                        arrowprops={"arrowstyle": "->"})
    notes = []
    if any(u.skip for u in units):
        notes.append("red arcs: skip paths, added at the block's end")
    if any(u.branches for u in units):
        notes.append("bar under an Inception box: output channels of its 1x1 (blue), "
                     "3x3 (orange), 5x5 (green) and pool (red) branches")
    ax.set_title((title or f"{name} at {size} px input: layer, output shape, parameters")
                 + ("\n" + "; ".join(notes) if notes else ""), fontsize=9)
    return fig


def _draw_paths(ax, x: float, y: float, unit: Unit) -> None:
    """The skip arc of a residual block, or the branch bar of an Inception module."""
    if unit.skip:
        ax.annotate("", (x + 0.85, y + 0.93), (x + 0.05, y + 0.93),
                    arrowprops={"arrowstyle": "->", "color": "tab:red", "lw": 1.3,
                                "connectionstyle": "arc3,rad=-0.45",
                                "linestyle": "-" if unit.skip == "x" else "--"})
        ax.text(x + 0.45, y + 1.17, "+x" if unit.skip == "x" else "+proj(x)",
                ha="center", va="center", fontsize=7, color="tab:red")
    if unit.branches:
        total, left = sum(unit.branches), x + 0.02
        for i, width in enumerate(unit.branches):
            share = 0.86 * width / total
            ax.add_patch(Rectangle((left, y - 0.03), share, 0.08, facecolor=f"C{i}",
                                   edgecolor="none"))
            left += share


def _box(x: int, y: int, params: int):
    from matplotlib.patches import FancyBboxPatch

    # Shade by parameters on a log scale: 0 is near white, 100 million is dark.
    shade = 0.95 - 0.5 * min(1.0, np.log10(params + 1) / 8)
    return FancyBboxPatch((x, y + 0.08), 0.9, 0.84, boxstyle="round,pad=0.02",
                          facecolor=(shade, shade, 1.0), edgecolor="navy")
