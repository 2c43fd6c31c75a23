"""Where and how the arithmetic runs: the device, the seed, autocast, kernel modes, compilation.

``resolve_device`` picks the device (a name, ``$CNNLAB_DEVICE``, else CUDA,
MPS, CPU) and refuses one this machine does not have, in one line.
``autocast_dtype`` picks bfloat16 only where the hardware has it natively
(float16 with a GradScaler on older GPUs). ``set_kernel_modes`` turns on
cuDNN's autotuner, or deterministic kernels, inside
``restoring_global_modes``, which puts every global setting back.
``compiled`` wraps ``torch.compile`` so that its failures read as one line.
``cnnlab.train`` uses all of these; chapters import ``resolve_device`` and
``set_seed`` from either module.
"""
from __future__ import annotations

import os
import random
from contextlib import contextmanager, nullcontext
from typing import Callable, Iterator

import numpy as np
import torch
from torch import Tensor, nn


def device_of(model: nn.Module, default: torch.device) -> torch.device:
    """The device of the model's first parameter (or buffer); ``default`` if it has none."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return default


def autocast(device: torch.device, amp: bool | torch.dtype | None):
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


class CompileError(RuntimeError):
    """torch.compile failed (at the model's first call, when it compiles)."""


def one_line(err: BaseException) -> str:
    """The line of an error message that says what went wrong: the first that
    does not end in ':' (torch.compile's start "backend='inductor' raised:")."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    meaningful = [line for line in lines if not line.endswith(":")]
    return (meaningful or lines or [type(err).__name__])[0]


def compiled(model: nn.Module) -> Callable[[Tensor], Tensor]:
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


def set_kernel_modes(device: torch.device, deterministic: bool) -> None:
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
    """Put back, on leaving, every global setting ``set_kernel_modes`` may
    change, and the CPU thread count, so that one run's settings never leak into later runs (or into
    later cells of a notebook), whether it returned or raised."""
    cudnn = torch.backends.cudnn
    saved = (cudnn.benchmark, cudnn.deterministic,
             torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    threads = torch.get_num_threads()  # a run's TrainConfig.threads
    try:
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        cudnn.benchmark, cudnn.deterministic = saved[0], saved[1]
        torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])
        if saved[4] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = saved[4]
