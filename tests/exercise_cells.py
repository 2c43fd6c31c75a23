"""Run what an exercise or solution notebook contains, for the checker tests;
and, for the checker that reads records, the recorded full runs written out
(``RECORDS``, ``NET_COSTS``) and ``made_up_run`` to write out more."""
import json
from pathlib import Path

from cnnlab.costs import Cost
from cnnlab.exercises.comparison import made_up_run

ROOT = Path(__file__).resolve().parent.parent


def exercise_namespace(folder: str, notebook: str) -> dict:
    """Exec the notebook's import cells and its "exercise" cells.

    The import cells are the first code cell after the guard that says how to
    install cnnlab when it is missing (and the guard itself).

    The names they define (the learner's answers) come back in a dict, so the
    tests test exactly what ``folder``/``notebook`` holds.
    """
    cells = [c for c in json.loads((ROOT / folder / notebook).read_text())["cells"]
             if c["cell_type"] == "code"]
    imports = next(i for i, c in enumerate(cells)
                   if "_render_traceback_" not in "".join(c["source"]))
    namespace: dict = {}
    for i, cell in enumerate(cells):
        if i <= imports or "exercise" in cell["metadata"].get("tags", []):
            exec("".join(cell["source"]), namespace)
    return namespace


def rejected(check, *answer, capsys) -> str:
    """Assert that ``check`` rejects the answer with a ✗ line; return its message."""
    assert check(*answer) is False
    out = capsys.readouterr().out
    assert out.startswith("✗ "), out
    return out


def verdict(capsys) -> str:
    """The one line a checker printed (each check prints exactly one)."""
    out = capsys.readouterr().out
    assert out.count("\n") == 1, out
    return out


# The full runs of results/runs as findings.full_runs() returns them, rounded: each
# seed's validation accuracy after its last epoch, test accuracy, training seconds
# and machine; and costs.model_costs() for them (parameters, mult-adds per digit).
RECORDS = {name: [made_up_run(name, seed, [0.9, val], test, seconds, machine)
                  for seed, val, test, seconds, machine in runs]
           for name, runs in {
               "lenet": [(42, 0.9689, 0.9756, 24, "AMD EPYC"),
                         (43, 0.9626, 0.9689, 25, "AMD EPYC"),
                         (44, 0.9677, 0.9741, 24, "AMD EPYC")],
               "alexnet": [(42, 0.9912, 0.992, 3455, "Intel Xeon")],
               "resnet18": [(42, 0.9835, 0.9854, 1912, "Intel Xeon"),
                            (43, 0.991, 0.9923, 5677, "AMD EPYC"),
                            (44, 0.9824, 0.983, 12040, "AMD EPYC")],
               "mobilenet_v1": [(42, 0.9839, 0.9831, 4465, "Intel Xeon")],
               "googlenet": [(42, 0.9738, 0.9785, 3898, "Intel Xeon")]}.items()}
NET_COSTS = {"lenet": Cost(44_426, 286_334, 28), "alexnet": Cost(43_446_122, 318_785_546, 56),
             "alexnet_large": Cost(58_299_082, 1_060_000_000, 224),
             "resnet18": Cost(11_175_370, 124_173_706, 56),
             "mobilenet_v1": Cost(3_216_650, 42_052_106, 56),
             "googlenet": Cost(5_977_530, 79_887_290, 56)}
