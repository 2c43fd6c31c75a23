"""Reproducibility and provenance: a resumed run is the run it continues,
and a result names the commit it came from, dirty or not."""
import importlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import cnnlab.train as cnntrain
from cnnlab.checkpoint import CheckpointError
from cnnlab.data import MnistSplits, Split, split_fingerprint
from cnnlab.provenance import short_commit
from cnnlab.results import RunResult, provenance_line
from cnnlab.train import TrainConfig, fit, train

REPO = Path(__file__).resolve().parent.parent


def tiny(small: MnistSplits, n_train: int = 128) -> MnistSplits:
    """128 training images: 4 steps an epoch at batch 32; 64 to validate and test."""
    head = lambda s, n: Split(s.images[:n], s.labels[:n])  # noqa: E731
    return MnistSplits(head(small.train, n_train), head(small.val, 64), head(small.test, 64))


# MobileNetV1 at a quarter width and 28 px: dropout and BN, and cheap.
DROPOUT_NET = dict(model="mobilenet_v1", options={"width": 0.25, "upsample": 1},
                   batch_size=32, eval_every=3, device="cpu")


# --- resume -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def one_epoch_checkpoint(small, tmp_path_factory):
    """A checkpoint after one epoch of DROPOUT_NET, and the data it saw."""
    data, ckpt = tiny(small), tmp_path_factory.mktemp("ckpt") / "run.pt"
    fit(TrainConfig(epochs=1, **DROPOUT_NET), data, progress=False, checkpoint=ckpt)
    return data, ckpt


# Every setting that shapes the path to the checkpoint, changed one at a
# time: resuming under any of them would splice two different runs.
RECIPE_CHANGES = [{"seed": 43}, {"batch_size": 64}, {"lr": 0.01}, {"weight_decay": 0.0},
                  {"dropout": 0.3}, {"options": {"width": 0.5, "upsample": 1}},
                  {"eval_every": 4}, {"eval_subset": 10}, {"val_images": 32},
                  {"test_images": 32}]


@pytest.mark.parametrize("change", RECIPE_CHANGES, ids=lambda c: next(iter(c)))
def test_resume_refuses_a_different_recipe(one_epoch_checkpoint, change):
    data, ckpt = one_epoch_checkpoint
    saved = ckpt.read_bytes()
    (field, value), = change.items()
    with pytest.raises(CheckpointError, match=f"{field}: checkpoint"):
        fit(TrainConfig(epochs=2, **DROPOUT_NET | change), data, progress=False,
            checkpoint=ckpt, resume=True)
    assert ckpt.read_bytes() == saved  # refused before anything was written


def test_resume_refuses_another_model(one_epoch_checkpoint):
    data, ckpt = one_epoch_checkpoint
    with pytest.raises(CheckpointError, match="is for model 'mobilenet_v1'"):
        fit(TrainConfig(model="lenet", epochs=2, batch_size=32, eval_every=3, device="cpu"),
            data, progress=False, checkpoint=ckpt, resume=True)


