"""How much memory training a model takes, estimated before training.

Bug 3 of the report was "CUDA out of memory" on its MX250 laptop GPU. The
tensors one training step keeps in memory fall into four parts:

* the parameters;
* their gradients (one number per parameter);
* the optimizer's state (AdamW keeps two running averages per parameter);
* the activations: the tensors autograd saves in the forward pass so that
  the backward pass can compute the gradients. They grow with the batch.

``estimate_training_memory`` counts the first three from the parameter
count and *measures* the fourth: it runs one forward pass (and the loss)
with ``torch.autograd.graph.saved_tensors_hooks`` and adds up the storages
autograd saves. In ``cnnlab.train.fit`` the previous step's gradients are
still alive during the forward pass (they are cleared just before
``backward``), so the end of the forward pass holds all four parts at once.

It estimates tensors, not the process: the CUDA context, cuDNN workspaces,
the caching allocator's rounding and fragmentation, the data kept on the
device and the short-lived gradient buffers of the backward pass come on
top. The backward buffers matter for shallow nets such as LeNet, whose
largest activations sit next to the input.

For chapter 8 (book/08_factors) the module also builds the tables it shows:
``estimate_table`` (the estimate beside torchinfo's), ``card_table`` (what
fits a card), ``measured_table`` (peaks measured on a GPU, in float32 and in
the autocast dtype the package picks there) and ``oom_markdown`` (the
recorded out-of-memory experiment against its predictions).

Tip: build the model on the "meta" device (``with torch.device("meta"):
model = get_model(name)``) and the estimate costs no memory and almost no
time: meta tensors have shapes and dtypes but no data (``on_meta`` does it).

What torchinfo's "Estimated Total Size" counts
----------------------------------------------
torchinfo 1.8 (``ModelStatistics.__init__`` and ``__repr__`` in
``torchinfo/model_statistics.py``) adds:

* the input batch's bytes (``sys.getsizeof`` of its storage: the bytes
  and a Python object's header);
* the parameters' bytes, once;
* twice (its comment: "x2 for gradients") the output bytes of every
  *leaf module that has parameters* (Conv2d, Linear, BatchNorm2d, ...).

So it leaves out the parameters' gradients and the optimizer's state
(for AdamW three more copies of the parameters), the outputs of
parameter-free layers (ReLU, Sigmoid, pooling, dropout, upsampling,
concatenation) and of functional code that is no module at all
(``F.relu``, the residual ``+``), and autograd's own saved tensors, which
are mostly a layer's *input* and include int64 max-pool indices and
dropout masks. Where a net keeps its memory in those places (AlexNet's
optimizer state, GoogLeNet's branches and concatenations) torchinfo's
figure is well below the real one: a lower bound. It is not a safe bound
in general, though: for conv -> batch-norm -> ReLU nets (ResNet,
MobileNet) it counts four copies of each feature map (conv output and BN
output, each twice) where autograd keeps about two, and can land above.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, UntypedStorage, nn

from .models import count_parameters, in_mode


# Numbers the optimizer keeps per parameter, besides the parameter itself.
OPTIMIZER_STATES = {
    "adamw": 2,         # exp_avg and exp_avg_sq
    "adam": 2,
    "sgd": 0,           # plain SGD keeps nothing
    "sgd_momentum": 1,  # one momentum buffer
}


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of the tensors one training step keeps, by part (an estimate)."""

    parameters_bytes: int
    gradients_bytes: int
    optimizer_state_bytes: int
    activations_bytes: int

    @property
    def total(self) -> int:
        """The sum of the four parts."""
        return (self.parameters_bytes + self.gradients_bytes
                + self.optimizer_state_bytes + self.activations_bytes)


def _storage_id(t: Tensor) -> int:
    """What identifies the memory a tensor uses: its storage.

    On a real device that is the storage's address (``data_ptr``). A meta
    tensor has no memory (its address is 0), so there it is the storage
    object itself, which every view of the tensor shares.
    """
    storage = t.untyped_storage()
    return storage.data_ptr() or id(storage)


