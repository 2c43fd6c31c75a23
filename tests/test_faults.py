"""Fault injection: bad input and faults against the CLI and the API.

Every case checks the two promises: nothing is lost (a bad file never
replaces a good one, a stopped run resumes), and a mistake is one line that
says what was expected (exit code 2 from the CLI), never a traceback.
Faults are injected deterministically: a failing rename or fsync, a signal
the process sends itself at a chosen step, a kill at a chosen byte.

Test names start with their kind (test_flag_, test_path_, ...); the README's
table counts the cases of each kind, and the last test keeps it honest.
"""
from __future__ import annotations

import errno
import io
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import cnnlab.files as files
import cnnlab.train as train
from cnnlab.plots import bar_figure, save_figure
from cnnlab.__main__ import MAX_EPOCHS, MAX_SIZE, MAX_UPSAMPLE, main
from cnnlab.checkpoint import CheckpointError, save_checkpoint
from cnnlab.data import N_TRAIN, MnistSplits, Split
from cnnlab.files import atomic_write, atomic_write_text, temp_path
from cnnlab.results import ResultFormatError, RunResult
from cnnlab.train import MAX_SEED, TrainConfig, fit

ROOT = Path(__file__).resolve().parent.parent
BATCH = TrainConfig.batch_size
TINY_TRAIN = 2 * BATCH   # two steps per epoch
TINY_EVAL = 64           # validation and test images: enough to score, fast
CFG = dict(model="lenet", device="cpu")
SIGTERM, SIGHUP, SIGINT = signal.SIGTERM, getattr(signal, "SIGHUP", None), signal.SIGINT


def tiny_data(seed: int = 0) -> MnistSplits:
    """Random pixels and labels of MNIST's shape: every code path, in a blink."""
    g = torch.Generator().manual_seed(seed)

    def split(n: int) -> Split:
        return Split(torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=g),
                     torch.randint(0, 10, (n,), generator=g))
    return MnistSplits(split(TINY_TRAIN), split(TINY_EVAL), split(TINY_EVAL))


@pytest.fixture
def tiny(monkeypatch) -> dict:
    """The CLI trains on tiny_data; counts how often data loads and steps run."""
    seen = {"loads": 0, "steps": 0}

    def load_tiny(root=None) -> MnistSplits:
        seen["loads"] += 1
        return tiny_data()

    def counting_loss(logits, targets):
        seen["steps"] += 1
        return F.cross_entropy(logits, targets)

    monkeypatch.setattr(train, "load_mnist", load_tiny)
    monkeypatch.setattr(train, "loss_fn", counting_loss)
    return seen


def cli(capsys, *args: str) -> tuple[int, str]:
    """Run the CLI in this process: its exit code and its stderr."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def one_line(err: str) -> str:
    """The stderr of a refusal: exactly one line, no traceback."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def temp_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob(".*.tmp"))


def same_run(a: RunResult, b: RunResult) -> None:
    assert a.train_loss == b.train_loss
    assert (a.val_step, a.val_accuracy) == (b.val_step, b.val_accuracy)
    assert a.val_loss == b.val_loss
    assert (a.test_accuracy, a.test_loss) == (b.test_accuracy, b.test_loss)


TRAIN = ["train", "lenet", "--device", "cpu", "--quiet"]


# --- Bad command-line values: refused as they are parsed, naming the flag ----

@pytest.mark.parametrize("args, words", [
    (TRAIN + ["--lr", "nan"], "--lr: expected a finite positive number, got 'nan'"),
    (TRAIN + ["--lr", "inf"], "--lr: expected a finite positive number, got 'inf'"),
    (TRAIN + ["--lr", "-0.1"], "--lr: expected a finite positive number"),
    (TRAIN + ["--lr", "0"], "--lr: expected a finite positive number"),
    (TRAIN + ["--epochs", "0"], "--epochs: expected an integer from 1 to"),
    (TRAIN + ["--epochs", str(MAX_EPOCHS + 1)], "--epochs: expected an integer from 1 to"),
    (TRAIN + ["--epochs", "2.5"], "--epochs: expected an integer from 1 to"),
    (TRAIN + ["--batch-size", "0"], "--batch-size: expected an integer from 1 to"),
    (TRAIN + ["--batch-size", str(N_TRAIN + 1)], f"to {N_TRAIN:,}, got {N_TRAIN + 1}"),
    (TRAIN + ["--seed", "-1"], "--seed: expected an integer from 0 to"),
    (TRAIN + ["--seed", str(MAX_SEED + 1)], "--seed: expected an integer from 0 to"),
    (["compare", "lenet", "--seeds", "42", "43", "42"], "--seeds: 42 given twice"),
    (["compare", "lenet", "lenet"], "models: lenet given twice"),
    (TRAIN + ["--dropout", "1"], "--dropout: expected a number in [0, 1)"),
    (TRAIN + ["--dropout", "nan"], "--dropout: expected a number in [0, 1)"),
    (TRAIN + ["--upsample", "0"], "--upsample: expected an integer from 1 to"),
    (TRAIN + ["--upsample", str(MAX_UPSAMPLE + 1)], "--upsample: expected an integer"),
    (TRAIN + ["--eval-every", "0"], "--eval-every: expected a positive integer"),
    (TRAIN + ["--max-steps", "-3"], "--max-steps: expected a positive integer"),
    (TRAIN + ["--shortcut", "skip"], "--shortcut: invalid choice: 'skip'"),
    (["train", "vgg16"], "unknown model 'vgg16'; choose one of: lenet"),
    (TRAIN + ["--device", "tpu"], "unknown device 'tpu'"),
    (TRAIN + ["--device", "cpu:1"], "device 'cpu:1': there is one CPU device; use cpu"),
    (TRAIN + ["--batch-norm"], "--batch-norm does not apply to lenet; it applies to "
                               "googlenet"),
    (TRAIN + ["--shortcut", "zero_pad"], "--shortcut does not apply to lenet; it applies "
                                         "to resnet18"),
    (TRAIN + ["--dropout", "0.3"], "--dropout does not apply to lenet; it applies to "
                                   "alexnet"),
    (TRAIN + ["--resume"], "--resume needs --checkpoint PATH"),
    (["shapes", "lenet", "--size", str(MAX_SIZE + 1)], "--size: expected an integer"),
])
def test_flag_is_refused_in_one_line(args, words, capsys, tiny):
    code, err = cli(capsys, *args)
    assert code == 2 and words in one_line(err)
    assert tiny["loads"] == 0  # refused before any data was read


# --- Bad output paths: refused before step 1, nothing trained or overwritten -

