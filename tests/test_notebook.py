"""The chapters' small helpers in cnnlab.notebook."""
import pytest

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
    from cnnlab.provenance import short_commit

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


def _fake_overlap(monkeypatch, by_all):
    """show_overlap/show_fooled_all on made-up predictions: no MNIST, no record."""
    import numpy as np

    from cnnlab import mistakes

    o = mistakes.Overlap({}, np.array(by_all, dtype=int), np.array([], dtype=int))
    monkeypatch.setattr(notebook, "_overlap",
                        lambda models: (["p1", "p2"], ["googlenet"], None, np.zeros(10), o))
    monkeypatch.setattr(mistakes, "overlap_text", lambda o, missing, n: "TEXT " + missing[0])
    monkeypatch.setattr(mistakes, "fooled_all_figure", lambda *a: "FIGURE")


def test_show_overlap_shows_the_text_and_show_fooled_all_only_the_figure(monkeypatch):
    """A cell whose figure has a caption must show that figure and nothing else;
    and neither returns a value for the cell to print."""
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    _fake_overlap(monkeypatch, [3, 7])
    assert notebook.show_overlap(["lenet", "googlenet"]) is None
    assert [getattr(s, "data", s) for s in shown] == ["TEXT googlenet"]
    shown.clear()
    assert notebook.show_fooled_all(["lenet", "googlenet"]) is None
    assert shown == ["FIGURE"]
    shown.clear()
    _fake_overlap(monkeypatch, [])  # no digit fools them all: no figure at all
    notebook.show_fooled_all(["lenet", "googlenet"])
    assert shown == []


@pytest.mark.parametrize("show", ["show_confusion", "show_misread"])
def test_no_predictions_is_a_printed_line_not_a_displayed_output(show, monkeypatch, capsys):
    # A captioned figure cell wraps every displayed output in its caption: the
    # line saying there is nothing to draw must not be one of them.
    import IPython.display

    from cnnlab import mistakes, notebook
    displayed = []
    monkeypatch.setattr(IPython.display, "display", lambda *a, **k: displayed.append(a))
    monkeypatch.setattr(mistakes, "recorded_predictions", lambda model, folder=None: None)
    assert getattr(notebook, show)("googlenet") is None
    assert displayed == []
    assert "No recorded run of googlenet keeps its test predictions" in capsys.readouterr().out


@pytest.mark.parametrize("seconds, text", [
    (4.2 * 3600, "4.2 h"), (3600, "1.0 h"),       # an hour or more: hours, one decimal
    (3599, "60 min"), (12 * 60, "12 min"), (60, "1 min"),  # a minute or more: minutes
    (59.4, "59 s"), (0.2, "0 s"),                  # under a minute: seconds
])
def test_duration_says_hours_minutes_or_seconds(seconds, text):
    assert notebook.duration(seconds) == text


def _fake_cpu(monkeypatch, threads, load=None, cores=2):
    import os

    import torch

    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    if load is None:
        monkeypatch.delattr(os, "getloadavg", raising=False)
    else:
        monkeypatch.setattr(os, "getloadavg", lambda: (load, 0.0, 0.0))


def test_machine_now_names_the_threads_and_the_load_of_a_cpu(monkeypatch):
    _fake_cpu(monkeypatch, threads=2, load=1.84)
    assert notebook.machine_now("cpu") == "cpu, 2 threads, load average 1.8 on 2 cores"
    _fake_cpu(monkeypatch, threads=1)  # a system without a load average (Windows)
    assert notebook.machine_now("cpu") == "cpu, 1 thread"


def test_machine_now_names_the_gpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "NVIDIA H100")
    assert notebook.machine_now("cuda") == "cuda, NVIDIA H100"


def test_run_length_text_is_this_machines_figure_now(monkeypatch):
    """The projected length is worded as a figure of this machine at this moment."""
    _fake_cpu(monkeypatch, threads=2, load=1.84)
    seconds = 1875 * 6.74 + 704 * 3.56  # the steps and evaluation batches of a run
    first, second = notebook.run_length_text(seconds, "cpu").splitlines()
    assert first == ("= about 4.2 h on this machine, now "
                     "(cpu, 2 threads, load average 1.8 on 2 cores).")
    assert "this machine at this moment" in second and "slow" in second


def test_oom_text_gives_one_line_per_case():
    gib = 2**30
    record = {"model": "alexnet_large",
              "provenance": {"device": "cpu", "date": "2026-11-29T10:00:00+00:00"},
              "cases": [{"batch_size": 128, "cap_bytes": 2 * gib,
                         "estimate": {"total": 1.5 * gib}, "outcome": "trained two steps"},
                        {"batch_size": 512, "cap_bytes": gib // 2,
                         "estimate": {"total": 3 * gib}, "outcome": "failed"}]}
    assert notebook.oom_text(record).splitlines() == [
        "alexnet_large, two training steps under a memory cap (cpu, recorded 2026-11-29):",
        "  batch 128 within 2 GiB (estimate 1.50 GiB): trained two steps",
        "  batch 512 within 0.5 GiB (estimate 3.00 GiB): failed"]
    assert "not recorded yet" in notebook.oom_text(None)
