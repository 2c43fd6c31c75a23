"""Small helpers the book's chapters use to show things honestly."""
from __future__ import annotations

import inspect
import os

from .results import RunResult


def show_source(obj) -> "object":
    """The package's own source of ``obj``, highlighted (what the chapter imports)."""
    from IPython.display import Code

    return Code(inspect.getsource(obj), language="python")


def markdown_table(header: list[str], rows: list[list[object]]) -> "object":
    """A Markdown table (IPython's Markdown object) from a header and rows of cells."""
    from IPython.display import Markdown

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return Markdown("\n".join(lines))


def show_table(header: list[str], rows: list[list[object]]) -> None:
    """Display ``markdown_table(header, rows)`` (for a table that is not a cell's last line)."""
    from IPython.display import display

    display(markdown_table(header, rows))


def short_tracebacks() -> None:
    """Print errors compactly from now on: each call as two lines (where, and
    the line it ran), with no source context around them.

    The chapters reproduce real errors on purpose; IPython's default
    traceback shows several lines of source around every frame, which buries
    the one line that matters. Same as ``%xmode Plain``, without its printout.
    """
    from IPython import get_ipython

    shell = get_ipython()
    if shell is not None:  # outside IPython there is nothing to change
        shell.InteractiveTB.set_mode(mode="Plain")


def show_recorded(model: str) -> RunResult | None:
    """Show the recorded full run(s) of ``model``: the table beside the
    report's row, provenance, and the learning curves. Returns the first run.
    """
    from IPython.display import Markdown, display

    from .findings import curves_figure, device_runs, run_summary

    display(Markdown(run_summary(model)))
    runs = device_runs(model)
    if not runs:
        return None
    display(curves_figure(runs, title=f"{model}: the recorded full run"
                          + ("s" if len(runs) > 1 else "")))
    return runs[0]


def show_experiment(name: str):
    """Show an experiment: its table, its curves and what its seeds say."""
    from IPython.display import Markdown, display

    from .experiments import experiment_arms, experiment_figure, experiment_table, experiment_title, verdict

    arms = experiment_arms(name)
    display(Markdown(experiment_table(arms)))
    if any(a.runs for a in arms):
        display(experiment_figure(arms, title=experiment_title(name)))
    display(Markdown(verdict(arms)))
    return arms


def _no_predictions(model: str) -> None:
    # Printed, not displayed: a cell whose figure has a caption wraps every
    # displayed output in it, and this line is not the figure.
    print(f"No recorded run of {model} keeps its test predictions yet; its runs still "
          f"to be recorded will (python -m cnnlab record status lists them).")


def show_confusion(model: str) -> None:
    """Display the confusion matrix of ``model``'s recorded run (from its
    stored predictions), or a line saying no record keeps them yet.
    Returns nothing, so the cell shows only the figure."""
    from IPython.display import display

    from .mistakes import recorded_confusion_figure

    fig = recorded_confusion_figure(model)
    if fig is None:
        _no_predictions(model)
    else:
        display(fig)


def show_misread(model: str, n: int = 30) -> None:
    """Display the first ``n`` test digits ``model``'s recorded run misreads."""
    from IPython.display import display

    from .mistakes import recorded_misread_figure

    fig = recorded_misread_figure(model, n)
    if fig is None:
        _no_predictions(model)
    else:
        display(fig)


def _overlap(models: list[str]):
    """The recorded predictions of ``models`` that keep them, the names that do
    not, the test digits and labels, and their overlap (None below two)."""
    from .mistakes import overlap, recorded_predictions, test_digits

    images, labels = test_digits()
    found = [p for m in models if (p := recorded_predictions(m)) is not None]
    missing = [m for m in models if m not in {p.model for p in found}]
    return found, missing, images, labels, (overlap(found, labels) if len(found) >= 2
                                            else None)


def show_overlap(models: list[str]) -> None:
    """Display how many test digits each of ``models`` gets wrong, how many
    fool them all, and a majority vote against the best (``show_fooled_all``
    draws those digits). Returns nothing, so the cell shows only the table."""
    from IPython.display import Markdown, display

    from .mistakes import overlap, overlap_text

    found, missing, _, labels, o = _overlap(models)
    if o is None:
        display(Markdown(overlap_text(overlap(found, labels), missing, len(labels))
                         if found else "No record keeps its predictions yet."))
        return
    display(Markdown(overlap_text(o, missing, len(labels))))


def show_fooled_all(models: list[str]) -> None:
    """Display the test digits that every one of ``models`` gets wrong, with
    each network's answer: one figure and nothing else (a cell that captions
    its figure), or nothing when fewer than two records keep predictions or
    no digit fools them all."""
    from IPython.display import display

    from .mistakes import fooled_all_figure

    found, _, images, labels, o = _overlap(models)
    if o is not None and len(o.by_all):
        display(fooled_all_figure(o, found, images, labels))


def duration(seconds: float) -> str:
    """A length of time as a reader says it: '4.2 h', '12 min' or '45 s'."""
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def machine_now(device: "torch.device | str") -> str:
    """What a timing taken just now depends on: the device, and on a CPU the
    threads PyTorch uses and the load average (where the system reports one)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return f"{device.type}, {torch.cuda.get_device_name(device)}"
    threads = torch.get_num_threads()
    text = f"{device.type}, {threads} thread{'s' if threads != 1 else ''}"
    if hasattr(os, "getloadavg"):
        text += f", load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    return text


def run_length_text(seconds: float, device: "torch.device | str") -> str:
    """The projected length of a run, worded as what it is: this machine's
    figure at this moment, not a property of the network."""
    return (f"= about {duration(seconds)} on this machine, now "
            f"({machine_now(device)}).\nA figure of this machine at this moment: "
            f"any other program running at the same time slows each step down.")


def oom_text(record: dict | None) -> str:
    """The recorded out-of-memory experiment (``cnnlab.memory_tables.oom_record``)
    in a few lines: each case's batch, cap, estimate and outcome."""
    if record is None:
        return ("The out-of-memory experiment is not recorded yet "
                "(python -m cnnlab record oom records it).")
    where = record["provenance"]
    lines = [f"{record['model']}, two training steps under a memory cap "
             f"({where['device']}, recorded {where['date'][:10]}):"]
    lines += [f"  batch {c['batch_size']:>3} within {c['cap_bytes'] / 2**30:g} GiB "
              f"(estimate {c['estimate']['total'] / 2**30:.2f} GiB): {c['outcome']}"
              for c in record["cases"]]
    return "\n".join(lines)
