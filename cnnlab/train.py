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
* on CUDA: autocast (bf16 where the GPU has it natively, else fp16 with a
  GradScaler), channels_last, fused AdamW and cudnn.benchmark (unless
  ``deterministic``); ``compile=True`` adds ``torch.compile``;
* nothing in a step reads a value back from the GPU (a host sync): the
  loss is checked for NaN only at validation points on CUDA and MPS.

Read ``train`` first: it is the whole run, top to bottom, and its loop
calls ``train_step``, where the forward pass, ``loss.backward()`` and the
optimiser step are. The helpers after it (validate, save, resume, build
the RunResult) each receive the run's state (``RunState``) explicitly.
Elsewhere: the data and its checks in ``data.py``, checkpoints in
``checkpoint.py``, stop signals in ``stop.py``, peak memory in
``memory.py``, the clock in ``bench.py``.
"""
from __future__ import annotations

import inspect
import logging
import math
import os
import random
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .bench import ProgressBar, Stopwatch, runs_async
from .checkpoint import claim_checkpoint, restore_run, save_run
from .data import DeviceBatches, MnistSplits, Split, check_data, load_mnist
from .memory import peak_memory, reset_peak_memory
from .models import (DEFAULT_DROPOUT, MODELS, check_model_name, count_parameters, eval_mode,
                     get_model)
from .results import RunResult, check_field_types, encode_predictions, provenance
from .stop import StepGuard, TrainingInterrupted, signal_of, stop_message  # noqa: F401

log = logging.getLogger("cnnlab")

# The training criterion; a module attribute so that tests can inject faults.
loss_fn = F.cross_entropy

# NumPy accepts seeds 0 .. 2**32 - 1 (set_seed seeds NumPy too).
MAX_SEED = 2**32 - 1


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
    amp: bool | None = None            # autocast; None: on for CUDA only. bf16 where
    #                                    the hardware has it (CPU, MPS, CUDA capability
    #                                    8.0+), else fp16 with a GradScaler (older GPUs)
    channels_last: bool | None = None  # NHWC memory layout; None: CUDA only
    compile: bool = False              # torch.compile the model
    deterministic: bool = False        # no cudnn.benchmark, deterministic kernels
    #                                    where torch has them (warns where it has not)

    def __post_init__(self) -> None:
        # Types first: amp="no" is a true value, and would turn autocast on.
        check_field_types(TrainConfig, {f.name: getattr(self, f.name)
                                        for f in fields(self)}, "")
        check_model_name(self.model)
        for name in ("epochs", "batch_size", "eval_every"):
            value = getattr(self, name)
            if value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("max_steps", "val_images", "test_images", "eval_subset"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite positive number, got {self.lr!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be a finite number >= 0, "
                             f"got {self.weight_decay!r}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be in 0..{MAX_SEED} (NumPy's seeds are 32-bit), "
                             f"got {self.seed!r}")
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


def train(config: TrainConfig, data: MnistSplits | None = None, *,
          progress: bool | None = None, checkpoint: str | Path | None = None,
          resume: bool = False) -> tuple[nn.Module, RunResult]:
    """Train ``config.model`` on ``data`` (default: the fixed MNIST split).

    Returns the trained model and the RunResult.

    ``progress``: show a progress bar with the loss and validation accuracy
    (None: only for runs of 200 steps or more).
    ``checkpoint``: save the run's whole state there at every epoch end, at
    the last step and on Ctrl-C; a file already there is refused unless
    ``resume``. ``resume``: continue from that checkpoint if it exists; the
    result is then bit-for-bit the one an uninterrupted run gives (on CPU).
    """
    # claim_checkpoint: checked, and held by this run alone; restoring_global_modes:
    # the cudnn and determinism settings this run makes are undone when it ends.
    with claim_checkpoint(checkpoint, resume), restoring_global_modes():
        device = resolve_device(config.device)
        amp = autocast_dtype(device, config.amp if config.amp is not None
                             else device.type == "cuda")
        scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None
        channels_last = (config.channels_last if config.channels_last is not None
                         else device.type == "cuda")
        set_seed(config.seed)
        _set_kernel_modes(device, config.deterministic)
        rss_reset = reset_peak_memory(device)

        # The model, the data on its device, the optimiser, the batches.
        model = get_model(config.model, **config.model_kwargs())
        data = data if data is not None else load_mnist()
        check_data(data, model, config.model)
        data, model = data.to(device), model.to(device)
        val = data.val.head(config.val_images)
        val_between = val.head(config.eval_subset)  # the cheap check between epoch ends
        test = data.test.head(config.test_images)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        step_model = _compiled(model) if config.compile else model
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                      weight_decay=config.weight_decay,
                                      fused=device.type == "cuda")
        batches = DeviceBatches(data.train, config.batch_size, shuffle=True,
                                seed=config.seed)
        per_epoch = len(batches)
        total = config.epochs * per_epoch
        if config.max_steps is not None:
            total = min(total, config.max_steps)
        state = RunState(losses=torch.zeros(total, device=device), micro=config.batch_size,
                         epoch_start=batches.generator.get_state())
        if resume and Path(checkpoint).exists():
            _resume(checkpoint, config, model, optimizer, batches, state)
        elif resume:
            log.warning("no checkpoint at %s yet: starting from the beginning", checkpoint)

        # The loop: one train_step per batch, validation every eval_every steps
        # and at each epoch end (with a checkpoint), the clock paused meanwhile.
        bar = ProgressBar(total, progress, config.model, state.step)
        guard, watch = StepGuard(), Stopwatch(device, state.history)
        model.train()
        watch.start()
        guard.install()
        try:
            for x, y in _remaining_batches(batches, state, total):
                with guard.step():  # a signal waits until the step's bookkeeping is done
                    if channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    loss, state.micro = halve_on_oom(train_step, step_model, optimizer,
                                                     x, y, state.micro, amp, state.step,
                                                     scaler)
                    state.losses[state.step] = loss
                    state.step += 1
                    if state.first_step_seconds is None:  # one-off costs: kept apart
                        state.first_step_seconds = watch.elapsed()
                        state.history.warmup_seconds += state.first_step_seconds
                        state.history.warmup_images += len(y)
                    bar.step()
                    if not runs_async(device):  # free here; on a GPU it would sync
                        _check_finite(state, per_epoch, config.lr)
                    at_epoch_end, at_last = state.step % per_epoch == 0, state.step == total
                    if at_epoch_end:  # the next epoch's order is drawn from here
                        state.epoch_start = batches.generator.get_state()
                    if state.step % config.eval_every == 0 or at_epoch_end or at_last:
                        watch.stop()  # the clock stops while we validate
                        _check_finite(state, per_epoch, config.lr)
                        whole = at_epoch_end or at_last  # all images, and a checkpoint
                        acc = _validate(model, val if whole else val_between, state,
                                        at_epoch_end, amp, channels_last)
                        if whole and checkpoint is not None:
                            _save(checkpoint, config, model, optimizer, state, at_last)
                        bar.point(state, acc, config.eval_every)
                        watch.start()
        except KeyboardInterrupt as err:
            watch.stop()
            saved = checkpoint is not None and not guard.forced  # forced: half a step
            if saved:
                guard.saving = True  # a further Ctrl-C now would cut the save short
                _save(checkpoint, config, model, optimizer, state)
            raise TrainingInterrupted(stop_message(signal_of(err), state.step, checkpoint,
                                                   saved), signal_of(err)) from None
        finally:
            guard.uninstall()
            bar.close()
        watch.stop()  # restarted after the last validation: nothing more to time

        # Training's peak memory (validation included), read before the test
        # pass: its batches of 1,000 images are not training's.
        peak = peak_memory(device, rss_reset)
        # The test set, once, after training.
        test_loss, test_acc, predicted = evaluate_with_predictions(
            model, test, amp=amp, channels_last=channels_last)
        result = _result(config, model, state, batches, (test_loss, test_acc), peak,
                         device, amp, channels_last)
        result.test_predictions = encode_predictions(predicted)
        return model, result


def _remaining_batches(batches: DeviceBatches, state: RunState,
                       total: int) -> Iterator[tuple[Tensor, Tensor]]:
    """The batches of steps ``state.step + 1`` to ``total``, epoch after epoch.

    Each epoch's order is drawn from the generator state kept in
    ``state.epoch_start``, so a checkpoint replays the epoch in progress.
    """
    while state.step < total:
        state.epoch_start = batches.generator.get_state()  # this epoch's order
        for batch in batches.epoch(skip=state.step % len(batches)):
            yield batch
            if state.step == total:
                return


def fit(config: TrainConfig, data: MnistSplits | None = None, *,
        progress: bool | None = None, checkpoint: str | Path | None = None,
        resume: bool = False) -> RunResult:
    """Train ``config.model`` on ``data``; return the RunResult (see ``train``)."""
    return train(config, data, progress=progress, checkpoint=checkpoint, resume=resume)[1]


def train_step(model: nn.Module | Callable, optimizer: torch.optim.Optimizer, x: Tensor,
               y: Tensor, micro_batch: int, amp: bool | torch.dtype | None,
               scaler: torch.amp.GradScaler | None = None) -> Tensor:
    """One optimiser step on the batch (x, y), in micro-batches if need be.

    Each micro-batch's mean loss is weighted by its share of the batch, so
    the summed gradients equal those of the whole batch's mean loss and the
    update is the same (up to float rounding; BatchNorm sees the smaller
    micro-batches, which is the one real difference).

    ``amp``: the autocast dtype (True: bfloat16; False or None: off).
    ``scaler``: a GradScaler, for float16, whose small range would round
    small gradients to zero unless the loss is scaled up first.
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
        (loss if scaler is None else scaler.scale(loss)).backward()
        total += loss.detach()
    _optimizer_step(optimizer, scaler)
    return total


