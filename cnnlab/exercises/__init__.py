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

Where the system can fork (Linux, macOS), each check runs in a child
process that the checker kills at the time limit: that also stops a loop
inside C code (``sum(range(10**13))``), and whatever the answer does to
the process (``sys.exit``, ``os._exit``, rebinding ``torch.allclose``)
ends with the child instead of reaching the notebook.

One module per chapter holds that chapter's checkers (``lenet``,
``resnet``, ...). Each checker is one function decorated with ``@checker``,
which registers it in ``CHECKERS`` and turns it into what the notebook
calls; the tests run every registered checker on its notebook's solution,
its stub and a ``None`` answer.
"""
from __future__ import annotations

import io
import json
import os
import select
import signal
import sys
import sysconfig
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps
from typing import Callable, Iterator, NoReturn

import torch

# Seconds a check may take before the answer is called stuck. The checks run
# tiny inputs and take well under a second when the answer is right; the one
# that trains a network passes a limit of its own.
TIME_LIMIT = 30

# Run each check in a forked child process where the system has fork;
# elsewhere (Windows) in this process, under the SIGALRM limit where there is one.
FORK = hasattr(os, "fork")

# A ✗ line names what came back: a value is shown in at most SHOWN_CHARS
# characters, the whole line in at most LINE_CHARS (an answer of a million
# numbers once printed 7.9 MB).
SHOWN_CHARS = 300
LINE_CHARS = 1_000

# Taken at import: the answer runs in the same process as the check and
# could rebind torch.set_num_threads before the next check forks.
_set_num_threads = torch.set_num_threads

# True while a check runs in this process (in the child, or in-process where
# there is no fork): a check that the answer calls runs inside it, under the
# outer check's limit, without a limit or a process of its own.
_running = False
# When the time_limit armed in this process ends (time.monotonic()), or None.
_deadline: float | None = None


class CheckFailed(AssertionError):
    """The answer is wrong; the message says how."""


def expect(condition: bool, message: str) -> None:
    """Raise CheckFailed(message) unless ``condition``."""
    if not condition:
        raise CheckFailed(message)


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)``, cut to ``limit`` characters (saying so) for a ✗ line."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... (cut: {len(text):,} characters)"


def expect_equal(what: str, expected, got, hint: str = "") -> None:
    """Raise CheckFailed naming ``what``, the expected and the actual value."""
    if expected != got:
        raise CheckFailed(f"{what}: expected {shown(expected)}, got {shown(got)}."
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
    ends is stopped (a loop inside C code is not: the forked check's own
    limit stops that); elsewhere (Windows, a worker thread) there is no
    limit. Inside another time_limit the outer one keeps its end: an inner
    limit that would end later does nothing, one that ends sooner runs, and
    the outer one's timer is set again for what is left of it after.
    """
    global _deadline
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    outer, end = _deadline, time.monotonic() + (seconds or 0)
    if seconds is None or not usable or (outer is not None and outer <= end):
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

    armed = [False]  # True from just before the timer is set until clean-up starts

    def stop(_signum, frame):
        if not armed[0]:  # the limit is being taken down: its body is over
            return
        # Not inside an import (stopping it halfway would leave a module
        # half-built) nor inside the limit's own set-up and clean-up (a raise
        # there would skip the clean-up and leave this handler and the tracer
        # behind): stop just after instead.
        if _importing(frame) or _in_time_limit(frame):
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            return
        sys.settrace(again)
        while frame is not None and not _is_checker(frame):  # the learner's frames
            frame.f_trace_lines = True
            frame.f_trace = again
            frame = frame.f_back
        raise TookTooLong(seconds)

    previous, previous_trace = signal.signal(signal.SIGALRM, stop), sys.gettrace()
    try:  # the timer is set inside the try: its clean-up must run whenever it fires
        armed[0] = True
        _deadline = end
        signal.setitimer(signal.ITIMER_REAL, seconds)
        yield
    finally:
        armed[0] = False  # first: an alarm from here on does nothing
        # The tracer next: after the alarm it raises in any function called that
        # is not the checkers' own, and signal.signal is one (in signal.py).
        sys.settrace(previous_trace)  # a debugger's or coverage's tracer, if any
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        _deadline = outer
        if outer is not None:  # the outer limit, for what is left of it
            signal.setitimer(signal.ITIMER_REAL, max(outer - time.monotonic(), 0.001))


