"""exercises/ and solutions/ mirror each other, file by file and cell by cell.

Only cells tagged "exercise" (the TODO cells) may differ, and every
exercise cell must say TODO in the exercise and not in the solution.
"""
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
    assert len(EXERCISES) >= 7
    solutions = sorted(p.name for p in (ROOT / "solutions").glob("*.ipynb"))
    assert [p.name for p in EXERCISES] == solutions
    todo_cells = sum(1 for p in EXERCISES for c in cells(p)
                     if "exercise" in c["metadata"].get("tags", []))
    assert todo_cells >= 16


@pytest.mark.parametrize("path", EXERCISES, ids=lambda p: p.name)
def test_exercise_mirrors_solution(path):
    ours, theirs = cells(path), cells(ROOT / "solutions" / path.name)
    assert len(ours) == len(theirs), "the two notebooks have different cell counts"
    n_exercises = 0
    for i, (a, b) in enumerate(zip(ours, theirs)):
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