def _optimizer_step(optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler | None) -> None:
    """``optimizer.step()``, through the GradScaler if there is one (it skips
    a step whose gradients overflowed, and adjusts its scale)."""
    try:
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)
            scaler.update()
    except torch.cuda.OutOfMemoryError:
        # Not retried with a smaller micro-batch: the step's memory is the
        # weights and AdamW's two moments, which no batch size changes.
        raise OptimizerOutOfMemoryError(
            "out of memory in the optimiser step (AdamW's state is twice the model's "
            "size), which a smaller micro-batch cannot shrink; try a smaller model or "
            "close other programs on the GPU (nvidia-smi).") from None


def evaluate(model: nn.Module, split: Split, batch_size: int = 1000,
             amp: bool | torch.dtype | None = False,
             channels_last: bool = False) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (0-1) of ``model`` on ``split``."""
    loss, accuracy, _ = evaluate_with_predictions(model, split, batch_size, amp,
                                                  channels_last)
    return loss, accuracy


def evaluate_with_predictions(model: nn.Module, split: Split, batch_size: int = 1000,
                              amp: bool | torch.dtype | None = False,
                              channels_last: bool = False) -> tuple[float, float, Tensor]:
    """``evaluate``, and the predicted class of every image of ``split``
    (uint8, on the CPU): what a record keeps of the test pass.

    The split is moved to the model's device if it is elsewhere. On out of
    memory the pass starts again with half the batch size.
    """
    split = split.to(device_of(model, split.images.device))
    while True:
        try:
            return _evaluate_pass(model, split, batch_size, amp, channels_last)
        except torch.cuda.OutOfMemoryError:
            if batch_size <= 1:
                raise
        _free_cached_memory(split.images.device)  # after the except: its tensors are freed
        batch_size //= 2
        log.warning("out of memory while evaluating; trying again with batches of %d",
                    batch_size)


def device_of(model: nn.Module, default: torch.device) -> torch.device:
    """The device of the model's first parameter (or buffer); ``default`` if it has none."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return default


