"""What the factors chapter (book/08_factors) measures: input size and depth.

* ``lenet_at(scale)``: the package's LeNet-5 on digits upsampled ``scale``
  times, with FC1 resized to the larger maps (``lenet_final_side``).
* ``train_for_steps``: a fixed number of the report's training steps for a
  model the registry does not build (such as ``lenet_at(2)``), validated as
  it goes, so that two inputs can be compared step for step;
  ``input_size_figure``, which draws such runs over the recorded full runs;
  and ``input_size_note``, which sets their gap beside the seed-to-seed
  spread of the recorded runs.
* ``weight_depth``: the number of layers with weights on the longest path of
  a network's autograd graph; ``model_facts``, ``depth_table`` and
  ``depth_figure`` set depth beside parameters and arithmetic.
* ``flat_gradient``: every parameter's gradient in one vector, to compare
  two ways of computing it.

The memory half of the chapter lives in ``cnnlab.memory``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from .data import DeviceBatches, MnistSplits
from .findings import accuracy_spread
from .memory import on_meta
from .models import count_parameters, get_model
from .plots import model_colour
from .report import REPORT, REPORT_LENET_54PX_GAIN
from .train import TrainConfig, evaluate, train_step

# ------------------------------------------------------------------ input size


def lenet_final_side(size: int) -> int:
    """Side of LeNet's last feature maps for a ``size`` x ``size`` input.

    Twice a 5x5 convolution without padding (4 pixels off the side) and a
    2x2 max-pool (half the side, rounded down): 28 -> 4, 56 -> 11.
    """
    for _ in range(2):
        size = (size - 4) // 2
    if size < 1:
        raise ValueError("the input is too small for LeNet's two conv-pool stages")
    return size


def lenet_at(scale: int) -> nn.Module:
    """The package's LeNet-5 on digits upsampled ``scale`` times (bilinear).

    ``scale`` 1 is the package's model itself. Otherwise only FC1 changes,
    to take the flattened size of the larger last maps; the convolutions are
    built first, so under the same seed they start from the same weights as
    at 28 px.
    """
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    model = get_model("lenet")
    if scale == 1:
        return model
    side = lenet_final_side(28 * scale)
    model.classifier[1] = nn.Linear(16 * side * side, 120)
    return nn.Sequential(nn.Upsample(scale_factor=scale, mode="bilinear"), model)


@dataclass(frozen=True)
class LiveRun:
    """A run of ``train_for_steps``: validation accuracy (0-1) after each
    ``steps`` entry, on the first ``val_images`` validation images, and the
    test accuracy at the end."""

    steps: tuple[int, ...]
    val_accuracy: tuple[float, ...]
    test_accuracy: float
    val_images: int


def train_for_steps(model: nn.Module, data: MnistSplits, config: TrainConfig,
                    eval_every: int = 25, val_images: int = 2_000) -> LiveRun:
    """Train ``model`` with ``config``'s recipe on ``data`` (on its device).

    The same steps as ``cnnlab.train.fit`` would take: the batches of
    ``DeviceBatches`` seeded with ``config.seed``, AdamW with ``config``'s
    learning rate and weight decay, ``train_step``; ``config.max_steps`` steps,
    or ``config.epochs`` epochs. It validates every ``eval_every`` steps and
    at the last on the first ``val_images`` validation images (the subset
    the recorded runs use between epoch ends), then tests on
    ``config.test_images`` (None: all). Seed the model's weights before
    building it (``set_seed``).
    """
    device = data.train.images.device
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    batches = DeviceBatches(data.train, config.batch_size, shuffle=True, seed=config.seed)
    total = config.epochs * len(batches)
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    val = data.val.head(val_images)
    steps, accuracy, done = [], [], 0
    model.train()
    while done < total:
        for x, y in batches:
            train_step(model, optimizer, x, y, config.batch_size, amp=None)
            done += 1
            if done % eval_every == 0 or done == total:
                steps.append(done)
                accuracy.append(evaluate(model, val)[1])  # back in train mode after
            if done == total:
                break
    test = evaluate(model, data.test.head(config.test_images))[1]
    return LiveRun(tuple(steps), tuple(accuracy), test, len(val))


def input_size_figure(live: dict[int, LiveRun], recorded: list = ()) -> Figure:
    """Validation accuracy of LeNet at each scale in ``live`` (28 px solid,
    larger dashed), over the recorded full runs of the 28 px LeNet (thin,
    pale), all in LeNet's colour."""
    fig = Figure(figsize=(8, 3.8), layout="constrained")
    ax = fig.subplots()
    colour = model_colour("lenet")
    for i, r in enumerate(recorded):
        label = f"recorded full runs, 28 px ({len(recorded)} seeds)" if i == 0 else None
        ax.plot(r.val_step, [100 * a for a in r.val_accuracy], color=colour, alpha=0.3,
                lw=1, marker=".", label=label)
    styles = ["-", "--", ":", "-."]
    for (scale, run), style in zip(sorted(live.items()), styles):
        ax.plot(run.steps, [100 * a for a in run.val_accuracy], style, color=colour,
                lw=2, label=f"this run, {28 * scale} px")
    if live:
        end = max(run.steps[-1] for run in live.values())
        ax.axvline(end, color="grey", lw=0.8, ls=":", gid="end of this run")
    ax.set(xlabel="training step", ylabel="validation accuracy (%)",
           title="LeNet at 28 and 56 px: this page's runs against the recorded ones")
    values = [a for run in live.values() for a in run.val_accuracy]
    values += [a for r in recorded for a in r.val_accuracy]
    ax.set_ylim(max(0.0, 100 * min(values, default=0.0) - 2), 100)
    ax.legend(fontsize=9, loc="lower right")
    fig.patch.set_facecolor("white")
    return fig


