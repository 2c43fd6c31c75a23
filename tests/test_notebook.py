"""The chapters' helper that says where a page's full-run numbers come from."""
from cnnlab import notebook


def test_recorded_says_plainly_when_nothing_is_recorded(monkeypatch, capsys):
    monkeypatch.setattr(notebook, "recorded_runs", lambda model: [])
    assert notebook.recorded("alexnet") is None
    assert "from the live run above only" in capsys.readouterr().out


def test_recorded_does_not_point_to_a_live_run_that_is_not_there(monkeypatch, capsys):
    """alexnet_large is not trained on its page: no 'live run above' to point to."""
    monkeypatch.setattr(notebook, "recorded_runs", lambda model: [])
    notebook.recorded("alexnet_large", trained_live=False)
    out = capsys.readouterr().out
    assert "No full run of alexnet_large" in out
    assert "live run" not in out


def test_recorded_prints_the_provenance_of_a_recorded_run(capsys):
    """results/runs holds a full LeNet run on CPU (committed with the code)."""
    run = notebook.recorded("lenet")
    out = capsys.readouterr().out
    assert run is not None and run.model == "lenet"
    assert f"test accuracy {100 * run.test_accuracy:.2f}%" in out
    assert run.provenance["device_name"] in out


def test_short_commit_keeps_the_dirty_mark():
    """A run from uncommitted changes must not pass for the clean commit."""
    from cnnlab.results import short_commit

    sha = "0123456789abcdef0123456789abcdef01234567"
    assert short_commit(sha) == "0123456789ab"
    assert short_commit(sha + "+dirty") == "0123456789ab+dirty"
    assert short_commit(None) == "unknown commit"
