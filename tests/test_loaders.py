"""One bad file in results/ costs one line, never a page or a wrong number.

Each case puts a damaged or foreign file beside good records, then reads
them the way the book's pages do (``load_runs``, ``run_summary``,
``experiment_arms``): the bad file is left out with a note naming it, and
what the page shows comes from the good records only.
"""
import json
import os
from dataclasses import asdict

import pytest

from cnnlab.plan import experiment_runs
from cnnlab.findings import run_summary
from cnnlab.experiments import experiment_arms, experiment_table
from cnnlab.results import ResultFormatError, RunResult, load_runs


def record(model="lenet", seed=42, acc=0.97, **config) -> RunResult:
    """A well-formed 5-epoch record of 2 steps an epoch (made up, not trained)."""
    return RunResult(
        model=model, parameters=1, config={"seed": seed, "epochs": 5, **config},
        steps_per_epoch=2, train_loss=[1.0] * 10, val_step=[2, 4, 6, 8, 10],
        val_accuracy=[acc] * 5, val_loss=[0.1] * 5, epoch_val_accuracy=[acc] * 5,
        epoch_val_loss=[0.1] * 5, test_accuracy=acc, test_loss=0.1, train_seconds=1.0,
        images_per_second=1.0, peak_memory_bytes=None, peak_memory_kind="none",
        provenance={"device": "cpu"}, val_images=[12_000] * 5)


def good(folder):
    folder.mkdir(parents=True, exist_ok=True)
    record(seed=42, acc=0.97).save(folder / "lenet-cpu-seed42.json")
    record(seed=43, acc=0.98).save(folder / "lenet-cpu-seed43.json")


def damaged(**change) -> str:
    return json.dumps(asdict(record(seed=44)) | change)


BAD = {
    "truncated": lambda: damaged()[:200],
    "empty": lambda: "",
    "foreign object": lambda: '{"hello": 1}',
    "array": lambda: "[1, 2, 3]",
    "NaN accuracy": lambda: damaged(test_accuracy=float("nan")),
    "infinite accuracy": lambda: damaged(test_accuracy=float("inf")),
    "accuracy in percent": lambda: damaged(test_accuracy=97.5),
    "no steps an epoch": lambda: damaged(steps_per_epoch=0),
    "history lengths differ": lambda: damaged(val_loss=[0.1] * 4),
    "deeply nested": lambda: "[" * 100_000 + "]" * 100_000,
    "a format of the future": lambda: damaged(format_version=2),
    "predictions that cannot score the accuracy": lambda: damaged(
        test_predictions="AAAA"),  # 3 classes cannot score 0.97
}
# What each note must say, so the reader learns why (a few words of it).
WHY = {
    "truncated": "not valid JSON", "empty": "not valid JSON",
    "foreign object": "missing", "array": "a JSON list",
    "NaN accuracy": "fraction in [0, 1]", "infinite accuracy": "fraction in [0, 1]",
    "accuracy in percent": "fraction in [0, 1]",
    "no steps an epoch": "steps_per_epoch must be positive",
    "history lengths differ": "differ in length", "deeply nested": "nested too deeply",
    "a format of the future": "version 2",
    "predictions that cannot score the accuracy": "cannot score",
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_record_is_left_out_with_one_line_naming_it(case, tmp_path, capsys):
    good(tmp_path)
    bad = tmp_path / "lenet-cpu-seed44.json"
    bad.write_text(BAD[case]())
    with pytest.raises(ResultFormatError) as err:
        RunResult.load(bad)
    assert WHY[case] in str(err.value) and "\n" not in str(err.value)

    runs = load_runs(tmp_path)
    assert sorted(r.config["seed"] for r in runs) == [42, 43]
    note = capsys.readouterr().err
    assert note.count("\n") == 1 and str(bad) in note and WHY[case] in note
    # The page still builds, from the two good seeds: mean(97, 98) = 97.50.
    assert "97.50 ± 0.71 (2 seeds)" in run_summary("lenet", tmp_path)


def test_a_pipe_is_never_opened(tmp_path, capsys):
    good(tmp_path)
    os.mkfifo(tmp_path / "lenet-cpu-seed44.json")  # open() would wait for a writer
    assert len(load_runs(tmp_path)) == 2
    assert "not a regular file" in capsys.readouterr().err


def test_a_link_to_an_endless_device_is_never_read(tmp_path, capsys):
    good(tmp_path)
    (tmp_path / "lenet-cpu-seed44.json").symlink_to("/dev/zero")
    assert len(load_runs(tmp_path)) == 2
    assert "not a regular file" in capsys.readouterr().err


def test_a_huge_file_is_refused_without_being_read(tmp_path, capsys):
    good(tmp_path)
    with open(tmp_path / "lenet-cpu-seed44.json", "wb") as f:
        f.truncate(64 * 2**20)  # sparse: 64 MB that cost no disk
    assert len(load_runs(tmp_path)) == 2
    assert "more than a cnnlab result can be" in capsys.readouterr().err


def test_a_copy_of_a_record_counts_once(tmp_path, capsys):
    good(tmp_path)
    (tmp_path / "copy-of-seed42.json").write_text(
        (tmp_path / "lenet-cpu-seed42.json").read_text())
    runs = load_runs(tmp_path)
    assert sorted(r.config["seed"] for r in runs) == [42, 43]  # not a third seed
    assert "the same run as" in capsys.readouterr().err
    # The same seed on another device is another run.
    record(seed=42, device="cuda").save(tmp_path / "lenet-cuda-seed42.json")
    assert len(load_runs(tmp_path)) == 3


def test_another_runs_record_at_an_arms_path_is_not_that_arm(tmp_path, capsys):
    arms = experiment_runs("dropout")
    for planned in arms["dropout 0.4"] + arms["dropout 0.2"]:
        config = asdict(planned.config)
        del config["model"]
        record("googlenet", config.pop("seed"), **config).save(planned.path("cpu", tmp_path))
    assert [len(a.runs) for a in experiment_arms("dropout", tmp_path)] == [3, 3]
    # A LeNet record copied over one GoogLeNet arm's seed.
    target = arms["dropout 0.2"][0].path("cpu", tmp_path)
    record(model="lenet", seed=42).save(target)
    counted = experiment_arms("dropout", tmp_path)
    assert [len(a.runs) for a in counted] == [3, 2]
    note = capsys.readouterr().err
    assert "not this arm's run (model is 'lenet'" in note and str(target) in note
    assert "2 of 3 seeds" in experiment_table(counted)


def test_record_fields_reach_the_page_as_text_not_markup(tmp_path):
    good(tmp_path)
    r = record(seed=44)
    r.provenance |= {"device_name": "<img src=x onerror=alert(1)>", "git_commit": "a|b",
                     "date": "[click](http://evil.example)"}
    r.save(tmp_path / "lenet-cpu-seed44.json")
    page = run_summary("lenet", tmp_path)
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "](http" not in page  # no link
    # A '|' from a record is escaped, so it cannot end a table cell.
    r.provenance["device_name"] = "a|b"
    r.save(tmp_path / "lenet-cpu-seed44.json")
    page = run_summary("lenet", tmp_path)
    assert "a\\|b" in page and "a|b" not in page.replace("a\\|b", "")