def test_path_out_is_a_folder(tmp_path, capsys, tiny):
    (tmp_path / "r.json").mkdir()
    code, err = cli(capsys, *TRAIN, "--out", tmp_path / "r.json")
    assert code == 2 and "r.json: is a folder, not a file" in one_line(err)
    assert tiny["loads"] == 0


def test_path_out_is_a_device(capsys, tiny):
    code, err = cli(capsys, *TRAIN, "--out", "/dev/null")
    assert code == 2 and "is a device or special file" in one_line(err)
    assert tiny["loads"] == 0


@pytest.mark.parametrize("out, checkpoint", [
    ("run.json", "./run.json"),  # one file
    ("runs", "runs"),            # --out without .json is a folder: it would hold runs/
    ("a.json", "a.json/run.pt"),  # the checkpoint would make a folder of the result's name
])
def test_path_out_and_checkpoint_collide(out, checkpoint, tmp_path, capsys, tiny,
                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = cli(capsys, *TRAIN, "--out", out, "--checkpoint", checkpoint)
    assert code == 2 and f"--out {out} and --checkpoint" in one_line(err)
    assert "collide" in err and tiny["loads"] == 0 and list(tmp_path.iterdir()) == []


def test_path_out_inside_a_file(tmp_path, capsys, tiny):
    (tmp_path / "notes").write_text("keep me")
    code, err = cli(capsys, *TRAIN, "--out", tmp_path / "notes" / "r.json")
    assert code == 2 and "notes is a file, not a folder" in one_line(err)
    assert (tmp_path / "notes").read_text() == "keep me" and tiny["loads"] == 0


def test_path_out_is_someone_elses_file(tmp_path, capsys, tiny):
    out = tmp_path / "package.json"
    out.write_text('{"name": "my-package", "version": "1.0"}')
    code, err = cli(capsys, *TRAIN, "--out", out)
    assert code == 2 and "package.json: not a cnnlab result" in one_line(err)
    assert "the result would replace it" in err
    assert out.read_text() == '{"name": "my-package", "version": "1.0"}'
    assert tiny["loads"] == 0


def _recorded(folder: Path, **config) -> Path:
    """A hand-made 5-epoch result of LeNet (seed 42 unless given) in ``folder``."""
    r = hand_made_result()
    r.config = asdict(TrainConfig(**config))
    path = folder / f"lenet-cpu-seed{r.config['seed']}.json"
    return r.save(path)


@pytest.mark.parametrize("flags, differ", [
    (["--max-steps", "2"], "its max_steps differ"),          # a short run
    (["--seed", "7"], "its seed differ"),                     # another seed
    (["--lr", "0.01", "--epochs", "2"], "its epochs, lr differ"),  # another recipe
])
def test_path_a_different_run_never_replaces_a_result(flags, differ, tmp_path, capsys,
                                                      tiny):
    kept = _recorded(tmp_path)
    before = kept.read_bytes()
    code, err = cli(capsys, *TRAIN, *flags, "--out", kept)
    line = one_line(err)
    assert code == 2 and differ in line and "Pass --replace" in line
    assert "(lenet, seed 42, 5 epochs;" in line  # both runs named
    assert kept.read_bytes() == before and tiny["loads"] == 0


def test_path_a_short_run_into_the_records_folder_keeps_the_record(tmp_path, capsys, tiny):
    """`train --max-steps 2 --out keep/` where keep/ holds the seed-42 record:
    a short run is named for its budget, so it lands beside the record."""
    kept = _recorded(tmp_path)
    before = kept.read_bytes()
    code, err = cli(capsys, *TRAIN, "--max-steps", "2", "--out", tmp_path)
    assert code == 0 and (tmp_path / "lenet-2steps-cpu-seed42.json").exists()
    # compare, as `make record` runs it, the same way
    code, err = cli(capsys, "compare", "lenet", "--seeds", "42", "--max-steps", "2",
                    "--device", "cpu", "--quiet", "--out", tmp_path)
    assert code == 0 and kept.read_bytes() == before


def test_path_replace_lets_a_different_run_replace_a_result(tmp_path, capsys, tiny):
    kept = _recorded(tmp_path)
    code, err = cli(capsys, *TRAIN, "--max-steps", "1", "--out", kept, "--replace")
    assert code == 0 and RunResult.load(kept).config["max_steps"] == 1


def test_path_out_with_another_extension_is_never_made_a_folder(tmp_path, capsys, tiny):
    code, err = cli(capsys, *TRAIN, "--out", tmp_path / "new.txt")
    assert code == 2 and "a result file's name ends in .json" in one_line(err)
    assert not (tmp_path / "new.txt").exists() and tiny["loads"] == 0


def test_path_checkpoint_is_a_folder(tmp_path, capsys, tiny):
    code, err = cli(capsys, *TRAIN, "--checkpoint", tmp_path, "--out", tmp_path / "r.json")
    assert code == 2 and "--checkpoint" in one_line(err) and "is a folder" in err
    assert tiny["loads"] == 0


def test_path_checkpoint_is_a_device(tmp_path, capsys, tiny):
    code, err = cli(capsys, *TRAIN, "--checkpoint", "/dev/null",
                    "--out", tmp_path / "r.json")
    assert code == 2 and "is a device or special file" in one_line(err)
    assert tiny["loads"] == 0


def test_path_existing_checkpoint_without_resume(tmp_path, capsys, tiny):
    ck = tmp_path / "run.pt"
    ck.write_bytes(b"another run's checkpoint")
    code, err = cli(capsys, *TRAIN, "--checkpoint", ck, "--out", tmp_path / "r.json")
    assert code == 2 and "add --resume to continue it" in one_line(err)
    assert ck.read_bytes() == b"another run's checkpoint" and tiny["loads"] == 0


def test_path_existing_checkpoint_is_never_overwritten_by_the_api(tmp_path, tiny):
    ck = tmp_path / "run.pt"
    ck.write_bytes(b"another run's checkpoint")
    with pytest.raises(CheckpointError, match="already there.*resume=True"):
        fit(TrainConfig(**CFG), tiny_data(), checkpoint=ck)
    assert ck.read_bytes() == b"another run's checkpoint" and tiny["steps"] == 0


@pytest.mark.parametrize("out", ["results.json", "a_file"])
def test_path_compare_out_must_be_a_folder(out, tmp_path, capsys, tiny):
    (tmp_path / "a_file").write_text("keep me")
    code, err = cli(capsys, "compare", "lenet", "--device", "cpu", "--out", tmp_path / out)
    assert code == 2 and "--out is a folder" in one_line(err) and tiny["loads"] == 0
    assert (tmp_path / "a_file").read_text() == "keep me"


def test_path_unwritable_folder(tmp_path, capsys, tiny, monkeypatch):
    # Root ignores permission bits, so the read-only disk is simulated here
    # (the real one is in test_disk_read_only_out_folder).
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(files.tempfile, "TemporaryFile", read_only)
    code, err = cli(capsys, *TRAIN, "--out", tmp_path / "r.json")
    line = one_line(err)
    assert code == 2 and f"cannot write in {tmp_path} (Read-only file system)" in line
    assert tiny["loads"] == 0


def test_path_read_only_result_is_not_replaced(tmp_path, capsys, tiny, monkeypatch):
    # Root may write anything, so the file's read-only mode is simulated.
    out = hand_made_result().save(tmp_path / "r.json")
    before = out.read_bytes()
    monkeypatch.setattr(files.os, "access", lambda path, mode: Path(path) != out)
    code, err = cli(capsys, *TRAIN, "--out", out)
    assert code == 2 and f"--out {out}: the file is read-only" in one_line(err)
    assert out.read_bytes() == before and tiny["loads"] == 0


@pytest.mark.parametrize("name", ["comparison.md", "comparison_curves.png",
                                  "comparison_bars.png"])
def test_path_compare_keeps_someone_elses_table_or_plot(name, tmp_path, capsys, tiny):
    (tmp_path / name).write_text("my own notes")
    code, err = cli(capsys, "compare", "lenet", *TRAIN[2:], "--max-steps", "1",
                    "--out", tmp_path)
    assert code == 2 and f"{tmp_path / name} is already there and was not written by " \
        "compare" in one_line(err)
    assert (tmp_path / name).read_text() == "my own notes" and tiny["loads"] == 0


def test_path_compare_replaces_its_own_table_and_plots(tmp_path, capsys, tiny):
    args = ("compare", "lenet", *TRAIN[2:], "--max-steps", "1", "--out", tmp_path)
    assert cli(capsys, *args)[0] == 0
    written = {name: (tmp_path / name).stat().st_mtime_ns
               for name in ("comparison.md", "comparison_curves.png", "comparison_bars.png")}
    assert cli(capsys, *args)[0] == 0  # a rerun: its own files are replaced
    assert all((tmp_path / n).stat().st_mtime_ns >= t for n, t in written.items())
    assert tiny["loads"] == 2


def test_path_checkpoint_in_use_by_another_run(tmp_path, capsys, tiny):
    from cnnlab.checkpoint import checkpoint_lock

    ck = tmp_path / "run.pt"
    with checkpoint_lock(ck):  # another run holds it (flock: another open file)
        code, err = cli(capsys, *TRAIN, "--max-steps", "1", "--checkpoint", ck,
                        "--out", tmp_path / "r.json")
    assert code == 2 and "another run is using this checkpoint now" in one_line(err)
    assert not ck.exists() and tiny["steps"] == 0
    # Released: the lock file is gone and the next run takes the path.
    assert not Path(f"{ck}.lock").exists()
    assert cli(capsys, *TRAIN, "--max-steps", "1", "--checkpoint", ck,
               "--out", tmp_path / "r.json")[0] == 0
    assert ck.exists() and not Path(f"{ck}.lock").exists()


@pytest.mark.parametrize("model, size", [("lenet", 3), ("lenet", 64), ("googlenet", 3)])
def test_flag_shapes_size_the_model_cannot_take(model, size, capsys):
    code, err = cli(capsys, "shapes", model, "--size", size)
    line = one_line(err)
    assert code == 2 and f"--size: {model} cannot take {size} x {size} images" in line
    assert "try --size 28" in line


@pytest.mark.parametrize("flag", ["--out", "--checkpoint"])
def test_flag_empty_path_is_refused(flag, tmp_path, capsys, tiny):
    # An unset shell variable ("--out $OUT") must not mean the current folder.
    code, err = cli(capsys, *TRAIN, flag, "")
    assert code == 2 and f"argument {flag}: expected a path, got an empty value" \
        in one_line(err)
    assert tiny["loads"] == 0


def test_path_out_in_capitals_is_a_file_not_a_folder(tmp_path, capsys, tiny):
    out = tmp_path / "Result.JSON"
    assert cli(capsys, *TRAIN, "--max-steps", "1", "--out", out)[0] == 0
    assert out.is_file() and RunResult.load(out).model == "lenet"


def test_path_out_in_a_folder_that_cannot_be_entered(tmp_path, capsys, tiny, monkeypatch):
    # Root enters any folder, so a folder without the x bit is simulated.
    locked = tmp_path / "locked"
    real_exists = Path.exists

    def exists(self, *args, **kwargs):
        if self.parent == locked:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real_exists(self, *args, **kwargs)

    monkeypatch.setattr(Path, "exists", exists)
    code, err = cli(capsys, *TRAIN, "--out", locked / "r.json")
    line = one_line(err)
    assert code == 2 and f"--out {locked / 'r.json'}: cannot be reached (Permission" in line
    assert tiny["loads"] == 0


# --- TrainConfig: the type and value of every field --------------------------

@pytest.mark.parametrize("bad, words", [
    (dict(amp="no"), "amp must be True or False or None, got 'no'"),
    (dict(channels_last="yes"), "channels_last must be True or False or None"),
    (dict(compile=1), "compile must be True or False, got 1"),
    (dict(deterministic="false"), "deterministic must be True or False"),
    (dict(epochs=2.0), "epochs must be an integer, got 2.0"),
    (dict(epochs=True), "epochs must be an integer, got True"),
    (dict(batch_size=None), "batch_size must be an integer, got None"),
    (dict(lr="1e-3"), "lr must be a number, got '1e-3'"),
    (dict(lr=math.nan), "lr must be a finite positive number"),
    (dict(lr=math.inf), "lr must be a finite positive number"),
    (dict(weight_decay=-0.1), "weight_decay must be a finite number >= 0"),
    (dict(seed=-1), "seed must be in 0..4294967295"),  # 2**32 - 1, NumPy's largest seed
    (dict(seed=1.5), "seed must be an integer, got 1.5"),
    (dict(model="googlenet", dropout="0.2"), "dropout must be a number or None"),
    (dict(options=[("shortcut", "zero_pad")]), "options must be a dict"),
    (dict(device=0), "device must be a string or None, got 0"),
    (dict(model=None), "model must be a string, got None"),
    (dict(eval_subset=0), "eval_subset must be a positive integer or None"),
])
def test_config_field_is_checked(bad, words):
    with pytest.raises(ValueError) as err:
        TrainConfig(**bad)
    assert words in str(err.value)


def test_config_seed_bound_is_numpys():
    import numpy as np

    np.random.seed(MAX_SEED)  # the largest seed NumPy takes ...
    with pytest.raises(ValueError):
        np.random.seed(MAX_SEED + 1)  # ... and one more it refuses


# --- Bad data splits: refused before step 1, naming the split ----------------

def _with(split: str, images=None, labels=None) -> MnistSplits:
    data = tiny_data()
    old = getattr(data, split)
    setattr(data, split, Split(old.images if images is None else images,
                               old.labels if labels is None else labels))
    return data


@pytest.mark.parametrize("split, change, words", [
    ("train", dict(images=torch.zeros(0, 28, 28, dtype=torch.uint8),
                   labels=torch.zeros(0, dtype=torch.long)), "the train split is empty"),
    ("val", dict(images=torch.zeros(0, 28, 28, dtype=torch.uint8),
                 labels=torch.zeros(0, dtype=torch.long)), "the validation split is empty"),
    ("test", dict(images=torch.zeros(0, 28, 28, dtype=torch.uint8),
                  labels=torch.zeros(0, dtype=torch.long)), "the test split is empty"),
    ("val", dict(images=torch.rand(TINY_EVAL, 28, 28)), "validation split: lenet trains "
                                                          "on uint8 images"),
    ("test", dict(images=torch.zeros(TINY_EVAL, 32, 32, dtype=torch.uint8)),
     "the test split: lenet expects images of shape (N, 1, 28, 28)"),
    ("train", dict(labels=torch.zeros(TINY_TRAIN - 1, dtype=torch.long)),
     f"has {TINY_TRAIN} images but labels of shape ({TINY_TRAIN - 1},)"),
    ("train", dict(labels=torch.full((TINY_TRAIN,), 10)), "labels must be 0-9, found 10"),
    ("val", dict(labels=torch.full((TINY_EVAL,), -1)), "labels must be 0-9, found -1"),
    ("test", dict(labels=torch.zeros(TINY_EVAL)), "labels must be int64 class numbers"),
    ("train", dict(labels=[0] * TINY_TRAIN), "must be torch tensors, got Tensor and list"),
])
def test_data_split_is_checked_before_step_1(split, change, words, tiny):
    with pytest.raises(ValueError) as err:
        fit(TrainConfig(**CFG), _with(split, **change), progress=False)
    assert words in str(err.value) and tiny["steps"] == 0


# --- Malformed result files: the loader names the file -----------------------

def hand_made_result() -> RunResult:
    """A small, complete result, built by hand (no training needed)."""
    return RunResult(model="lenet", parameters=44_426, config=asdict(TrainConfig()),
                     steps_per_epoch=2, train_loss=[2.3, 2.2], val_step=[2],
                     val_accuracy=[0.1], val_loss=[2.2], epoch_val_accuracy=[0.1],
                     epoch_val_loss=[2.2], test_accuracy=0.1, test_loss=2.2,
                     train_seconds=1.0, images_per_second=256.0, peak_memory_bytes=None,
                     peak_memory_kind="process_peak_rss", val_images=[TINY_EVAL])


@pytest.fixture(scope="module")
def a_result() -> RunResult:
    return hand_made_result()


def _result_text(a_result: RunResult, **change) -> str:
    return json.dumps(a_result.to_dict() | change)


@pytest.mark.parametrize("text, words", [
    ("", "not a cnnlab result, not valid JSON"),
    ('{"model": "lenet", "param', "not a cnnlab result, not valid JSON"),
    (b"\x89PNG\r\n\x1a\n\xff\xfe", "not a cnnlab result, not valid JSON"),
    ("[1, 2, 3]", "not a cnnlab result (a JSON list, not an object)"),
    ('"lenet"', "not a cnnlab result (a JSON str, not an object)"),
    ('{"name": "my-package", "version": "1.0"}', "not a cnnlab result, missing config"),
    (lambda r: _result_text(r, test_accuracy="high"),
     "test_accuracy must be a number, got 'high'"),
    (lambda r: _result_text(r, train_loss=["2.3", "2.2"]),
     "train_loss must be a list of numbers"),
    (lambda r: _result_text(r, format_version="1"), "format_version must be an integer"),
    (lambda r: _result_text(r, format_version=r.format_version + 1), "update cnnlab"),
    (lambda r: json.dumps({k: v for k, v in r.to_dict().items() if k != "test_loss"}),
     "not a cnnlab result, missing test_loss"),
])
def test_result_file_malformed_is_named(text, words, a_result, tmp_path):
    path = tmp_path / "r.json"
    text = text(a_result) if callable(text) else text
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ResultFormatError) as err:
        RunResult.load(path)
    assert str(err.value).startswith(f"{path}: ") and words in str(err.value)


