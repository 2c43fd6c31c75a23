"""Training: the recipe's defaults, reproducibility, input checks, the result."""
import json
import subprocess
import sys
from dataclasses import asdict

import pytest
import torch

from cnnlab.data import MnistSplits, ShapeMismatchError, Split, check_input_shape
from cnnlab.results import FORMAT_VERSION, ResultFormatError, RunResult
from cnnlab.train import TrainConfig, fit, resolve_device, set_seed
from cnnlab.models import get_model


def test_defaults_are_the_reports_recipe():
    c = TrainConfig()
    # The report's recipe (cnnlab/report.py): batch 128, AdamW 1e-3, 5 epochs, seed 42.
    assert (c.batch_size, c.lr, c.epochs, c.seed) == (128, 1e-3, 5, 42)
    # The report's dropout: 0.2 for GoogLeNet (its paper has 0.4), 0.5 for the others.
    assert TrainConfig(model="lenet").model_kwargs() == {}
    assert TrainConfig(model="googlenet").model_kwargs() == {"dropout": 0.2}
    for name in ("alexnet", "alexnet_large", "resnet18", "mobilenet_v1"):
        assert TrainConfig(model=name).model_kwargs() == {"dropout": 0.5}


@pytest.mark.parametrize("bad", [dict(epochs=0), dict(batch_size=-1), dict(lr=0.0),
                                 dict(model="vgg"), dict(dropout=1.0), dict(max_steps=0),
                                 dict(threads=0), dict(eval_batch_size=0),
                                 dict(threads=True)])
def test_bad_config_is_refused(bad):
    with pytest.raises(ValueError):
        TrainConfig(**bad)


def test_set_seed_seeds_python_numpy_torch():
    import random

    import numpy as np
    set_seed(7)
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    set_seed(7)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def test_a_bad_device_from_the_environment_says_so(monkeypatch):
    monkeypatch.setenv("CNNLAB_DEVICE", "tpu")
    with pytest.raises(ValueError, match=r"unknown device 'tpu' \(from CNNLAB_DEVICE\)"):
        resolve_device()
    with pytest.raises(ValueError, match=r"unknown device 'gpu'; use"):  # a flag: no note
        resolve_device("gpu")


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="not available"):
            resolve_device("cuda")


SHORT = dict(model="lenet", epochs=2, eval_every=10, device="cpu")


def test_two_seeded_runs_have_identical_histories(small):
    a = fit(TrainConfig(**SHORT), small, progress=False)
    b = fit(TrainConfig(**SHORT), small, progress=False)
    assert a.train_loss == b.train_loss
    assert (a.val_accuracy, a.val_loss) == (b.val_accuracy, b.val_loss)
    assert a.test_accuracy == b.test_accuracy
    c = fit(TrainConfig(**SHORT | dict(seed=1)), small, progress=False)
    assert c.train_loss != a.train_loss  # the seed matters


def test_result_records_history_cost_and_provenance(small):
    r = fit(TrainConfig(**SHORT), small, progress=False)
    assert r.steps_per_epoch == 20 and len(r.train_loss) == 40  # 2560 / 128, 2 epochs
    assert r.val_step == [10, 20, 30, 40]                       # every 10 and at epoch ends
    assert len(r.epoch_val_accuracy) == 2
    # Images per second at steady state: the first step's one-off costs left out.
    assert r.train_seconds > r.first_step_seconds > 0
    assert r.images_per_second == pytest.approx((2 * 2560 - 128)
                                                / (r.train_seconds - r.first_step_seconds))
    assert 0 <= r.test_accuracy <= 1 and r.parameters == 44_426  # LeNet (test_models.py)
    p = r.provenance
    assert p["torch"] == torch.__version__ and p["device"] == "cpu"
    for key in ("device_name", "date", "git_commit", "python", "split_sha256"):
        assert key in p
    assert r.peak_memory_kind.startswith("process_peak_rss") and r.peak_memory_bytes > 0


def test_training_lowers_the_loss(small):
    r = fit(TrainConfig(model="lenet", epochs=3, device="cpu", lr=3e-3), small, progress=False)
    first, last = r.train_loss[:10], r.train_loss[-10:]
    assert sum(last) < sum(first)


