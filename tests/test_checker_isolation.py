"""Hostile answers: the checkers must not be fooled, hung or killed by them.

Each test is an answer that once passed a checker without being right, hung
it, or took the notebook down with it: a ``str`` or a tensor subclass that
says yes to every comparison, a patched ``torch.allclose`` or
``nn.Conv2d.forward``, a loop inside C code, an exception whose message never
comes, a checker called from inside a check, ``sys.exit`` and ``os._exit``,
and an answer a million numbers long.
"""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from torch import nn

import cnnlab.exercises as exercises
from cnnlab.exercises import TookTooLong, expect, run_check, time_limit
from cnnlab.exercises.alexnet import check_lrn
from cnnlab.exercises.data import check_normalise
from cnnlab.exercises.lenet import check_conv_output_size
from cnnlab.exercises.resnet import check_plain_vs_residual
from cnnlab.exercises.troubleshooting import check_which_bug

# A limit that a loop reaches at once, with room for a busy machine.
SHORT = 1.0
WITHIN = 10.0


def rejected_with(capsys, passed: bool) -> str:
    """Assert the check failed with one ✗ line; return what it printed."""
    out = capsys.readouterr().out
    assert passed is False, out
    assert out.startswith("✗ "), out
    return out


# --- answers that say yes to every comparison ----------------------------------

class Yes(str):
    """A string equal to everything."""

    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    __hash__ = str.__hash__