@torch.no_grad()
def _evaluate_pass(model: nn.Module, split: Split, batch_size: int,
                   amp: bool | torch.dtype | None, channels_last: bool
                   ) -> tuple[float, float, Tensor]:
    """One pass of ``evaluate_with_predictions``, with ``split`` on the model's device."""
    device = split.images.device
    loss_sum = torch.zeros((), device=device)
    predictions = []
    with eval_mode(model):  # dropout off, BN on its running statistics; mode restored
        for x, y in DeviceBatches(split, batch_size):
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(device, amp):
                logits = model(x)
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
            predictions.append(logits.argmax(1))
    predicted = torch.cat(predictions)
    correct = (predicted == split.labels).sum()
    n = len(split)
    # one host sync per pass
    return loss_sum.item() / n, correct.item() / n, predicted.to("cpu", torch.uint8)


def _autocast(device: torch.device, amp: bool | torch.dtype | None):
    """Autocast to ``amp`` (True: bfloat16), or nothing when it is False or None."""
    if amp is None or amp is False:
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp is True else amp)


def autocast_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """The autocast dtype for ``device`` (None: autocast off).

    bfloat16 where the hardware has it natively: CPUs, Apple GPUs (MPS) and
    NVIDIA GPUs of compute capability 8.0 and up (A100, H100, RTX 30xx).
    Older GPUs (V100, T4) only emulate it, slowly: float16 there, with a
    GradScaler (its narrow range needs the loss scaled; see ``train_step``).
    """
    if not enabled:
        return None
    if device.type == "cuda" and torch.cuda.get_device_capability(device) < (8, 0):
        return torch.float16
    return torch.bfloat16


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def resolve_device(name: str | None = None) -> torch.device:
    """The device to train on: ``name``, else $CNNLAB_DEVICE, else cuda, mps, cpu."""
    source = "" if name else " (from CNNLAB_DEVICE)"  # say where a value came from
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
        raise ValueError(f"unknown device {name!r}{source}; use cpu, cuda, cuda:N "
                         f"or mps") from None
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": torch.backends.mps.is_available()}
    if not available.get(device.type, False):
        raise ValueError(f"device {name!r}{source} is not available on this machine; "
                         f"use cpu{', cuda' if available['cuda'] else ''}"
                         f"{', mps' if available['mps'] else ''}")
    if device.type == "cpu":  # one CPU device: cpu:0 is cpu, cpu:1 names nothing
        if device.index not in (None, 0):
            raise ValueError(f"device {name!r}{source}: there is one CPU device; use cpu")
        return torch.device("cpu")
    if device.type == "cuda" and device.index is not None:
        count = torch.cuda.device_count()
        if device.index >= count:
            raise ValueError(f"device {name!r}{source}: this machine has {count} GPU(s), "
                             f"cuda:0 to cuda:{count - 1}")
    return device


