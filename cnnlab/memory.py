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

import logging
import math
import sys
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, UntypedStorage, nn

from .models import count_parameters, in_mode

log = logging.getLogger("cnnlab")

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
REPORT_CARD_BYTES = 2 * 2**30


def _vm_size() -> int:
    """This process's virtual memory size in bytes (Linux)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise OSError("no VmSize in /proc/self/status")


def _capped_step(model: str, batch_size: int, cap_bytes: int) -> dict:
    """In this process: load the data, cap the memory, train one step.

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
    config = TrainConfig(model=model, batch_size=batch_size, max_steps=1, eval_every=1,
                         val_images=batch_size, test_images=batch_size, device="cpu")
    try:
        fit(config, data, progress=False)
    except (RuntimeError, MemoryError) as err:
        return {"batch_size": batch_size, "outcome": "failed",
                "error": f"{type(err).__name__}: {err}".strip()}
    return {"batch_size": batch_size, "outcome": "trained one step", "error": None}


def train_under_memory_cap(model: str, batch_size: int,
                           cap_bytes: int = REPORT_CARD_BYTES) -> dict:
    """Train one step of ``model`` in a child process with ``cap_bytes`` of memory.

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


# ------------------------------------------------ the book's memory tables
# What chapter 8 shows: the estimate per model, what a 2 GB card leaves, the
# recorded out-of-memory experiment, and (on a GPU) measured peaks.

MiB = 2**20


def on_meta(name: str, **kwargs) -> nn.Module:
    """``get_model(name, **kwargs)`` on the meta device: shapes and dtypes but
    no data, so building it and estimating its memory cost nothing."""
    from .models import get_model

    with torch.device("meta"):
        return get_model(name, **kwargs)


def mib(n: float) -> str:
    """Bytes as MiB with one decimal: '1,423.4'."""
    return f"{n / MiB:,.1f}"


def autocast_total(e: MemoryEstimate) -> int:
    """``e`` under 16-bit autocast (bfloat16 or float16), as an estimate: every
    saved activation at half its float32 size, while the weights, their
    gradients and AdamW's state stay float32. An optimistic figure: a few
    operations (the loss, softmax) keep float32."""
    return e.total - e.activations_bytes // 2


def estimate_table(estimates: dict[str, MemoryEstimate], batch: int):
    """Markdown: each model's estimate by part, beside torchinfo's "Estimated
    Total Size" for the same batch (models built on the meta device)."""
    from .notebook import markdown_table

    rows = []
    for name, e in estimates.items():
        theirs = torchinfo_estimate_bytes(on_meta(name), batch)
        rows.append([name, mib(e.parameters_bytes), mib(e.optimizer_state_bytes),
                     mib(e.activations_bytes), f"**{mib(e.total)}**", mib(theirs),
                     f"{e.total / theirs:.2f}"])
    return markdown_table(["model", "weights = grads", "AdamW", "activations", "total",
                           "torchinfo", "ratio"], rows)


