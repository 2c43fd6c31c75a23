"""What the explorer widgets show, computed here so it can be tested.

The widgets in the book are thin: a slider or a dropdown calls one of these
functions and draws the result. Everything here works without a kernel
widget too, so the static book shows the same views as figures.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure
import torch.nn.functional as F
from torch import Tensor, nn

from .data import Split, preprocess
from .models import count_parameters, eval_mode, get_model
from .plots import model_colour, smooth
from .results import RunResult
from .shapes import shape_markdown, trace_shapes


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


def layer_markdown(model: nn.Module | str, size: int = 28, keep=None) -> str:
    """``layer_table`` as a Markdown table (``shapes.shape_markdown``; ``keep``
    picks rows), or PyTorch's own error in one line when the net cannot
    take ``size`` px."""
    name = model if isinstance(model, str) else type(model).__name__
    try:
        rows = layer_table(model, size)
    except RuntimeError as err:
        return f"**{name} cannot take {size} px:** `{str(err).splitlines()[0]}`"
    return shape_markdown(rows, keep)


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


def smallest_input_markdown(models: Sequence[str], low: int = 1,
                            high: int = 64) -> str:
    """A Markdown table: for each model, the smallest input size it runs on
    and the smallest at which every map before the global pool stays at least
    2x2 (``smallest_input``), searched from ``low`` to ``high`` px."""
    lines = ["| model | runs from | keeps every map at 2x2 or more from |",
             "|---|--:|--:|"]
    for name in models:
        cells = [smallest_input(name, low, high, min_map=m) for m in (1, 2)]
        lines.append(f"| `{name}` | " + " | ".join(
            f"{c} px" if c is not None else f"over {high} px" for c in cells) + " |")
    return "\n".join(lines)


@torch.no_grad()
def predict(model: nn.Module, images: Tensor, batch_size: int = 1000) -> Tensor:
    """Class probabilities (N, 10) for uint8 images (N, 28, 28), in eval mode;
    the model keeps the mode it had."""
    device = next(model.parameters()).device
    with eval_mode(model):
        out = [torch.softmax(model(preprocess(images[i:i + batch_size].to(device))), 1).cpu()
               for i in range(0, len(images), batch_size)]
    return torch.cat(out)


def confusion_matrix(predicted: Tensor, labels: Tensor, classes: int = 10) -> Tensor:
    """Counts (true class, predicted class) as a (classes, classes) int64 tensor."""
    index = labels.long() * classes + predicted.long()
    return torch.bincount(index, minlength=classes * classes).view(classes, classes)


def most_confused(matrix: Tensor, k: int = 5,
                  ties: bool = False) -> list[tuple[int, int, int]]:
    """The ``k`` largest off-diagonal cells as (true, predicted, count); with
    ``ties``, also every further cell whose count equals the ``k``-th, so
    that no pair is cut from a tie."""
    off = matrix.clone()
    off.fill_diagonal_(0)
    # Stable: equal counts keep (true, predicted) order, so ties list the same way.
    counts, flat = off.flatten().sort(descending=True, stable=True)
    n = matrix.shape[0]
    keep = min(k, len(counts))
    if ties and keep:
        keep = int((counts >= counts[keep - 1]).sum())
    return [(int(i) // n, int(i) % n, int(c))
            for c, i in zip(counts[:keep], flat[:keep]) if c > 0]


def confused_markdown(matrix: Tensor, k: int = 5) -> str:
    """A Markdown table of the ``k`` pairs a network confuses most
    (``most_confused``), each with its count the other way round, which
    says whether the two digits are mixed up both ways. Pairs that tie with
    the ``k``-th are listed too, and a line under the table says so."""
    rows = most_confused(matrix, k, ties=True)
    if not rows:
        return "No test digit is misread."
    lines = ["| true digit | read as | test digits | the other way round |",
             "|--:|--:|--:|--:|"]
    for true, predicted, count in rows:
        lines.append(f"| {true} | {predicted} | {count} "
                     f"| {int(matrix[predicted, true])} ({predicted} read as {true}) |")
    if len(rows) > k:
        last = rows[-1][2]
        tied = sum(count == last for _, _, count in rows)
        lines += ["", (f"The last {tied} rows tie at {last} test digits, so the table "
                       f"lists all {len(rows)} pairs rather than cut the tie at {k}.")]
    return "\n".join(lines)


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
        device = next(model.parameters()).device
        with eval_mode(model):
            model(preprocess(image.view(1, *image.shape[-2:]).to(device)))
    finally:
        handle.remove()
    return captured[0][0].cpu()


def feature_map_figure(maps: Tensor, title: str, columns: int = 8) -> Figure:
    """A grid of the channels of a (C, H, W) activation (at most 32 shown),
    in at most ``columns`` columns (fewer when there are fewer maps)."""
    maps = maps[:32]
    columns = min(columns, len(maps))
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


def sample(split: Split, index: int) -> tuple[Tensor, int]:
    """One (image, label) pair from a split."""
    return split.images[index], int(split.labels[index])


def gradient_norms(model: nn.Module, images: Tensor, labels: Tensor) -> dict[str, float]:
    """The size of the loss gradient at every weight layer, from one batch.

    One forward and backward pass of the cross-entropy loss on
    (preprocessed) ``images``; for every Conv2d and Linear layer, the L2
    norm of the gradient of its weight, in forward order. How fast each
    layer can learn at that point: with sigmoids the first layers get far
    less than the last ones. The model's mode, weights and ``.grad`` are
    left as they were.
    """
    layers = [(name, m) for name, m in model.named_modules()
              if isinstance(m, (nn.Conv2d, nn.Linear))]
    loss = F.cross_entropy(model(images), labels)
    grads = torch.autograd.grad(loss, [m.weight for _, m in layers])
    return {name: g.norm().item() for (name, _), g in zip(layers, grads)}


def train_losses(model: nn.Module, split: Split, steps: int = 40, batch_size: int = 64,
                 lr: float = 1e-3, seed: int = 0) -> list[float]:
    """Train ``model`` in place for ``steps`` steps; the loss of every step.

    A bare loop for side-by-side demos of models that are not in the
    registry (a plain 34-layer net, say): AdamW at ``lr``, batches sliced
    from one permutation of ``split`` drawn from its own seeded generator,
    so every model given the same seed sees the same batches in the same
    order. The model is left in training mode, with its new weights.
    """
    if steps * batch_size > len(split):
        raise ValueError(f"{steps} steps of {batch_size} need {steps * batch_size:,} "
                         f"images; the split has {len(split):,}")
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    losses = []
    for step in range(steps):
        idx = order[step * batch_size:(step + 1) * batch_size]
        loss = F.cross_entropy(model(preprocess(split.images[idx])), split.labels[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


# ------------------------------------------------------------ Inception modules

@dataclass(frozen=True)
class InceptionRow:
    """One Inception module as built: its widths, and whether they add up."""

    name: str                 # the paper's name, "3a"
    in_channels: int
    # the convs' outputs: 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj
    widths: tuple[int, ...]
    out_channels: int         # measured: the module's output in a forward pass
    next_in: int              # what the next module (after the last: the classifier) takes
    parameters: int

    @property
    def branch_sum(self) -> int:
        """The four branch outputs added up: 1x1 + 3x3 + 5x5 + pool proj."""
        c1, _, c3, _, c5, pool = self.widths
        return c1 + c3 + c5 + pool

    @property
    def adds_up(self) -> bool:
        return self.branch_sum == self.out_channels == self.next_in


def _inceptions(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's Inception modules, (qualified name, module), in order."""
    return [(name, m) for name, m in model.named_modules()
            if all(hasattr(m, f"branch{i}") for i in range(1, 5))]


