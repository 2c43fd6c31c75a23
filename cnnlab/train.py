"""Training: the report's recipe, fast on a GPU, reproducible on a CPU.

``fit(TrainConfig(model="lenet"))`` trains on the fixed split, validates at
a regular step interval and at each epoch end, tests once at the end, and
returns a ``RunResult``.

Why the step looks the way it does:
* the split lives whole on the device and batches are index slices
  (``cnnlab.data.DeviceBatches``), so there is no per-sample Python work;
* the per-batch loss is written into a tensor on the device and read only
  at logging points: a ``.item()`` per step would make the CPU wait for the
  GPU at every step;
* on CUDA: bf16 autocast, channels_last, fused AdamW and cudnn.benchmark
  (unless ``deterministic``); ``compile=True`` adds ``torch.compile``.
"""
from __future__ import annotations

import os
import random
import resource
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import DeviceBatches, MnistSplits, Split, load_mnist, preprocess
from .models import DEFAULT_DROPOUT, check_model_name, count_parameters, get_model
from .results import RunResult, provenance


@dataclass
class TrainConfig:
    """A training run. The defaults are the report's recipe."""

    model: str = "lenet"
    epochs: int = 5                    # the report: 5 epochs
    batch_size: int = 128              # the report: 128
    lr: float = 1e-3                   # the report: AdamW, lr 0.001
    weight_decay: float = 0.01         # AdamW's default, which the report kept
    seed: int = 42                     # the report's seed
    dropout: float | None = None       # None: the report's value for the model
    eval_every: int = 100              # validation every this many steps
    max_steps: int | None = None       # stop after this many steps (short budgets)
    val_images: int | None = None      # validate on the first N (None: all 12,000)
    test_images: int | None = None     # test on the first N (None: all 10,000)
    device: str | None = None          # None: cuda, then mps, then cpu
    amp: bool | None = None            # bf16 autocast; None: on for CUDA only
    channels_last: bool | None = None  # NHWC memory layout; None: CUDA only
    compile: bool = False              # torch.compile the model
    deterministic: bool = False        # no cudnn.benchmark, deterministic kernels

    def __post_init__(self) -> None:
        check_model_name(self.model)
        for name in ("epochs", "batch_size", "eval_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("max_steps", "val_images", "test_images"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")

    def model_kwargs(self) -> dict:
        """Keyword arguments for the model's builder."""
        dropout = self.dropout if self.dropout is not None else DEFAULT_DROPOUT[self.model]
        return {} if dropout is None else {"dropout": dropout}


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def resolve_device(name: str | None = None) -> torch.device:
    """The device to train on: ``name``, else $CNNLAB_DEVICE, else cuda, mps, cpu."""
    name = name or os.environ.get("CNNLAB_DEVICE")
    if not name:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use cpu, cuda, cuda:N or mps") from None
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": torch.backends.mps.is_available()}
    if not available.get(device.type, False):
        raise ValueError(f"device {name!r} is not available on this machine; "
                         f"use cpu{', cuda' if available['cuda'] else ''}"
                         f"{', mps' if available['mps'] else ''}")
    return device


class ShapeMismatchError(ValueError):
    """The data's shape does not fit the model."""


def check_input_shape(model: nn.Module, batch: Tensor, name: str = "model") -> None:
    """Raise ShapeMismatchError unless ``batch`` is (N, *model.input_shape)."""
    expected = tuple(getattr(model, "input_shape", ()))
    actual = tuple(batch.shape[1:])
    if not expected or actual == expected:
        return
    want = "(N, " + ", ".join(map(str, expected)) + ")"
    got = "(N, " + ", ".join(map(str, actual)) + ")"
    c, h, w = expected
    if len(actual) == 1 and actual[0] == c * h * w:
        hint = f"the images are flattened; reshape them with x.view(-1, {c}, {h}, {w})"
    elif len(actual) == 3 and actual[0] != c:
        hint = (f"the images have {actual[0]} channels; convert them, or build the "
                f"model with in_channels={actual[0]}")
    else:
        hint = f"resize or crop the images to {h}x{w}"
    raise ShapeMismatchError(f"{name} expects images of shape {want} "
                             f"(channels, height, width), got {got}: {hint}")