def largest_batch(e: MemoryEstimate, batch: int, available: int) -> int:
    """The largest batch whose estimate fits in ``available`` bytes: the
    fixed part (weights, gradients, optimizer state) plus the activations per
    image, measured at ``batch``, times the batch. 0 if not even one fits."""
    fixed = e.total - e.activations_bytes
    per_image = e.activations_bytes / batch
    return max(0, int((available - fixed) // per_image))


def card_table(estimates: dict[str, MemoryEstimate], batch: int, available: int):
    """Markdown: whether each model's estimate at ``batch`` fits in the
    ``available`` bytes a card leaves for tensors, and the largest batch that does."""
    from .notebook import markdown_table

    rows = [[name, mib(e.total), "fits" if e.total <= available else "**does not fit**",
             mib(available - e.total), f"{largest_batch(e, batch, available):,}"]
            for name, e in estimates.items()]
    return markdown_table(["model", f"estimate at batch {batch} (MiB)", "fits?",
                           "room left (MiB)", "largest batch that fits (estimate)"], rows)


def measured_peak(name: str, batch: int, dtype: torch.dtype | None,
                  device: torch.device | str = "cuda") -> int:
    """Peak CUDA memory, in bytes beyond what was allocated before, of two
    training steps of ``name`` on a random batch of ``batch`` digits.

    ``dtype`` None: float32; else autocast to ``dtype`` through ``train_step``,
    with a GradScaler for float16, as ``cnnlab.train.fit`` trains. The second
    step holds the AdamW state that the first one creates.
    """
    from .models import get_model
    from .train import train_step

    device = torch.device(device)
    free_cached_memory(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(0)
    model = get_model(name).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3,
                                  fused=device.type == "cuda")
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    x = torch.randn(batch, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    for _ in range(2):
        train_step(model, optimizer, x, y, batch, dtype, scaler)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - before
    del model, optimizer, x, y
    free_cached_memory(device)
    return peak


def measured_table(estimates: dict[str, MemoryEstimate], batch: int,
                   device: torch.device | str = "cuda"):
    """Markdown: each model's estimate beside its measured peak (``measured_peak``),
    in float32 and under the autocast dtype the package picks for ``device``
    (``cnnlab.device.autocast_dtype``: bfloat16 or float16)."""
    from .device import autocast_dtype
    from .notebook import markdown_table

    device = torch.device(device)
    dtype = autocast_dtype(device, True)
    label = str(dtype).removeprefix("torch.")
    rows = [[name, mib(e.total), mib(measured_peak(name, batch, None, device)),
             mib(autocast_total(e)), mib(measured_peak(name, batch, dtype, device))]
            for name, e in estimates.items()]
    return markdown_table([f"model (batch {batch})", "estimate, float32",
                           "measured, float32", f"estimate, {label} autocast",
                           f"measured, {label} autocast"], rows)


def oom_record(path=None) -> dict | None:
    """The recorded out-of-memory experiment (``python -m cnnlab record oom``),
    or None while it is not recorded."""
    import json

    from .plan import OOM_FILE
    from .results import RESULTS_DIR

    path = path or RESULTS_DIR / OOM_FILE
    return json.loads(path.read_text()) if path.exists() else None


def _fitted(case: dict) -> bool:
    return case["outcome"] == "trained one step"


def _card_note(case: dict, available: int) -> str:
    """What a case under the report card's cap says about a real 2 GB card,
    which leaves ``available`` bytes for tensors."""
    total, batch = case["estimate"]["total"], case["batch_size"]
    if not _fitted(case):
        why = (f"its estimate, {mib(total)} MiB, is more than 2 GiB"
               if total > REPORT_CARD_BYTES else "a card leaves less room")
        return (f"Batch {batch} failed under the 2 GiB cap, with the whole 2 GiB for "
                f"its training; {why}, so it cannot fit a 2 GB card either.")
    room = (f"fits, with {mib(available - total)} MiB to spare" if total <= available
            else "does not fit")
    return (f"Batch {batch} trained one step under the 2 GiB cap, which gave its "
            f"training the whole 2 GiB. A 2 GB card leaves less, so this alone does not "
            f"show that it fits the card; by the estimate ({mib(total)} MiB against the "
            f"{mib(available)} MiB the card leaves for tensors after the assumed CUDA "
            f"context) it {room}.")


def oom_markdown(record: dict | None, available: int) -> str:
    """Markdown: the recorded out-of-memory cases against the estimate made
    before each, how many outcomes it predicted, where the record comes
    from, and what the 2 GiB cases say about a 2 GB card that leaves
    ``available`` bytes for tensors."""
    from .notebook import markdown_table
    from .plan import OOM_FILE
    from .results import short_commit

    if record is None:
        return (f"No out-of-memory experiment is recorded yet (`results/{OOM_FILE}` "
                "is missing), so this page shows no outcome. "
                "`python -m cnnlab record oom` records it.")
    rows, errors, right = [], [], 0
    for case in record["cases"]:
        total, cap = case["estimate"]["total"], f"{case['cap_bytes'] / 2**30:g} GiB"
        predicted = total <= case["cap_bytes"]
        right += predicted == _fitted(case)
        rows.append([cap, case["batch_size"], f"{total / 2**30:.2f} GiB",
                     "fits" if predicted else "does not fit", case["outcome"]])
        if case["error"]:
            errors.append(f"* batch {case['batch_size']} under {cap}: "
                          f"`{case['error'].splitlines()[0]}`")
    table = markdown_table(["cap", "batch", "estimate before the run", "predicted",
                            "outcome"], rows).data
    p = record["provenance"]
    text = [table]
    if errors:
        text.append("The error of each failed step, as PyTorch raised it (first line):\n\n"
                    + "\n".join(errors))
    text += [f"`{record['model']}`, recorded {p['date'][:10]} on {p['device_name']} "
             f"({p['cpu_threads']} threads), torch {p['torch']}, commit "
             f"{short_commit(p['git_commit'])}; `python -m cnnlab record oom` reruns it.",
             f"**The estimate predicted {right} of the {len(rows)} outcomes.**"]
    text += [_card_note(case, available) for case in record["cases"]
             if case["cap_bytes"] == REPORT_CARD_BYTES]
    return "\n\n".join(text)


# --- running out of memory while training ------------------------------------------
# What the training loop does when a step does not fit: halve the micro-batch
# and accumulate, down to one image, then stop with a message that says what to try.

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