class DivergenceError(RuntimeError):
    """The training loss became NaN or infinite."""


class TrainingOutOfMemoryError(RuntimeError):
    """Out of memory even with a micro-batch of one image."""


class OptimizerOutOfMemoryError(TrainingOutOfMemoryError):
    """Out of memory in the optimiser step, which no micro-batch size changes."""


class CompileError(RuntimeError):
    """torch.compile failed (at the model's first call, when it compiles)."""


def one_line(err: BaseException) -> str:
    """The line of an error message that says what went wrong: the first that
    does not end in ':' (torch.compile's start "backend='inductor' raised:")."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    meaningful = [line for line in lines if not line.endswith(":")]
    return (meaningful or lines or [type(err).__name__])[0]


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
    # The first step of each process that trained the run, within
    # train_seconds: one-off costs (torch.compile, cudnn's autotuning, the
    # allocator's warm-up), left out of the result's images_per_second.
    warmup_seconds: float = 0.0
    warmup_images: int = 0
    # CPU time the process used while training (all threads). Beside
    # train_seconds it tells whether the run had its cores to itself; None
    # when a checkpoint from before this field resumed the run.
    cpu_seconds: float | None = 0.0


@dataclass
class RunState:
    """Where a run stands: what the loop advances and a checkpoint keeps."""

    losses: Tensor        # one training loss per step, on the device, read rarely
    epoch_start: Tensor   # the data-order generator's state the current epoch is
    #                       drawn from: a checkpoint replays the same order from it
    micro: int            # micro-batch size (halved on out-of-memory)
    step: int = 0         # steps done
    checked: int = 0      # the losses of the steps before this one are finite
    history: History = field(default_factory=History)
    first_step_seconds: float | None = None  # this process's first step, set-up included


def halve_on_oom(step_fn: Callable[..., Tensor], model, optimizer, x: Tensor, y: Tensor,
                 micro: int, amp: bool | torch.dtype | None, step: int,
                 scaler: torch.amp.GradScaler | None = None) -> tuple[Tensor, int]:
    """``step_fn(model, optimizer, x, y, micro, amp, scaler)`` (``train_step``);
    on out-of-memory in the forward or backward pass, halve the micro-batch
    and retry. Returns the loss and the micro-batch size that fitted."""
    while True:
        try:
            return step_fn(model, optimizer, x, y, micro, amp, scaler), micro
        except torch.cuda.OutOfMemoryError:
            pass  # handled below, outside the except block (see the next line)
        # Out here the error's traceback is gone, and with it the frames that
        # held the failed step's activations: only now can the cache free them.
        optimizer.zero_grad(set_to_none=True)  # drop partial gradients
        _free_cached_memory(x.device)
        tried = min(micro, len(y))
        if tried <= 1:
            raise TrainingOutOfMemoryError(_oom_message(x.device, len(y)))
        micro = tried // 2
        log.warning("out of memory at step %d with a micro-batch of %d; retrying "
                    "with %d, accumulating %d micro-batches (the batch stays %d)",
                    step + 1, tried, micro, math.ceil(len(y) / micro), len(y))


def _free_cached_memory(device: torch.device) -> None:
    """Give the allocator's cached blocks back, so that a retry starts afresh.
    Call it outside an ``except`` block: tensors the traceback holds stay
    allocated until the block ends."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