def test_random_states_survive_a_weights_only_round_trip(tmp_path):
    import random

    import numpy as np

    from cnnlab.checkpoint import rng_states, set_rng_states

    def draw():
        return random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()

    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    torch.save({"rng": rng_states()}, tmp_path / "rng.pt")
    expected = draw()
    random.seed(2), np.random.seed(2), torch.manual_seed(2)
    set_rng_states(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"])
    assert draw() == expected


def _state(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("stop", ["epoch end", "Ctrl-C mid-epoch"])
def test_a_model_with_dropout_resumes_bit_for_bit(small, tmp_path, monkeypatch, stop):
    """8 steps straight against 4 (or 7) + checkpoint + resume: the same bits.

    Dropout draws from the global RNG, so this fails unless the checkpoint
    restores the random state (and the data order) where it left off.
    """
    data, ckpt = tiny(small), tmp_path / "run.pt"
    straight_model, straight = train(TrainConfig(epochs=2, **DROPOUT_NET), data,
                                     progress=False)
    if stop == "epoch end":
        fit(TrainConfig(epochs=1, **DROPOUT_NET), data, progress=False, checkpoint=ckpt)
    else:
        calls = {"n": 0}

        def interrupt_at_step_7(logits, targets):  # a real SIGINT, during step 7
            calls["n"] += 1
            if calls["n"] == 7:
                signal.raise_signal(signal.SIGINT)
            return F.cross_entropy(logits, targets)

        monkeypatch.setattr(cnntrain, "loss_fn", interrupt_at_step_7)
        with pytest.raises(KeyboardInterrupt):
            fit(TrainConfig(epochs=2, **DROPOUT_NET), data, progress=False, checkpoint=ckpt)
        monkeypatch.setattr(cnntrain, "loss_fn", F.cross_entropy)
        # Held until step 7 was whole (its dropout masks drawn, BN's running
        # statistics moved, the weights updated), then saved.
        assert torch.load(ckpt, weights_only=True)["step"] == 7
    torch.manual_seed(1234)  # whatever ran in between moved the global RNG
    resumed_model, resumed = train(TrainConfig(epochs=2, **DROPOUT_NET), data,
                                   progress=False, checkpoint=ckpt, resume=True)
    a, b = _state(straight_model), _state(resumed_model)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resuming"
    assert resumed.train_loss == straight.train_loss
    assert (resumed.val_step, resumed.val_accuracy, resumed.val_loss) == (
        straight.val_step, straight.val_accuracy, straight.val_loss)
    assert (resumed.test_accuracy, resumed.test_loss) == (
        straight.test_accuracy, straight.test_loss)


def test_resume_continues_a_longer_run_where_it_stopped(small, tmp_path, monkeypatch):
    """The resumed part trains only the steps that are left."""
    data, ckpt = tiny(small), tmp_path / "run.pt"
    fit(TrainConfig(epochs=1, **DROPOUT_NET), data, progress=False, checkpoint=ckpt)
    seen = []
    real = cnntrain.loss_fn

    def count(logits, targets):
        seen.append(len(targets))
        return real(logits, targets)

    monkeypatch.setattr(cnntrain, "loss_fn", count)
    r = fit(TrainConfig(epochs=3, **DROPOUT_NET), data, progress=False, checkpoint=ckpt,
            resume=True)
    assert seen == [32] * 8  # epochs 2 and 3: 2 x 128 / 32 steps
    assert len(r.train_loss) == 12 and r.steps_per_epoch == 4  # 3 epochs of 128 / 32 steps
    assert len(r.epoch_val_accuracy) == 3


# --- provenance: the commit and the dirty mark ----------------------------------------

def _git(cwd: Path, *args: str) -> str:
    env = os.environ | {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, text=True,
                          capture_output=True).stdout.strip()


def _probe(checkout: Path) -> list[str]:
    """git_commit() and provenance()'s commit, as the package copy in
    ``checkout`` sees them (imported under another name, in this process)."""
    name = f"cnnlab_copy_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(
        name, checkout / "cnnlab" / "__init__.py",
        submodule_search_locations=[str(checkout / "cnnlab")])
    sys.modules[name] = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(sys.modules[name])
        provenance = importlib.import_module(f"{name}.provenance")
        assert Path(provenance.__file__).is_relative_to(checkout)
        return [str(provenance.git_commit()),
                str(provenance.provenance(torch.device("cpu"))["git_commit"])]
    finally:
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]


