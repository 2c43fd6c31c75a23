"""Time on the device: a training run's clock and progress bar, and the
side-by-side step timings the chapters show (``step_seconds``,
``images_per_second``).

On a GPU (CUDA or Apple's MPS), work is queued and runs later: a timer must
wait for the device to catch up (``sync``) before it reads the clock, or it
measures only how fast Python queued the work.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Iterable, Mapping

import torch
from torch import nn

if TYPE_CHECKING:
    from .state import History, RunState


def runs_async(device: torch.device) -> bool:
    """Whether work on ``device`` is queued and runs later (CUDA, MPS): reading a
    value back from it then makes the CPU wait for the device (a host sync)."""
    return device.type in ("cuda", "mps")


def sync(device: torch.device) -> None:
    """Wait until ``device`` has finished the work queued on it (CUDA, MPS; a
    no-op on the CPU, whose work is done when the call returns)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class Stopwatch:
    """Training time, wall clock and CPU, added to a History; paused to validate."""

    def __init__(self, device: torch.device, history: History) -> None:
        self.device, self.history = device, history
        self.started: tuple[float, float] | None = None

    def start(self) -> None:
        sync(self.device)
        self.started = time.perf_counter(), time.process_time()

    def elapsed(self) -> float:
        """Wall seconds since ``start``, once the device has caught up."""
        sync(self.device)
        return time.perf_counter() - self.started[0]

    def stop(self) -> None:
        if self.started is None:  # already stopped
            return
        sync(self.device)
        wall, cpu = self.started
        self.history.train_seconds += time.perf_counter() - wall
        if self.history.cpu_seconds is not None:
            self.history.cpu_seconds += time.process_time() - cpu
        self.started = None


class ProgressBar:
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

    def point(self, state: "RunState", accuracy: float, window: int) -> None:
        """Show the mean loss of the last ``window`` steps and the accuracy."""
        if self.bar is not None:
            recent = state.losses[max(0, state.step - window):state.step]
            self.bar.set_postfix(loss=f"{recent.mean().item():.4f}",
                                 val_acc=f"{accuracy:.4f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def step_seconds(models: Mapping[str, nn.Module | str], *, train: bool = True,
                 batch: int = 128, rounds: int = 3, steps: int = 1,
                 device: torch.device | None = None, seed: int = 0) -> dict[str, float]:
    """Seconds per step of each model on this machine, now, side by side.

    ``models`` maps a label to a model or to a model name (``get_model``).
    A step is a training step on a random batch of ``batch`` digits
    (forward, ``loss.backward()``, AdamW) or, with ``train=False``, a forward
    pass in eval mode without gradients, as in evaluation. One warm-up step
    each (allocations, first-call costs), then ``rounds`` that alternate
    between the models, so that a change in the machine's load hits every
    model alike; the median round per model. The timer waits for the device
    (``sync``) before it reads the clock.

    Only a ratio between two of these is worth quoting, and only as this
    machine's figure at this moment.
    """
    import statistics

    import torch.nn.functional as F

    from .device import resolve_device
    from .models import get_model

    device = device or resolve_device()
    generator = torch.Generator().manual_seed(seed)  # the same batch every call
    x = torch.randn(batch, 1, 28, 28, generator=generator).to(device)
    y = torch.randint(0, 10, (batch,), generator=generator).to(device)
    nets = {}
    for label, model in models.items():
        model = (get_model(model) if isinstance(model, str) else model).to(device)
        model.train(train)
        nets[label] = model, torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if not train:
            with torch.no_grad():
                model(x)
            return
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    for model, optimizer in nets.values():  # warm-up
        step(model, optimizer)
    times: dict[str, list[float]] = {label: [] for label in nets}
    for _ in range(rounds):
        for label, (model, optimizer) in nets.items():
            sync(device)
            start = time.perf_counter()
            for _ in range(steps):
                step(model, optimizer)
            sync(device)
            times[label].append((time.perf_counter() - start) / steps)
    return {label: statistics.median(t) for label, t in times.items()}


def images_per_second(names: list[str], batch: int = 128, **options) -> dict[str, float]:
    """Training images per second of each named model (``step_seconds``'s
    training steps, side by side in alternating rounds)."""
    seconds = step_seconds({name: name for name in names}, batch=batch, **options)
    return {name: batch / s for name, s in seconds.items()}


def epoch_seconds(loaders: Mapping[str, Iterable], device: torch.device,
                  rounds: int = 1) -> dict[str, float]:
    """Seconds of one pass over each loader, putting each batch on ``device``
    and doing nothing else with it: what the data pipeline alone costs.

    With several ``rounds`` the loaders alternate and the median round
    counts, so that a change in the machine's load hits each alike. A
    loader is any iterable of (images, labels) batches.
    """
    import statistics

    times: dict[str, list[float]] = {label: [] for label in loaders}
    for _ in range(rounds):
        for label, loader in loaders.items():
            sync(device)
            start = time.perf_counter()
            for x, y in loader:
                x, y = x.to(device), y.to(device)
            sync(device)
            times[label].append(time.perf_counter() - start)
    return {label: statistics.median(t) for label, t in times.items()}
