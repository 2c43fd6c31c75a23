"""What the explorer widgets show, computed here so it can be tested.

The widgets in the book are thin: a slider or a dropdown calls one of these
functions and draws the result. Everything here works without a kernel
widget too, so the static book shows the same views as figures.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from .data import Split, preprocess
from .models import get_model
from .shapes import trace_shapes


@dataclass
class LayerRow:
    """One leaf layer at a given input size."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    parameters: int
    mult_adds: int
    warning: str


def _mult_adds(module: nn.Module, out_shape: tuple[int, ...]) -> int:
    """Mult-adds of one image through a layer, counted as torchinfo counts them.

    A conv's weights and bias act once per output position (H x W); any
    other layer's parameters act once per image. Layers without parameters
    count 0. Sticking to torchinfo's rule keeps these numbers equal to the
    summaries in the chapters.
    """
    params = sum(p.numel() for p in module.parameters(recurse=False))
    if isinstance(module, nn.Conv2d):
        return params * int(np.prod(out_shape[1:]))
    return params


def layer_table(model: nn.Module | str, size: int = 28) -> list[LayerRow]:
    """Each leaf layer's output shape, parameters and mult-adds at ``size`` px.

    Raises RuntimeError (PyTorch's own) when the net cannot take that size.
    """
    if isinstance(model, str):
        model = get_model(model)
    modules = dict(model.named_modules())
    return [LayerRow(r.name, r.kind, r.output_shape, r.parameters,
                     _mult_adds(modules[r.name], r.output_shape), r.warning)
            for r in trace_shapes(model, size)]


def smallest_input(model: nn.Module | str, low: int = 1, high: int = 256,
                   min_map: int = 1) -> int | None:
    """The smallest square input size the net accepts (None if none in range).

    "Accepts" means the forward pass runs and every feature map before the
    global pool is at least ``min_map`` x ``min_map``.
    """
    # On the meta device only shapes are computed: the search costs nothing.
    model = copy.deepcopy(get_model(model) if isinstance(model, str) else model).to("meta")
    for size in range(low, high + 1):
        try:
            rows = trace_shapes(model, size)
        except RuntimeError:
            continue
        maps = [r.output_shape[1:] for r in rows
                if len(r.output_shape) == 3 and r.kind != "AdaptiveAvgPool2d"]
        if all(min(hw) >= min_map for hw in maps):
            return size
    return None


@torch.no_grad()
def predict(model: nn.Module, images: Tensor, batch_size: int = 1000) -> Tensor:
    """Class probabilities (N, 10) for uint8 images (N, 28, 28)."""
    model.eval()
    device = next(model.parameters()).device
    out = [torch.softmax(model(preprocess(images[i:i + batch_size].to(device))), 1).cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out)


def confusion_matrix(predicted: Tensor, labels: Tensor, classes: int = 10) -> Tensor:
    """Counts (true class, predicted class) as a (classes, classes) int64 tensor."""
    index = labels.long() * classes + predicted.long()
    return torch.bincount(index, minlength=classes * classes).view(classes, classes)


def most_confused(matrix: Tensor, k: int = 5) -> list[tuple[int, int, int]]:
    """The ``k`` largest off-diagonal cells as (true, predicted, count)."""
    off = matrix.clone()
    off.fill_diagonal_(0)
    counts, flat = off.flatten().sort(descending=True)
    n = matrix.shape[0]
    return [(int(i) // n, int(i) % n, int(c)) for c, i in zip(counts[:k], flat[:k]) if c > 0]


def misclassified(probs: Tensor, labels: Tensor) -> Tensor:
    """Indices of wrong predictions, most confident mistakes first."""
    confidence, predicted = probs.max(1)
    wrong = (predicted != labels).nonzero().flatten()
    return wrong[confidence[wrong].argsort(descending=True)]


@torch.no_grad()
def activations(model: nn.Module, layer: str, image: Tensor) -> Tensor:
    """The output of ``layer`` (a name from named_modules) for one uint8 image."""
    module = dict(model.named_modules())[layer]
    captured: list[Tensor] = []
    handle = module.register_forward_hook(lambda m, i, o: captured.append(o.detach()))
    try:
        model.eval()
        device = next(model.parameters()).device
        model(preprocess(image.view(1, *image.shape[-2:]).to(device)))
    finally:
        handle.remove()
    return captured[0][0].cpu()


def feature_map_figure(maps: Tensor, title: str, columns: int = 8) -> Figure:
    """A grid of the channels of a (C, H, W) activation (at most 32 shown)."""
    maps = maps[:32]
    rows = int(np.ceil(len(maps) / columns))
    fig = Figure(figsize=(columns * 1.1, rows * 1.1 + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns)).flatten()
    for ax in axes:
        ax.axis("off")
    for ax, fmap in zip(axes, maps):
        ax.imshow(fmap.numpy(), cmap="viridis")
    fig.suptitle(title)
    return fig


def first_layer_filters(model: nn.Module) -> Tensor:
    """The first conv layer's weights as (out_channels, kh, kw), channel 0."""
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    return conv.weight.detach()[:, 0].cpu()


def architecture_figure(model: nn.Module | str, size: int = 28,
                        title: str | None = None) -> Figure:
    """A diagram drawn from the model object: one box per top-level stage.

    Each box shows the stage's name, its output shape and its parameters,
    so the picture cannot drift from the code.
    """
    name = model if isinstance(model, str) else type(model).__name__
    if isinstance(model, str):
        model = get_model(model)
    stages = _stage_shapes(model, size)
    fig = Figure(figsize=(min(1.55 * len(stages) + 0.5, 11), 2.3), layout="constrained")
    ax = fig.subplots()
    ax.set_xlim(-0.1, len(stages))
    ax.set_ylim(0, 1)
    ax.axis("off")
    for i, (stage, shape, params) in enumerate(stages):
        ax.add_patch(_box(i, params))
        ax.text(i + 0.45, 0.72, stage, ha="center", va="center", fontsize=8, weight="bold")
        ax.text(i + 0.45, 0.5, "x".join(map(str, shape)), ha="center", va="center",
                fontsize=7)
        ax.text(i + 0.45, 0.3, f"{params:,} p", ha="center", va="center", fontsize=7)
        if i:
            ax.annotate("", (i, 0.5), (i - 0.1, 0.5), arrowprops={"arrowstyle": "->"})
    ax.set_title(title or f"{name}: stages at {size} px input "
                 "(output shape, parameters)", fontsize=9)
    return fig


def _box(i: int, params: int):
    from matplotlib.patches import FancyBboxPatch

    shade = 0.95 - 0.5 * min(1.0, np.log10(params + 1) / 8)
    return FancyBboxPatch((i, 0.15), 0.9, 0.7, boxstyle="round,pad=0.02",
                          facecolor=(shade, shade, 1.0), edgecolor="navy")


def _stage_shapes(model: nn.Module, size: int) -> list[tuple[str, tuple, int]]:
    """(name, output shape, parameters) of each top-level child, in call order."""
    rows: list[tuple[str, tuple, int]] = []
    hooks = [child.register_forward_hook(
        lambda m, i, o, name=name: rows.append(
            (name, tuple(o.shape[1:]), sum(p.numel() for p in m.parameters()))))
        for name, child in model.named_children()]
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, model.input_shape[0], size, size))
    finally:
        for h in hooks:
            h.remove()
    return rows


def sample(split: Split, index: int) -> tuple[Tensor, int]:
    """One (image, label) pair from a split."""
    return split.images[index], int(split.labels[index])
