"""The pages show what is recorded: each chapter draws its record, quotes are exact."""
import json
import re
from pathlib import Path

import pytest

from cnnlab.results import RESULTS_DIR

BOOK = Path(__file__).resolve().parent.parent / "book"
CHAPTERS = {"lenet": "02_lenet", "alexnet": "03_alexnet", "resnet18": "04_resnet",
            "mobilenet_v1": "05_mobilenet", "googlenet": "06_googlenet"}


def code_cells(notebook: str) -> list[dict]:
    nb = json.loads((BOOK / f"{notebook}.ipynb").read_text())
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("model", CHAPTERS)
def test_every_architecture_page_shows_its_recorded_run(model):
    # show_recorded draws the table and the curves in one cell; a page that
    # captions the figure draws it in a cell of its own, from device_runs.
    calls = (f'show_recorded("{model}")', f'device_runs("{model}")')
    cells = [c for c in code_cells(CHAPTERS[model])
             if any(call in "".join(c["source"]) for call in calls)]
    assert cells, f"{CHAPTERS[model]} shows no recorded run of {model!r} (show_recorded)"
    recorded = (RESULTS_DIR / "runs" / f"{model}-cpu-seed42.json").exists()
    outputs = [o for c in cells for o in c["outputs"]]
    # A figure shown, or glued for a captioned {glue:figure} (MyST-NB's key).
    has_figure = any(key in o.get("data", {}) for o in outputs
                     for key in ("image/png", "application/papermill.record/image/png"))
    # The stored page must match the records: a figure exactly when there is one.
    assert has_figure == recorded, (
        f"{CHAPTERS[model]}: stored outputs are stale against results/runs; "
        f"re-execute it (make notebooks)")


def page_lines() -> list[str]:
    return (BOOK / "09_troubleshooting.md").read_text().splitlines()


def _wrapped(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def test_troubleshooting_quotes_the_recorded_out_of_memory_error():
    record = json.loads((RESULTS_DIR / "experiments" / "oom-alexnet_large-cpu.json")
                        .read_text())
    page = _wrapped((BOOK / "09_troubleshooting.md").read_text())
    errors = [c["error"] for c in record["cases"] if c["error"]]
    assert errors, "the record holds no failed case to quote"
    for error in errors:
        # The page may wrap the message across lines, not change it.
        assert _wrapped(error) in page, f"09_troubleshooting.md does not quote {error!r}"
    for case in record["cases"]:
        assert f"{case['estimate']['total'] / 2**30:.2f}" in page
    # Each case's row gives the recorded outcome and the prediction.
    for case in record["cases"]:
        cap = f"{case['cap_bytes'] / 2**30:g} GiB"
        estimate = f"{case['estimate']['total'] / 2**30:.2f} GiB"
        rows = [line for line in page_lines() if line.startswith(f"| {cap} | "
                f"{case['batch_size']} | {estimate} |")]
        assert len(rows) == 1, f"no single table row for {cap}, batch {case['batch_size']}"
        fits = case["estimate"]["total"] <= case["cap_bytes"]
        assert ("| fits |" if fits else "| does not fit |") in rows[0]
        assert ("trained two steps" if case["error"] is None else "failed") in rows[0]
    # ... and names the recording it quotes.
    prov = record["provenance"]
    assert prov["date"][:10] in page and prov["git_commit"][:12] in page


SEED_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}


def test_the_typed_28_against_56_px_numbers_are_the_records():
    """intro.md and 09_troubleshooting.md are not executed, so the numbers
    they type about the input-size experiment are checked here against the
    records: a seed that lands changes the means, and the pages must follow."""
    from cnnlab.experiments import experiment_arms

    small, large = experiment_arms("input_size")
    s, l = small.spread, large.spread
    page = _wrapped((BOOK / "09_troubleshooting.md").read_text())
    assert (f"{s.mean:.2f} ± {s.std:.2f}% at 28 px against {l.mean:.2f} ± {l.std:.2f}% "
            f"at 56 px") in page, "09_troubleshooting.md: the 28 px against 56 px numbers"
    intro = _wrapped((BOOK / "intro.md").read_text())
    n, planned = min(s.n, l.n), small.planned
    seeds = (f"all {SEED_WORDS[planned]} planned seeds" if n == planned
             else f"the first {SEED_WORDS[n]} of the {SEED_WORDS[planned]} planned seeds")
    for name, text in (("intro.md", intro), ("09_troubleshooting.md", page)):
        assert seeds in text, f"{name} must say '{seeds}' (the records hold {n})"
    assert (f"a gap of {abs(l.mean - s.mean):.2f} points against a spread of up to "
            f"{max(s.std, l.std):.2f}") in intro, "intro.md: the gap and the spread"


def test_the_retrace_sentence_of_04b_is_the_stored_measurement():
    """04b says what benchmarks/retrace.py measured; the measurement is kept
    in results/benchmarks, and the sentence must match it."""
    cell = next("".join(c["source"]) for c in json.loads(
        (BOOK / "04b_resnet_experiments.ipynb").read_text())["cells"]
        if "benchmarks/retrace.py" in "".join(c["source"]))
    [name] = re.findall(r"results/benchmarks/(retrace-\w+\.json)", cell)
    measured = json.loads((RESULTS_DIR / "benchmarks" / name).read_text())["retraces"]
    assert len(measured) == 2 and "two of the older records" in cell
    for m in measured:
        assert f"{m['first_loss_record']:.6f}" == f"{m['first_loss_here']:.6f}"  # "to six digits"
        assert m["identical_twice_here"]                  # "identical to the last digit"
    assert f"{max(m['largest_gap'] for m in measured):.2f}" == "0.04"  # "up to 0.04"