def _oom_message(device: torch.device, batch: int) -> str:
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        had = f"{free / 2**30:.2f} GiB free of {total / 2**30:.2f} GiB on {device}"
    else:
        had = f"the memory of {device}"
    return (f"out of memory even with a micro-batch of 1 image (batch {batch}, {had}). "
            f"Try a smaller model or input size, autocast (amp=True), closing "
            f"other programs on the GPU (nvidia-smi), or "
            f"PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True.")


def _compiled(model: nn.Module) -> Callable[[Tensor], Tensor]:
    """``torch.compile(model)``, whose failures while compiling (at the first
    call) are reported by their meaningful line.

    The batch dimension is marked dynamic, so the one compiled graph takes
    any batch size: the short last batch of an epoch and a halved
    micro-batch reuse it instead of compiling again, silently, mid-run.
    (Dropping the short batch would change what is trained; padding it
    would change BatchNorm's batch statistics.)
    """
    compiled = torch.compile(model)

    def forward(x: Tensor) -> Tensor:
        torch._dynamo.maybe_mark_dynamic(x, 0)
        try:
            return compiled(x)
        except torch._dynamo.exc.TorchDynamoException as err:  # raised while compiling
            raise CompileError(f"torch.compile failed: {one_line(err)}. Train without "
                               f"it (compile=False; no --compile).") from err
    return forward


def _check_finite(state: RunState, steps_per_epoch: int, lr: float) -> None:
    """Raise DivergenceError naming the first step since the last check with a
    NaN or infinite loss."""
    bad = (~torch.isfinite(state.losses[state.checked:state.step])).nonzero()
    if len(bad):
        step = state.checked + int(bad[0]) + 1
        value = state.losses[step - 1].item()
        raise DivergenceError(
            f"the training loss became {value} at step {step} (epoch "
            f"{(step - 1) // steps_per_epoch + 1}); the run stopped there and wrote "
            f"no result. Try a lower learning rate, e.g. lr={lr / 10:g} (--lr {lr / 10:g}).")
    state.checked = state.step


def _set_kernel_modes(device: torch.device, deterministic: bool) -> None:
    """cudnn's autotuner (fast), or deterministic kernels: cudnn's, cuBLAS's
    (a fixed workspace) and torch's own where it has them. Call it inside
    ``restoring_global_modes``, which undoes all of it."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        if device.type == "cuda":  # read when cuBLAS starts; a value already set wins
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # warn_only: some backward kernels these models use (adaptive average
        # pooling on CUDA) have no deterministic version; strict mode would
        # stop the run there, this names them in a warning instead.
        torch.use_deterministic_algorithms(True, warn_only=True)


@contextmanager
def restoring_global_modes() -> Iterator[None]:
    """Put back, on leaving, every global setting ``_set_kernel_modes`` may
    change, so that one run's settings never leak into later runs (or into
    later cells of a notebook), whether it returned or raised."""
    cudnn = torch.backends.cudnn
    saved = (cudnn.benchmark, cudnn.deterministic,
             torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    try:
        yield
    finally:
        cudnn.benchmark, cudnn.deterministic = saved[0], saved[1]
        torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])
        if saved[4] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = saved[4]


def _resume(path: str | Path, config: TrainConfig, model: nn.Module,
            optimizer: torch.optim.Optimizer, batches: DeviceBatches,
            state: RunState) -> None:
    """Continue from the checkpoint at ``path``: the model, the optimiser and
    the random generators are restored by ``restore_run``; the data order and
    the loop's state here."""
    saved = restore_run(path, asdict(config), len(state.losses), config.batch_size,
                        History, model, optimizer)
    state.losses[:saved.step] = torch.tensor(saved.losses, device=state.losses.device)
    state.history = History(**saved.history)
    if "cpu_seconds" not in saved.history:
        state.history.cpu_seconds = None  # the part before the checkpoint is unknown
    batches.generator.set_state(saved.generator_state)
    state.step = state.checked = saved.step
    state.micro = saved.micro
    state.epoch_start = saved.generator_state
    log.info("resumed %s from %s at step %d", config.model, path, saved.step)


