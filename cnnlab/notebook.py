"""Small helpers the book's chapters use to show things honestly."""
from __future__ import annotations

import inspect

from .results import RunResult, provenance_line, recorded_runs


def show_source(obj) -> "object":
    """The package's own source of ``obj``, highlighted (what the chapter imports)."""
    from IPython.display import Code

    return Code(inspect.getsource(obj), language="python")


def recorded(model: str, trained_live: bool = True) -> RunResult | None:
    """Print where the recorded full run of ``model`` comes from; return it.

    Says so plainly when no full run is recorded. ``trained_live`` says
    whether the page trained ``model`` itself, so the message can say
    where (if anywhere) the page's numbers for it come from.
    """
    runs = recorded_runs(model)
    if not runs:
        where = ("the numbers for it on this page come from the live run above only."
                 if trained_live else
                 "this page does not train it, so it shows no accuracy for it.")
        print(f"No full run of {model} is recorded in results/runs yet: {where}")
        return None
    for r in runs:
        print(provenance_line(r))
        print(f"  test accuracy {100 * r.test_accuracy:.2f}%, {r.train_seconds:.1f} s "
              f"of training, {r.images_per_second:,.0f} images/s")
    return runs[0]


def show_recorded(model: str) -> RunResult | None:
    """Show the recorded full run(s) of ``model``: the table beside the
    report's row, provenance, and the learning curves. Returns the first run.
    """
    from IPython.display import Markdown, display

    from .records import curves_figure, device_runs, run_summary

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

    from .records import (experiment_arms, experiment_figure, experiment_table,
                          experiment_title, verdict)

    arms = experiment_arms(name)
    display(Markdown(experiment_table(arms)))
    if any(a.runs for a in arms):
        display(experiment_figure(arms, title=experiment_title(name)))
    display(Markdown(verdict(arms)))
    return arms