def _importing(frame) -> bool:
    """True while ``frame`` or a caller is inside Python's import machinery
    (torch, for one, imports modules lazily at their first use)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _in_time_limit(frame) -> bool:
    """True for a frame of ``time_limit`` itself or of contextlib's ``with``
    machinery around it: the limit's own set-up or clean-up is running."""
    return (frame.f_code is time_limit.__wrapped__.__code__
            or frame.f_globals.get("__name__") == "contextlib")


def _is_checker(frame) -> bool:
    """True for a frame of the checkers' own code (never interrupted twice)."""
    return frame.f_globals.get("__name__", "").startswith(("cnnlab.exercises", "contextlib"))


# --- verdicts ------------------------------------------------------------------

def _too_long(name: str, seconds: float) -> str:
    return (f"✗ {name}: your code was still running after {seconds:g} s, far longer "
            f"than a right answer takes: look for a loop that never ends.")


def _bounded(line: str) -> str:
    """``line`` cut to LINE_CHARS characters, saying that it was cut."""
    if len(line) <= LINE_CHARS:
        return line
    return f"{line[:LINE_CHARS]}... (message cut: {len(line):,} characters in all)"


def _message(err: BaseException) -> str:
    """``str(err)``, or a stand-in when the answer's exception cannot say it."""
    try:
        return str(err)
    except Exception:
        return "(its message could not be shown)"


def _verdict(name: str, check: Callable[[], None]) -> tuple[bool, str]:
    """Run ``check``; True and the ✓ line, or False and the … or ✗ line.

    The line is built here, before the caller's time limit ends: an
    exception's message is the answer's code too, and may never return.
    TookTooLong is left to the caller that set the limit.
    """
    try:
        check()
    except NotImplementedError:
        return False, f"… {name}: not done yet (fill in the TODO cell, then run this again)"
    except CheckFailed as err:
        return False, _bounded(f"✗ {name}: {_message(err)}")
    except Exception as err:  # the learner's code crashed: say where, don't crash
        return False, _bounded(f"✗ {name}: your code raised {type(err).__name__}: "
                               f"{_message(err)}")
    return True, f"✓ {name}: passed"


def _limited_verdict(name: str, check: Callable[[], None],
                     seconds: float | None) -> tuple[bool, str]:
    """``_verdict`` under ``time_limit(seconds)``, a stuck answer named as such."""
    try:
        with time_limit(seconds):
            return _verdict(name, check)
    except TookTooLong as err:
        return False, _too_long(name, err.args[0] if err.args else seconds)


def run_check(name: str, check: Callable[[], None],
              seconds: float | None = TIME_LIMIT) -> bool:
    """Run ``check`` and print the verdict; True only if it passed.

    ``seconds`` limits the whole check; None leaves the limits to the check.
    A check run from inside a running check (an answer that calls a checker)
    runs under the outer check's limit and in its process.
    """
    if _running:
        passed, line = _verdict(name, check)
    elif FORK:
        passed, line = _run_in_child(name, check, seconds)
    else:
        passed, line = _run_here(name, check, seconds)
    print(line)
    return passed


def _run_here(name: str, check: Callable[[], None],
              seconds: float | None) -> tuple[bool, str]:
    """Run the check in this process, as where there is no fork."""
    global _running
    _running = True
    try:
        return _limited_verdict(name, check, seconds)
    finally:
        _running = False


# --- the registry ----------------------------------------------------------------

@dataclass(frozen=True)
class Registered:
    """One exercise's checker, as the registry keeps it."""

    name: str                   # the exercise's name, as its ✓/…/✗ line says it
    notebook: str               # the exercise notebook that asks for it: "06_googlenet.ipynb"
    answers: tuple[str, ...]    # the names the learner's cells define, passed in this order
    function: Callable[..., bool]  # what the notebook calls


