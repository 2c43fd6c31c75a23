"""Exercise checkers: immediate, specific feedback for the exercise notebooks.

Every checker takes the learner's answer (a function, a class, a number),
runs it against an oracle (a real forward pass, PyTorch's own layers, a
formula derived in the checker) and prints one of three lines:

    ✓ <exercise>: passed
    … <exercise>: not done yet (fill in the TODO cell, then run this again)
    ✗ <exercise>: <what was expected, what came back, where to look>

A checker never raises, so an untouched notebook runs top to bottom. It
returns True only on a pass, which the tests use. It also never hangs: an
answer that loops forever is stopped after a time limit and named as such.

One module per chapter holds that chapter's checkers (``lenet``,
``resnet``, ...).
"""
from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

# Seconds a check may take before the answer is called stuck. The checks run
# tiny inputs and take well under a second when the answer is right; the one
# that trains a network passes a limit of its own.
TIME_LIMIT = 30


class CheckFailed(AssertionError):
    """The answer is wrong; the message says how."""


def expect(condition: bool, message: str) -> None:
    """Raise CheckFailed(message) unless ``condition``."""
    if not condition:
        raise CheckFailed(message)


def expect_equal(what: str, expected, got, hint: str = "") -> None:
    """Raise CheckFailed naming ``what``, the expected and the actual value."""
    if expected != got:
        raise CheckFailed(f"{what}: expected {expected!r}, got {got!r}."
                          + (f" Hint: {hint}" if hint else ""))


class TookTooLong(BaseException):
    """The answer ran past the check's time limit.

    A BaseException, so that an ``except Exception`` in the learner's loop
    cannot swallow it and keep the loop going.
    """


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise TookTooLong in this thread after ``seconds`` (Unix main thread only).

    Python code is interrupted between two bytecodes, so a loop that never
    ends is stopped; elsewhere (Windows, a worker thread) there is no limit.
    """
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if seconds is None or not usable:
        yield
        return

    def again(frame, event, _arg):
        # After the alarm: raise once more on every line of the learner's code,
        # so that a bare `except:` that swallowed the first raise cannot keep
        # its loop going (its handler's own lines raise out of it).
        if _is_checker(frame):
            return None
        if event in ("call", "line"):
            raise TookTooLong(seconds)
        return again

    def stop(_signum, frame):
        if _importing(frame):  # stopping an import halfway would leave a module
            signal.setitimer(signal.ITIMER_REAL, 0.05)  # half-built: stop just after
            return
        sys.settrace(again)
        while frame is not None and not _is_checker(frame):  # the learner's frames
            frame.f_trace_lines = True
            frame.f_trace = again
            frame = frame.f_back
        raise TookTooLong(seconds)

    previous, previous_trace = signal.signal(signal.SIGALRM, stop), sys.gettrace()
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        sys.settrace(previous_trace)  # a debugger's or coverage's tracer, if any


def _importing(frame) -> bool:
    """True while ``frame`` or a caller is inside Python's import machinery
    (torch, for one, imports modules lazily at their first use)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _is_checker(frame) -> bool:
    """True for a frame of the checkers' own code (never interrupted twice)."""
    return frame.f_globals.get("__name__", "").startswith(("cnnlab.exercises", "contextlib"))


def run_check(name: str, check: Callable[[], None],
              seconds: float | None = TIME_LIMIT) -> bool:
    """Run ``check`` and print the verdict; True only if it passed.

    ``seconds`` limits the whole check; None leaves the limits to the check.
    """
    try:
        with time_limit(seconds):
            check()
    except NotImplementedError:
        print(f"… {name}: not done yet (fill in the TODO cell, then run this again)")
        return False
    except CheckFailed as err:
        print(f"✗ {name}: {err}")
        return False
    except TookTooLong as err:
        limit = err.args[0] if err.args else seconds
        print(f"✗ {name}: your code was still running after {limit:g} s, far longer "
              f"than a right answer takes: look for a loop that never ends.")
        return False
    except Exception as err:  # the learner's code crashed: say where, don't crash
        print(f"✗ {name}: your code raised {type(err).__name__}: {err}")
        return False
    print(f"✓ {name}: passed")
    return True
