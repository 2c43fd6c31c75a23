"""Small helpers the book's chapters use to show things honestly."""
from __future__ import annotations

import inspect

from .results import RunResult, provenance_line, recorded_runs


def show_source(obj) -> "object":
    """The package's own source of ``obj``, highlighted (what the chapter imports)."""
    from IPython.display import Code

    return Code(inspect.getsource(obj), language="python")


def recorded(model: str) -> RunResult | None:
    """Print where the recorded full run of ``model`` comes from; return it.

    Says so plainly when no full run is recorded.
    """
    runs = recorded_runs(model)
    if not runs:
        print(f"No full run of {model} is recorded in results/runs yet: the numbers "
              f"for it on this page come from the live run above only.")
        return None
    for r in runs:
        print(provenance_line(r))
        print(f"  test accuracy {100 * r.test_accuracy:.2f}%, {r.train_seconds:.1f} s "
              f"of training, {r.images_per_second:,.0f} images/s")
    return runs[0]