def saved_activation_bytes(model: nn.Module, batch: Tensor,
                           target: Tensor | None = None) -> int:
    """Bytes autograd saves for backward in one forward pass (and the loss).

    Each storage counts once and whole: a view keeps all of its storage
    alive, and a tensor saved by two operations is one tensor in memory.
    The parameters' own storages are left out (they count as parameters).
    ``target`` adds the cross-entropy loss, as in a training step.
    """
    parameters = {_storage_id(p) for p in model.parameters()}
    saved: dict[int, UntypedStorage] = {}  # holding them keeps each id unique

    def pack(t: Tensor) -> Tensor:
        key = _storage_id(t)
        if key not in parameters:
            saved[key] = t.untyped_storage()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits = model(batch)
        if target is not None:
            F.cross_entropy(logits, target)
    return sum(s.nbytes() for s in saved.values())


def _training_forward_bytes(model: nn.Module, batch: Tensor, target: Tensor) -> int:
    """``saved_activation_bytes`` in training mode, leaving the model as it was.

    Training mode, because dropout masks and batch-norm statistics are only
    saved there; the batch-norm running statistics it updates are put back,
    and the random number generator's state too (dropout draws from it).
    """
    buffers = [(b, b.clone()) for b in model.buffers()]
    devices = [batch.device] if batch.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), in_mode(model, training=True):
            return saved_activation_bytes(model, batch, target)
    finally:
        with torch.no_grad():
            for buffer, before in buffers:
                buffer.copy_(before)


def estimate_training_memory(model: nn.Module, batch_size: int,
                             input_size: tuple[int, ...] = (1, 28, 28),
                             optimizer: str = "adamw",
                             dtype_bytes: int = 4) -> MemoryEstimate:
    """Estimate the tensor memory of one training step of ``model``.

    Parameters, gradients and optimizer state follow from the parameter
    count at ``dtype_bytes`` each (4 for float32). The activations are
    measured: one forward pass and loss on a (``batch_size``,
    *``input_size``) batch, in training mode, on the model's own device and
    dtype (use the "meta" device for a free estimate). The model is left
    as it was: its mode and its batch-norm statistics.
    """
    if optimizer not in OPTIMIZER_STATES:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of: "
                         + ", ".join(OPTIMIZER_STATES))
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    first = next(model.parameters())
    batch = torch.zeros(batch_size, *input_size, device=first.device, dtype=first.dtype)
    target = torch.zeros(batch_size, dtype=torch.long, device=first.device)
    n = count_parameters(model)
    return MemoryEstimate(
        parameters_bytes=n * dtype_bytes,
        gradients_bytes=n * dtype_bytes,
        optimizer_state_bytes=OPTIMIZER_STATES[optimizer] * n * dtype_bytes,
        activations_bytes=_training_forward_bytes(model, batch, target),
    )


def torchinfo_estimate_bytes(model: nn.Module, batch_size: int,
                             input_size: tuple[int, ...] = (1, 28, 28)) -> int:
    """torchinfo's own "Estimated Total Size", in bytes, for comparison.

    Input + parameters + 2 x the outputs of the leaf layers that have
    parameters (see the module docstring for what that leaves out). Runs
    on the model's device; "meta" works and is free.
    """
    from torchinfo import summary

    stats = summary(model, input_size=(batch_size, *input_size), verbose=0,
                    device=next(model.parameters()).device)
    return stats.total_input + stats.total_output_bytes + stats.total_param_bytes


# The report's card was an NVIDIA MX250, most often sold with 2 GiB (the
# report does not give its size).
def on_meta(name: str, **kwargs) -> nn.Module:
    """``get_model(name, **kwargs)`` on the meta device: shapes and dtypes but
    no data, so building it and estimating its memory cost nothing."""
    from .models import get_model

    with torch.device("meta"):
        return get_model(name, **kwargs)


REPORT_CARD_BYTES = 2 * 2**30


