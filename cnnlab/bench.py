"""Time on the device, and the progress bar: what a training run's clock needs.

On a GPU (CUDA or Apple's MPS), work is queued and runs later: a timer must
wait for the device to catch up (``sync``) before it reads the clock, or it
measures only how fast Python queued the work.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .train import History, RunState


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


def interleaved_images_per_second(names: list[str], rounds: int = 3, steps: int = 3,
                                  batch: int = 128,
                                  device: torch.device | None = None) -> dict[str, float]:
    """Training images per second of each model in ``names`` on this machine,
    now: plain float32 steps (AdamW) on random batches, timed in ``rounds``
    that alternate between the models, so that a change in the machine's
    load hits every model alike; the median round per model.

    Only a ratio between two of these is worth quoting, and only as this
    machine's figure at this moment.
    """
    import statistics

    import torch.nn.functional as F

    from .models import get_model
    from .train import resolve_device

    device = device or resolve_device()
    x = torch.randn(batch, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    nets = {}
    for name in names:
        model = get_model(name).to(device)
        nets[name] = model, torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step(model, optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    for model, optimizer in nets.values():  # warm-up: allocations, first-call costs
        step(model, optimizer)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        for name, (model, optimizer) in nets.items():
            sync(device)
            start = time.perf_counter()
            for _ in range(steps):
                step(model, optimizer)
            sync(device)
            rates[name].append(steps * batch / (time.perf_counter() - start))
    return {name: statistics.median(r) for name, r in rates.items()}
