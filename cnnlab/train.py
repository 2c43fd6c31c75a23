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

import inspect
import logging
import math
import os
import random
import resource
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checkpoint import load_checkpoint, rng_states, save_checkpoint, set_rng_states
from .data import DeviceBatches, MnistSplits, Split, load_mnist, preprocess
from .models import (DEFAULT_DROPOUT, MODELS, check_model_name, count_parameters, eval_mode,
                     get_model)
from .results import RunResult, provenance

log = logging.getLogger("cnnlab")

# The training criterion; a module attribute so that tests can inject faults.
loss_fn = F.cross_entropy


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
    options: dict[str, Any] = field(default_factory=dict)  # more builder options,
    #                                    e.g. {"shortcut": "zero_pad", "upsample": 1}
    eval_every: int = 125              # validation every this many steps (15 points
    #                                    over the report's 5 x 375 steps)
    eval_subset: int | None = 2_000    # between epoch ends, validate on the first N
    #                                    validation images only; at each epoch end
    #                                    (and the last step) on all. None: all, always
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
        for name in ("max_steps", "val_images", "test_images", "eval_subset"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        takes = set(inspect.signature(MODELS[self.model]).parameters)
        if self.dropout is not None and "dropout" not in takes:
            raise ValueError(f"{self.model} has no dropout layer; leave dropout unset")
        for name in self.options:
            if name == "dropout" or name not in takes:
                allowed = sorted(takes - {"dropout", "in_channels", "num_classes"})
                raise ValueError(f"{self.model} takes no option {name!r}; its options "
                                 f"are: {', '.join(allowed) or 'none'}"
                                 + (" (dropout has its own setting)"
                                    if name == "dropout" else ""))

    def model_kwargs(self) -> dict:
        """Keyword arguments for the model's builder."""
        dropout = self.dropout if self.dropout is not None else DEFAULT_DROPOUT[self.model]
        return self.options | ({} if dropout is None else {"dropout": dropout})


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


class PixelDtypeError(ValueError):
    """The images are not uint8 pixels (0-255), which the training loop expects."""


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


def check_images(images: Tensor, name: str = "model") -> None:
    """Raise PixelDtypeError unless ``images`` are uint8 pixels (0-255)."""
    if images.dtype != torch.uint8:
        raise PixelDtypeError(
            f"{name} trains on uint8 images with pixels 0-255 (as MNIST ships them), got "
            f"dtype {images.dtype}: scaling happens on the device. If your images are "
            f"floats in [0, 1], pass (images * 255).round().to(torch.uint8).")


def _autocast(device: torch.device, enabled: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if enabled else nullcontext()


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int = 1000,
             amp: bool = False, channels_last: bool = False) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (0-1) of ``model`` on ``split``."""
    device = split.images.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    with eval_mode(model):  # dropout off, BN on its running statistics; mode restored
        for x, y in DeviceBatches(split, batch_size):
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(device, amp):
                logits = model(x)
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
    n = len(split)
    return loss_sum.item() / n, correct.item() / n  # one host sync per pass


def _reset_peak_rss() -> bool:
    """Restart the process's peak-RSS count (Linux), so that a run's peak is
    its own and not that of an earlier run in the same process."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # 5: reset the peak resident set size (VmHWM)
        return True
    except OSError:
        return False


def _peak_rss_since_reset() -> int | None:
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _peak_memory(device: torch.device, rss_reset: bool) -> tuple[int | None, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "cuda_max_memory_allocated"
    if device.type == "mps":
        return torch.mps.driver_allocated_memory(), "mps_driver_allocated"
    peak = _peak_rss_since_reset() if rss_reset else None
    if peak is not None:  # the whole process's peak during this run
        return peak, "process_peak_rss_during_run"
    # Elsewhere ru_maxrss (KiB on Linux): the peak since the process started,
    # which may be an earlier run's in the same process.
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


class DivergenceError(RuntimeError):
    """The training loss became NaN or infinite."""


class TrainingOutOfMemoryError(RuntimeError):
    """Out of memory even with a micro-batch of one image."""


@dataclass
class History:
    """Validation points and training time so far (also kept in checkpoints)."""

    val_step: list[int] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_images: list[int] = field(default_factory=list)  # images behind each point
    epoch_val_accuracy: list[float] = field(default_factory=list)
    epoch_val_loss: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    # CPU time the process used while training (all threads). Beside
    # train_seconds it tells whether the run had its cores to itself; None
    # when a checkpoint from before this field resumed the run.
    cpu_seconds: float | None = 0.0


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor,
               y: Tensor, micro_batch: int, amp: bool) -> Tensor:
    """One optimiser step on the batch (x, y), in micro-batches if need be.

    Each micro-batch's mean loss is weighted by its share of the batch, so
    the summed gradients equal those of the whole batch's mean loss and the
    update is the same (up to float rounding; BatchNorm sees the smaller
    micro-batches, which is the one real difference).
    """
    optimizer.zero_grad(set_to_none=True)
    n = len(y)
    total = torch.zeros((), device=x.device)
    for start in range(0, n, micro_batch):
        xs, ys = x[start:start + micro_batch], y[start:start + micro_batch]
        with _autocast(x.device, amp):
            loss = loss_fn(model(xs), ys)
        if len(ys) != n:
            loss = loss * (len(ys) / n)
        loss.backward()
        total += loss.detach()
    optimizer.step()
    return total


def _oom_message(device: torch.device, batch: int) -> str:
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        had = f"{free / 2**30:.2f} GiB free of {total / 2**30:.2f} GiB on {device}"
    else:
        had = f"the memory of {device}"
    return (f"out of memory even with a micro-batch of 1 image (batch {batch}, {had}). "
            f"Try a smaller model or input size, bf16 autocast (amp=True), closing "
            f"other programs on the GPU (nvidia-smi), or "
            f"PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True.")


def _step_with_fallback(model, optimizer, x, y, micro: int, amp: bool,
                        step: int) -> tuple[Tensor, int]:
    """``train_step``; on out-of-memory, halve the micro-batch and retry."""
    while True:
        try:
            return train_step(model, optimizer, x, y, micro, amp), micro
        except torch.cuda.OutOfMemoryError:
            optimizer.zero_grad(set_to_none=True)  # drop partial gradients
            if x.device.type == "cuda":
                torch.cuda.empty_cache()
            tried = min(micro, len(y))
            if tried <= 1:
                raise TrainingOutOfMemoryError(_oom_message(x.device, len(y))) from None
            micro = tried // 2
            log.warning("out of memory at step %d with a micro-batch of %d; retrying "
                        "with %d, accumulating %d micro-batches (the batch stays %d)",
                        step + 1, tried, micro, math.ceil(len(y) / micro), len(y))


def _check_finite(losses: Tensor, start: int, end: int, steps_per_epoch: int,
                  lr: float) -> None:
    """Raise DivergenceError naming the first step in [start, end) with a NaN/inf loss."""
    bad = (~torch.isfinite(losses[start:end])).nonzero()
    if len(bad):
        step = start + int(bad[0]) + 1
        value = losses[step - 1].item()
        raise DivergenceError(
            f"the training loss became {value} at step {step} (epoch "
            f"{(step - 1) // steps_per_epoch + 1}); the run stopped there and wrote "
            f"no result. Try a lower learning rate, e.g. lr={lr / 10:g} (--lr {lr / 10:g}).")


def fit(config: TrainConfig, data: MnistSplits | None = None, *,
        progress: bool | None = None, checkpoint: str | Path | None = None,
        resume: bool = False) -> RunResult:
    """Train ``config.model`` on ``data``; return the RunResult (see ``train``)."""
    return train(config, data, progress=progress, checkpoint=checkpoint, resume=resume)[1]


def train(config: TrainConfig, data: MnistSplits | None = None, *,
          progress: bool | None = None, checkpoint: str | Path | None = None,
          resume: bool = False) -> tuple[nn.Module, RunResult]:
    """Train ``config.model`` on ``data`` (default: the fixed MNIST split).

    Returns the trained model and the RunResult.

    ``progress``: show a progress bar with the loss and validation accuracy
    (None: only for runs of 200 steps or more).
    ``checkpoint``: save the run's whole state there at every epoch end and
    on Ctrl-C. ``resume``: continue from that checkpoint if it exists; the
    result is then bit-for-bit the one an uninterrupted run gives (on CPU).
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
    rss_reset = device.type == "cpu" and _reset_peak_rss()

    data = (data if data is not None else load_mnist()).to(device)
    check_images(data.train.images, config.model)
    val = data.val.head(config.val_images)
    val_between = val.head(config.eval_subset)  # the cheap check between epoch ends
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
    per_epoch = len(batches)
    total = config.epochs * per_epoch
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    losses = torch.zeros(total, device=device)  # read only at logging points
    history, step, micro = History(), 0, config.batch_size

    if resume and checkpoint is not None and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint, asdict(config))
        model.load_state_dict(state["model_state"])
        optimizer.load_state_dict(state["optimizer_state"])
        step, micro = state["step"], state["micro_batch"]
        if step > total:
            raise ValueError(f"{checkpoint}: the checkpoint is at step {step}, beyond "
                             f"this run's {total} steps; raise --epochs to continue.")
        losses[:step] = torch.tensor(state["train_loss"], device=device)
        history = History(**state["history"])
        if "cpu_seconds" not in state["history"]:
            history.cpu_seconds = None  # the part before the checkpoint is unknown
        batches.generator.set_state(state["generator_state"])
        set_rng_states(state["rng"])
        log.info("resumed %s from %s at step %d", config.model, checkpoint, step)
    elif resume and checkpoint is not None:
        log.warning("no checkpoint at %s yet: starting from the beginning", checkpoint)

    def save(epoch_start_generator: Tensor) -> None:
        if checkpoint is not None:
            save_checkpoint(checkpoint, {
                "config": asdict(config), "step": step, "micro_batch": micro,
                "model_state": model.state_dict(),
                "optimizer_state": optimizer.state_dict(),
                "train_loss": losses[:step].tolist(), "history": asdict(history),
                "generator_state": epoch_start_generator, "rng": rng_states(),
            })

    bar = _progress_bar(total, progress, config.model)
    if bar is not None:
        bar.update(step)
    checked = step  # losses before this step are known to be finite
    epoch_start = batches.generator.get_state()
    first_step_seconds = None
    model.train()
    _sync(device)
    tick, cpu_tick = time.perf_counter(), time.process_time()

    def stop_clocks() -> None:
        history.train_seconds += time.perf_counter() - tick
        if history.cpu_seconds is not None:
            history.cpu_seconds += time.process_time() - cpu_tick

    try:
        while step < total:
            # This epoch's order comes from the generator's state now; a
            # checkpoint taken mid-epoch stores it, to replay the same order.
            epoch_start = batches.generator.get_state()
            for x, y in batches.epoch(skip=step % per_epoch):
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                losses[step], micro = _step_with_fallback(step_model, optimizer, x, y,
                                                          micro, amp, step)
                step += 1
                if first_step_seconds is None:
                    _sync(device)
                    first_step_seconds = time.perf_counter() - tick
                if bar is not None:
                    bar.update()
                if device.type != "cuda":  # free here; on a GPU it would sync
                    _check_finite(losses, step - 1, step, per_epoch, config.lr)
                    checked = step
                at_epoch_end = step % per_epoch == 0
                if step % config.eval_every == 0 or at_epoch_end or step == total:
                    _sync(device)  # the clock stops while we evaluate
                    stop_clocks()
                    _check_finite(losses, checked, step, per_epoch, config.lr)
                    checked = step
                    on = val if at_epoch_end or step == total else val_between
                    loss_v, acc_v = evaluate(model, on, amp=amp, channels_last=channels_last)
                    history.val_step.append(step)
                    history.val_loss.append(loss_v)
                    history.val_accuracy.append(acc_v)
                    history.val_images.append(len(on))
                    if at_epoch_end:
                        history.epoch_val_loss.append(loss_v)
                        history.epoch_val_accuracy.append(acc_v)
                        save(batches.generator.get_state())
                    if bar is not None:
                        recent = losses[max(0, step - config.eval_every):step]
                        bar.set_postfix(loss=f"{recent.mean().item():.4f}",
                                        val_acc=f"{acc_v:.4f}")
                    _sync(device)
                    tick, cpu_tick = time.perf_counter(), time.process_time()
                if step == total:
                    break
    except KeyboardInterrupt:
        _sync(device)
        stop_clocks()
        if checkpoint is not None:
            save(epoch_start)
            log.warning("interrupted at step %d; checkpoint saved to %s (resume with "
                        "resume=True / --resume)", step, checkpoint)
        raise
    finally:
        if bar is not None:
            bar.close()

    # The test set, once, after training.
    test_loss, test_acc = evaluate(model, test, amp=amp, channels_last=channels_last)
    peak, peak_kind = _peak_memory(device, rss_reset)
    return model, RunResult(
        model=config.model,
        parameters=count_parameters(model),
        config=asdict(config) | {"device": str(device), "amp": amp,
                                 "channels_last": channels_last},
        steps_per_epoch=per_epoch,
        train_loss=losses.tolist(),
        val_step=history.val_step, val_accuracy=history.val_accuracy,
        val_loss=history.val_loss, val_images=history.val_images,
        epoch_val_accuracy=history.epoch_val_accuracy,
        epoch_val_loss=history.epoch_val_loss,
        test_accuracy=test_acc, test_loss=test_loss,
        train_seconds=history.train_seconds, cpu_seconds=history.cpu_seconds,
        images_per_second=_images_seen(step, batches) / history.train_seconds,
        peak_memory_bytes=peak, peak_memory_kind=peak_kind,
        provenance=provenance(device),
        first_step_seconds=first_step_seconds,
    )


def _images_seen(steps: int, batches: DeviceBatches) -> int:
    """Images in the first ``steps`` batches (the last batch of an epoch is short)."""
    full_epochs, rest = divmod(steps, len(batches))
    return full_epochs * len(batches.split) + rest * batches.batch_size
