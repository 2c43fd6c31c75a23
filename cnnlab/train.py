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
optimiser step are. The run's state (``RunState``), its
checkpoints and the RunResult it ends in are in ``state.py``.
Elsewhere: the data and its checks in ``data.py``; the device, seeding,
autocast and ``torch.compile`` in ``device.py``; checkpoints in
``checkpoint.py``; stop signals in ``stop.py``; peak memory and the
out-of-memory fallback (``halve_on_oom``) in ``memory.py``; the clock in
``bench.py``.
"""
from __future__ import annotations

import inspect
import logging
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .bench import ProgressBar, Stopwatch, runs_async
from .checkpoint import claim_checkpoint
from .data import DeviceBatches, MnistSplits, Split, check_data, load_mnist
# resolve_device and set_seed are imported from here by the chapters, too
from .device import (autocast, autocast_dtype, compiled, device_of, resolve_device,
                     restoring_global_modes, set_kernel_modes, set_seed)
from .memory import peak_memory, reset_peak_memory
from .oom import OptimizerOutOfMemoryError, free_cached_memory, halve_on_oom
from .models import DEFAULT_DROPOUT, MODELS, check_model_name, eval_mode, get_model
from .results import RunResult, check_field_types, encode_predictions
from .state import RunState, resume_run, run_result, save_checkpoint
from .stop import StepGuard, TrainingInterrupted, signal_of, stop_message  # noqa: F401

log = logging.getLogger("cnnlab")

# The training criterion; a module attribute so that tests can inject faults.
loss_fn = F.cross_entropy

# NumPy accepts seeds 0 .. 2**32 - 1 (set_seed seeds NumPy too).
MAX_SEED = 2**32 - 1


# The real-valued fields' rules, in words and as a test: TrainConfig checks
# every run with them, and the command line's --lr and --dropout use the same.
NUMBER_RULES: dict[str, tuple[str, Callable[[float], bool]]] = {
    "lr": ("a finite positive number", lambda v: math.isfinite(v) and v > 0),
    "weight_decay": ("a finite number >= 0", lambda v: math.isfinite(v) and v >= 0),
    "dropout": ("a number in [0, 1)", lambda v: 0 <= v < 1),  # also refuses nan
}


def number_problem(name: str, value: float | None) -> str | None:
    """What ``value`` should be for the field ``name`` and what it is ("a number
    in [0, 1), got 1.0"), or None when it is right (None is right for dropout)."""
    expected, right = NUMBER_RULES[name]
    if (value is None and name == "dropout") or right(value):
        return None
    return f"{expected}, got {value!r}"


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
    threads: int | None = None         # CPU threads for the run (torch.set_num_threads;
    #                                    None: torch's default, one per core). Tiny
    #                                    models can run faster on fewer. It changes the
    #                                    rounding, so the result's config keeps it
    eval_batch_size: int = 1_000       # images per batch when validating and testing
    deterministic: bool = False        # no cudnn.benchmark, deterministic kernels
    #                                    where torch has them (warns where it has not)

    def __post_init__(self) -> None:
        # Types first: amp="no" is a true value, and would turn autocast on.
        check_field_types(TrainConfig, {f.name: getattr(self, f.name)
                                        for f in fields(self)}, "")
        check_model_name(self.model)
        for name in ("epochs", "batch_size", "eval_every", "eval_batch_size"):
            value = getattr(self, name)
            if value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("max_steps", "val_images", "test_images", "eval_subset", "threads"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        for name in NUMBER_RULES:
            problem = number_problem(name, getattr(self, name))
            if problem:
                raise ValueError(f"{name} must be {problem}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be in 0..{MAX_SEED} (NumPy's seeds are 32-bit), "
                             f"got {self.seed!r}")
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
        if config.threads is not None:  # put back on leaving, with the other modes
            torch.set_num_threads(config.threads)
        set_seed(config.seed)
        set_kernel_modes(device, config.deterministic)
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
        step_model = compiled(model) if config.compile else model
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
            resume_run(checkpoint, config, model, optimizer, batches, state)
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
                                        at_epoch_end, amp, channels_last,
                                        config.eval_batch_size)
                        if whole and checkpoint is not None:
                            save_checkpoint(checkpoint, config, model, optimizer, state,
                                            at_last)
                        bar.point(state, acc, config.eval_every)
                        watch.start()
        except KeyboardInterrupt as err:
            watch.stop()
            saved = checkpoint is not None and not guard.forced  # forced: half a step
            if saved:
                guard.saving = True  # a further Ctrl-C now would cut the save short
                save_checkpoint(checkpoint, config, model, optimizer, state)
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
            model, test, config.eval_batch_size, amp=amp, channels_last=channels_last)
        result = run_result(config, model, state, batches, (test_loss, test_acc), peak,
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
        with autocast(x.device, amp):
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
        free_cached_memory(split.images.device)  # after the except: its tensors are freed
        batch_size //= 2
        log.warning("out of memory while evaluating; trying again with batches of %d",
                    batch_size)


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
            with autocast(device, amp):
                logits = model(x)
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
            predictions.append(logits.argmax(1))
    predicted = torch.cat(predictions)
    correct = (predicted == split.labels).sum()
    n = len(split)
    # one host sync per pass
    return loss_sum.item() / n, correct.item() / n, predicted.to("cpu", torch.uint8)


class DivergenceError(RuntimeError):
    """The training loss became NaN or infinite."""


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


def _validate(model: nn.Module, split: Split, state: RunState, at_epoch_end: bool,
              amp: torch.dtype | None, channels_last: bool, batch_size: int) -> float:
    """Evaluate on ``split`` and add the point to the history; return the accuracy."""
    loss, acc = evaluate(model, split, batch_size, amp=amp, channels_last=channels_last)
    h = state.history
    h.val_step.append(state.step)
    h.val_loss.append(loss)
    h.val_accuracy.append(acc)
    h.val_images.append(len(split))
    if at_epoch_end:
        h.epoch_val_loss.append(loss)
        h.epoch_val_accuracy.append(acc)
    return acc