def _autocast(device: torch.device, enabled: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if enabled else nullcontext()


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int = 1000,
             amp: bool = False, channels_last: bool = False) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (0-1) of ``model`` on ``split``."""
    was_training = model.training
    model.eval()
    device = split.images.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    for x, y in DeviceBatches(split, batch_size):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(device, amp):
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    model.train(was_training)
    n = len(split)
    return loss_sum.item() / n, correct.item() / n  # one host sync per pass


def _peak_memory(device: torch.device) -> tuple[int | None, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "cuda_max_memory_allocated"
    if device.type == "mps":
        return torch.mps.driver_allocated_memory(), "mps_driver_allocated"
    # Linux reports ru_maxrss in KiB: the whole process's peak, not the model's.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss * (1 if sys.platform == "darwin" else 1024), "process_peak_rss"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _progress_bar(total: int, enabled: bool | None, desc: str):
    # Auto: a bar for runs long enough to need one.
    if enabled is None:
        enabled = total >= 200
    if not enabled:
        return None
    from tqdm.auto import tqdm
    # A redraw at most every second: frequent redraws cost real time per step.
    return tqdm(total=total, desc=desc, unit="step", mininterval=1.0)


def fit(config: TrainConfig, data: MnistSplits | None = None, *,
        progress: bool | None = None) -> RunResult:
    """Train ``config.model`` on ``data`` (default: the fixed MNIST split).

    ``progress``: show a progress bar with the loss and validation accuracy
    (None: only for runs of 200 steps or more).
    """
    device = resolve_device(config.device)
    amp = config.amp if config.amp is not None else device.type == "cuda"
    channels_last = (config.channels_last if config.channels_last is not None
                     else device.type == "cuda")
    set_seed(config.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not config.deterministic
        torch.backends.cudnn.deterministic = config.deterministic
        torch.cuda.reset_peak_memory_stats(device)

    data = (data if data is not None else load_mnist()).to(device)
    val = data.val.head(config.val_images)
    test = data.test.head(config.test_images)
    model = get_model(config.model, **config.model_kwargs()).to(device)
    check_input_shape(model, preprocess(data.train.images[:1]), config.model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if config.compile else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay,
                                  fused=device.type == "cuda")

    batches = DeviceBatches(data.train, config.batch_size, shuffle=True, seed=config.seed)
    total = config.epochs * len(batches)
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    losses = torch.zeros(total, device=device)  # read only at logging points
    val_step, val_acc, val_loss, epoch_acc, epoch_loss = [], [], [], [], []
    bar = _progress_bar(total, progress, config.model)

    def validate(step: int) -> tuple[float, float]:
        loss, acc = evaluate(model, val, amp=amp, channels_last=channels_last)
        val_step.append(step), val_loss.append(loss), val_acc.append(acc)
        if bar is not None:
            start = max(0, step - config.eval_every)
            bar.set_postfix(loss=f"{losses[start:step].mean().item():.4f}",
                            val_acc=f"{acc:.4f}")
        return loss, acc

    step, train_seconds = 0, 0.0
    model.train()
    _sync(device)
    tick = time.perf_counter()
    for _ in range(config.epochs):
        for x, y in batches:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(device, amp):
                loss = F.cross_entropy(step_model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses[step] = loss.detach()
            step += 1
            if bar is not None:
                bar.update()
            at_epoch_end = step % len(batches) == 0
            if step % config.eval_every == 0 or at_epoch_end or step == total:
                _sync(device)  # the clock stops while we evaluate
                train_seconds += time.perf_counter() - tick
                loss_v, acc_v = validate(step)
                if at_epoch_end:
                    epoch_loss.append(loss_v), epoch_acc.append(acc_v)
                _sync(device)
                tick = time.perf_counter()
            if step == total:
                break
        if step == total:
            break
    if bar is not None:
        bar.close()

    # The test set, once, after training.
    test_loss, test_acc = evaluate(model, test, amp=amp, channels_last=channels_last)
    peak, peak_kind = _peak_memory(device)
    return RunResult(
        model=config.model,
        parameters=count_parameters(model),
        config=asdict(config) | {"device": str(device), "amp": amp,
                                 "channels_last": channels_last},
        steps_per_epoch=len(batches),
        train_loss=losses.tolist(),
        val_step=val_step, val_accuracy=val_acc, val_loss=val_loss,
        epoch_val_accuracy=epoch_acc, epoch_val_loss=epoch_loss,
        test_accuracy=test_acc, test_loss=test_loss,
        train_seconds=train_seconds,
        images_per_second=_images_seen(step, batches) / train_seconds,
        peak_memory_bytes=peak, peak_memory_kind=peak_kind,
        provenance=provenance(device),
    )


def _images_seen(steps: int, batches: DeviceBatches) -> int:
    """Images in the first ``steps`` batches (the last batch of an epoch is short)."""
    full_epochs, rest = divmod(steps, len(batches))
    return full_epochs * len(batches.split) + rest * batches.batch_size