def input_size_note(live: dict[int, LiveRun], recorded: Sequence = (),
                    report_gain: float = REPORT_LENET_54PX_GAIN) -> str:
    """Markdown: the gap between this page's LeNets at 56 and 28 px
    (``live[2]`` and ``live[1]``), beside how far the seed alone moves a 28 px
    run: the recorded full runs' validation accuracy at the step the page's
    runs stopped, and their test accuracy at the end, lowest to highest. Says
    whether the report's gain is wider than that last range; it claims
    nothing about the input size itself.
    """
    small, big = live[1], live[2]
    step = small.steps[-1]
    gap = 100 * (big.test_accuracy - small.test_accuracy)
    text = [f"This page, one seed per size: 56 px scored {gap:+.2f} points of test "
            f"accuracy against 28 px after {step:,} steps."]
    if len(recorded) < 2:
        text.append("Fewer than two full runs of the 28 px LeNet are recorded, so this "
                    "page cannot say how far the seed alone moves one run.")
        return " ".join(text)
    at_step = sorted(100 * r.val_accuracy[list(r.val_step).index(step)]
                     for r in recorded if step in r.val_step)
    tests = accuracy_spread(recorded)
    epochs = max(len(r.epoch_val_accuracy) for r in recorded)
    ranges = []
    if len(at_step) >= 2:
        ranges.append(f"{at_step[0]:.2f}% to {at_step[-1]:.2f}% validation accuracy at "
                      f"step {step:,}")
    ranges.append(f"{tests.low:.2f}% to {tests.high:.2f}% test accuracy after {epochs} "
                  f"epoch{'s' if epochs != 1 else ''}")
    text.append(f"The recorded 28 px runs, which differ only in their seed "
                f"({len(recorded)} seeds): " + ", and ".join(ranges) + ".")
    width = tests.high - tests.low
    if report_gain <= width:
        text.append(f"The report's +{report_gain:g} points, from one run per size, is "
                    f"no wider than that last range ({width:.2f} points): the seed alone "
                    f"moves one run by as much.")
    else:
        text.append(f"The report's +{report_gain:g} points, from one run per size, is "
                    f"wider than that last range ({width:.2f} points), but one run per "
                    f"size cannot say how much of it the input size causes.")
    return " ".join(text)


# ----------------------------------------------------------------------- depth

# The autograd nodes of the layers with weights: convolutions, linear layers.
WEIGHT_NODES = ("ConvolutionBackward", "AddmmBackward", "MmBackward", "LinearBackward")


