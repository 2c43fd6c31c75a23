"""Every registered exercise checker, run on what its notebooks hold.

``cnnlab.exercises.CHECKERS`` lists every checker (each chapter module
registers its own with ``@checker``). For each one: the solution notebook's
answers pass, the exercise notebook's stubs are "not done yet", and so is a
``None`` answer; and the exercise notebook imports the checker and calls it
with the answers the registry names, in that order, so that no checker is
registered and forgotten. A checker's own wrong-answer tests live in its
chapter's test file.
"""
import ast
import importlib
import inspect
import json
import pkgutil
from functools import cache

import pytest
from exercise_cells import NET_COSTS, RECORDS, ROOT, exercise_namespace, verdict

import cnnlab.exercises
from cnnlab.exercises import CHECKERS, Registered

# Import every chapter module: each registers its checkers as it is imported.
for _module in pkgutil.iter_modules(cnnlab.exercises.__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"cnnlab.exercises.{_module.name}")

# Inputs that the notebook's own cells record before the check cell (a training
# run, the records the notebook reads), written out here so that no test trains
# for them or reads results/.
# Runs as the training cell returns them: two seeds per arm, 30 losses each;
# window means (steps 11-30) plain 0.61, 0.73, residual 0.47, 0.51.
RUNS = {"plain": [[1.8] * 10 + [0.61] * 20, [1.8] * 10 + [0.73] * 20],
        "residual": [[1.2] * 10 + [0.47] * 20, [1.3] * 10 + [0.51] * 20]}
VAL_LOSSES = [2.21, 1.99, 1.57, 1.03, 0.76, 0.69, 0.67, 0.56, 0.58, 0.53,
              0.48, 0.48, 0.45, 0.46, 0.47, 0.46, 0.47, 0.45, 0.47, 0.45]
# RECORDS, NET_COSTS: the full runs of results/runs and their costs, written out
# (tests/exercise_cells.py).
RECORDED = {"plain_vs_residual": (RUNS,), "early_stop": (VAL_LOSSES,),
            "pareto_front": (RECORDS, NET_COSTS)}

# Checkers whose solution trains for minutes on a CPU, and chapter 10's two
# (running its solution notebook's cells trains for 40 s, and
# test_exercises_design.py already passes both solutions in the quick suite):
# run with the slow tests (`make test-slow`).
SLOW = {"LeNet to 98.5% in 2 epochs", "Bottleneck block", "Width 0.5 against width 1.0"}


def entries(slow_marked: bool) -> list:
    return [pytest.param(entry, id=name,
                         marks=[pytest.mark.slow] if slow_marked and name in SLOW else [])
            for name, entry in CHECKERS.items()]


@cache
def namespace(folder: str, notebook: str) -> dict:
    return exercise_namespace(folder, notebook)


def answers_in(folder: str, entry: Registered) -> list:
    defined = namespace(folder, entry.notebook)
    missing = [a for a in entry.answers if a not in defined]
    assert not missing, f"{folder}/{entry.notebook} defines no {missing} in its exercise cells"
    return [defined[a] for a in entry.answers]


@pytest.mark.parametrize("entry", entries(slow_marked=True))
def test_the_solution_passes(entry, capsys):
    args = answers_in("solutions", entry) + list(RECORDED.get(entry.name, ()))
    capsys.readouterr()  # what the notebook's cells printed as they ran
    assert entry.function(*args) is True
    assert verdict(capsys) == f"✓ {entry.name}: passed\n"


@pytest.mark.parametrize("entry", entries(slow_marked=False))
def test_the_stub_is_not_done_yet(entry, capsys):
    args = answers_in("exercises", entry) + list(RECORDED.get(entry.name, ()))
    capsys.readouterr()  # what the notebook's cells printed as they ran
    assert entry.function(*args) is False
    assert verdict(capsys).startswith(f"… {entry.name}: not done yet")


@pytest.mark.parametrize("entry", entries(slow_marked=False))
def test_none_is_not_done_yet(entry, capsys):
    args = [None] * len(entry.answers) + list(RECORDED.get(entry.name, ()))
    assert entry.function(*args) is False
    assert verdict(capsys).startswith(f"… {entry.name}: not done yet")


@pytest.mark.parametrize("entry", entries(slow_marked=False))
def test_the_recorded_inputs_here_are_what_the_checker_takes(entry):
    # The check's parameters: the answers, then what the notebook recorded.
    params = list(inspect.signature(entry.function.__wrapped__).parameters)
    assert len(params) == len(entry.answers) + len(RECORDED.get(entry.name, ())), params


def calls_and_imports(notebook: str) -> tuple[list[ast.Call], dict[str, str]]:
    """The calls the exercise notebook's code cells make, and what it imports
    from where (name -> module)."""
    cells = json.loads((ROOT / "exercises" / notebook).read_text())["cells"]
    calls, imported = [], {}
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        # IPython's magics and shell lines are not Python: leave them out.
        lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
        tree = ast.parse("\n".join(lines))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                calls.append(node)
            elif isinstance(node, ast.ImportFrom):
                imported.update({alias.asname or alias.name: node.module
                                 for alias in node.names})
    return calls, imported


@pytest.mark.parametrize("entry", entries(slow_marked=False))
def test_the_exercise_notebook_calls_its_checker_with_its_answers(entry):
    name = entry.function.__name__
    calls, imported = calls_and_imports(entry.notebook)
    assert imported.get(name) == entry.function.__module__, \
        f"exercises/{entry.notebook} does not import {name} from {entry.function.__module__}"
    mine = [c for c in calls if c.func.id == name]
    assert mine, f"exercises/{entry.notebook} never calls {name}"
    for call in mine:
        passed = [a.id if isinstance(a, ast.Name) else ast.unparse(a) for a in call.args]
        assert passed[:len(entry.answers)] == list(entry.answers), \
            f"{name} is called with {passed}; the registry names {list(entry.answers)}"
        assert len(passed) == len(entry.answers) + len(RECORDED.get(entry.name, ()))


def test_every_checker_module_names_notebooks_that_exist():
    notebooks = {entry.notebook for entry in CHECKERS.values()}
    for notebook in notebooks:
        assert (ROOT / "exercises" / notebook).is_file(), notebook
        assert (ROOT / "solutions" / notebook).is_file(), notebook


def test_a_checker_cannot_be_registered_twice():
    from cnnlab.exercises import checker

    with pytest.raises(ValueError, match="two checkers"):
        checker(next(iter(CHECKERS)), answers="x")(lambda x: None)


def test_every_slow_marked_checker_is_registered():
    # A name misspelt in SLOW would leave its checker's solution in the quick suite.
    assert SLOW <= set(CHECKERS), SLOW - set(CHECKERS)
