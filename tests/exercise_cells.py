"""Run what an exercise or solution notebook contains, for the checker tests."""
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def exercise_namespace(folder: str, notebook: str) -> dict:
    """Exec the notebook's first code cell (its imports) and its "exercise" cells.

    The names they define (the learner's answers) come back in a dict, so the
    tests test exactly what ``folder``/``notebook`` holds.
    """
    cells = [c for c in json.loads((ROOT / folder / notebook).read_text())["cells"]
             if c["cell_type"] == "code"]
    namespace: dict = {}
    for i, cell in enumerate(cells):
        if i == 0 or "exercise" in cell["metadata"].get("tags", []):
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
