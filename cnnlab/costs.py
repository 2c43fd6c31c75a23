"""What each network costs per 28x28 digit (parameters, mult-adds, the image
size inside the net), counted from the model as its record built it, and
the tables and figure chapter 7 sets beside the accuracies.
"""
from __future__ import annotations

from dataclasses import dataclass

from matplotlib.figure import Figure

from .findings import accuracy_spread
from .report import REPORT
from .results import RunResult


@dataclass(frozen=True)
class Cost:
    """What one forward pass of one 28x28 digit costs a model."""

    parameters: int
    mult_adds: int
    input_px: int  # the side of the image its first convolution sees


def model_cost(model) -> Cost:
    """Parameters and mult-adds of one 28x28 digit, counted by torchinfo on
    the model as it is (build it on the ``meta`` device: no memory used)."""
    from torchinfo import summary

    from .models import count_parameters

    stats = summary(model, input_size=(1, 1, 28, 28), device="meta", verbose=0)
    upsample = getattr(model, "upsample", None)
    px = 28 if upsample is None else round(28 * upsample.scale_factor)
    return Cost(count_parameters(model), stats.total_mult_adds, px)


def build_as_recorded(model: str, runs: list[RunResult] | None = None, **options):
    """``model`` on the ``meta`` device as its first record built it (its
    options and dropout), or as the report's recipe builds it; ``options``
    override."""
    from dataclasses import fields

    import torch

    from .models import get_model
    from .train import TrainConfig

    keys = {f.name for f in fields(TrainConfig)}
    config = {k: v for k, v in runs[0].config.items() if k in keys} if runs else {}
    config["model"] = model
    kwargs = TrainConfig(**config).model_kwargs() | options
    with torch.device("meta"):
        return get_model(model, **kwargs)


def model_costs(recorded: dict[str, list[RunResult]]) -> dict[str, Cost]:
    """``model_cost`` of every model, each built as its record built it."""
    from .models import list_models

    return {m: model_cost(build_as_recorded(m, recorded.get(m))) for m in list_models()}


def mult_adds_text(macs: float) -> str:
    """'318.8 M', '1.06 G'."""
    return f"{macs / 1e9:.2f} G" if macs >= 1e9 else f"{macs / 1e6:.1f} M"


def cost_table(costs: dict[str, Cost]) -> str:
    """Markdown: input size, parameters and mult-adds per image of each model."""
    lines = ["| network | image inside the net | parameters | mult-adds per digit |",
             "|---|---|---|---|"]
    for name, c in costs.items():
        px = f"{c.input_px} px" + (f" (x{c.input_px // 28})" if c.input_px > 28 else "")
        lines.append(f"| `{name}` | {px} | {c.parameters:,} | {mult_adds_text(c.mult_adds)} |")
    return "\n".join(lines)


def parameter_check(costs: dict[str, Cost]) -> str:
    """Markdown: our parameter counts beside the report's, the one fingerprint
    it published, with ResNet-18 also built with the report's own block."""
    from .models import count_parameters

    def row(label: str, ours: int, theirs: int) -> str:
        same = "same" if ours == theirs else f"{ours - theirs:+,}"
        return f"| {label} | {ours:,} | {theirs:,} | {same} |"

    lines = ["| network | ours | the report's | difference |", "|---|---|---|---|"]
    lines += [row(f"`{n}`", costs[n].parameters, r.parameters)
              for n, r in REPORT.items() if n in costs]
    block = build_as_recorded("resnet18", shortcut="reuse_conv1")
    lines.append(row("`resnet18`, the report's block", count_parameters(block),
                     REPORT["resnet18"].parameters))
    return "\n".join(lines)


def cost_figure(recorded: dict[str, list[RunResult]], costs: dict[str, Cost]) -> Figure:
    """Test accuracy against mult-adds and against parameters: each seed a
    small dot, the mean over seeds a large one (a bar of ± one standard
    deviation where there are several), the report's run a hollow square;
    one colour per model (``plots.model_colour``)."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullFormatter

    from .plots import model_colour

    fig = Figure(figsize=(10, 4.4), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, cost_of, xlabel in (
            (axes[0], lambda c: c.mult_adds, "mult-adds per 28x28 digit (log)"),
            (axes[1], lambda c: c.parameters, "parameters (log)")):
        for name, c in costs.items():
            x, colour, runs = cost_of(c), model_colour(name), recorded.get(name, [])
            if name in REPORT:
                ax.plot(x, REPORT[name].test_accuracy, "s", mfc="none", mec=colour, ms=9)
            if not runs:
                continue
            s = accuracy_spread(runs)
            ax.plot([x] * s.n, s.values, ".", color=colour, alpha=0.6)
            ax.errorbar(x, s.mean, yerr=s.std if s.n > 1 else None, fmt="o",
                        color=colour, capsize=3, ms=7)
            ax.annotate(f"{name} ({s.n} seed{'s' if s.n > 1 else ''})", (x, s.mean),
                        xytext=(7, -12), textcoords="offset points", fontsize=9,
                        color=colour)
        xs = [cost_of(c) for c in costs.values()]
        ax.set(xscale="log", xlabel=xlabel, xlim=(min(xs) / 2.5, max(xs) * 6))
        ax.xaxis.set_minor_formatter(NullFormatter())
    axes[0].set(ylabel="test accuracy (%)")
    values = [r.test_accuracy for r in REPORT.values()] + [
        v for runs in recorded.values() for v in accuracy_spread(runs).values]
    axes[0].set_ylim(min(values) - 0.5, 100)
    fig.legend(handles=[
        Line2D([], [], marker="o", ls="none", color="k",
               label="ours: mean over seeds (small dots: each seed; bar: ± 1 sd)"),
        Line2D([], [], marker="s", ls="none", mfc="none", mec="k", ms=9,
               label="the report's single run")], loc="outside lower center", ncols=2,
        fontsize=9)
    fig.patch.set_facecolor("white")
    return fig


def confounds_table(recorded: dict[str, list[RunResult]], costs: dict[str, Cost]) -> str:
    """Markdown: what besides the architecture differs between the rows:
    the image the net sees, its dropout and its shortcut, from each model as
    its record built it (``costs``: ``model_costs(recorded)``)."""
    from .models import DEFAULT_DROPOUT

    lines = ["| network | image inside the net | dropout | shortcut |", "|---|---|---|---|"]
    for name, cost in costs.items():
        runs = recorded.get(name)
        dropout = runs[0].config.get("dropout") if runs else None
        dropout = DEFAULT_DROPOUT[name] if dropout is None else dropout
        shortcut = getattr(build_as_recorded(name, runs), "shortcut_kind", None)
        px = cost.input_px
        lines.append(f"| `{name}` | {px} px" + (f" (28 px upsampled x{px // 28})"
                                                   if px > 28 else "")
                     + f" | {'none' if dropout is None else dropout} | {shortcut or ''} |")
    return "\n".join(lines)