def test_max_steps_cuts_the_run(small):
    r = fit(TrainConfig(**SHORT | dict(max_steps=25)), small, progress=False)
    assert len(r.train_loss) == 25 and r.val_step[-1] == 25  # max_steps=25, then validated


def test_autocast_and_channels_last_paths_run_on_cpu(small):
    """The CUDA defaults (bf16 autocast, channels_last) exercised on the CPU."""
    r = fit(TrainConfig(**SHORT | dict(amp=True, channels_last=True, max_steps=12)),
            small, progress=False)
    assert r.config["amp"] and r.config["channels_last"]
    assert all(torch.isfinite(torch.tensor(r.train_loss)))


def test_a_runs_thread_count_is_used_recorded_and_put_back(small, monkeypatch):
    import cnnlab.train as train_module
    seen = []
    real_step = train_module.train_step
    monkeypatch.setattr(train_module, "train_step",
                        lambda *a, **k: (seen.append(torch.get_num_threads()),
                                         real_step(*a, **k))[1])
    before = torch.get_num_threads()
    want = 1 if before > 1 else 2
    r = fit(TrainConfig(**SHORT | dict(max_steps=3, threads=want)), small, progress=False)
    assert seen == [want] * 3                       # every step ran on the run's threads
    assert r.config["threads"] == want and r.provenance["cpu_threads"] == want
    assert torch.get_num_threads() == before        # and the caller's count is back
    r = fit(TrainConfig(**SHORT | dict(max_steps=1)), small, progress=False)
    assert r.config["threads"] is None and r.provenance["cpu_threads"] == before


def test_the_evaluation_batch_size_reaches_validation_and_test(small, monkeypatch):
    import cnnlab.train as train_module
    sizes = []
    real_pass = train_module._evaluate_pass
    monkeypatch.setattr(train_module, "_evaluate_pass",
                        lambda model, split, batch_size, *rest:
                        (sizes.append(batch_size), real_pass(model, split, batch_size, *rest))[1])
    r = fit(TrainConfig(**SHORT | dict(max_steps=4, eval_every=2, eval_batch_size=128)),
            small, progress=False)
    assert sizes == [128] * 3  # validations at steps 2 and 4, then the test pass
    assert r.config["eval_batch_size"] == 128


def test_result_json_round_trip(small, tmp_path):
    r = fit(TrainConfig(**SHORT | dict(max_steps=5)), small, progress=False)
    path = r.save(tmp_path / "sub" / "r.json")
    back = RunResult.load(path)
    assert asdict(back) == asdict(r)
    assert not list(path.parent.glob(".*.tmp"))


def test_newer_result_format_is_refused(small, tmp_path):
    r = fit(TrainConfig(**SHORT | dict(max_steps=2)), small, progress=False)
    data = asdict(r) | {"format_version": FORMAT_VERSION + 1}
    path = tmp_path / "new.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ResultFormatError, match="update cnnlab"):
        RunResult.load(path)


@pytest.mark.parametrize("shape, hint", [
    ((4, 3, 28, 28), "3 channels"),
    ((4, 1, 32, 32), "resize or crop"),
    ((4, 784), "flattened"),
])
def test_shape_mismatch_names_expected_and_actual(shape, hint):
    with pytest.raises(ShapeMismatchError) as err:
        check_input_shape(get_model("lenet"), torch.zeros(shape), "lenet")
    message = str(err.value)
    assert "(N, 1, 28, 28)" in message and hint in message
    assert "(N, " + ", ".join(map(str, shape[1:])) + ")" in message


def test_fit_checks_the_data_shape_before_training(small):
    rgb = Split(small.train.images[:256, None].expand(-1, 3, -1, -1).contiguous(),
                small.train.labels[:256])
    data = MnistSplits(rgb, small.val, small.test)
    with pytest.raises(ShapeMismatchError, match="3 channels"):
        fit(TrainConfig(**SHORT), data, progress=False)


