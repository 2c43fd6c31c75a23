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

``train`` keeps the loop in view; the helpers below it resume a run from a
checkpoint, validate, save, and build the RunResult, each receiving the
run's state (``RunState``) explicitly.
"""
from __future__ import annotations

import inspect
import logging
import math
import os
import random
import resource
import signal
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checkpoint import (CheckpointError, checkpoint_lock, load_checkpoint, restore_problem,
                         rng_states, save_checkpoint, set_rng_states)
from .data import DeviceBatches, MnistSplits, Split, load_mnist, preprocess
from .files import check_writable
from .models import (DEFAULT_DROPOUT, MODELS, check_model_name, count_parameters, eval_mode,
                     get_model)
from .results import RunResult, check_field_types, encode_predictions, provenance

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
    amp: bool | None = None            # bf16 autocast; None: on for CUDA only
    channels_last: bool | None = None  # NHWC memory layout; None: CUDA only
    compile: bool = False              # torch.compile the model
    deterministic: bool = False        # no cudnn.benchmark, deterministic kernels

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


def evaluate(model: nn.Module, split: Split, batch_size: int = 1000,
             amp: bool = False, channels_last: bool = False) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (0-1) of ``model`` on ``split``."""
    loss, accuracy, _ = evaluate_with_predictions(model, split, batch_size, amp,
                                                  channels_last)
    return loss, accuracy


@torch.no_grad()
def evaluate_with_predictions(model: nn.Module, split: Split, batch_size: int = 1000,
                              amp: bool = False, channels_last: bool = False
                              ) -> tuple[float, float, Tensor]:
    """``evaluate``, and the predicted class of every image of ``split``
    (uint8, on the CPU): what a record keeps of the test pass."""
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