def _save(path: str | Path, config: TrainConfig, model: nn.Module,
          optimizer: torch.optim.Optimizer, state: RunState, last: bool = False) -> None:
    """Checkpoint the run (``save_run``: everything ``_resume`` needs)."""
    save_run(path, asdict(config), model, optimizer, state.step, state.micro,
             state.losses[:state.step].tolist(), asdict(state.history), state.epoch_start,
             last=last)


def _validate(model: nn.Module, split: Split, state: RunState, at_epoch_end: bool,
              amp: torch.dtype | None, channels_last: bool) -> float:
    """Evaluate on ``split`` and add the point to the history; return the accuracy."""
    loss, acc = evaluate(model, split, amp=amp, channels_last=channels_last)
    h = state.history
    h.val_step.append(state.step)
    h.val_loss.append(loss)
    h.val_accuracy.append(acc)
    h.val_images.append(len(split))
    if at_epoch_end:
        h.epoch_val_loss.append(loss)
        h.epoch_val_accuracy.append(acc)
    return acc


def _result(config: TrainConfig, model: nn.Module, state: RunState,
            batches: DeviceBatches, test_scores: tuple[float, float],
            peak: tuple[int | None, str], device: torch.device, amp: torch.dtype | None,
            channels_last: bool) -> RunResult:
    """The RunResult of a finished run."""
    h = state.history
    return RunResult(
        model=config.model,
        parameters=count_parameters(model),
        config=asdict(config) | {"device": str(device), "amp": amp is not None,
                                 "amp_dtype": _dtype_name(amp),
                                 "channels_last": channels_last},
        steps_per_epoch=len(batches),
        train_loss=state.losses.tolist(),
        val_step=h.val_step, val_accuracy=h.val_accuracy,
        val_loss=h.val_loss, val_images=h.val_images,
        epoch_val_accuracy=h.epoch_val_accuracy, epoch_val_loss=h.epoch_val_loss,
        test_loss=test_scores[0], test_accuracy=test_scores[1],
        train_seconds=h.train_seconds, cpu_seconds=h.cpu_seconds,
        images_per_second=_steady_rate(_images_seen(state.step, batches), h),
        peak_memory_bytes=peak[0], peak_memory_kind=peak[1],
        provenance=provenance(device),
        first_step_seconds=state.first_step_seconds,
    )


def _dtype_name(dtype: torch.dtype | None) -> str | None:
    """'bfloat16' for torch.bfloat16; None for None."""
    return None if dtype is None else str(dtype).removeprefix("torch.")


def _steady_rate(images: int, h: History) -> float:
    """Images per second at steady state: without each process's first step
    and its one-off costs (kept apart: ``first_step_seconds``). A run of a
    single step has nothing else to show, so its own rate is given."""
    seconds, steady = h.train_seconds - h.warmup_seconds, images - h.warmup_images
    if steady <= 0 or seconds <= 0:
        return images / h.train_seconds
    return steady / seconds


def _images_seen(steps: int, batches: DeviceBatches) -> int:
    """Images in the first ``steps`` batches (the last batch of an epoch is short)."""
    full_epochs, rest = divmod(steps, len(batches))
    return full_epochs * len(batches.split) + rest * batches.batch_size
