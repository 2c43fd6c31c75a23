"""Comparison plots drawn from RunResults (the book and the CLI use these)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .files import atomic_write
from .results import RunResult


# One colour per model across the whole book (the Okabe-Ito palette, which
# stays distinguishable with the common colour-vision deficiencies). The two
# AlexNets share a hue, the paper-size one darker.
MODEL_COLOURS = {
    "lenet": "#0072B2",          # blue
    "alexnet": "#D55E00",        # vermilion
    "alexnet_large": "#8C3D00",  # dark vermilion
    "resnet18": "#009E73",       # bluish green
    "mobilenet_v1": "#CC79A7",   # reddish purple
    "googlenet": "#E69F00",      # orange
}


# The name the text uses for each model; figures and generated sentences
# use it too, and keep the registry id (``lenet``) for code.
MODEL_NAMES = {
    "lenet": "LeNet-5",
    "alexnet": "AlexNet",
    "alexnet_large": "AlexNet (paper sizes)",
    "resnet18": "ResNet-18",
    "mobilenet_v1": "MobileNetV1",
    "googlenet": "GoogLeNet",
}


def model_name(model: str) -> str:
    """The book's name for ``model`` ('ResNet-18' for 'resnet18'); an id it
    does not know is returned as it is."""
    return MODEL_NAMES.get(model, model)


def model_colour(model: str) -> str:
    """The book's colour for ``model`` (grey for a name it does not know)."""
    return MODEL_COLOURS.get(model, "#7F7F7F")


# The seeds of one model share its colour and differ in line style and marker.
SEED_STYLES = (("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"))


def seed_style(i: int) -> tuple[str, str]:
    """(line style, marker) of the ``i``-th seed of a model drawn on one figure."""
    return SEED_STYLES[i % len(SEED_STYLES)]


# The arms of one experiment are variants of one model: they get colours no
# model uses (black, Okabe-Ito's sky blue and yellow, darkened to read on
# white, a dark grey, and Tol's indigo), so that no arm passes for another network.
# Five, one per configuration of ResNet-18 that its experiments train.
ARM_COLOURS = ("#000000", "#56B4E9", "#B8A200", "#666666", "#332288")


def smooth(values: list[float], window: int = 50) -> np.ndarray:
    """Trailing moving average; the first points average what exists so far."""
    x = np.asarray(values, dtype=float)
    if window <= 1 or len(x) == 0:
        return x
    csum = np.cumsum(np.insert(x, 0, 0.0))
    idx = np.arange(1, len(x) + 1)
    start = np.maximum(idx - window, 0)
    return (csum[idx] - csum[start]) / (idx - start)


def comparison_figure(results: list[RunResult], window: int = 50) -> Figure:
    """Validation accuracy vs steps and smoothed training loss vs batches."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_acc, ax_loss = fig.subplots(1, 2)
    for r in results:
        colour = model_colour(r.model)
        ax_acc.plot(r.val_step, [100 * a for a in r.val_accuracy], label=r.model,
                    color=colour)
        ax_loss.plot(smooth(r.train_loss, window), label=r.model, color=colour)
    ax_acc.set(xlabel="training step", ylabel="validation accuracy (%)",
               title="Validation accuracy")
    ax_loss.set(xlabel="batch", ylabel=f"loss (moving average of {window})",
                title="Training loss", yscale="log")
    ax_acc.legend()
    return fig


def bar_figure(results: list[RunResult]) -> Figure:
    """Bars: test accuracy, training time and parameters per model."""
    fig = Figure(figsize=(12, 3.6), layout="constrained")
    axes = fig.subplots(1, 3)
    names = [r.model for r in results]
    panels = [
        ([100 * r.test_accuracy for r in results], "test accuracy (%)", "linear"),
        ([r.train_seconds for r in results], "training time (s)", "log"),
        ([r.parameters for r in results], "parameters", "log"),
    ]
    for ax, (values, label, scale) in zip(axes, panels):
        ax.bar(names, values, color=[model_colour(n) for n in names])
        ax.set(ylabel=label, yscale=scale)
        ax.tick_params(axis="x", rotation=45)
    lo = min(panels[0][0])
    axes[0].set_ylim(max(0.0, lo - 2), 100)
    return fig


PNG_SOFTWARE = "cnnlab"  # the Software text of every PNG that save_figure writes


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Save atomically: the old image stays whole until the new one is complete."""
    path = Path(path)
    with atomic_write(path) as tmp:
        # The temporary name ends in .tmp, so the format comes from ``path``.
        fmt = path.suffix.lstrip(".").lower() or "png"
        # A PNG is signed, so that `compare` can tell its own plots (which a
        # rerun replaces) from someone's file of the same name (refused).
        fig.savefig(tmp, dpi=120, format=fmt,
                    metadata={"Software": PNG_SOFTWARE} if fmt == "png" else None)
    return path