class Liar(torch.Tensor):
    """A tensor that answers torch.allclose and torch.equal with True itself."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in (torch.allclose, torch.equal):
            return True
        return super().__torch_function__(func, types, args, kwargs or {})


RUNS = {"plain": [[1.0] * 40, [1.1] * 40], "residual": [[0.5] * 40, [0.6] * 40]}


def test_a_str_equal_to_everything_does_not_pass_which_bug(capsys):
    rejected_with(capsys, check_which_bug(lambda message: Yes("flatten")))


def test_a_str_equal_to_everything_does_not_pass_plain_vs_residual(capsys):
    rejected_with(capsys, check_plain_vs_residual(lambda runs: Yes("residual"), RUNS))


def test_an_object_equal_to_everything_does_not_pass_which_bug(capsys):
    class Anything:
        def __eq__(self, other):
            return True

    out = rejected_with(capsys, check_which_bug(lambda message: Anything()))
    assert "return one of" in out


def _zeros_like_normalise(images):
    return torch.zeros(len(images), 1, *images.shape[1:])


def test_a_tensor_that_answers_allclose_itself_does_not_pass_normalise(capsys):
    out = rejected_with(capsys, check_normalise(
        lambda images: _zeros_like_normalise(images).as_subclass(Liar)))
    assert "values differ" in out


def test_a_tensor_that_answers_allclose_itself_does_not_pass_lrn(capsys):
    out = rejected_with(capsys, check_lrn(
        lambda a, size, alpha, beta, k: torch.zeros_like(a).as_subclass(Liar)))
    assert "differs from the formula" in out


# --- answers that patch torch ----------------------------------------------------

def test_an_answer_that_patches_allclose_fails_and_leaves_torch_as_it_was(capsys):
    original = torch.allclose

    def normalise(images):
        torch.allclose = lambda *args, **kwargs: True
        return _zeros_like_normalise(images)

    try:
        rejected_with(capsys, check_normalise(normalise))
        assert torch.allclose is original  # the patch ended with the check
    finally:
        torch.allclose = original


def test_allclose_patched_before_the_check_does_not_change_the_checker(monkeypatch, capsys):
    monkeypatch.setattr(torch, "allclose", lambda *args, **kwargs: True)
    rejected_with(capsys, check_normalise(_zeros_like_normalise))


def test_an_answer_that_patches_conv2d_forward_fails_and_leaves_it_as_it_was(capsys):
    original = nn.Conv2d.forward

    def conv_output_size(size, kernel, stride=1, padding=0):
        nn.Conv2d.forward = lambda self, x: torch.zeros(1, 1, 7, 7)
        return 7

    try:
        rejected_with(capsys, check_conv_output_size(conv_output_size))
        assert nn.Conv2d.forward is original
    finally:
        nn.Conv2d.forward = original


def test_conv2d_forward_patched_before_the_check_does_not_change_the_oracle(
        monkeypatch, capsys):
    monkeypatch.setattr(nn.Conv2d, "forward", lambda self, x: torch.zeros(1, 1, 7, 7))
    rejected_with(capsys, check_conv_output_size(lambda *args, **kwargs: 7))


def test_a_model_whose_output_answers_comparisons_itself_is_scored_on_plain_tensors(
        monkeypatch, capsys):
    from cnnlab.exercises import factors
    from cnnlab.models import get_model

    class Cheat(torch.Tensor):  # every prediction "equals" its label
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            if func in (torch.Tensor.__eq__, torch.eq):
                return torch.ones(args[0].shape, dtype=torch.bool)
            return super().__torch_function__(func, types, args, kwargs or {})

    class Lenet(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = get_model("lenet")

        def forward(self, x):
            return self.net(x).as_subclass(Cheat)

    monkeypatch.setattr(factors, "EPOCHS", 0)  # untrained: about 10% right
    out = rejected_with(capsys, factors.check_lenet_98_5(
        Lenet, lambda p, s, e: (torch.optim.SGD(p, lr=0.1), None)))
    assert "validation accuracy" in out


# --- answers that never end --------------------------------------------------------

def test_a_loop_inside_c_is_stopped_at_the_limit(capsys):
    # Tens of seconds inside C, where no alarm signal reaches Python code; it
    # ends, so that a checker without a hard limit fails here rather than hangs.
    start = time.perf_counter()
    out = rejected_with(capsys, run_check("c loop", lambda: sum(range(2 * 10**9)),
                                          seconds=SHORT))
    assert time.perf_counter() - start < WITHIN
    assert "still running after 1 s" in out


def test_an_exception_whose_message_never_comes_is_stopped_at_the_limit(capsys):
    class Endless(Exception):
        def __str__(self):
            end = time.monotonic() + 30  # "never", but a broken checker fails, not hangs
            while time.monotonic() < end:
                pass
            return "at last"

    def answer():
        raise Endless

    start = time.perf_counter()
    out = rejected_with(capsys, run_check("message", answer, seconds=SHORT))
    assert time.perf_counter() - start < WITHIN
    assert "still running after 1 s" in out


def _spin():
    while True:
        pass


@pytest.mark.parametrize("fork", [True, False], ids=["forked", "in process"])
def test_a_checker_called_by_the_answer_keeps_the_outer_limit(fork, monkeypatch, capsys):
    # The inner check's own limit (5 s) must not replace the outer one (1 s).
    monkeypatch.setattr(exercises, "FORK", fork)
    start = time.perf_counter()
    out = rejected_with(capsys, run_check(
        "outer", lambda: run_check("inner", _spin, seconds=5.0), seconds=SHORT))
    assert time.perf_counter() - start < 4.0
    assert out.splitlines()[-1].startswith("✗ outer: your code was still running after 1 s")


def test_a_checker_called_by_the_answer_runs_in_the_same_child(capsys):
    # Not in a grandchild of its own: killing the child at the limit would leave that behind.
    assert run_check("outer", lambda: (print(os.getpid()),
                                       run_check("inner", lambda: print(os.getpid()))))
    outer, inner, verdict_inner, verdict_outer = capsys.readouterr().out.splitlines()
    assert outer == inner != str(os.getpid())
    assert (verdict_inner, verdict_outer) == ("✓ inner: passed", "✓ outer: passed")


def test_a_limit_that_fired_in_process_puts_the_alarm_handler_back(monkeypatch, capsys):
    # After the alarm, the limit's tracer raises in every function the learner's
    # code calls, signal.signal (in signal.py) too: it must be gone before that.
    monkeypatch.setattr(exercises, "FORK", False)
    before = signal.getsignal(signal.SIGALRM)
    rejected_with(capsys, run_check("spin", _spin, seconds=0.2))
    assert signal.getsignal(signal.SIGALRM) is before
    with pytest.raises(TookTooLong):  # and the next limit still fires
        with time_limit(0.2):
            _spin()


def _alarm_inside_setitimer(monkeypatch, when):
    """Deliver SIGALRM from inside ``signal.setitimer`` when ``when(seconds)``:
    the alarm then lands in the limit's own set-up or clean-up, as it can on
    a loaded machine."""
    real = signal.setitimer

    def setitimer(which, seconds, *interval):
        if when(seconds):
            os.kill(os.getpid(), signal.SIGALRM)
        return real(which, seconds, *interval)

    monkeypatch.setattr(signal, "setitimer", setitimer)


def _left_as_it_was(handler, trace) -> None:
    assert signal.getsignal(signal.SIGALRM) is handler
    assert sys.gettrace() is trace
    assert exercises._deadline is None
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_an_alarm_during_the_limits_clean_up_leaves_nothing_behind(monkeypatch):
    # The body ended just as the time ran out: the alarm arrives while the
    # limit is being taken down. It once raised there, skipped the rest of the
    # clean-up, and left the handler and the raising tracer to the next test.
    handler, trace = signal.getsignal(signal.SIGALRM), sys.gettrace()
    with monkeypatch.context() as patch:
        _alarm_inside_setitimer(patch, lambda seconds: seconds == 0)
        with time_limit(5.0):
            pass
    _left_as_it_was(handler, trace)


def test_an_alarm_during_the_limits_set_up_still_stops_the_loop_and_cleans_up(monkeypatch):
    # A limit with almost nothing left (an inner check near the outer's end)
    # fires before the body starts: the loop is stopped all the same.
    handler, trace = signal.getsignal(signal.SIGALRM), sys.gettrace()
    with monkeypatch.context() as patch:
        _alarm_inside_setitimer(patch, lambda seconds: seconds == 5.0)
        with pytest.raises(TookTooLong):
            with time_limit(5.0):
                _spin()
    _left_as_it_was(handler, trace)


def test_a_check_forked_after_torch_used_two_threads_still_runs_torch(capsys):
    # GNU OpenMP hangs in a forked child once the parent used its threads,
    # unless the child runs on one thread.
    torch.set_num_threads(2)  # conftest puts the count back
    x = torch.randn(512, 512)
    for _ in range(3):
        x @ x
    assert run_check("torch in the child", lambda: (x @ x).sum(), seconds=20.0)
    assert capsys.readouterr().out == "✓ torch in the child: passed\n"


# --- answers that end the process -----------------------------------------------------

def test_sys_exit_is_a_failed_check(capsys):
    out = rejected_with(capsys, run_check("exit", lambda: sys.exit(0)))
    assert "ended the process (sys.exit/os._exit)" in out


def test_os_exit_and_a_kill_do_not_take_the_caller_down():
    # In a process of its own: without the fork, os._exit would end pytest.
    code = textwrap.dedent("""
        import os, signal
        from cnnlab.exercises import run_check
        run_check("os._exit", lambda: os._exit(0))
        run_check("killed", lambda: os.kill(os.getpid(), signal.SIGKILL))
        print("the caller is still here")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120).stdout
    lines = out.splitlines()
    assert lines[0].startswith("✗ os._exit: your code ended the process"), out
    assert lines[1].startswith("✗ killed: the process running your code was killed by "
                               "SIGKILL"), out
    assert lines[2] == "the caller is still here", out


# --- what comes back -----------------------------------------------------------------

def test_a_million_numbers_give_a_short_line(capsys):
    out = rejected_with(capsys, check_conv_output_size(
        lambda *args, **kwargs: list(range(10**6))))
    assert len(out) < 2_000 and "cut" in out
    assert "return an int" in out  # the value was cut, not the advice after it


def test_a_long_message_is_cut_and_says_so(capsys):
    out = rejected_with(capsys, run_check("long", lambda: expect(False, "x" * 10**6)))
    assert len(out) < 2_000 and "message cut" in out


def test_what_the_answer_prints_comes_back_before_the_verdict(capsys):
    def answer():
        print("hello from the answer")
        print("a warning", file=sys.stderr)

    assert run_check("talk", answer)
    captured = capsys.readouterr()
    assert captured.out == "hello from the answer\n✓ talk: passed\n"
    assert captured.err == "a warning\n"
