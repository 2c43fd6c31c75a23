"""09_troubleshooting.md quotes the messages the code prints, word for word.

The page says its messages are copied from runs with the pinned versions.
Here each one is produced again, cheaply (a bad argument, a damaged file, a
forward pass of one image; nothing trains), and the page must still quote
it. A change of wording in cnnlab (or in the pinned torch) fails a test
here until the page is updated.

A message box on the page is a ```text block. It may wrap the message over
lines (any run of white space matches any other) and may leave parts out
with "..." or "…" (each matches some text), but must otherwise be the whole
message, from its first word to its last.
"""
import contextlib
import gzip
import io
import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnlab.__main__ import main
from cnnlab.budget import budget_name
from cnnlab.data import (MnistSplits, Split, check_images, check_input_shape)
from cnnlab.memory import estimate_training_memory
from cnnlab.mnist_files import FILES, VENDORED_DIR, _decompress_verified
from cnnlab.models import get_model
from cnnlab.models.googlenet import GoogLeNet
from cnnlab.results import FORMAT_VERSION, RESULTS_DIR, RunResult
from cnnlab.shapes import format_shapes, trace_shapes
from cnnlab.train import TrainConfig, fit

PAGE = Path(__file__).resolve().parent.parent / "book" / "09_troubleshooting.md"
OOM_RECORD = RESULTS_DIR / "experiments" / "oom-alexnet_large-cpu.json"


def norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def page() -> str:
    return PAGE.read_text()


def boxes() -> list[str]:
    return [norm(b) for b in re.findall(r"^```text\n(.*?)^```", page(), re.S | re.M)]


def box_matches(box: str, message: str) -> bool:
    """Whether ``box`` is ``message``, wrapped, with "..." standing for left-out text."""
    parts = re.split(r"\.\.\.|…", box)
    pattern = r".+?".join(re.escape(p) for p in parts)
    return re.fullmatch(pattern, norm(message), re.S) is not None


def raised(action) -> str:
    """The line Jupyter shows for what ``action`` raises: class name and message."""
    try:
        action()
    except Exception as err:  # noqa: BLE001 - any error is the message under test
        return f"{type(err).__name__}: {err}"
    raise AssertionError("expected an error, got none")


def cli(*argv: str) -> str:
    """What ``python -m cnnlab ARGV`` prints on stderr; it must exit with 2."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(list(argv))
        except SystemExit as exit_:
            code = exit_.code
    assert code == 2, f"python -m cnnlab {' '.join(argv)} exited with {code}, not 2"
    return err.getvalue().strip()


# ------------------------------------------------------------- the producers

T10K_LABELS = next(s for s in FILES if s.name == "t10k-labels-idx1-ubyte")


def _vendored_copy(tmp_path: Path) -> Path:
    """Where a copy of the vendored labels file goes, in a folder named like
    the package's (the message names it)."""
    folder = tmp_path / "cnnlab" / "mnist"
    folder.mkdir(parents=True)
    return folder / f"{T10K_LABELS.name}.gz"


def data_checksum(tmp_path, monkeypatch):
    src = _vendored_copy(tmp_path)
    data = bytearray(gzip.decompress((VENDORED_DIR / src.name).read_bytes()))
    data[100] ^= 1  # one label changed: the same size, another MD5
    src.write_bytes(gzip.compress(bytes(data)))
    return raised(lambda: _decompress_verified(src, T10K_LABELS))


def data_not_gzip(tmp_path, monkeypatch):
    src = _vendored_copy(tmp_path)
    src.write_bytes(b"garbage")
    return raised(lambda: _decompress_verified(src, T10K_LABELS))


def data_missing(tmp_path, monkeypatch):
    src = _vendored_copy(tmp_path)
    return raised(lambda: _decompress_verified(src, T10K_LABELS))


def _fit_on(images: torch.Tensor) -> str:
    """What ``fit`` raises for a data set of these images (it checks them
    before its first step, so nothing trains)."""
    split = Split(images, torch.zeros(len(images), dtype=torch.long))
    config = TrainConfig(model="lenet", max_steps=1, device="cpu")
    return raised(lambda: fit(config, MnistSplits(split, split, split), progress=False))


def shape_flattened(tmp_path, monkeypatch):
    return _fit_on(torch.zeros(4, 784, dtype=torch.uint8))


def shape_channels(tmp_path, monkeypatch):
    return _fit_on(torch.zeros(4, 3, 28, 28, dtype=torch.uint8))


def shape_size(tmp_path, monkeypatch):
    return _fit_on(torch.zeros(4, 32, 32, dtype=torch.uint8))


def pixel_dtype(tmp_path, monkeypatch):
    return raised(lambda: check_images(torch.zeros(2, 28, 28), "lenet"))


def unknown_model(tmp_path, monkeypatch):
    message = raised(lambda: get_model("vgg"))
    # The page names both ways in; they must say the same.
    assert raised(lambda: TrainConfig(model="vgg")) == message
    return message


def cli_unknown_model(tmp_path, monkeypatch):
    return cli("train", "vgg")


def cli_epochs(tmp_path, monkeypatch):
    return cli("train", "lenet", "--epochs", "0")


def cli_lr(tmp_path, monkeypatch):
    return cli("train", "lenet", "--lr", "-1")