def test_result_file_that_is_a_folder(tmp_path):
    with pytest.raises(ResultFormatError, match="is a folder, not a result file"):
        RunResult.load(tmp_path)


def test_result_file_missing_names_it(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        RunResult.load(tmp_path / "gone.json")
    assert err.value.filename == str(tmp_path / "gone.json")


# --- Malformed or mismatched checkpoints: refused by name, before step 1 -----

@pytest.fixture(scope="module")
def checkpoint_state(tmp_path_factory) -> dict:
    """A real checkpoint's contents: one epoch (two steps) of LeNet."""
    path = tmp_path_factory.mktemp("ck") / "run.pt"
    fit(TrainConfig(epochs=1, **CFG), tiny_data(), progress=False, checkpoint=path)
    return torch.load(path, weights_only=True)


def _broken(state: dict, change: str) -> dict | bytes:
    state = dict(state)
    if change == "no model_state":
        del state["model_state"]
    elif change == "newer version":
        state["version"] += 1
    elif change == "another model":
        state["config"] = state["config"] | {"model": "googlenet"}
    elif change == "another seed":
        state["config"] = state["config"] | {"seed": 7}
    elif change == "wrong weights":
        state["model_state"] = {k: v[..., :1] for k, v in state["model_state"].items()}
    elif change == "losses cut short":
        state["train_loss"] = state["train_loss"][:1]
    elif change == "step beyond the run":
        state["step"] = 10 ** 6
    elif change == "step True":  # bool is an int in Python: True would be step 1
        state["step"] = True
    elif change.startswith("micro_batch "):
        state["micro_batch"] = eval(change.split(" ", 1)[1])  # -5, 0, 'big', 2.5
    elif change == "NaN losses":
        state["train_loss"] = [float("nan")] * len(state["train_loss"])
    elif change == "history of the wrong type":
        state["history"] = state["history"] | {"val_accuracy": "high"}
    elif change == "NaN weights":
        state["model_state"] = {k: v * float("nan") if v.is_floating_point() else v
                                for k, v in state["model_state"].items()}
    return state


@pytest.mark.parametrize("change, words", [
    ("truncated", "cannot be read as a checkpoint, it is truncated"),
    ("empty", "cannot be read as a checkpoint"),
    ("text", "cannot be read as a checkpoint"),
    ("foreign", "not a cnnlab checkpoint"),
    ("no model_state", "an incomplete cnnlab checkpoint (missing model_state)"),
    ("newer version", "is newer than this cnnlab reads"),
    ("another model", "the checkpoint is for model 'googlenet', this run trains 'lenet'"),
    ("another seed", "another recipe (seed: checkpoint 7, this run 42)"),
    ("wrong weights", "the checkpoint cannot be restored"),
    ("losses cut short", "the checkpoint cannot be restored"),
    ("step beyond the run", "beyond this run's"),
    ("step True", "cannot be restored: step must be a whole number of steps done, got True"),
    # 1 up to the run's batch, the CLI's default (the report's 128).
    ("micro_batch -5", f"cannot be restored: micro_batch must be an integer in "
                       f"1..{TrainConfig().batch_size}, got -5"),
    ("micro_batch 0", f"micro_batch must be an integer in 1..{TrainConfig().batch_size}, "
                      f"got 0"),
    ("micro_batch 'big'", "micro_batch must be an integer in 1..128, got 'big'"),
    ("micro_batch 2.5", "micro_batch must be an integer in 1..128, got 2.5"),
    ("NaN losses", "cannot be restored: train_loss holds a NaN"),
    ("history of the wrong type", "history.val_accuracy must be a list of numbers"),
    ("NaN weights", "holds NaN or infinite weights"),
])
def test_checkpoint_file_is_refused_by_name(change, words, checkpoint_state, tmp_path,
                                            capsys, tiny):
    ck = tmp_path / "run.pt"
    if change in ("truncated", "empty", "text", "foreign"):
        buf = io.BytesIO()
        torch.save(checkpoint_state if change == "truncated" else {"weights": [1]}, buf)
        ck.write_bytes({"truncated": buf.getvalue()[:len(buf.getvalue()) // 2],
                        "empty": b"", "text": b"not a checkpoint\n",
                        "foreign": buf.getvalue()}[change])
    else:
        torch.save(_broken(checkpoint_state, change), ck)
    before = ck.read_bytes()
    code, err = cli(capsys, *TRAIN, "--checkpoint", ck, "--resume",
                    "--out", tmp_path / "r.json")
    assert code == 2 and f"{ck}: " in one_line(err) and words in err
    assert tiny["steps"] == 0 and ck.read_bytes() == before  # refused, and kept


# --- A failure between write and rename: the old file stays whole ------------

def _failing_rename(*args, **kwargs):
    raise OSError(errno.EIO, "injected: the rename failed")


def _write_result(path: Path, a_result: RunResult) -> None:
    replace(a_result, test_accuracy=0.99).save(path)


def _write_checkpoint(path: Path, a_result: RunResult) -> None:
    save_checkpoint(path, {"step": 1, "weights": torch.ones(1000)})


def _write_plot(path: Path, a_result: RunResult) -> None:
    save_figure(bar_figure([a_result]), path)


def _write_text(path: Path, a_result: RunResult) -> None:
    atomic_write_text(path, "new text")


@pytest.mark.parametrize("write", [_write_result, _write_checkpoint, _write_plot,
                                   _write_text])
def test_atomic_failing_rename_keeps_the_old_file(write, a_result, tmp_path, monkeypatch):
    path = tmp_path / "target"
    path.write_bytes(b"the old, good file")
    monkeypatch.setattr(files.os, "replace", _failing_rename)
    with pytest.raises(OSError, match="injected") as err:
        write(path, a_result)
    assert err.value.filename == str(path)  # the error names the file, not a temp name
    assert path.read_bytes() == b"the old, good file"
    assert temp_files(tmp_path) == []
    monkeypatch.undo()
    write(path, a_result)  # the same write, rename working: the new file is there
    assert path.read_bytes() != b"the old, good file" and temp_files(tmp_path) == []


def test_atomic_failing_rename_keeps_the_data_cache(tmp_path, monkeypatch):
    from cnnlab.data import load_mnist

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(b"a stale file, to be rebuilt")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    monkeypatch.setattr(os, "replace", _failing_rename)
    with pytest.raises(OSError):
        load_mnist(tmp_path)
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # nothing replaced, nothing half-written left behind


def test_atomic_ctrl_c_mid_write_leaves_no_temp_file(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_write(path) as tmp:
        tmp.write_text("half of the new")
        raise KeyboardInterrupt
    assert path.read_text() == "old" and temp_files(tmp_path) == []


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid  # finished and reaped: no process has this id now (until reused)


def test_atomic_stale_temp_files_of_dead_writers_are_swept(tmp_path):
    path = tmp_path / "r.json"
    mine = temp_path(path)  # this process is alive: its file must stay
    dead = mine.with_name(mine.name.replace(f".{os.getpid()}.", f".{_dead_pid()}."))
    other_host = dead.with_name(dead.name.replace(files._HOST, "another-host"))
    for p in (mine, dead, other_host):
        p.write_text("partial")
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
    assert not dead.exists()  # a killed writer's leftover: swept
    assert mine.exists() and other_host.exists()  # a live writer's, another machine's


# --- A full disk, read-only folders and a read-only data cache ---------------

def _enospc(path):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_when_saving_the_result(a_result, tmp_path, capsys, tiny, monkeypatch):
    out = a_result.save(tmp_path / "r.json")  # the previous run's result
    previous = out.read_bytes()
    monkeypatch.setattr(files, "_fsync", _enospc)  # the disk fills as the file is written
    code, err = cli(capsys, *TRAIN, "--max-steps", "1", "--out", out, "--replace")
    assert code == 2 and f"{out}: No space left on device" in one_line(err)
    assert out.read_bytes() == previous and temp_files(tmp_path) == []


def test_disk_full_at_the_second_checkpoint_keeps_the_first(tmp_path, capsys, tiny,
                                                            monkeypatch):
    ck, saves = tmp_path / "run.pt", []

    def fill_up_at_second_save(path):
        saves.append(path)
        if len(saves) == 2:
            _enospc(path)

    monkeypatch.setattr(files, "_fsync", fill_up_at_second_save)
    # Three epochs: the second save is not the last (that one may fail alone,
    # test_disk_full_at_the_last_checkpoint_keeps_the_result).
    code, err = cli(capsys, *TRAIN, "--epochs", "3", "--checkpoint", ck,
                    "--out", tmp_path / "r.json")
    assert code == 2 and f"{ck}: No space left on device" in one_line(err)
    assert torch.load(ck, weights_only=True)["step"] == TINY_TRAIN // BATCH  # epoch 1
    assert temp_files(tmp_path) == [] and not (tmp_path / "r.json").exists()


def test_disk_full_at_the_last_checkpoint_keeps_the_result(tmp_path, capsys, caplog, tiny,
                                                          monkeypatch):
    """The run is done when its last checkpoint meets a full disk: the result
    is saved first, and the line says what was kept."""
    ck, out, saves = tmp_path / "run.pt", tmp_path / "r.json", []

    def fill_up_at_the_last_save(path):
        saves.append(path)
        if path.name.startswith(f".{ck.name}.") and len(saves) == 2:  # epoch 2 of 2
            _enospc(path)

    monkeypatch.setattr(files, "_fsync", fill_up_at_the_last_save)
    code, err = cli(capsys, *TRAIN, "--epochs", "2", "--checkpoint", ck, "--out", out)
    assert code == 0 and RunResult.load(out).epochs_run == 2  # the whole run, saved
    said = caplog.text
    assert "the run finished, but its last checkpoint could not be written" in said
    assert "No space left on device" in said and "the result is kept" in said
    assert torch.load(ck, weights_only=True)["step"] == TINY_TRAIN // BATCH  # epoch 1


def test_disk_too_small_is_refused_before_training(tmp_path, capsys, tiny, monkeypatch):
    import collections
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(files.shutil, "disk_usage", lambda path: usage(10**9, 10**9, 10**4))
    code, err = cli(capsys, *TRAIN, "--out", tmp_path / "r.json")
    line = one_line(err)
    assert code == 2 and "--out" in line and "10 KB free on its disk" in line
    assert tiny["loads"] == 0 and not (tmp_path / "r.json").exists()


def test_disk_full_when_saving_a_plot(a_result, tmp_path, monkeypatch):
    path = tmp_path / "bars.png"
    path.write_bytes(b"old png")
    monkeypatch.setattr(files, "_fsync", _enospc)
    with pytest.raises(OSError, match="No space left"):
        save_figure(bar_figure([a_result]), path)
    assert path.read_bytes() == b"old png" and temp_files(tmp_path) == []


SANDBOX = textwrap.dedent("""
    # Run inside a private mount namespace with FULL a 1 MiB tmpfs and RO a
    # read-only folder; prints each case's exit code, stderr and files as JSON.
    import contextlib, io, json, os, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[3])
    import cnnlab.train as train
    from cnnlab.__main__ import main
    from test_faults import hand_made_result, tiny_data

    full, ro = Path(sys.argv[1]), Path(sys.argv[2])

    def run(*args):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as e:
                code = e.code
        return {"code": code, "err": err.getvalue()}

    cases = {}
    cpu = ["train", "lenet", "--device", "cpu", "--quiet", "--max-steps", "2"]
    cases["ro_out"] = run(*cpu, "--out", ro / "r.json")
    os.environ["CNNLAB_DATA"] = str(ro / "data")
    cases["ro_data"] = run(*cpu, "--out", full / "unused.json")
    del os.environ["CNNLAB_DATA"]
    previous = hand_made_result().save(full / "r.json").read_text()
    try:  # fill the disk
        with open(full / "filler", "wb") as f:
            while True:
                f.write(b"x" * 4096)
                f.flush()
    except OSError:
        pass
    steps = []
    def load_tiny(root=None):
        steps.append("load")
        return tiny_data()
    train.load_mnist = load_tiny
    # --replace: the result there is another run's, and this case is about room.
    cases["full"] = run(*cpu, "--checkpoint", full / "run.pt", "--out", full / "r.json",
                        "--replace")
    cases["full"]["files"] = sorted(p.name for p in full.iterdir())
    cases["full"]["kept"] = (full / "r.json").read_text() == previous
    cases["full"]["loaded"] = len(steps)
    # 200 kB left for a LeNet checkpoint of about 540 kB (44,426 weights and
    # AdamW's two moments, float32): refused before training ...
    (full / "filler").unlink()
    stat = os.statvfs(full)
    with open(full / "filler", "wb") as f:
        f.write(b"x" * max(0, stat.f_bavail * stat.f_frsize - 200_000))
    cases["room"] = run(*cpu, "--checkpoint", full / "run.pt", "--out", full / "r2.json")
    cases["room"]["loaded"] = len(steps)
    # ... and, with that check off (as if the disk filled during training),
    # the write that meets the full disk fails whole, in one line.
    import cnnlab.cli_paths as cli_paths
    cli_paths.check_room_for_runs = lambda *args: None
    cases["half"] = run(*cpu, "--checkpoint", full / "run.pt", "--out", full / "r2.json")
    cases["half"]["files"] = sorted(p.name for p in full.iterdir())
    print(json.dumps(cases))
""")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> dict:
    """A real full disk (tmpfs) and real read-only folders, where Linux lets an
    unprivileged user make them (unshare); skipped elsewhere (the simulated
    ENOSPC and read-only cases above still run)."""
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("no private mount namespace here (unshare -rm)")
    base = tmp_path_factory.mktemp("sandbox")
    full, ro = base / "full", base / "ro"
    full.mkdir()
    ro.mkdir()
    (base / "sandbox.py").write_text(SANDBOX)
    script = (f"mount -t tmpfs -o size=1m tmpfs {full} && mount --bind {ro} {ro} && "
              f"mount -o remount,bind,ro {ro} && exec {sys.executable} "
              f"{base / 'sandbox.py'} {full} {ro} {Path(__file__).parent}")
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_disk_read_only_out_folder(sandbox):
    case = sandbox["ro_out"]
    line = one_line(case["err"])
    assert case["code"] == 2 and "is on a read-only filesystem" in line
    assert "chmod" not in line  # no permission bit can make a read-only disk writable


def test_disk_read_only_data_cache(sandbox):
    case = sandbox["ro_data"]
    line = one_line(case["err"])
    assert case["code"] == 2 and "Read-only file system" in line and "CNNLAB_DATA" in line


def test_disk_full_tmpfs(sandbox):
    case = sandbox["full"]
    line = one_line(case["err"])
    assert case["code"] == 2 and "free on its disk, and this run writes about" in line
    assert case["loaded"] == 0  # refused before the data loaded, let alone training
    assert case["kept"]  # the previous result, byte for byte
    assert case["files"] == ["filler", "r.json"]  # no checkpoint, no temporary file


def test_disk_with_room_for_one_checkpoint_but_not_two_is_refused_first(sandbox):
    case = sandbox["room"]
    line = one_line(case["err"])
    assert case["code"] == 2 and line.startswith("python -m cnnlab: error: --checkpoint")
    assert "run.pt: 195 KB free on its disk" in line or "KB free on its disk" in line
    assert case["loaded"] == 0


def test_disk_fills_in_the_middle_of_a_checkpoint_write(sandbox):
    """The run's one checkpoint save is its last: the checkpoint is lost whole
    (no partial file), the result is kept, and the line says so."""
    case = sandbox["half"]
    line = one_line(case["err"])
    assert case["code"] == 0 and "last checkpoint could not be written" in line
    assert "No space left on device" in line and "the result is kept" in line
    assert case["files"] == ["filler", "r.json", "r2.json"]  # no checkpoint, no temp file


# --- Concurrent writers to one file ------------------------------------------

def test_concurrent_threads_write_one_result(a_result, tmp_path):
    path = tmp_path / "r.json"
    writers, rounds = 8, 20
    versions = [replace(a_result, test_loss=float(i)) for i in range(writers)]

    def write_often(r: RunResult) -> None:
        for _ in range(rounds):
            r.save(path)

    threads = [threading.Thread(target=write_often, args=(r,)) for r in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert RunResult.load(path) in versions and temp_files(tmp_path) == []


def test_concurrent_processes_write_one_file(tmp_path):
    # Each writer loads cnnlab/files.py alone (standard library only), so the
    # processes start in a blink; each writes its own 256 KiB text many times.
    path, writers, size = tmp_path / "shared.txt", 4, 2**18
    script = textwrap.dedent(f"""
        import importlib.util, sys
        path = {str(ROOT / "cnnlab" / "files.py")!r}
        spec = importlib.util.spec_from_file_location("files", path)
        files = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(files)
        for _ in range(20):
            files.atomic_write_text({str(path)!r}, sys.argv[1] * {size})
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(i)])
             for i in range(writers)]
    assert [p.wait(timeout=120) for p in procs] == [0] * writers
    text = path.read_text()
    assert text in {str(i) * size for i in range(writers)}  # one writer's, whole
    assert temp_files(tmp_path) == []


# --- Signals, kill -9 and interrupted runs ------------------------------------

@pytest.fixture(scope="module")
def straight() -> RunResult:
    """Two epochs (four steps) of LeNet on tiny_data, uninterrupted."""
    return fit(TrainConfig(epochs=2, **CFG), tiny_data(), progress=False)


def _signal_at_step(monkeypatch, step: int, *signums: int) -> None:
    """Make the process send itself ``signums`` during training step ``step``."""
    calls = {"n": 0}

    def loss(logits, targets):
        calls["n"] += 1
        if calls["n"] == step:
            for signum in signums:
                os.kill(os.getpid(), signum)
        return F.cross_entropy(logits, targets)

    monkeypatch.setattr(train, "loss_fn", loss)


@pytest.mark.parametrize("signum, step", [
    (SIGTERM, 3), (SIGHUP, 3), (SIGINT, 3),  # mid epoch 2 (two steps an epoch)
    (SIGTERM, 2),                            # at epoch 1's end: the next order not drawn
])
def test_signal_saves_the_checkpoint_and_resume_matches(signum, step, straight, tmp_path,
                                                        capsys, tiny, monkeypatch):
    if signum is None:
        pytest.skip("no SIGHUP on this system")
    ck, out = tmp_path / "run.pt", tmp_path / "r.json"
    _signal_at_step(monkeypatch, step, signum)
    code, err = cli(capsys, *TRAIN, "--epochs", "2", "--checkpoint", ck, "--out", out)
    assert code == 128 + signum  # the shell's convention for a run a signal stopped
    assert f"at step {step}; checkpoint saved to {ck}" in one_line(err)  # the step ended
    assert torch.load(ck, weights_only=True)["step"] == step and not out.exists()
    monkeypatch.setattr(train, "loss_fn", F.cross_entropy)
    code, err = cli(capsys, *TRAIN, "--epochs", "2", "--checkpoint", ck, "--resume",
                    "--out", out)
    assert code == 0, err
    same_run(RunResult.load(out), straight)


def test_signal_without_checkpoint_says_nothing_was_saved(tmp_path, capsys, tiny,
                                                          monkeypatch):
    _signal_at_step(monkeypatch, 3, SIGTERM)
    code, err = cli(capsys, *TRAIN, "--epochs", "2", "--out", tmp_path / "r.json")
    line = one_line(err)
    assert code == 128 + SIGTERM and "stopped by SIGTERM at step 3; nothing saved" in line
    assert "checkpoint saved" not in line and list(tmp_path.iterdir()) == []


def test_signal_twice_stops_at_once_and_keeps_the_last_save(straight, tmp_path, capsys,
                                                            tiny, monkeypatch):
    ck, out = tmp_path / "run.pt", tmp_path / "r.json"
    _signal_at_step(monkeypatch, 3, SIGTERM, SIGTERM)  # the second one cannot wait
    code, err = cli(capsys, *TRAIN, "--epochs", "2", "--checkpoint", ck, "--out", out)
    assert code == 128 + SIGTERM and "in the middle of step 3; not saved" in one_line(err)
    assert torch.load(ck, weights_only=True)["step"] == TINY_TRAIN // BATCH  # epoch 1's save
    monkeypatch.setattr(train, "loss_fn", F.cross_entropy)
    assert cli(capsys, *TRAIN, "--epochs", "2", "--checkpoint", ck, "--resume",
               "--out", out)[0] == 0
    same_run(RunResult.load(out), straight)


def test_signal_during_the_last_save_is_ignored(tmp_path, capsys, tiny, monkeypatch):
    """Once a stopped run is saving its checkpoint, a further Ctrl-C must not
    cut the save short (torch's writer then fails with a bare 'unexpected pos')."""
    ck, out = tmp_path / "run.pt", tmp_path / "r.json"
    _signal_at_step(monkeypatch, 3, SIGTERM)
    real_save = train.save_checkpoint

    def impatient_save(*args, **kwargs):
        if isinstance(sys.exc_info()[1], KeyboardInterrupt):  # the save of a stop
            os.kill(os.getpid(), SIGINT)  # the user presses Ctrl-C again meanwhile
        return real_save(*args, **kwargs)

    monkeypatch.setattr(train, "save_checkpoint", impatient_save)
    code, err = cli(capsys, *TRAIN, "--epochs", "2", "--checkpoint", ck, "--out", out)
    assert code == 128 + SIGTERM and f"checkpoint saved to {ck}" in one_line(err)
    assert torch.load(ck, weights_only=True)["step"] == 3


def test_signal_cli_ignores_signals_once_it_has_said_its_line(monkeypatch):
    import cnnlab.__main__ as cli_module

    calls = []
    monkeypatch.setattr(cli_module.signal, "signal", lambda *a: calls.append(a))
    for code in (0, 1, 2, 130):
        with pytest.raises(SystemExit):
            cli_module._exit(code)
    ignored = [s for s, handler in calls if handler is signal.SIG_IGN]
    assert SIGINT in ignored and SIGTERM in ignored and len(calls) == len(ignored)
    assert len(calls) == len([s for s in (SIGINT, SIGTERM, SIGHUP) if s])  # for 130 only


@pytest.mark.parametrize("exists", [False, True])
def test_signal_before_training_mentions_only_a_checkpoint_that_exists(exists, tmp_path,
                                                                       capsys, monkeypatch):
    def interrupted_while_loading(root=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "load_mnist", interrupted_while_loading)
    ck = tmp_path / "run.pt"
    if exists:  # from an earlier, stopped run that this one resumes
        ck.write_bytes(b"an earlier run's checkpoint")
    code, err = cli(capsys, *TRAIN, "--checkpoint", ck, "--resume", "--out",
                    tmp_path / "r.json")
    kept = (f"the checkpoint {ck} keeps the run (continue with --resume)" if exists
            else "nothing saved")
    assert code == 128 + SIGINT
    assert one_line(err) == f"python -m cnnlab: interrupted (Ctrl-C); {kept}"


def test_signal_kill_9_mid_checkpoint_then_resume_matches(straight, tmp_path):
    """SIGKILL (no handler can run) halfway through writing the epoch-2 checkpoint."""
    ck = tmp_path / "run.pt"
    script = textwrap.dedent(f"""
        import io, os, signal, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import torch
        from cnnlab.train import TrainConfig, fit
        from test_faults import CFG, tiny_data

        import cnnlab.checkpoint
        real_open, writes = open, []

        class HalfThenDie:  # the checkpoint file, written halfway before SIGKILL
            def __init__(self, f):
                self.f = f
            def __enter__(self):
                return self
            def __exit__(self, *exc):
                self.f.close()
            def write(self, data):
                data = bytes(data)
                self.f.write(data[: len(data) // 2])
                self.f.flush()
                os.kill(os.getpid(), signal.SIGKILL)

        def open_second_write_dies(path, mode="r", *args, **kwargs):
            f = real_open(path, mode, *args, **kwargs)
            if "w" in mode:
                writes.append(path)
                if len(writes) == 2:  # epoch 1's checkpoint is whole, epoch 2's is not
                    return HalfThenDie(f)
            return f

        cnnlab.checkpoint.open = open_second_write_dies  # the module's own writes only
        fit(TrainConfig(epochs=2, **CFG), tiny_data(), progress=False,
            checkpoint={str(ck)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert len(temp_files(tmp_path)) == 1  # the half-written temporary file
    epoch_1 = TINY_TRAIN // BATCH
    assert torch.load(ck, weights_only=True)["step"] == epoch_1  # whole
    resumed = fit(TrainConfig(epochs=2, **CFG), tiny_data(), progress=False,
                  checkpoint=ck, resume=True)
    same_run(resumed, straight)
    assert temp_files(tmp_path) == []  # the dead writer's leftover was swept


def test_signal_run_shorter_than_an_epoch_checkpoints_at_its_end(tmp_path):
    ck = tmp_path / "run.pt"
    fit(TrainConfig(max_steps=1, **CFG), tiny_data(), progress=False, checkpoint=ck)
    assert torch.load(ck, weights_only=True)["step"] == 1
    longer = fit(TrainConfig(max_steps=2, **CFG), tiny_data(), progress=False,
                 checkpoint=ck, resume=True)
    straight = fit(TrainConfig(max_steps=2, **CFG), tiny_data(), progress=False)
    assert longer.train_loss == straight.train_loss  # step 2 continued step 1
    assert (longer.test_accuracy, longer.test_loss) == (straight.test_accuracy,
                                                        straight.test_loss)
    assert longer.val_step == [1, 2]  # the short run's last validation is kept


# --- Failures reported in one line --------------------------------------------

def test_error_line_torch_compile_failure(tmp_path, capsys, tiny, monkeypatch):
    from torch._dynamo.exc import BackendCompilerFailed

    class InvalidCxxCompiler(RuntimeError):  # as torch._inductor raises it
        pass

    def inductor():
        pass

    def broken_compile(model):
        def call(x):  # torch.compile fails at the first call, when it compiles
            raise BackendCompilerFailed(inductor, InvalidCxxCompiler(
                "No working C++ compiler found"), None)
        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    code, err = cli(capsys, *TRAIN, "--compile", "--out", tmp_path / "r.json")
    assert code == 1 and ("torch.compile failed: InvalidCxxCompiler: No working C++ "
                          "compiler found. Train without it") in one_line(err)


def test_error_line_for_a_bug_names_it_and_how_to_see_more(tmp_path, capsys, tiny,
                                                           monkeypatch):
    def buggy_evaluate(*args, **kwargs):
        raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")

    monkeypatch.setattr(train, "evaluate", buggy_evaluate)
    code, err = cli(capsys, *TRAIN, "--max-steps", "1", "--out", tmp_path / "r.json")
    line = one_line(err)
    assert code == 1 and "internal error: TypeError: unsupported operand" in line
    assert "CNNLAB_DEBUG=1" in line


def test_error_line_cnnlab_debug_shows_the_traceback(tmp_path, tiny, monkeypatch):
    monkeypatch.setenv("CNNLAB_DEBUG", "1")
    ck = tmp_path / "run.pt"
    ck.write_bytes(b"junk")
    with pytest.raises(CheckpointError):  # raised, so Python prints its traceback
        main([*TRAIN, "--checkpoint", str(ck), "--resume",
              "--out", str(tmp_path / "r.json")])


# --- The README's table counts these cases ------------------------------------

KINDS = ("flag", "path", "config", "data", "result_file", "checkpoint_file", "atomic",
         "disk", "concurrent", "signal", "error_line")


def _cases(fn) -> int:
    """How many cases a test function runs: the product of its parametrize lists."""
    n = 1
    for mark in getattr(fn, "pytestmark", []):
        if mark.name == "parametrize":
            n *= len(mark.args[1])
    return n


def test_readme_table_counts_every_fault_case():
    tests = {name: fn for name, fn in globals().items()
             if name.startswith("test_") and callable(fn)}
    counted = {kind: 0 for kind in KINDS}
    for name, fn in tests.items():
        kinds = [k for k in KINDS if name.startswith(f"test_{k}_")]
        assert len(kinds) == 1 or name == "test_readme_table_counts_every_fault_case", name
        if kinds:
            counted[kinds[0]] += _cases(fn)
    readme = (ROOT / "README.md").read_text().split("### The fault-injection suite")[1]
    rows = dict((kind, int(n)) for n, kind in
                re.findall(r"\| (\d+) \| `test_(\w+?)_\*` \|", readme))
    assert rows == counted
    total = re.search(r"\| all kinds \| \*\*(\d+)\*\* \|", readme)
    # >= 60: issue 14's bar for the suite, so an emptied suite cannot pass.
    assert total and int(total[1]) == sum(counted.values()) >= 60