@pytest.mark.slow
def test_seed_recipe_reaches_97_percent_on_cpu(tmp_path):
    """The report's recipe, end to end through the CLI (report: 97.44%)."""
    out = tmp_path / "lenet.json"
    proc = subprocess.run([sys.executable, "-m", "cnnlab", "train", "lenet",
                           "--device", "cpu", "--quiet", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    r = RunResult.load(out)
    assert r.epochs_run == 5 and r.config["batch_size"] == 128
    assert r.test_accuracy >= 0.970  # a bar under the report's 97.44% (seed 42 recorded 97.57%)


def test_between_epochs_validation_uses_the_subset_and_epoch_ends_use_all(small):
    # small: 2,560 training images = 20 steps per epoch; 500 validation images.
    r = fit(TrainConfig(model="lenet", epochs=2, eval_every=6, eval_subset=100,
                        device="cpu"), small, progress=False)
    assert r.val_step == [6, 12, 18, 20, 24, 30, 36, 40]  # multiples of 6, and epoch ends
    assert r.val_images == [100, 100, 100, 500, 100, 100, 100, 500]
    # The epoch-end points are the whole validation set's scores.
    ends = [a for a, n in zip(r.val_accuracy, r.val_images) if n == 500]
    assert ends == r.epoch_val_accuracy
    everything = fit(TrainConfig(model="lenet", epochs=1, eval_every=6,
                                 eval_subset=None, device="cpu"), small, progress=False)
    assert everything.val_images == [500] * 4  # steps 6, 12, 18 and the epoch end, 20


def test_the_subset_is_the_first_validation_images(small):
    from cnnlab.train import evaluate

    model, r = __import__("cnnlab.train", fromlist=["train"]).train(
        TrainConfig(model="lenet", epochs=1, eval_every=20, eval_subset=100,
                    max_steps=5, device="cpu"), small, progress=False)
    # max_steps ends the run mid-epoch: its last point is on every image.
    assert r.val_images == [500]
    loss, acc = evaluate(model, small.val)
    assert r.val_accuracy == [acc]


def test_model_options_reach_the_builder_and_are_checked():
    c = TrainConfig(model="resnet18", options={"shortcut": "zero_pad", "upsample": 1})
    assert c.model_kwargs() == {"shortcut": "zero_pad", "upsample": 1, "dropout": 0.5}
    assert TrainConfig(model="googlenet", dropout=0.4).model_kwargs() == {"dropout": 0.4}
    with pytest.raises(ValueError, match="lenet takes no option 'shortcut'"):
        TrainConfig(model="lenet", options={"shortcut": "zero_pad"})
    with pytest.raises(ValueError, match="resnet18 takes no option 'width'.*shortcut"):
        TrainConfig(model="resnet18", options={"width": 2})
    with pytest.raises(ValueError, match="dropout has its own setting"):
        TrainConfig(model="resnet18", options={"dropout": 0.1})
    with pytest.raises(ValueError, match="lenet has no dropout"):
        TrainConfig(model="lenet", dropout=0.3)
    with pytest.raises(ValueError, match="eval_subset"):
        TrainConfig(eval_subset=0)


def test_the_result_records_the_model_options(small):
    r = fit(TrainConfig(model="googlenet", dropout=0.4, max_steps=1, eval_every=1,
                        device="cpu", val_images=10, test_images=10), small,
            progress=False)
    assert r.config["dropout"] == 0.4
    model = get_model("googlenet", dropout=0.4)
    assert model.dropout.p == 0.4


def test_a_cpu_runs_peak_memory_is_its_own_not_an_earlier_runs(small):
    # A big allocation first, freed again: the lifetime peak now holds it.
    import resource
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    hog = torch.ones(before // 4 + 2**28)  # more than the process ever held, +1 GiB
    del hog
    lifetime = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert lifetime > before + 2**29  # the hog did raise the lifetime peak (by over 512 MiB)
    r = fit(TrainConfig(model="lenet", max_steps=2, eval_every=2, device="cpu"),
            small, progress=False)
    if r.peak_memory_kind == "process_peak_rss_during_run":  # Linux: reset at start
        assert r.peak_memory_bytes < lifetime - 100 * 2**20  # a margin: 100 MiB under the hog
    else:
        assert r.peak_memory_kind == "process_peak_rss"


def test_the_troubleshooting_page_quotes_the_pixel_dtype_error_as_raised():
    import textwrap
    from pathlib import Path

    from cnnlab.data import PixelDtypeError, check_images

    with pytest.raises(PixelDtypeError) as err:
        check_images(torch.zeros(2, 28, 28), "lenet")
    page = (Path(__file__).resolve().parent.parent / "book" / "09_troubleshooting.md").read_text()
    assert textwrap.fill(f"PixelDtypeError: {err.value}", 60) in page  # the page wraps at 60
