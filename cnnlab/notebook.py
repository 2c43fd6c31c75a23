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
