"""Reliability: checkpoints, resume, out-of-memory fallback, divergence, atomic files."""
import copy
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
import torch.nn.functional as F

import cnnlab.train as train
from cnnlab.checkpoint import CheckpointError
from cnnlab.models import get_model
from cnnlab.results import RunResult
from cnnlab.oom import TrainingOutOfMemoryError
from cnnlab.train import DivergenceError, TrainConfig, fit, train_step

CFG = dict(model="lenet", eval_every=7, device="cpu")


def _same(a: RunResult, b: RunResult) -> None:
    assert a.train_loss == b.train_loss
    assert (a.val_step, a.val_accuracy, a.val_loss) == (b.val_step, b.val_accuracy, b.val_loss)
    assert a.epoch_val_accuracy == b.epoch_val_accuracy
    assert (a.test_accuracy, a.test_loss) == (b.test_accuracy, b.test_loss)


def test_resume_after_epoch_2_is_bit_identical(small, tmp_path):
    straight = fit(TrainConfig(epochs=4, **CFG), small, progress=False)
    ckpt = tmp_path / "run.pt"
    fit(TrainConfig(epochs=2, **CFG), small, progress=False, checkpoint=ckpt)
    resumed = fit(TrainConfig(epochs=4, **CFG), small, progress=False,
                  checkpoint=ckpt, resume=True)
    _same(straight, resumed)
    state = torch.load(ckpt, weights_only=True)  # loads without arbitrary pickles
    assert state["step"] == 4 * straight.steps_per_epoch


def test_ctrl_c_mid_epoch_saves_and_resumes_identically(small, tmp_path, monkeypatch):
    straight = fit(TrainConfig(epochs=2, **CFG), small, progress=False)
    ckpt = tmp_path / "run.pt"
    calls = {"n": 0}

    def interrupt_at_step_30(logits, targets):
        calls["n"] += 1
        if calls["n"] == 30:
            raise KeyboardInterrupt
        return F.cross_entropy(logits, targets)

    monkeypatch.setattr(train, "loss_fn", interrupt_at_step_30)
    with pytest.raises(KeyboardInterrupt):
        fit(TrainConfig(epochs=2, **CFG), small, progress=False, checkpoint=ckpt)
    monkeypatch.setattr(train, "loss_fn", F.cross_entropy)
    # The 30th step raised, so 29 were done: mid-epoch 2 (2,560 / 128 = 20 steps an epoch).
    assert torch.load(ckpt, weights_only=True)["step"] == 29
    resumed = fit(TrainConfig(epochs=2, **CFG), small, progress=False,
                  checkpoint=ckpt, resume=True)
    _same(straight, resumed)


def test_checkpoint_of_another_model_is_refused(small, tmp_path):
    ckpt = tmp_path / "run.pt"
    fit(TrainConfig(epochs=1, **CFG), small, progress=False, checkpoint=ckpt)
    other = TrainConfig(epochs=1, **CFG | dict(model="mobilenet_v1", max_steps=1))
    with pytest.raises(CheckpointError, match="is for model 'lenet'"):
        fit(other, small, progress=False, checkpoint=ckpt, resume=True)


def test_checkpoint_with_another_recipe_is_refused(small, tmp_path):
    ckpt = tmp_path / "run.pt"
    fit(TrainConfig(epochs=1, **CFG), small, progress=False, checkpoint=ckpt)
    with pytest.raises(CheckpointError, match="lr: checkpoint 0.001, this run 0.01"):
        fit(TrainConfig(epochs=2, lr=0.01, **CFG), small, progress=False,
            checkpoint=ckpt, resume=True)


def test_truncated_checkpoint_is_refused(small, tmp_path):
    ckpt = tmp_path / "run.pt"
    fit(TrainConfig(epochs=1, **CFG), small, progress=False, checkpoint=ckpt)
    ckpt.write_bytes(ckpt.read_bytes()[:5000])  # LeNet's weights alone are 4 x 44,426 bytes
    with pytest.raises(CheckpointError, match="truncated or not a cnnlab checkpoint"):
        fit(TrainConfig(epochs=2, **CFG), small, progress=False, checkpoint=ckpt, resume=True)


def test_foreign_file_is_refused(small, tmp_path):
    ckpt = tmp_path / "run.pt"
    torch.save({"weights": torch.zeros(3)}, ckpt)
    with pytest.raises(CheckpointError, match="not a cnnlab checkpoint"):
        fit(TrainConfig(epochs=1, **CFG), small, progress=False, checkpoint=ckpt, resume=True)


def test_accumulated_micro_batches_equal_the_full_batch_update():
    # SGD, so that the update is the gradient times lr: Adam's first step is
    # about lr * sign(grad), which float rounding flips for tiny gradients.
    torch.manual_seed(0)
    x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
    model = get_model("lenet")
    twin = copy.deepcopy(model)
    before = copy.deepcopy(model)
    full = train_step(model, torch.optim.SGD(model.parameters(), lr=0.5), x, y,
                      micro_batch=128, amp=False)
    accumulated = train_step(twin, torch.optim.SGD(twin.parameters(), lr=0.5), x, y,
                             micro_batch=32, amp=False)
    # Tolerances for float32 sums taken in another order (measured: 2e-7, 7e-9, 7e-9).
    assert torch.allclose(full, accumulated, atol=1e-6)  # same mean loss
    for p, q, p0 in zip(model.parameters(), twin.parameters(), before.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-7)      # same gradient
        assert torch.allclose(p - p0, q - p0, atol=1e-7)      # same update
    assert any(not torch.equal(p, p0) for p, p0 in zip(model.parameters(), before.parameters()))


