"""Stored outputs are not older than the records they show.

nbval (``make test-slow``) re-executes every chapter and fails on any stored
output that no longer comes out; this quick check, in ``make test``, catches
the usual cause first: a record landed after a notebook that shows that
model's records was last executed. A notebook "shows" a model when the
model's name (``resnet18``, ``googlenet``, ...) appears as a word in its
stored code-cell outputs. That errs on the safe side: a page that names
ResNet-18 but shows only its experiments is flagged by a new full run too,
and re-executing it costs seconds.
"""
import json
import re
from datetime import datetime
from pathlib import Path

import pytest

from cnnlab.results import RESULTS_DIR

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p for folder in ("book", "exercises", "solutions")
                   for p in (ROOT / folder).glob("*.ipynb"))


def executed_at(nb: dict) -> datetime | None:
    """When the notebook's last execution started (its first cell's start)."""
    starts = [c["metadata"]["execution"]["iopub.execute_input"] for c in nb["cells"]
              if "iopub.execute_input" in c.get("metadata", {}).get("execution", {})]
    return min(datetime.fromisoformat(s.replace("Z", "+00:00")) for s in starts) if starts else None


def output_text(nb: dict) -> str:
    """Every stored text output of the code cells, joined."""
    parts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []) if cell["cell_type"] == "code" else []:
            parts += out.get("text", [])
            for kind in ("text/plain", "text/markdown", "text/html"):
                value = out.get("data", {}).get(kind, [])
                parts += [value] if isinstance(value, str) else value
    return "".join(parts)


def records() -> list[tuple[str, datetime, str]]:
    """(model, when it was written, file name) of every record in results/."""
    out = []
    for path in sorted((RESULTS_DIR / "runs").glob("*.json")) + sorted(
            (RESULTS_DIR / "experiments").glob("*.json")):
        record = json.loads(path.read_text())
        out.append((record["model"], datetime.fromisoformat(record["provenance"]["date"]),
                    f"{path.parent.name}/{path.name}"))
    return out


def stale_against(nb: dict, recs: list[tuple[str, datetime, str]]) -> list[str]:
    """The records that landed after ``nb`` last ran, of models its outputs show."""
    started, text = executed_at(nb), output_text(nb)
    if started is None:
        return []
    return [name for model, when, name in recs
            if when > started and re.search(rf"\b{re.escape(model)}\b", text)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_notebook_ran_after_every_record_of_the_models_it_shows(path):
    nb = json.loads(path.read_text())
    assert executed_at(nb) is not None, f"{path.name} has never been executed"
    stale = stale_against(nb, records())
    assert not stale, (f"{path.parent.name}/{path.name} last ran before {', '.join(stale)} "
                       f"landed: re-execute it on an idle CPU "
                       f"(cd {path.parent.name} && jupyter execute --inplace {path.name})")


def _notebook(started: str, output: str) -> dict:
    return {"cells": [{"cell_type": "code", "metadata": {"execution": {
        "iopub.execute_input": started}}, "outputs": [
        {"output_type": "execute_result", "data": {"text/markdown": [output]}}]}]}


def test_the_check_flags_a_later_record_of_a_shown_model_only():
    later = datetime.fromisoformat("2026-12-06T15:00:00+00:00")
    recs = [("resnet18", later, "runs/resnet18-cpu-seed44.json"),
            ("lenet", later, "runs/lenet-cpu-seed45.json")]
    nb = _notebook("2026-12-06T14:00:00Z", "| resnet18 | 98.69 |\n| mobilenet_v1 | 98.31 |")
    # resnet18 is shown; lenet is not (mobilenet_v1 contains the letters, not the word)
    assert stale_against(nb, recs) == ["runs/resnet18-cpu-seed44.json"]
    assert stale_against(_notebook("2026-12-06T16:00:00Z", "| resnet18 |"), recs) == []