def weight_depth(model: nn.Module, input_size: tuple[int, ...] = (1, 1, 28, 28)) -> int:
    """Layers with weights on the longest input-to-output path of ``model``.

    Counted on the autograd graph of one forward pass, backwards from the
    output, so that branches side by side (Inception) count once and a
    shortcut does not lengthen the path. Runs on the model's own device:
    build it on "meta" (``on_meta``) and it costs nothing.
    """
    device = next(model.parameters()).device
    with torch.enable_grad():
        out = model(torch.zeros(input_size, device=device))
    longest: dict[object, int] = {}
    # Iterative, leaves first: a deep graph would overflow Python's recursion.
    stack = [(out.grad_fn, False)]
    while stack:
        node, expanded = stack.pop()
        if node is None or node in longest:
            continue
        inputs = [n for n, _ in node.next_functions if n is not None]
        if not expanded:
            stack.append((node, True))
            stack += [(n, False) for n in inputs if n not in longest]
            continue
        own = type(node).__name__.startswith(WEIGHT_NODES)
        longest[node] = own + max((longest[n] for n in inputs), default=0)
    return longest.get(out.grad_fn, 0)


@dataclass(frozen=True)
class Facts:
    """What a network costs, per 28 x 28 image, beside its depth."""

    depth: int
    parameters: int
    mult_adds: int


def model_facts(names: list[str]) -> dict[str, Facts]:
    """Depth, parameters and mult-adds per image of each named model, built
    on the meta device (shapes only: no memory, no time)."""
    from torchinfo import summary

    facts = {}
    for name in names:
        model = on_meta(name)
        stats = summary(model, input_size=(1, 1, 28, 28), device="meta", verbose=0)
        facts[name] = Facts(weight_depth(model), count_parameters(model),
                            stats.total_mult_adds)
    return facts


def recorded_accuracy(name: str) -> str:
    """Test accuracy (%) of ``name``'s recorded full runs, mean ± sd over
    seeds on one device (GPU first), or 'not recorded'."""
    from .findings import device_runs
    from .plan import FULL_RUNS

    runs = device_runs(name)
    planned = sum(m == name for m, _ in FULL_RUNS) or None  # '(1 of 3 seeds)'
    return accuracy_spread(runs).text(planned) if runs else "not recorded"


def depth_table(facts: dict[str, Facts]):
    """Markdown: depth (weight layers), parameters, mult-adds per image, our
    recorded test accuracy and the report's, one row per model."""
    from .notebook import markdown_table

    rows = [[name, f.depth, f"{f.parameters:,}", f"{f.mult_adds / 1e6:,.1f} M",
             recorded_accuracy(name),
             f"{REPORT[name].test_accuracy:.2f}" if name in REPORT else "no row"]
            for name, f in facts.items()]
    return markdown_table(["model", "depth", "parameters", "mult-adds", "recorded acc. (%)",
                           "**report's** acc. (%)"], rows)


# Label offsets (points) that keep the names apart and inside the axes.
_LABEL_OFFSETS = {"alexnet": (6, -12), "mobilenet_v1": (-6, 6)}


def depth_figure(facts: dict[str, Facts]) -> Figure:
    """Parameters and mult-adds against depth, one point per model in its colour."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_p, ax_m = fig.subplots(1, 2)
    for name, f in facts.items():
        dx, dy = _LABEL_OFFSETS.get(name, (6, 4))
        for ax, value in ((ax_p, f.parameters), (ax_m, f.mult_adds)):
            ax.scatter(f.depth, value, color=model_colour(name), s=40, zorder=3)
            ax.annotate(name, (f.depth, value), textcoords="offset points",
                        xytext=(dx, dy), fontsize=9, color=model_colour(name),
                        ha="right" if dx < 0 else "left")
    xlabel = "depth (weight layers on the longest path)"
    ax_p.set(xlabel=xlabel, ylabel="parameters", yscale="log",
             title="Parameters against depth")
    ax_m.set(xlabel=xlabel, ylabel="mult-adds per 28x28 image", yscale="log",
             title="Arithmetic against depth")
    for ax in (ax_p, ax_m):
        ax.set_xlim(0, max((f.depth for f in facts.values()), default=28) + 4)
        ax.margins(y=0.12)  # room for the labels at the top
    fig.patch.set_facecolor("white")
    return fig


# --------------------------------------------------------------- gradients


def flat_gradient(model: nn.Module) -> Tensor:
    """Every parameter's gradient, in order, as one vector (zeros where a
    parameter has none yet)."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
                      for p in model.parameters()])