# Every registered checker by exercise name, in the order the modules define them.
CHECKERS: dict[str, Registered] = {}


def checker(name: str, *, answers: str | tuple[str, ...],
            seconds: float | None = TIME_LIMIT, quiet: bool = True,
            prepare: Callable[[], None] | None = None):
    """Register ``check`` as the checker of the exercise ``name``.

    ``check(*answers, **options)`` raises CheckFailed (or NotImplementedError)
    and returns nothing; the decorated function is what the notebook calls:
    it runs ``check`` under ``run_check`` (in a child process, within
    ``seconds``), prints one line and returns True only on a pass. A ``None``
    answer is "not done yet". ``quiet`` runs the check under ``quiet_torch``
    (seeded, no autograd, one thread); a check that trains passes False.
    ``answers`` names what the notebook's exercise cells define, in order;
    the module's ``NOTEBOOK`` names the notebook. ``prepare``, if given, runs
    in this process first, outside the time limit: work that is the
    checker's own (an import, an oracle's training run), which a cache then
    keeps for the next run of the check; its errors are left to the check.
    """
    names = (answers,) if isinstance(answers, str) else tuple(answers)

    def register(check: Callable[..., None]) -> Callable[..., bool]:
        @wraps(check)
        def run(*given: object, **options: object) -> bool:
            def body() -> None:
                if any(answer is None for answer in given):
                    raise NotImplementedError
                if not quiet:
                    _own_errors_named(check, given, options)
                    return
                from ._harness import quiet_torch  # _harness imports this module
                with quiet_torch():
                    _own_errors_named(check, given, options)
            if prepare is not None and not _running and not any(a is None for a in given):
                try:
                    prepare()
                except Exception:  # the check runs it again and says what failed
                    pass
            return run_check(name, body, seconds)

        run.__annotations__ = {**check.__annotations__, "return": bool}
        if name in CHECKERS:
            raise ValueError(f"two checkers are named {name!r}")
        CHECKERS[name] = Registered(name, check.__globals__["NOTEBOOK"], names, run)
        return run

    return register


def _own_errors_named(check: Callable[..., None], given: tuple, options: dict) -> None:
    """Run ``check``; an error the checker's own code raised is not the learner's.

    An exception whose innermost frame outside the libraries (torch, NumPy,
    Python's own modules, the rest of cnnlab) is the checker's was raised by
    the check, on what the answer returned or in calling it (a comparison of a
    float64 answer with a float32 oracle, a call with an argument the answer
    does not take): the line says so instead of "your code raised".
    """
    try:
        check(*given, **options)
    except (CheckFailed, NotImplementedError):
        raise
    except Exception as err:
        if not _raised_by_checker(err):
            raise
        raise CheckFailed(f"the check could not use your answer ({type(err).__name__}: "
                          f"{_message(err)}); look at what your code returns (its type, "
                          f"dtype and shape) and at how it is called.") from err


# Where library code lives: Python's own modules, installed packages, and the
# cnnlab package itself (its modules other than the checkers are library code
# that both the answer and the checker call).
_LIBRARY = tuple(sorted({sysconfig.get_paths()[key] for key in ("stdlib", "purelib", "platlib")}
                        | {os.path.dirname(os.path.dirname(__file__))}))


def _raised_by_checker(err: BaseException) -> bool:
    """True when the innermost non-library frame of ``err``'s traceback is a checker's."""
    frames = []
    tb = err.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):  # innermost first
        if _is_checker(frame) and frame.f_globals.get("__name__") != "contextlib":
            return True
        filename = frame.f_code.co_filename
        if not (filename.startswith(_LIBRARY) or filename.startswith("<frozen")):
            return False  # the learner's code: a notebook cell, a test, an exec'd cell
    return False


# --- the check in a child process ------------------------------------------------

# How often the parent looks whether the child has ended (seconds).
_POLL = 0.02