@pytest.fixture
def checkout(tmp_path, monkeypatch) -> Path:
    """A copy of the package (without the MNIST files), not yet a git repository."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # no repository above
    root = tmp_path / "repo"
    shutil.copytree(REPO / "cnnlab", root / "cnnlab",
                    ignore=shutil.ignore_patterns("mnist", "__pycache__"))
    (root / "README.md").write_text("a course\n")
    return root


def test_provenance_carries_the_commit_and_the_dirty_mark(checkout):
    _git(checkout, "init", "-q")
    _git(checkout, "add", ".")
    _git(checkout, "commit", "-q", "-m", "first")
    head = _git(checkout, "rev-parse", "HEAD")
    assert len(head) == 40  # a SHA-1 in hex
    assert _probe(checkout) == [head, head]  # clean: the bare commit
    (checkout / "new-result.json").write_text("{}")  # untracked files change no code
    assert _probe(checkout) == [head, head]
    (checkout / "results").mkdir()  # a committed record, then replaced: no code changed
    (checkout / "results" / "run.json").write_text("{}")
    _git(checkout, "add", ".")
    _git(checkout, "commit", "-q", "-m", "a record")
    head = _git(checkout, "rev-parse", "HEAD")
    (checkout / "results" / "run.json").write_text('{"again": 1}')
    assert _probe(checkout) == [head, head]
    (checkout / "README.md").write_text("a course, edited\n")  # a tracked file changes
    assert _probe(checkout) == [head + "+dirty"] * 2
    _git(checkout, "commit", "-q", "-am", "second")
    second = _git(checkout, "rev-parse", "HEAD")
    assert second != head and _probe(checkout) == [second, second]  # clean again


def test_staged_changes_are_dirty_too(checkout):
    _git(checkout, "init", "-q")
    _git(checkout, "add", ".")
    _git(checkout, "commit", "-q", "-m", "first")
    head = _git(checkout, "rev-parse", "HEAD")
    (checkout / "README.md").write_text("staged\n")
    _git(checkout, "add", "README.md")
    assert _probe(checkout) == [head + "+dirty"] * 2


def test_outside_a_git_repository_there_is_no_commit(checkout):
    assert _probe(checkout) == ["None", "None"]


def test_a_run_records_this_checkouts_commit(small):
    r = fit(TrainConfig(model="lenet", max_steps=1, eval_every=1, device="cpu",
                        val_images=10, test_images=10), small, progress=False)
    p = r.provenance
    head = _git(REPO, "rev-parse", "HEAD")
    dirty = _git(REPO, "status", "--porcelain", "--untracked-files=no", "--", ".",
                 ":(exclude)results") != ""
    assert p["git_commit"] == head + ("+dirty" if dirty else "")
    assert p["split_sha256"] == split_fingerprint()
    assert p["device"] == "cpu" and p["torch"] == torch.__version__
    assert p["python"] == ".".join(map(str, sys.version_info[:3]))


def test_the_dirty_mark_survives_saving_and_reading(small, tmp_path):
    r = fit(TrainConfig(model="lenet", max_steps=1, eval_every=1, device="cpu",
                        val_images=10, test_images=10), small, progress=False)
    r.provenance["git_commit"] = "0123456789abcdef" * 2 + "01234567+dirty"
    back = RunResult.load(r.save(tmp_path / "r.json"))
    assert back.provenance["git_commit"] == r.provenance["git_commit"]
    assert short_commit(back.provenance["git_commit"]) == "0123456789ab+dirty"
    assert "commit 0123456789ab+dirty" in provenance_line(back)
    assert short_commit("0123456789abcdef" * 2 + "01234567") == "0123456789ab"
    assert short_commit(None) == "unknown commit"


# --- what the tables and the pages read from a result ------------------------------

def _run(model="lenet", seed=42, acc=0.975, device="cpu", epochs=5, **provenance):
    steps = 375  # 48,000 / 128: the report's recipe
    r = RunResult(
        model=model, parameters=44_426, config={"seed": seed, "device": device,
                                                "max_steps": None, "val_images": None,
                                                "test_images": None},
        steps_per_epoch=steps, train_loss=[0.5] * (steps * epochs),
        val_step=[steps], val_accuracy=[acc], val_loss=[0.1],
        epoch_val_accuracy=[acc], epoch_val_loss=[0.1], test_accuracy=acc, test_loss=0.1,
        train_seconds=12.34, images_per_second=48_000 * epochs / 12.34,
        peak_memory_bytes=3 * 2**20, peak_memory_kind="process_peak_rss",
        provenance={"device": device, "device_name": f"a {device} chip", **provenance})
    return r


def test_the_comparison_table_prints_what_the_run_holds():
    from cnnlab.results import markdown_table

    rows = markdown_table([_run()]).splitlines()
    assert len(rows) == 3 and "test acc. (%)" in rows[0]
    # 100 x 0.975 = 97.50 %; 12.34 s; 5 x 375 steps = 5 epochs; 5 x 48,000 / 12.34 s
    # = 19,449 images/s; 3 MiB of peak memory.
    assert rows[2] == (f"| lenet | 97.50 | 12.3 | 5 | {5 * 48_000 / 12.34:,.0f} | 44,426 "
                       f"| 3 | a cpu chip |")


def test_the_seed_table_gives_mean_sample_std_and_range():
    from cnnlab.results import seed_summary_table

    runs = [_run(seed=s, acc=a) for s, a in ((42, 0.97), (43, 0.98), (44, 0.99))]
    row = seed_summary_table(runs).splitlines()[2]
    # mean 98.00, sample std sqrt(((-1)^2 + 0 + 1^2) / 2) = 1.00, range 97.00-99.00
    assert row == "| lenet | 42,43,44 | 98.00 | 1.00 | 97.00-99.00 | 12.3 |"


def test_recorded_runs_are_the_full_ones_gpu_first(tmp_path):
    from cnnlab.results import is_full_run, recorded_runs

    assert is_full_run(_run()) and not is_full_run(_run(epochs=1))
    cut = _run()
    cut.config["max_steps"] = 10
    assert not is_full_run(cut)
    _run(device="cpu").save(tmp_path / "lenet-cpu-seed42.json")
    _run(device="cuda").save(tmp_path / "lenet-cuda-seed42.json")
    _run(epochs=1).save(tmp_path / "lenet-cpu-short.json")
    _run(model="alexnet").save(tmp_path / "alexnet-cpu-seed42.json")
    found = recorded_runs("lenet", tmp_path)
    assert [r.provenance["device"] for r in found] == ["cuda", "cpu"]


def test_the_provenance_line_names_where_and_when():
    r = _run(date="2026-11-29T10:00:00+00:00", torch="2.14.1",
             git_commit="0123456789abcdef" * 2 + "01234567")
    assert provenance_line(r) == ("lenet: recorded 2026-11-29 on a cpu chip (cpu), torch "
                                  "2.14.1, seed 42, commit 0123456789ab")
