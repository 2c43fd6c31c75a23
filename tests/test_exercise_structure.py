"""exercises/ and solutions/ mirror each other, file by file and cell by cell,
and every notebook calls its checks the same way.

Only cells tagged "exercise" (the TODO cells) may differ, and every
exercise cell must say TODO in the exercise and not in the solution. The
solutions add two things of their own: a header (the first cell, which
says what the notebook is) and, after every solved exercise, a Markdown
cell tagged "solution-note" that explains why the solution works.
"""
import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXERCISES = sorted((ROOT / "exercises").glob("*.ipynb"))


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def source(cell: dict) -> str:
    return "".join(cell["source"])


def test_there_are_exercises_for_every_chapter_and_enough_of_them():
    # Floors, so that adding an exercise needs no edit here, but at today's
    # counts: 10 notebooks (a chapter's each, and the design notebook) hold 36
    # checks (README), and each holds some.
    assert len(EXERCISES) >= 10
    solutions = sorted(p.name for p in (ROOT / "solutions").glob("*.ipynb"))
    assert [p.name for p in EXERCISES] == solutions
    per_notebook = {p.name: sum(1 for c in cells(p)
                                if "exercise" in c["metadata"].get("tags", []))
                    for p in EXERCISES}
    assert all(per_notebook.values()), per_notebook
    assert sum(per_notebook.values()) >= 36


NOTE = "solution-note"


def is_note(cell: dict) -> bool:
    return NOTE in cell["metadata"].get("tags", [])


@pytest.mark.parametrize("path", EXERCISES, ids=lambda p: p.name)
def test_exercise_mirrors_solution(path):
    ours = cells(path)
    theirs = [c for c in cells(ROOT / "solutions" / path.name) if not is_note(c)]
    assert not any(is_note(c) for c in ours), "explanations belong in the solutions only"
    assert len(ours) == len(theirs), "the two notebooks have different cell counts"
    n_exercises = 0
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if i == 0:  # each notebook's own header
            assert source(a).startswith("# Exercises:"), "cell 0: the exercises' header"
            assert source(b).startswith("# Solutions:"), "cell 0: the solutions' own header"
            continue
        tags_a, tags_b = a["metadata"].get("tags", []), b["metadata"].get("tags", [])
        assert a["cell_type"] == b["cell_type"], f"cell {i}: different types"
        assert ("exercise" in tags_a) == ("exercise" in tags_b), f"cell {i}: tags differ"
        if "exercise" in tags_a:
            n_exercises += 1
            assert "TODO" in source(a), f"cell {i}: an exercise cell without a TODO"
            assert "TODO" not in source(b), f"cell {i}: the solution still has a TODO"
            assert "raise NotImplementedError" not in source(b), f"cell {i}: solution is a stub"
        else:
            assert source(a) == source(b), f"cell {i} differs outside the TODO cells"
    assert n_exercises >= 2, "each chapter has at least two exercises"


@pytest.mark.parametrize("path", EXERCISES, ids=lambda p: p.name)
def test_every_solution_explains_why_it_works(path):
    solution = cells(ROOT / "solutions" / path.name)
    for i, cell in enumerate(solution):
        if "exercise" not in cell["metadata"].get("tags", []):
            continue
        # the solved cell, its check cell, then the explanation
        after = solution[i + 1:i + 3]
        notes = [c for c in after if is_note(c)]
        assert notes, f"cell {i}: no explanation (a 'solution-note' cell) after the solution"
        text = source(notes[0])
        # 40 words: a chosen floor, about three sentences; a bare "see above" fails.
        assert notes[0]["cell_type"] == "markdown" and len(text.split()) >= 40, \
            f"cell {i}: the explanation is too short to explain anything"


def check_calls(cell: dict) -> tuple[list[ast.Call], list[ast.Call]]:
    """The cell's calls of a check_* function, and those of them that are a whole
    statement of the form `passed = check_...(...)`."""
    # IPython's magics and shell lines are not Python: leave them out.
    lines = [line for line in source(cell).splitlines()
             if not line.lstrip().startswith(("%", "!"))]
    tree = ast.parse("\n".join(lines))
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
             and isinstance(node.func, ast.Name) and node.func.id.startswith("check_")]
    assigned = [node.value for node in tree.body if isinstance(node, ast.Assign)
                and [ast.unparse(t) for t in node.targets] == ["passed"]
                and isinstance(node.value, ast.Call) and node.value in calls]
    return calls, assigned


@pytest.mark.parametrize("path", EXERCISES, ids=lambda p: p.name)
def test_every_check_sets_passed(path):
    # One convention in every notebook, the one its introduction announces and
    # that later cells read (exercise 7's): `passed = check_...(...)`.
    assert "sets `passed` to `True` or `False`" in source(cells(path)[0]), \
        "the introduction does not say that the check sets `passed`"
    n_checks = 0
    for folder in ("exercises", "solutions"):
        for i, cell in enumerate(cells(ROOT / folder / path.name)):
            if cell["cell_type"] != "code":
                continue
            calls, assigned = check_calls(cell)
            assert len(calls) == len(assigned), \
                f"{folder}/{path.name}, cell {i}: write each check as `passed = check_...(...)`"
            n_checks += len(calls)
    assert n_checks, "no check is called"