def _run_in_child(name: str, check: Callable[[], None],
                  seconds: float | None) -> tuple[bool, str]:
    """Run the check in a forked child; kill it after ``seconds``.

    The child sends back its verdict and what it printed, which is printed
    here; a child that ends without a verdict gets a ✗ line saying how.
    """
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():  # Python 3.12+ warns when a process with
        warnings.simplefilter("ignore", DeprecationWarning)  # threads (a Jupyter
        pid = os.fork()                                       # kernel) forks
    if pid == 0:
        os.close(read_fd)
        _child(name, check, write_fd)
    os.close(write_fd)
    status = None
    try:
        report, status = _collect(pid, read_fd, seconds)
    finally:
        os.close(read_fd)
        if status is None:  # past the limit, or interrupted (Ctrl-C): end it
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    if status is None:
        return False, _too_long(name, seconds)
    return _read_report(name, report, status)


def _child(name: str, check: Callable[[], None], report_fd: int) -> NoReturn:
    """In the child: run the check, send the report, and end without cleanup.

    What the check prints goes to buffers, never to the parent's streams (in
    Jupyter those write to the kernel's sockets, which belong to the parent).
    """
    global _running, _deadline
    out, err = io.StringIO(), io.StringIO()
    report: dict = {}
    try:
        sys.stdout, sys.stderr, sys.stdin = out, err, io.StringIO()
        # GNU OpenMP hangs in a forked child whose parent used its threads;
        # with one thread PyTorch never enters it (DataLoader workers do the same).
        _set_num_threads(1)
        # A limit armed in the parent has no timer here (timers do not fork).
        _running, _deadline = True, None
        # No limit of its own: the parent kills this process at the limit. A
        # limit the check arms inside (the training check's) is named here.
        report["passed"], report["line"] = _limited_verdict(name, check, None)
    except BaseException as exc:  # sys.exit, KeyboardInterrupt: no verdict
        report["ended"] = "SystemExit" if isinstance(exc, SystemExit) else type(exc).__name__
    finally:
        try:
            report.update(out=out.getvalue(), err=err.getvalue())
            data = json.dumps(report).encode()
            while data:
                data = data[os.write(report_fd, data):]
        finally:
            os._exit(0)  # no atexit handlers, no flushing of the parent's buffers


def _collect(pid: int, read_fd: int, seconds: float | None) -> tuple[bytes, int | None]:
    """What the child sent, and its wait status; None if still running after ``seconds``.

    Reads while the child runs (a full pipe would block it), and watches the
    child itself rather than the pipe: a process the answer started may hold
    the pipe open after the child has ended.
    """
    deadline = None if seconds is None else time.monotonic() + seconds
    chunks: list[bytes] = []
    os.set_blocking(read_fd, False)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            chunks += _drain(read_fd)
            return b"".join(chunks), status
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return b"".join(chunks), None
        wait = _POLL if left is None else min(_POLL, left)
        if select.select([read_fd], [], [], wait)[0]:
            chunk = _drain(read_fd)
            if chunk == [b""]:  # end of file: the child is ending
                time.sleep(wait)
            chunks += chunk


def _drain(fd: int) -> list[bytes]:
    """What can be read from the non-blocking ``fd`` now ([b""] at end of file)."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return chunks
        chunks.append(chunk)
        if not chunk:
            return chunks


def _read_report(name: str, report: bytes, status: int) -> tuple[bool, str]:
    """Print what the child printed; its verdict, or a ✗ line for how it ended."""
    try:
        found = json.loads(report.decode())
    except ValueError:  # nothing, or half a report: the process ended abruptly
        found = {}
    sys.stdout.write(found.get("out", ""))
    sys.stderr.write(found.get("err", ""))
    if "line" in found:
        return bool(found["passed"]), found["line"]
    ended = found.get("ended")
    code = os.waitstatus_to_exitcode(status)
    if ended == "SystemExit" or (ended is None and code >= 0):
        return False, (f"✗ {name}: your code ended the process (sys.exit/os._exit) "
                       f"before the check could finish; return the answer instead.")
    if ended is not None:
        return False, f"✗ {name}: your code raised {ended}, which stopped the check."
    return False, (f"✗ {name}: the process running your code was killed by "
                   f"{_signal_name(-code)} before the check could finish"
                   + (" (out of memory?)" if -code == signal.SIGKILL else
                      " (a crash inside native code?)") + ".")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