def test_out_of_memory_halves_the_micro_batch_and_carries_on(small, monkeypatch, caplog):
    seen = []

    def oom_above_32(logits, targets):
        seen.append(len(targets))
        if len(targets) > 32:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return F.cross_entropy(logits, targets)

    monkeypatch.setattr(train, "loss_fn", oom_above_32)
    with caplog.at_level("WARNING", logger="cnnlab"):
        r = fit(TrainConfig(epochs=1, **CFG), small, progress=False)
    assert seen[:3] == [128, 64, 32]           # halved twice, then it fits
    assert set(seen[3:]) == {32}               # and stays there
    assert len(r.train_loss) == 20             # no batch was lost: 2,560 / 128
    assert "micro-batch of 128; retrying with 64" in caplog.text
    assert "the batch stays 128" in caplog.text


def test_out_of_memory_at_micro_batch_1_gives_up_clearly(small, monkeypatch):
    def always_oom(logits, targets):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")

    monkeypatch.setattr(train, "loss_fn", always_oom)
    with pytest.raises(TrainingOutOfMemoryError, match="micro-batch of 1 image .batch 128"):
        fit(TrainConfig(epochs=1, **CFG), small, progress=False)


def test_nan_loss_stops_at_that_step_and_keeps_old_result(small, tmp_path, monkeypatch, capsys):
    from cnnlab.__main__ import main

    out = tmp_path / "lenet.json"
    fit(TrainConfig(epochs=1, max_steps=1, **CFG), small, progress=False).save(out)
    previous = out.read_bytes()
    calls = {"n": 0}

    def nan_at_step_12(logits, targets):
        calls["n"] += 1
        loss = F.cross_entropy(logits, targets)
        return loss * float("nan") if calls["n"] == 12 else loss

    monkeypatch.setattr(train, "loss_fn", nan_at_step_12)
    with pytest.raises(DivergenceError, match="at step 12 .epoch 1.*lower learning rate"):
        fit(TrainConfig(epochs=1, **CFG), small, progress=False)
    calls["n"] = 0
    code = main(["train", "lenet", "--device", "cpu", "--max-steps", "20", "--quiet",
                 "--out", str(out), "--replace"])  # another budget than the kept run
    assert code == 1 and "at step 12" in capsys.readouterr().err
    assert out.read_bytes() == previous


def test_result_file_survives_a_killed_writer(small, tmp_path):
    """Kill a process while it rewrites a result again and again: the file stays whole."""
    r = fit(TrainConfig(epochs=1, max_steps=3, **CFG), small, progress=False)
    r.train_loss = [0.5] * 200_000  # big enough that a write takes a while
    path = tmp_path / "r.json"
    r.save(path)
    script = textwrap.dedent(f"""
        from cnnlab.results import RunResult
        r = RunResult.load({str(path)!r})
        print("ready", flush=True)
        i = 0
        while True:
            i += 1
            r.test_loss = float(i)
            r.save({str(path)!r})
    """)
    for delay in (0.05, 0.2, 0.4):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        back = RunResult.load(path)  # parses: never half-written
        assert len(back.train_loss) == 200_000


def test_float_images_are_refused_with_a_fix(small):
    from cnnlab.data import MnistSplits, Split
    from cnnlab.data import PixelDtypeError

    floats = Split(small.train.images.float() / 255, small.train.labels)
    with pytest.raises(PixelDtypeError, match="uint8 images.*got dtype torch.float32"):
        fit(TrainConfig(epochs=1, **CFG), MnistSplits(floats, small.val, small.test),
            progress=False)


def test_garbage_checkpoint_via_cli_is_one_line(tmp_path, capsys):
    from cnnlab.__main__ import main

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all\n" * 10)
    with pytest.raises(SystemExit) as exit_:
        main(["train", "lenet", "--checkpoint", str(junk), "--resume", "--max-steps", "2",
              "--device", "cpu", "--quiet", "--out", str(tmp_path / "o.json")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "truncated or not a cnnlab checkpoint" in err and len(err.strip().splitlines()) == 1


def test_every_bad_input_row_in_the_readme_names_a_real_test():
    """The README's table of bad inputs must point at tests that exist."""
    import ast
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    table = (root / "README.md").read_text().split("## When something goes wrong")[1]
    table = table.split("### The fault-injection suite")[0]
    rows = [line for line in table.splitlines()
            if line.startswith("| ") and not line.startswith("| bad input")]
    refs = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", table)
    assert rows and len(refs) == len(rows)  # one test named in every row
    for path, name in refs:
        tree = ast.parse((root / path).read_text())
        names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert name in names, f"README names {path}::{name}, which does not exist"