def _vm_size() -> int:
    """This process's virtual memory size in bytes (Linux)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise OSError("no VmSize in /proc/self/status")


# What a capped run that fitted reports. Two steps, because the first holds
# less than a step does from then on: until the first optimizer step there
# are no gradients or AdamW state to keep through the forward pass.
FITTED = "trained two steps"


def _capped_step(model: str, batch_size: int, cap_bytes: int) -> dict:
    """In this process: load the data, cap the memory, train two steps (the
    second holds all four parts of the estimate at once; see ``FITTED``).

    The cap is RLIMIT_AS: what the process holds once torch, the data and
    the thread pool are up, plus ``cap_bytes`` for the model and its
    training (the parameters, gradients, AdamW state and activations a GPU
    would have to hold). Returns what happened, with the real error text.
    """
    import resource

    from .data import load_mnist
    from .train import TrainConfig, fit

    data = load_mnist()
    # Warm up the thread pool and the allocator's arenas before the cap, so
    # the cap is spent on training, not on start-up.
    # The warm-up also makes PyTorch and NumPy load the modules they import
    # lazily (AdamW pulls in torch._dynamo, seeding numpy.random): loaded
    # under the cap, they would crash the child instead of failing the step.
    warm = nn.Conv2d(1, 4, 3)
    warm(torch.zeros(8, 1, 28, 28)).sum().backward()
    torch.optim.AdamW(warm.parameters()).step()
    import numpy.random  # noqa: F401
    base = _vm_size()
    resource.setrlimit(resource.RLIMIT_AS, (base + cap_bytes, base + cap_bytes))
    config = TrainConfig(model=model, batch_size=batch_size, max_steps=2, eval_every=2,
                         val_images=batch_size, test_images=batch_size, device="cpu")
    try:
        fit(config, data, progress=False)
    except (RuntimeError, MemoryError) as err:
        return {"batch_size": batch_size, "outcome": "failed",
                "error": f"{type(err).__name__}: {err}".strip()}
    return {"batch_size": batch_size, "outcome": FITTED, "error": None}


def train_under_memory_cap(model: str, batch_size: int,
                           cap_bytes: int = REPORT_CARD_BYTES) -> dict:
    """Train two steps of ``model`` in a child process with ``cap_bytes`` of memory.

    Without a GPU this reproduces "out of memory" for real: the child
    process gets the cap with ``resource.setrlimit`` (Linux), and the error
    it meets is PyTorch's own. On a GPU, ``torch.cuda.set_per_process_
    memory_fraction`` plays the same role. Returns the outcome and the
    error text (None when the step fitted).
    """
    import json
    import subprocess
    import sys

    code = ("import json, sys; from cnnlab.memory import _capped_step; "
            f"print(json.dumps(_capped_step({model!r}, {batch_size}, {cap_bytes})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode == 0 and lines:
        return json.loads(lines[-1])
    # Killed or crashed outside Python's reach: keep what it said.
    tail = (done.stderr.strip().splitlines() or ["(nothing)"])[-1]
    return {"batch_size": batch_size, "outcome": f"child exited {done.returncode}",
            "error": tail}


# ------------------------------------------------ a training run's peak

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


def reset_peak_memory(device: torch.device) -> bool:
    """Start a training run's peak-memory count on ``device``. Returns whether
    a CPU run's peak RSS could be reset (Linux); elsewhere ``peak_memory``
    falls back to the process's peak since it started."""
    if device.type == "cuda":
        # In a fresh process CUDA starts lazily, at its first use; until then
        # the allocator has no statistics to reset, and naming a device
        # ("cuda:0") fails. Starting it here makes the reset safe.
        torch.cuda.init()
        torch.cuda.reset_peak_memory_stats(device)
    return device.type == "cpu" and _reset_peak_rss()


def peak_memory(device: torch.device, rss_reset: bool) -> tuple[int | None, str]:
    """The run's peak memory in bytes since ``reset_peak_memory``, and what the
    number measures (on MPS: the memory held now, as MPS keeps no peak)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "cuda_max_memory_allocated"
    if device.type == "mps":  # MPS keeps no peak: this is what it holds now
        return torch.mps.driver_allocated_memory(), "mps_driver_allocated_current"
    peak = _peak_rss_since_reset() if rss_reset else None
    if peak is not None:  # the whole process's peak during this run
        return peak, "process_peak_rss_during_run"
    # Elsewhere ru_maxrss (KiB on Linux): the peak since the process started,
    # which may be an earlier run's in the same process.
    import resource  # Unix only

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss * (1 if sys.platform == "darwin" else 1024), "process_peak_rss"
