"""When a training step does not fit in memory: halve the micro-batch and
accumulate (the batch, and so the update, stays the same), down to one
image, then stop with one line that says what to try.

``halve_on_oom`` wraps ``cnnlab.train.train_step``; the cache is emptied
only after the ``except`` block, once the failed step's tensors are freed.
"""
from __future__ import annotations

import logging
import math
from typing import Callable

import torch
from torch import Tensor

log = logging.getLogger("cnnlab")


class TrainingOutOfMemoryError(RuntimeError):
    """Out of memory even with a micro-batch of one image."""


class OptimizerOutOfMemoryError(TrainingOutOfMemoryError):
    """Out of memory in the optimiser step, which no micro-batch size changes."""


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
        free_cached_memory(x.device)
        tried = min(micro, len(y))
        if tried <= 1:
            raise TrainingOutOfMemoryError(oom_message(x.device, len(y)))
        micro = tried // 2
        log.warning("out of memory at step %d with a micro-batch of %d; retrying "
                    "with %d, accumulating %d micro-batches (the batch stays %d)",
                    step + 1, tried, micro, math.ceil(len(y) / micro), len(y))


def free_cached_memory(device: torch.device) -> None:
    """Give the allocator's cached blocks back, so that a retry starts afresh.
    Call it outside an ``except`` block: tensors the traceback holds stay
    allocated until the block ends."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


def oom_message(device: torch.device, batch: int) -> str:
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        had = f"{free / 2**30:.2f} GiB free of {total / 2**30:.2f} GiB on {device}"
    else:
        had = f"the memory of {device}"
    return (f"out of memory even with a micro-batch of 1 image (batch {batch}, {had}). "
            f"Try a smaller model or input size, autocast (amp=True), closing "
            f"other programs on the GPU (nvidia-smi), or "
            f"PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True.")
