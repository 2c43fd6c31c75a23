"""Stopping a run: Ctrl-C, SIGTERM and SIGHUP, in one place.

The training loop, the command line and the recorder all stop the same way:

* ``stop_signals_as_ctrl_c()`` turns SIGTERM and SIGHUP into a
  ``KeyboardInterrupt`` (``Stopped``, which remembers the signal), so that a
  ``kill`` stops a run as Ctrl-C does: its checkpoint saved first.
  (Unhandled, they would kill the process and lose the epoch in progress.)
* ``StepGuard`` holds such a stop while a training step and its bookkeeping
  run, and delivers it right after: a checkpoint never holds half a step.
* ``TrainingInterrupted`` is what the loop raises once it has saved what it
  could; ``stop_message`` words it, and ``stopped_line`` words any stop for
  the command line. Exit code: 128 + the signal number (Ctrl-C 130).
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator


def how_stopped(signum: int) -> str:
    """'interrupted (Ctrl-C)' or 'stopped by SIGTERM' (the start of every stop line)."""
    return ("interrupted (Ctrl-C)" if signum == signal.SIGINT
            else f"stopped by {signal.Signals(signum).name}")


def signal_of(err: KeyboardInterrupt) -> int:
    """The signal behind a stop: SIGINT for a plain Ctrl-C."""
    return getattr(err, "signum", signal.SIGINT)


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised wherever the program is, as Ctrl-C would be."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stopped(signum: int, frame) -> None:
    raise Stopped(signum)


@contextmanager
def stop_signals_as_ctrl_c() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise ``Stopped`` as Ctrl-C raises
    KeyboardInterrupt (only the main thread can set signal handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = [n for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
    previous = {getattr(signal, n): signal.signal(getattr(signal, n), _raise_stopped)
                for n in names}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class TrainingInterrupted(KeyboardInterrupt):
    """A stop ended training. Its message says at which step, and whether a
    checkpoint keeps the run (``stop_message``)."""

    def __init__(self, message: str, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.signum = signum  # the CLI exits with 128 + signum


def stop_message(signum: int, step: int, checkpoint: str | Path | None,
                 saved: bool) -> str:
    """What stopped the run, at which step, and what keeps it (only what exists)."""
    how = how_stopped(signum)
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


def stopped_line(err: KeyboardInterrupt, checkpoint: Path | None = None) -> str:
    """One line for the command line: what stopped the program and what keeps
    the run (a stop during training already says so; one before or after it
    names the checkpoint if there is one)."""
    if isinstance(err, TrainingInterrupted):
        return str(err)
    how = how_stopped(signal_of(err))
    if checkpoint is not None and checkpoint.exists():
        return f"{how}; the checkpoint {checkpoint} keeps the run (continue with --resume)"
    return f"{how}; nothing saved"


# The signals that stop a run like Ctrl-C (the CLI turns SIGTERM and SIGHUP
# into KeyboardInterrupt; SIGHUP does not exist on Windows).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                      if hasattr(signal, name))


class StepGuard:
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
        for signum in STOP_SIGNALS:
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
