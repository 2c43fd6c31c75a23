"""Every notebook says in one line how to install cnnlab when it is missing."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p for folder in ("book", "exercises", "solutions")
                   for p in (ROOT / folder).glob("*.ipynb"))


def first_code_cell(notebook: Path) -> dict:
    cells = json.loads(notebook.read_text())["cells"]
    return next(c for c in cells if c["cell_type"] == "code")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_guard_runs_before_any_import_of_cnnlab(notebook):
    cell = first_code_cell(notebook)
    assert "_render_traceback_" in "".join(cell["source"])
    assert "remove-cell" in cell["metadata"].get("tags", [])  # plumbing, not for the reader


@pytest.mark.parametrize("notebook", NOTEBOOKS[:1] + NOTEBOOKS[-1:],
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_without_cnnlab_the_guard_gives_one_line_that_says_how_to_install(notebook, monkeypatch):
    monkeypatch.setitem(sys.modules, "cnnlab", None)  # import cnnlab now fails
    with pytest.raises(ModuleNotFoundError) as missing:
        exec("".join(first_code_cell(notebook)["source"]), {})
    lines = missing.value._render_traceback_()  # what IPython prints instead of a traceback
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "pip install -r requirements.txt -e ." in lines[0]
    assert "Setting up" in lines[0]


def test_with_cnnlab_the_guard_is_silent(capsys):
    exec("".join(first_code_cell(NOTEBOOKS[0])["source"]), {})
    assert capsys.readouterr() == ("", "")