class _Progress:
    """A progress bar with the loss and validation accuracy, or nothing.

    ``enabled`` None: a bar only for runs long enough to need one.
    """

    def __init__(self, total: int, enabled: bool | None, desc: str, done: int = 0) -> None:
        self.bar = None
        if enabled or (enabled is None and total >= 200):
            from tqdm.auto import tqdm
            # A redraw at most every second: frequent redraws cost real time per step.
            self.bar = tqdm(total=total, initial=done, desc=desc, unit="step",
                            mininterval=1.0)

    def step(self) -> None:
        if self.bar is not None:
            self.bar.update()

    def point(self, state: RunState, accuracy: float, window: int) -> None:
        """Show the mean loss of the last ``window`` steps and the accuracy."""
        if self.bar is not None:
            recent = state.losses[max(0, state.step - window):state.step]
            self.bar.set_postfix(loss=f"{recent.mean().item():.4f}",
                                 val_acc=f"{accuracy:.4f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class DataError(ValueError):
    """Training data that cannot be used: empty, mismatched, or labels out of range."""


# MNIST's ten digits: every model is built with ten outputs (TrainConfig
# leaves num_classes at the builders' default).
NUM_CLASSES = 10


def check_data(data: MnistSplits, model: nn.Module, name: str = "model") -> None:
    """Check all three splits before step 1, naming the split at fault.

    Each must be non-empty, with one label per image, uint8 images of the
    shape ``model`` takes, and int64 labels 0-9. Raises DataError,
    PixelDtypeError or ShapeMismatchError.
    """
    for split_name, split in (("train", data.train), ("validation", data.val),
                              ("test", data.test)):
        where = f"the {split_name} split"
        images, labels = split.images, split.labels
        if not (isinstance(images, Tensor) and isinstance(labels, Tensor)):
            raise DataError(f"{where}: images and labels must be torch tensors, got "
                            f"{type(images).__name__} and {type(labels).__name__}")
        if images.ndim == 0 or len(images) == 0:
            raise DataError(f"{where} is empty; it needs at least one image")
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataError(f"{where} has {len(images)} images but labels of shape "
                            f"{tuple(labels.shape)}; give one label per image")
        try:
            check_images(images, name)
            check_input_shape(model, preprocess(images[:1]), name)
        except ValueError as err:  # the same error, with the split named
            raise type(err)(f"{where}: {err}") from None
        if labels.dtype != torch.int64:
            raise DataError(f"{where}: labels must be int64 class numbers, got "
                            f"{labels.dtype}; convert them with labels.long()")
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= NUM_CLASSES:
            raise DataError(f"{where}: labels must be 0-{NUM_CLASSES - 1}, found "
                            f"{low if low < 0 else high}")


class DivergenceError(RuntimeError):
    """The training loss became NaN or infinite."""


class TrainingOutOfMemoryError(RuntimeError):
    """Out of memory even with a micro-batch of one image."""


class CompileError(RuntimeError):
    """torch.compile failed (at the model's first call, when it compiles)."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM/SIGHUP, which the CLI turns into one) stopped training.

    Its message says at which step, and whether a checkpoint keeps the run.
    """

    def __init__(self, message: str, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.signum = signum  # the CLI exits with 128 + signum


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
    # CPU time the process used while training (all threads). Beside
    # train_seconds it tells whether the run had its cores to itself; None
    # when a checkpoint from before this field resumed the run.
    cpu_seconds: float | None = 0.0


def train_step(model: nn.Module | Callable, optimizer: torch.optim.Optimizer, x: Tensor,
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


def _compiled(model: nn.Module) -> Callable[[Tensor], Tensor]:
    """``torch.compile(model)``, whose failures (they come at the first call,
    when it compiles) are reported by their meaningful line."""
    compiled = torch.compile(model)

    def forward(x: Tensor) -> Tensor:
        try:
            return compiled(x)
        except torch.cuda.OutOfMemoryError:
            raise  # the step halves its micro-batch
        except Exception as err:
            raise CompileError(f"torch.compile failed: {one_line(err)}. Train without "
                               f"it (compile=False; no --compile).") from err
    return forward


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


class _Stopwatch:
    """Training time, wall clock and CPU, added to a History; paused to validate."""

    def __init__(self, device: torch.device, history: History) -> None:
        self.device, self.history = device, history
        self.started: tuple[float, float] | None = None

    def start(self) -> None:
        _sync(self.device)
        self.started = time.perf_counter(), time.process_time()

    def elapsed(self) -> float:
        """Wall seconds since ``start``, once the device has caught up."""
        _sync(self.device)
        return time.perf_counter() - self.started[0]

    def stop(self) -> None:
        if self.started is None:  # already stopped
            return
        _sync(self.device)
        wall, cpu = self.started
        self.history.train_seconds += time.perf_counter() - wall
        if self.history.cpu_seconds is not None:
            self.history.cpu_seconds += time.process_time() - cpu
        self.started = None


# The signals that stop a run like Ctrl-C (the CLI turns SIGTERM and SIGHUP
# into KeyboardInterrupt; SIGHUP does not exist on Windows).
_STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                      if hasattr(signal, name))


class _StepGuard:
    """Holds Ctrl-C (and the signals the CLI turns into it) while a step and
    its validation and checkpoint run, and delivers it right after.

    The optimiser updates the weights one tensor at a time, and the step's
    bookkeeping follows: stopped in between, a checkpoint would hold half a
    step and could not resume bit for bit. A second Ctrl-C while one is held
    stops at once, and then nothing is saved (``forced``). Between steps a
    signal acts at once, as usual.
    """

    def __init__(self) -> None:
        self.previous: dict[int, Callable] = {}  # the handlers to hand signals to
        self.in_step = False
        self.held: int | None = None
        self.forced = False
        self.saving = False  # the last save of a stopped run: nothing interrupts it

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread receives signals
        for signum in _STOP_SIGNALS:
            handler = signal.getsignal(signum)
            if callable(handler):  # Python raises for it (not the default kill)
                self.previous[signum] = handler
                signal.signal(signum, self._hold)

    def uninstall(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}

    def _hold(self, signum: int, frame) -> None:
        if self.saving:  # the run is stopping already; cut short, the save is lost
            return
        if self.in_step and self.held is None:
            self.held = signum  # delivered when the step is done
            return
        self.forced = self.in_step  # a second one mid-step: stop now, unsaved
        self.previous[signum](signum, frame)

    @contextmanager
    def step(self) -> Iterator[None]:
        self.in_step = True
        try:
            yield
        finally:
            self.in_step = False
        if self.held is not None:  # between steps now: deliver it
            signum, self.held = self.held, None
            self.previous[signum](signum, None)


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
    ``checkpoint``: save the run's whole state there at every epoch end, at
    the last step and on Ctrl-C; a file already there is refused unless
    ``resume``. ``resume``: continue from that checkpoint if it exists; the
    result is then bit-for-bit the one an uninterrupted run gives (on CPU).
    """
    if resume and checkpoint is None:
        raise ValueError("resume=True needs the checkpoint path to resume from")
    if checkpoint is not None:
        check_writable(checkpoint, "checkpoint")  # before the lock file beside it
    with checkpoint_lock(checkpoint):  # one run at a time per checkpoint
        if checkpoint is not None:
            _check_checkpoint_path(checkpoint, resume)
        return _train(config, data, progress, checkpoint, resume)


def _train(config: TrainConfig, data: MnistSplits | None, progress: bool | None,
           checkpoint: str | Path | None, resume: bool) -> tuple[nn.Module, RunResult]:
    """``train``'s work, once its checkpoint path is checked and held."""
    device = resolve_device(config.device)
    amp = config.amp if config.amp is not None else device.type == "cuda"
    channels_last = (config.channels_last if config.channels_last is not None
                     else device.type == "cuda")
    set_seed(config.seed)
    rss_reset = _reset_memory_peaks(device, config.deterministic)

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
    batches = DeviceBatches(data.train, config.batch_size, shuffle=True, seed=config.seed)
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

    bar = _Progress(total, progress, config.model, state.step)
    guard, watch = _StepGuard(), _Stopwatch(device, state.history)
    model.train()
    watch.start()
    guard.install()
    try:
        while state.step < total:
            state.epoch_start = batches.generator.get_state()  # this epoch's order
            for x, y in batches.epoch(skip=state.step % per_epoch):
                with guard.step():  # a signal waits until the step's bookkeeping is done
                    if channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    loss, state.micro = _step_with_fallback(step_model, optimizer, x, y,
                                                            state.micro, amp, state.step)
                    state.losses[state.step] = loss
                    state.step += 1
                    if state.first_step_seconds is None:
                        state.first_step_seconds = watch.elapsed()
                    bar.step()
                    if device.type != "cuda":  # free here; on a GPU it would sync
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
                            _save_or_warn(checkpoint, config, model, optimizer, state,
                                          at_last)
                        bar.point(state, acc, config.eval_every)
                        watch.start()
                if state.step == total:
                    break
    except KeyboardInterrupt as err:
        watch.stop()
        saved = checkpoint is not None and not guard.forced  # forced: half a step
        if saved:
            guard.saving = True  # a further Ctrl-C now would cut the save short
            _save(checkpoint, config, model, optimizer, state)
        raise TrainingInterrupted(_interrupt_message(err, state.step, checkpoint, saved),
                                  getattr(err, "signum", signal.SIGINT)) from None
    finally:
        guard.uninstall()
        bar.close()

    # The test set, once, after training.
    test_loss, test_acc, predicted = evaluate_with_predictions(
        model, test, amp=amp, channels_last=channels_last)
    peak = _peak_memory(device, rss_reset)
    result = _result(config, model, state, batches, (test_loss, test_acc), peak,
                     device, amp, channels_last)
    result.test_predictions = encode_predictions(predicted)
    return model, result


def _check_checkpoint_path(path: str | Path, resume: bool) -> None:
    """Before anything runs: the checkpoint can be written, and a checkpoint
    already there is continued (resume), never overwritten."""
    check_writable(path, "checkpoint")
    if Path(path).exists() and not resume:
        raise CheckpointError(f"{path}: a file is already there. If it is this run's "
                              f"checkpoint, continue it with resume=True (--resume); "
                              f"otherwise choose another path to start afresh.")


def _reset_memory_peaks(device: torch.device, deterministic: bool) -> bool:
    """Start this run's peak-memory count (and set cudnn's mode on CUDA).
    Returns whether a CPU run's peak RSS could be reset."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic
        torch.cuda.reset_peak_memory_stats(device)
    return device.type == "cpu" and _reset_peak_rss()


def _resume(path: str | Path, config: TrainConfig, model: nn.Module,
            optimizer: torch.optim.Optimizer, batches: DeviceBatches,
            state: RunState) -> None:
    """Load the checkpoint at ``path`` into the model, the optimiser, the data
    order, the random generators and ``state``."""
    saved = load_checkpoint(path, asdict(config))
    step, total = saved["step"], len(state.losses)
    problem = restore_problem(saved, total, config.batch_size, History)
    if problem:
        raise CheckpointError(f"{path}: the checkpoint cannot be restored: {problem}. "
                              f"Pass another --checkpoint path to start afresh.")
    if step > total:
        raise CheckpointError(f"{path}: the checkpoint is at step {step}, beyond "
                              f"this run's {total} steps; raise --epochs (or --max-steps) to "
                              f"continue it.")
    try:
        if len(saved["train_loss"]) != step:
            raise ValueError(f"{len(saved['train_loss'])} losses for {step} steps")
        model.load_state_dict(saved["model_state"])
        optimizer.load_state_dict(saved["optimizer_state"])
        state.losses[:step] = torch.tensor(saved["train_loss"], device=state.losses.device)
        state.history = History(**saved["history"])
        batches.generator.set_state(saved["generator_state"])
        set_rng_states(saved["rng"])
    except (RuntimeError, KeyError, TypeError, ValueError, IndexError) as err:
        raise CheckpointError(f"{path}: the checkpoint cannot be restored "
                              f"({one_line(err)}). Delete it to start afresh.") from None
    if "cpu_seconds" not in saved["history"]:
        state.history.cpu_seconds = None  # the part before the checkpoint is unknown
    state.step = state.checked = step
    state.micro = saved["micro_batch"]
    state.epoch_start = saved["generator_state"]
    log.info("resumed %s from %s at step %d", config.model, path, step)


def _save(path: str | Path, config: TrainConfig, model: nn.Module,
          optimizer: torch.optim.Optimizer, state: RunState) -> None:
    """Write everything ``_resume`` needs to continue bit for bit."""
    save_checkpoint(path, {
        "config": asdict(config), "step": state.step, "micro_batch": state.micro,
        "model_state": model.state_dict(), "optimizer_state": optimizer.state_dict(),
        "train_loss": state.losses[:state.step].tolist(),
        "history": asdict(state.history),
        "generator_state": state.epoch_start, "rng": rng_states(),
    })


def _save_or_warn(path: str | Path, config: TrainConfig, model: nn.Module,
                  optimizer: torch.optim.Optimizer, state: RunState, at_last: bool) -> None:
    """``_save``; but the last save of a finished run may fail (a full disk)
    without failing the run: its result is worth more than its checkpoint,
    and is returned to be saved. Earlier saves fail the run, as they must."""
    try:
        _save(path, config, model, optimizer, state)
    except OSError as err:
        if not at_last:
            raise
        log.warning("the run finished, but its last checkpoint could not be written "
                    "(%s: %s); the previous one stays at %s, and the result is kept",
                    path, err.strerror or err, path)


def _validate(model: nn.Module, split: Split, state: RunState, at_epoch_end: bool,
              amp: bool, channels_last: bool) -> float:
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


def _interrupt_message(err: KeyboardInterrupt, step: int, checkpoint: str | Path | None,
                       saved: bool) -> str:
    """What stopped the run, at which step, and what keeps it (only what exists)."""
    signum = getattr(err, "signum", signal.SIGINT)
    how = ("interrupted (Ctrl-C)" if signum == signal.SIGINT
           else f"stopped by {signal.Signals(signum).name}")
    if saved:
        return (f"{how} at step {step}; checkpoint saved to {checkpoint} (continue "
                f"with resume=True / --resume)")
    if checkpoint is not None and Path(checkpoint).exists():
        return (f"{how} in the middle of step {step + 1}; not saved, the checkpoint "
                f"{checkpoint} keeps the run as it was at its last save")
    if checkpoint is not None:  # a second signal stopped the step before any save
        return (f"{how} in the middle of step {step + 1}, before the first save; no "
                f"checkpoint written (stop with one Ctrl-C to save one)")
    return (f"{how} at step {step}; nothing saved (a checkpoint path, checkpoint=PATH "
            f"/ --checkpoint PATH, makes a run resumable)")


def _result(config: TrainConfig, model: nn.Module, state: RunState,
            batches: DeviceBatches, test_scores: tuple[float, float],
            peak: tuple[int | None, str], device: torch.device, amp: bool,
            channels_last: bool) -> RunResult:
    """The RunResult of a finished run."""
    h = state.history
    return RunResult(
        model=config.model,
        parameters=count_parameters(model),
        config=asdict(config) | {"device": str(device), "amp": amp,
                                 "channels_last": channels_last},
        steps_per_epoch=len(batches),
        train_loss=state.losses.tolist(),
        val_step=h.val_step, val_accuracy=h.val_accuracy,
        val_loss=h.val_loss, val_images=h.val_images,
        epoch_val_accuracy=h.epoch_val_accuracy, epoch_val_loss=h.epoch_val_loss,
        test_loss=test_scores[0], test_accuracy=test_scores[1],
        train_seconds=h.train_seconds, cpu_seconds=h.cpu_seconds,
        images_per_second=_images_seen(state.step, batches) / h.train_seconds,
        peak_memory_bytes=peak[0], peak_memory_kind=peak[1],
        provenance=provenance(device),
        first_step_seconds=state.first_step_seconds,
    )


def _images_seen(steps: int, batches: DeviceBatches) -> int:
    """Images in the first ``steps`` batches (the last batch of an epoch is short)."""
    full_epochs, rest = divmod(steps, len(batches))
    return full_epochs * len(batches.split) + rest * batches.batch_size
