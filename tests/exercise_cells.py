"""Run what an exercise or solution notebook contains, for the checker tests."""
import json
from pathlib import Path

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
