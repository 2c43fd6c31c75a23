"""The state of a training run: what the loop advances, what a checkpoint
keeps of it, and the RunResult it ends in.

``RunState`` is where a run stands (the step, the per-step losses on the
device, the micro-batch size, the data order of the epoch in progress) and
``History`` its validation points and clock. ``save_checkpoint`` and
``resume_run`` pass them through ``cnnlab.checkpoint`` (which checks every
field before anything is restored); ``run_result`` turns a finished run into
the ``RunResult`` that ``cnnlab.results`` saves. ``cnnlab.train`` is the
loop that uses them.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from .checkpoint import restore_run, save_run
from .data import DeviceBatches
from .models import count_parameters
from .provenance import provenance
from .results import RunResult

if TYPE_CHECKING:  # train.py imports this module
    from .train import TrainConfig

log = logging.getLogger("cnnlab")


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


def resume_run(path: str | Path, config: TrainConfig, model: nn.Module,
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


def save_checkpoint(path: str | Path, config: TrainConfig, model: nn.Module,
          optimizer: torch.optim.Optimizer, state: RunState, last: bool = False) -> None:
    """Checkpoint the run (``save_run``: everything ``resume_run`` needs)."""
    save_run(path, asdict(config), model, optimizer, state.step, state.micro,
             state.losses[:state.step].tolist(), asdict(state.history), state.epoch_start,
             last=last)


def run_result(config: TrainConfig, model: nn.Module, state: RunState,
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