def cli_device(tmp_path, monkeypatch):
    # As on a machine with neither CUDA nor MPS, the page's example.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.delenv("CNNLAB_DEVICE", raising=False)
    return cli("train", "lenet", "--device", "cuda")


def cli_size(tmp_path, monkeypatch):
    return cli("shapes", "lenet", "--size", "20")


def result_format(tmp_path, monkeypatch):
    record = json.loads((RESULTS_DIR / "runs" / "lenet-cpu-seed42.json").read_text())
    record["format_version"] = FORMAT_VERSION + 1  # written by a newer cnnlab
    monkeypatch.chdir(tmp_path)
    path = Path("results/runs/x.json")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record))
    return raised(lambda: RunResult.load(path))


def budget(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_BUDGET", "fast")
    return raised(budget_name)


def optimizer(tmp_path, monkeypatch):
    return raised(lambda: estimate_training_memory(get_model("lenet"), 1,
                                                   optimizer="adagrad"))


def stage4_shapes(tmp_path, monkeypatch):
    lines = format_shapes(trace_shapes(get_model("resnet18", upsample=1))).splitlines()
    stage4 = [line for line in lines if line.startswith("layer4.")]
    # The page says every layer of stage 4 is marked like the one it shows.
    assert stage4 and all("<- 1x1 map: no spatial context left" in line for line in stage4)
    return next(line for line in stage4 if line.startswith("layer4.0.conv1 "))


# PyTorch's own messages, as the pinned torch prints them.

def torch_lenet_32(tmp_path, monkeypatch):
    # Bug 1: a first linear layer sized for 32 px (16 maps of 5x5) fed 28 px
    # digits' features (16 maps of 4x4), batch 128.
    return raised(lambda: nn.Linear(16 * 5 * 5, 120)(torch.zeros(128, 16 * 4 * 4)))


def torch_residual_add(tmp_path, monkeypatch):
    # Bug 2: F(x) is 128 x 7 x 7, x is still 64 x 14 x 14.
    return raised(lambda: torch.zeros(1, 128, 7, 7) + torch.zeros(1, 64, 14, 14))


def torch_googlenet_28(tmp_path, monkeypatch):
    model = GoogLeNet(upsample=1).eval()
    with torch.no_grad():
        return raised(lambda: model(torch.zeros(1, 1, 28, 28)))


PRODUCERS = [data_checksum, data_not_gzip, data_missing, shape_flattened, shape_channels,
             shape_size, pixel_dtype, unknown_model, cli_unknown_model, cli_epochs, cli_lr,
             cli_device, cli_size, result_format, budget, optimizer, stage4_shapes,
             torch_lenet_32, torch_residual_add, torch_googlenet_28]


@pytest.mark.parametrize("produce", PRODUCERS, ids=lambda f: f.__name__)
def test_the_page_quotes_the_message_as_printed(produce, tmp_path, monkeypatch):
    message = produce(tmp_path, monkeypatch)
    assert any(box_matches(box, message) for box in boxes()), (
        f"09_troubleshooting.md has no message box quoting what {produce.__name__} "
        f"prints now:\n{message}\n(update the page)")


def test_every_message_box_is_produced_here_or_recorded(tmp_path_factory, monkeypatch):
    """No box escapes the checks: each is one of the messages above, bug 3's
    recorded CPU errors (also checked in test_book_records), or its CUDA
    message, which the page calls a template."""
    messages = []
    for produce in PRODUCERS:
        with monkeypatch.context() as patch:
            messages.append(produce(tmp_path_factory.mktemp(produce.__name__), patch))
    record = json.loads(OOM_RECORD.read_text())
    messages += [c["error"] for c in record["cases"] if c["error"]]
    assert "**template**" in page()
    for box in boxes():
        if box.startswith("torch.OutOfMemoryError: CUDA out of memory."):
            continue  # the template
        assert any(box_matches(box, m) for m in messages), (
            f"this box on 09_troubleshooting.md is not produced by any test: {box!r}")


def test_the_prose_quotes_are_the_packages_too(tmp_path, monkeypatch):
    text = norm(page())
    # TrainConfig refuses what the command line refuses.
    assert norm(raised(lambda: TrainConfig(model="lenet", batch_size=0))) in text
    assert "`ValueError: batch_size must be a positive integer, got 0`" in text
    # fit puts the split's name in front of the checks' own messages.
    flat = torch.zeros(4, 784, dtype=torch.uint8)
    own = raised(lambda: check_input_shape(get_model("lenet"), flat, "lenet"))
    assert shape_flattened(tmp_path, monkeypatch) == own.replace(
        "ShapeMismatchError: ", "ShapeMismatchError: the train split: ", 1)
    assert _fit_on(torch.zeros(4, 28, 28)) == pixel_dtype(tmp_path, monkeypatch).replace(
        "PixelDtypeError: ", "PixelDtypeError: the train split: ", 1)
    # A result file that is not JSON, or not a run.
    monkeypatch.chdir(tmp_path)
    bad = Path("x.json")
    bad.write_text("{")
    assert "not a cnnlab result, not valid JSON (" in raised(lambda: RunResult.load(bad))
    assert "says `not valid JSON (...)`" in text
    bad.write_text("{}")
    assert "not a cnnlab result, missing " in raised(lambda: RunResult.load(bad))
    assert "`not a cnnlab result, missing ...`" in text
