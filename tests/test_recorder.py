"""The recorder: what it trains, what it saves, and what it refuses."""
import base64

import pytest

from cnnlab import recorder as record
from cnnlab.__main__ import main
from cnnlab.plan import plan


def test_a_dirty_checkout_is_refused(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(record, "git_commit", lambda: "abc+dirty")
    monkeypatch.setattr(record, "CACHE", tmp_path)
    assert main(["record", "run"]) == 2
    err = capsys.readouterr().err
    assert "uncommitted changes" in err and err.count("\n") == 1


def _record_of(p, predictions=True):
    """A well-formed record of the planned run ``p`` (made up, not trained)."""
    from dataclasses import asdict

    from cnnlab.results import RunResult

    return RunResult(
        model=p.config.model, parameters=1, config=asdict(p.config), steps_per_epoch=2,
        train_loss=[1.0, 0.5], val_step=[2], val_accuracy=[0.5], val_loss=[1.0],
        epoch_val_accuracy=[0.5], epoch_val_loss=[1.0], test_accuracy=0.5, test_loss=1.0,
        train_seconds=1.0, images_per_second=1.0, peak_memory_bytes=None,
        peak_memory_kind="none",
        test_predictions=base64.b64encode(bytes(10_000)).decode() if predictions else None)


def test_recorded_runs_are_skipped(monkeypatch, tmp_path):
    monkeypatch.setattr(record, "git_commit", lambda: "abc")
    for p in plan():
        _record_of(p).save(p.path("cpu", tmp_path))
    monkeypatch.setattr("cnnlab.train.train", lambda *a, **k: pytest.fail("trained"))
    assert record.run_missing(root=tmp_path, checkpoints=tmp_path / "ck") == 0
    assert {state for _, state in record.status(tmp_path)} == {"done"}


def test_status_loads_each_record_and_says_why_one_does_not_count(tmp_path):
    lenet, resnet = plan()[0], next(p for p in plan() if p.config.model == "resnet18")
    assert lenet.needs_predictions and not resnet.needs_predictions
    _record_of(lenet, predictions=False).save(lenet.path("cpu", tmp_path))
    assert record.record_state(lenet, "cpu", tmp_path).startswith("to re-record")
    # Legacy records of the slow networks count without predictions.
    _record_of(resnet, predictions=False).save(resnet.path("cpu", tmp_path))
    assert record.record_state(resnet, "cpu", tmp_path) == "done"
    # A truncated file is not done.
    path = resnet.path("cpu", tmp_path)
    path.write_text(path.read_text()[:100])
    assert record.record_state(resnet, "cpu", tmp_path).startswith("unreadable")
    # Another seed's record copied to this path is not this run.
    other = _record_of(lenet)
    other.save(path)
    assert "model is 'lenet'" in record.record_state(resnet, "cpu", tmp_path)


def test_a_record_in_the_way_stops_the_recorder_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(record, "git_commit", lambda: "abc")
    first = plan()[0]
    first.path("cpu", tmp_path).parent.mkdir(parents=True)
    first.path("cpu", tmp_path).write_text('{"hello": 1}')
    with pytest.raises(record.ProvenanceChanged, match="in the way"):
        record.run_missing(root=tmp_path, checkpoints=tmp_path / "ck")


def test_a_missing_run_is_trained_recorded_with_its_command_and_its_checkpoint_removed(
        monkeypatch, tmp_path):
    from cnnlab.plan import Planned
    from cnnlab.results import RunResult
    from cnnlab.train import TrainConfig

    tiny = Planned(TrainConfig(model="lenet", epochs=1, max_steps=3, eval_every=3,
                               val_images=50, test_images=50, device="cpu"), "runs")
    monkeypatch.setattr(record, "plan", lambda: [tiny])
    monkeypatch.setattr(record, "git_commit", lambda: "abc")
    assert record.run_missing(root=tmp_path, checkpoints=tmp_path / "ck") == 1
    result = RunResult.load(tiny.path("cpu", tmp_path))
    assert result.provenance["command"] == tiny.command()
    assert len(result.train_loss) == tiny.config.max_steps  # one loss per step
    assert not list((tmp_path / "ck").glob("*.pt"))
    assert record.run_missing(root=tmp_path, checkpoints=tmp_path / "ck") == 0


TINY = dict(model="lenet", epochs=1, max_steps=3, eval_every=3, val_images=50,
            test_images=200, device="cpu")


def test_a_record_keeps_its_predictions_and_weights_and_they_reproduce_it(
        monkeypatch, tmp_path):
    import torch

    from cnnlab.data import load_mnist
    from cnnlab.models import get_model
    from cnnlab.plan import Planned
    from cnnlab.results import ResultFormatError, RunResult
    from cnnlab.train import TrainConfig, evaluate

    tiny = Planned(TrainConfig(**TINY), "runs")
    monkeypatch.setattr(record, "plan", lambda: [tiny])
    monkeypatch.setattr(record, "git_commit", lambda: "abc")
    assert record.run_missing(root=tmp_path, checkpoints=tmp_path / "ck") == 1
    path = tiny.path("cpu", tmp_path)
    result = RunResult.load(path)
    # The stored predictions give the stored test accuracy exactly.
    labels = load_mnist().test.labels[:200].numpy()
    predicted = result.predictions()
    assert len(predicted) == 200
    assert (predicted == labels).mean() == result.test_accuracy
    # The kept weights, checked by their checksum, give it again.
    model = get_model("lenet")
    record.load_weights(result, path, model)
    test = load_mnist().test.head(200)
    assert evaluate(model, test) == (result.test_loss, result.test_accuracy)
    # Weights of another run are refused.
    weights = tmp_path / "weights" / (path.stem + ".pt")
    torch.save(get_model("lenet").state_dict(), weights)
    with pytest.raises(ResultFormatError, match="another run"):
        record.load_weights(result, path, model)


def test_a_record_names_the_commit_training_started_from_or_is_not_saved(
        monkeypatch, tmp_path):
    from cnnlab.plan import Planned
    from cnnlab.results import RunResult
    from cnnlab.train import TrainConfig

    tiny = Planned(TrainConfig(**TINY), "runs")
    monkeypatch.setattr(record, "plan", lambda: [tiny])
    # The provenance read at save time would be "later": the record must say
    # the start's commit, which is the one both reads agree on here.
    monkeypatch.setattr("cnnlab.provenance.git_commit", lambda: "later")
    monkeypatch.setattr(record, "git_commit", lambda: "start")
    assert record.run_missing(root=tmp_path, checkpoints=tmp_path / "ck") == 1
    assert RunResult.load(tiny.path("cpu", tmp_path)).provenance["git_commit"] == "start"

    # HEAD moves (or the tree turns dirty) while the run trains: not saved.
    tiny.path("cpu", tmp_path).unlink()
    reads = iter(["start", "moved"])
    monkeypatch.setattr(record, "git_commit", lambda: next(reads))
    with pytest.raises(record.ProvenanceChanged, match="not saved") as err:
        record.run_missing(root=tmp_path, checkpoints=tmp_path / "ck")
    assert "\n" not in str(err.value)
    assert not tiny.path("cpu", tmp_path).exists()
    # The finished run is kept in its checkpoint, and saves from it later.
    assert (tmp_path / "ck" / (tiny.path("cpu", tmp_path).stem + ".pt")).exists()
    monkeypatch.setattr(record, "git_commit", lambda: "start")
    assert record.run_missing(root=tmp_path, checkpoints=tmp_path / "ck") == 1


def test_status_with_a_bad_device_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("CNNLAB_DEVICE", "tpu")
    with pytest.raises(SystemExit) as exit_:
        main(["record", "status"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "CNNLAB_DEVICE" in err


def test_sigterm_ends_the_oom_childs_too(monkeypatch, tmp_path, capsys):
    """`record oom` trains in a child process; stopped, it must not leave the
    child running (an orphan holding 1.6 GB)."""
    import os
    import signal
    import subprocess
    import threading

    children = []

    def slow_child_run(model, batch, cap):  # the real code path: subprocess.run
        real_popen = subprocess.Popen

        class Recorded(real_popen):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                children.append(self)
        monkeypatch.setattr(subprocess, "Popen", Recorded)
        subprocess.run(["sleep", "60"])

    monkeypatch.setattr(record, "git_commit", lambda: "abc")
    monkeypatch.setattr("cnnlab.memory.train_under_memory_cap", slow_child_run)
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    code = main(["record", "oom"])
    timer.join()
    assert code == 128 + signal.SIGTERM
    assert children and all(c.poll() is not None for c in children)  # none left running
    assert capsys.readouterr().err.count("\n") == 1


def test_the_recorder_and_the_pages_read_a_planned_record_the_same_way(tmp_path, capsys):
    """plan.load_planned is the one reader: record status and the book's
    experiment arms agree on every state a record's file can be in."""
    from cnnlab.experiments import experiment_arms
    from cnnlab.plan import experiment_runs, load_planned

    p = experiment_runs("dropout")["dropout 0.4"][0]  # an arm's first seed (42)

    def arm_runs():
        return len(next(a for a in experiment_arms("dropout", tmp_path)
                        if a.name == "dropout 0.4").runs)

    assert load_planned(p, "cpu", tmp_path) == (None, "missing", "")
    assert record.record_state(p, "cpu", tmp_path) == "missing" and arm_runs() == 0
    _record_of(p).save(p.path("cpu", tmp_path))
    r, state, _ = load_planned(p, "cpu", tmp_path)
    assert state == "found" and r.config["seed"] == p.config.seed
    assert record.record_state(p, "cpu", tmp_path) == "done" and arm_runs() == 1
    path = p.path("cpu", tmp_path)
    path.write_text(path.read_text()[:100])  # truncated
    assert load_planned(p, "cpu", tmp_path)[1] == "unreadable"
    assert record.record_state(p, "cpu", tmp_path).startswith("unreadable")
    assert arm_runs() == 0 and "note: left out" in capsys.readouterr().err
    _record_of(plan()[0]).save(path)  # LeNet's full run at this arm's path
    assert load_planned(p, "cpu", tmp_path)[1:] == (
        "mismatch", "model is 'lenet', the plan says 'googlenet'")
    assert "another run's record: model is 'lenet'" in record.record_state(p, "cpu", tmp_path)
    assert arm_runs() == 0 and "not this arm's run (model is 'lenet'" in capsys.readouterr().err



@pytest.mark.parametrize("segments, named, resumed", [
    (["first", "second", "third"], "first", ["second", "third"]),
    (["first", "first", "second"], "first", ["second"]),  # a commit is listed once
    (["first", "first"], "first", None),                  # never moved: no list
])
def test_a_run_resumed_at_another_commit_names_every_commit_it_trained_at(
        monkeypatch, tmp_path, segments, named, resumed):
    """A run stopped (SIGTERM keeps its checkpoint) and resumed after HEAD
    moved: the record names the commit it started from, then the later ones."""
    from cnnlab import train as train_module
    from cnnlab.plan import Planned
    from cnnlab.results import RunResult
    from cnnlab.train import TrainConfig

    real_train = train_module.train
    tiny = Planned(TrainConfig(**TINY), "runs")
    monkeypatch.setattr(record, "plan", lambda: [tiny])
    log = tmp_path / "ck" / (tiny.path("cpu", tmp_path).stem + ".pt.commits")

    class Stopped(Exception):
        pass

    def segment(config, checkpoint=None, **kwargs):
        if not last:  # stopped: what a SIGTERM leaves is the checkpoint
            checkpoint.write_bytes(b"stopped here")
            raise Stopped
        return real_train(config, progress=False)  # the last segment ends the run

    monkeypatch.setattr(train_module, "train", segment)
    for i, commit in enumerate(segments):
        last = i == len(segments) - 1
        monkeypatch.setattr(record, "git_commit", lambda c=commit: c)
        if last:
            assert record.run_missing(root=tmp_path, checkpoints=tmp_path / "ck") == 1
        else:
            with pytest.raises(Stopped):
                record.run_missing(root=tmp_path, checkpoints=tmp_path / "ck")
            assert log.exists()
    prov = RunResult.load(tiny.path("cpu", tmp_path)).provenance
    assert prov["git_commit"] == named
    assert prov.get("resumed_at_commits") == resumed
    assert not log.exists()  # cleared with the checkpoint


def test_a_fresh_start_forgets_the_commits_of_a_run_whose_checkpoint_is_gone(tmp_path):
    ckpt = tmp_path / "run.pt"
    (tmp_path / "run.pt.commits").write_text("old\n")
    assert record._segment_commits(ckpt, "new") == ["new"]  # no checkpoint: afresh
    ckpt.write_bytes(b"x")
    assert record._segment_commits(ckpt, "newer") == ["new", "newer"]