def _convs(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


@torch.no_grad()
def _output_channels(module: nn.Module, in_channels: int) -> int:
    """The channels ``module`` outputs for a 7 x 7 map of ``in_channels``."""
    device = next(module.parameters()).device
    with eval_mode(module):
        return module(torch.zeros(1, in_channels, 7, 7, device=device)).shape[1]


def inception_rows(model: nn.Module | str) -> list[InceptionRow]:
    """Each Inception module's channel arithmetic, read from the built model:
    the widths from its convolutions, its output measured by running the
    module alone, and what the next layer takes (the next module's input, or
    the final linear layer's ``in_features``). Each module runs on its own,
    so a model whose widths do not chain still gets its table (with the
    break marked) instead of an error."""
    if isinstance(model, str):
        model = get_model(model)
    named = _inceptions(model)
    measured = {name: _output_channels(m, _convs(m)[0].in_channels) for name, m in named}
    nexts = [_convs(m)[0].in_channels for _, m in named[1:]]
    nexts.append(next(m for m in model.modules() if isinstance(m, nn.Linear)).in_features)
    return [InceptionRow(name.rsplit(".", 1)[-1], _convs(m)[0].in_channels,
                         tuple(c.out_channels for c in _convs(m)), measured[name],
                         nexts[i], count_parameters(m))
            for i, (name, m) in enumerate(named)]


def inception_markdown(rows: list[InceptionRow]) -> str:
    """``inception_rows`` as a Markdown table, one module a row. "out" is the
    sum of the branch widths, marked ✗ where it differs from the output a
    forward pass measured or from what the next layer takes."""
    lines = ["| module | in | 1x1 | 3x3: reduce → out | 5x5: reduce → out | pool proj "
             "| out | next layer takes | parameters |",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in rows:
        c1, r3, c3, r5, c5, pool = r.widths
        out = f"{r.branch_sum}" if r.adds_up else (f"{r.branch_sum} ✗ (measured "
                                                   f"{r.out_channels})")
        lines.append(f"| {r.name} | {r.in_channels} | {c1} | {r3} → {c3} | {r5} → {c5} "
                     f"| {pool} | {out} | {r.next_in} | {r.parameters:,} |")
    return "\n".join(lines)


def five_by_five_savings(model: nn.Module | str) -> list[tuple[str, int, int]]:
    """For each Inception module: (name, parameters of one 5x5 convolution
    straight from the module's input to the 5x5 branch's width, parameters
    of the branch as built: the 1x1 reduce, then the 5x5). Both counted on
    layers, the first built on the meta device (no memory)."""
    if isinstance(model, str):
        model = get_model(model)
    rows = []
    for name, m in _inceptions(model):
        reduce, conv = _convs(m.branch3)
        direct = nn.Conv2d(reduce.in_channels, conv.out_channels, conv.kernel_size,
                           bias=conv.bias is not None, device="meta")
        rows.append((name.rsplit(".", 1)[-1], count_parameters(direct),
                     count_parameters(m.branch3)))
    return rows


# ------------------------------------------------------------------ the curves

def first_step_at(run: RunResult, level: float) -> int | None:
    """The first validation step at which ``run`` scored ``level`` (a
    fraction, 0.9 for 90%) or more; None if it never did."""
    return next((s for s, a in zip(run.val_step, run.val_accuracy) if a >= level), None)


def steps_to_markdown(arms: Sequence, level: float = 0.9) -> str:
    """A Markdown table: for each arm of an experiment (``experiments.Arm``) and
    each recorded seed, the first validation step at ``level`` or more."""
    seeds = sorted({r.config.get("seed") for a in arms for r in a.runs})
    lines = ["| arm | " + " | ".join(f"seed {s}" for s in seeds) + " |",
             "|---|" + "--:|" * len(seeds)]
    for a in arms:
        by_seed = {r.config.get("seed"): r for r in a.runs}
        cells = []
        for s in seeds:
            r = by_seed.get(s)
            step = first_step_at(r, level) if r is not None else None
            cells.append("not recorded" if r is None else
                         f"not in {len(r.train_loss):,} steps" if step is None
                         else f"{step:,}")
        lines.append(f"| {a.name} | " + " | ".join(cells) + " |")
    if not seeds:
        return "No run of these arms is recorded yet."
    return "\n".join(lines)


def live_figure(live: RunResult, recorded: Sequence[RunResult], window: int = 50,
                title: str = "") -> Figure:
    """A live run drawn over the recorded full-recipe run(s) of the same model,
    on the same axes: training loss (left) and validation accuracy (right)
    against the training step, on a log scale so that a short run's few
    dozen steps stay visible beside a full run's thousands. The recorded runs
    are thin lines, the live run bold points in the same colour (the model's),
    with an arrow: "your run is here". Grey dotted lines mark a uniform
    guess over the ten digits (loss ln 10, accuracy 10%).

    Both losses are trailing moving averages over ONE window, set by the
    live run's length: a fifth of its steps, at least 1 and at most
    ``window`` (50 steps for a 1,875-step full recipe, 6 for a 30-step run,
    1, i.e. the raw loss, for an 8-step run). A short run needs a short
    window: with 50, every point of a 30-step run would be the mean of all
    its steps so far, held up by the high losses of the first steps. The
    recorded runs get the same window, so that at any step both curves
    average the same number of steps and can be compared there. The loss
    axis's label gives the window.
    """
    colour = model_colour(live.model)
    # one window for the live run and the recorded ones (see the docstring)
    window = max(1, min(window, len(live.train_loss) // 5))
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    for k, r in enumerate(recorded):
        label = (f"recorded full recipe ({len(recorded)} seed"
                 f"{'s' if len(recorded) > 1 else ''})") if k == 0 else None
        ax_loss.plot(np.arange(1, len(r.train_loss) + 1), smooth(r.train_loss, window),
                     color=colour, lw=1, alpha=0.6, label=label)
        ax_acc.plot(r.val_step, [100 * a for a in r.val_accuracy], color=colour, lw=1,
                    alpha=0.6, marker=".", label=label)
    live_loss = smooth(live.train_loss, window)
    live_steps = np.arange(1, len(live.train_loss) + 1)
    live_acc = [100 * a for a in live.val_accuracy]
    mine = f"your live run ({len(live.train_loss):,} steps)"
    # markevery as a fraction: markers evenly spaced on the log axis, however long the run
    ax_loss.plot(live_steps, live_loss, "-o", color=colour, mec="black", ms=4, lw=2,
                 markevery=0.05, label=mine)
    ax_acc.plot(live.val_step, live_acc, "o", color=colour, mec="black", ms=6, label=mine)
    ax_acc.set_ylim(0, 100)
    # The label sits where neither a short run (top left of the loss, bottom
    # left of the accuracy) nor a full one (bottom right, top right) draws.
    for ax, x, y, guess, where in (
            (ax_loss, live_steps[-1], live_loss[-1], float(np.log(10)), (0.06, 0.3)),
            (ax_acc, live.val_step[-1], live_acc[-1], 10.0, (0.06, 0.75))):
        ax.set_xscale("log")
        ax.set_xlim(left=0.8)  # both panels from the first step: the same axes
        ax.grid(alpha=0.3)
        ax.axhline(guess, color="0.5", ls=":", lw=1)
        ax.text(1, guess, "uniform guess ", transform=ax.get_yaxis_transform(),
                ha="right", va="bottom", fontsize=7, color="0.4")
        ax.annotate("your run is here", (x, y), xytext=where, textcoords="axes fraction",
                    fontsize=9, bbox={"boxstyle": "round", "fc": "white", "ec": "0.6"},
                    arrowprops={"arrowstyle": "->"})
    averaged = f"mean of {window} steps" if window > 1 else "each step, unsmoothed"
    ax_loss.set(xlabel="training step (log scale)",
                ylabel=f"training loss ({averaged})", title="Training loss")
    ax_acc.set(xlabel="training step (log scale)", ylabel="validation accuracy (%)",
               title="Validation accuracy")
    ax_acc.legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title)
    fig.patch.set_facecolor("white")
    return fig


# ------------------------------------------------------------ one trained net

def prediction_figure(image: Tensor, probs: Tensor, label: int, title: str,
                      model: str = "lenet") -> Figure:
    """A digit beside the network's probability for each class, in the
    model's colour; the true class's bar is outlined in black and marked
    "true" (readable even where the network gave it almost nothing)."""
    fig = Figure(figsize=(7, 2.6), layout="constrained")
    a, b = fig.subplots(1, 2, width_ratios=[1, 2])
    a.imshow(image, cmap="gray_r")
    a.axis("off")
    a.set_title(title, fontsize=9)
    bars = b.bar(range(len(probs)), probs.numpy(), color=model_colour(model))
    bars[label].set(edgecolor="black", linewidth=2)
    b.text(label, float(probs[label]) + 0.03, "true", ha="center", va="bottom", fontsize=8)
    b.set(xticks=range(len(probs)), ylim=(0, 1.1), xlabel="class", ylabel="probability")
    fig.patch.set_facecolor("white")
    return fig


def filters_figure(model: nn.Module, title: str) -> Figure:
    """The first convolution's filters (input channel 0), red positive and
    blue negative on one symmetric scale, so that their weights compare."""
    filters = first_layer_filters(model)
    scale = float(filters.abs().max())
    fig = Figure(figsize=(1.35 * len(filters), 1.7), layout="constrained")
    for i, (ax, f) in enumerate(zip(np.atleast_1d(fig.subplots(1, len(filters))), filters)):
        ax.imshow(f.numpy(), cmap="RdBu_r", vmin=-scale, vmax=scale)
        ax.set_title(f"filter {i}", fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.patch.set_facecolor("white")
    return fig
