"""The chapters' small helpers in cnnlab.notebook."""
from cnnlab import notebook


def test_short_tracebacks_switches_ipython_to_plain_mode_silently(capsys):
    from IPython.testing.globalipapp import get_ipython

    shell = get_ipython()
    shell.InteractiveTB.set_mode(mode="Context")
    notebook.short_tracebacks()
    assert shell.InteractiveTB.mode == "Plain"
    assert capsys.readouterr().out == ""  # unlike %xmode, nothing printed


def test_short_tracebacks_outside_ipython_does_nothing(monkeypatch):
    import IPython

    monkeypatch.setattr(IPython, "get_ipython", lambda: None)
    notebook.short_tracebacks()  # no shell: no error


def test_short_commit_keeps_the_dirty_mark():
    """A run from uncommitted changes must not pass for the clean commit."""
    from cnnlab.results import short_commit

    sha = "0123456789abcdef0123456789abcdef01234567"
    assert short_commit(sha) == "0123456789ab"
    assert short_commit(sha + "+dirty") == "0123456789ab+dirty"
    assert short_commit(None) == "unknown commit"


def test_markdown_table_lines_up_header_separator_and_rows():
    table = notebook.markdown_table(["model", "parameters"], [["lenet", 44_426], ["x", 1]])
    assert table.data.splitlines() == ["| model | parameters |", "|---|---|",
                                       "| lenet | 44426 |", "| x | 1 |"]


def test_show_table_displays_the_same_table(monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    notebook.show_table(["a"], [[1]])
    assert [t.data for t in shown] == ["| a |\n|---|\n| 1 |"]
