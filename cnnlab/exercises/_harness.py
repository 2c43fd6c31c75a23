"""Small helpers shared by the chapter checkers that run tensors.

An answer's values are compared as plain values: a ``str`` or a tensor of a
subclass of the learner's could make every comparison come out true (an
``__eq__`` that always says yes, a ``__torch_function__`` that answers
``torch.allclose`` itself), so ``plain_str`` and ``plain_tensor`` strip the
subclass first. The torch functions a verdict rests on are taken at import
(``allclose``, ``equal``), so that an answer that rebinds ``torch.allclose``
cannot change the checker's.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from numbers import Integral, Real
from collections.abc import Sequence
from typing import Iterator, TypeVar

import torch
from torch import nn

from . import expect, shown

T = TypeVar("T")

# The checkers' own references, taken at import (see the module's docstring).
allclose = torch.allclose
equal = torch.equal
_as_subclass = torch.Tensor.as_subclass


def plain_tensor(value: torch.Tensor) -> torch.Tensor:
    """``value`` as a plain ``torch.Tensor`` (the same data, no subclass).

    A subclass's ``__torch_function__`` sees every torch call on its tensors
    and could answer ``allclose`` or ``equal`` with True; on the plain
    tensor PyTorch's own functions run.
    """
    return _as_subclass(value, torch.Tensor)


def tensor_answer(value: object, call: str) -> torch.Tensor:
    """An answer that must be a tensor, as a plain one (CheckFailed if it is not one)."""
    expect(isinstance(value, torch.Tensor),
           f"{call} returned a {type(value).__name__}, not a tensor.")
    return plain_tensor(value)


def float_answer(value: object, call: str) -> torch.Tensor:
    """An answer that must be a floating-point tensor, as a plain one.

    Any floating dtype is a right answer (float64 is as right as float32: the
    caller compares in its own dtype); an integer or boolean tensor is named.
    """
    value = tensor_answer(value, call)
    expect(value.is_floating_point(),
           f"{call} returned a tensor of dtype {value.dtype}; return floating-point "
           f"values (torch.float32, as the input is).")
    return value


def plain_str(value: str) -> str:
    """``value`` as an exact ``str``: a subclass's ``__eq__`` could say yes to anything."""
    return str.__str__(value)


def given(answer: T | None) -> T:
    """The learner's answer; a ``None`` placeholder counts as "not done yet"."""
    if answer is None:
        raise NotImplementedError
    return answer


@contextmanager
def quiet_torch(seed: int = 0) -> Iterator[None]:
    """Run a check reproducibly and cheaply, leaving the caller's torch as it was.

    Seeds a forked RNG (the same inputs and initial weights every run, the
    notebook's own random state untouched), turns autograd off and uses one
    thread: the checks run tiny tensors, where a second thread only adds
    synchronisation (seconds of it on a busy CPU).
    """
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)


@contextmanager
def one_thread() -> Iterator[None]:
    """One torch thread while the block runs, the caller's count restored after.

    The checks run small tensors and tiny nets: a second thread adds little,
    and on a busy CPU threads that wait for each other at every operation
    make a check many times slower. One thread also makes the arithmetic,
    and so a trained result, independent of the machine's core count.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def as_count(value: object, call: str, why: str = "") -> int:
    """A whole-number answer (a size, a count) as an int.

    Python and NumPy integers and 0-d integer tensors are all right answers;
    a float is not, even a whole one (256.0 usually means true division
    somewhere, which gives wrong sizes for odd inputs).
    """
    if isinstance(value, torch.Tensor):
        value = plain_tensor(value)
        if value.ndim == 0 and not (value.is_floating_point() or value.dtype == torch.bool):
            value = value.item()
    expect(isinstance(value, Integral) and not isinstance(value, bool),
           f"{call} returned {shown(value)} ({type(value).__name__}); return an int"
           + (f" ({why})" if why else "") + ".")
    return int(value)


def as_real(value: object, call: str) -> float:
    """A real-number answer (a ratio, a share) as a float.

    Python, NumPy and 0-d tensor numbers of any precision are accepted; compare
    the result with ``close`` so that a float32 computation passes too.
    """
    if isinstance(value, torch.Tensor):
        value = plain_tensor(value)
        if value.ndim == 0 and value.dtype != torch.bool:
            value = value.item()
    expect(isinstance(value, Real) and not isinstance(value, bool),
           f"{call} returned {shown(value)} ({type(value).__name__}); return a number.")
    return float(value)


# float32 carries about 7 significant digits: an answer computed in float32
# is right to about 1e-7 relative, so 1e-6 accepts it and still rejects any
# real mistake in the checks that use it (their wrong answers differ by > 1%).
REL_TOL = 1e-6


def close(got: float, expected: float) -> bool:
    """True when ``got`` equals ``expected`` to float32 precision."""
    return math.isclose(got, expected, rel_tol=REL_TOL, abs_tol=1e-12)


# --- a residual block's shortcut, for the block checkers --------------------------

def shortcut_layers(block: nn.Module, named: Sequence[str]) -> list[nn.Module]:
    """The block's convs and BNs other than the named ones: its shortcut's."""
    main = {id(getattr(block, n)) for n in named}
    return [m for m in block.modules()
            if isinstance(m, (nn.Conv2d, nn.BatchNorm2d)) and id(m) not in main]


def load_shortcut(extra: list[nn.Module], downsample: nn.Module, what: str,
                  hint: str = "") -> None:
    """Copy the answer's shortcut (``extra``: one 1x1 Conv2d and one BatchNorm2d)
    into the oracle's ``downsample``; CheckFailed naming ``what`` otherwise.

    Matched by type, not by the order they were created in: the output
    comparison that follows is what checks the order they run in.
    """
    for kind in (nn.Conv2d, nn.BatchNorm2d):
        theirs = [m for m in extra if isinstance(m, kind)]
        expect(len(theirs) == 1,
               f"the shortcut of {what} should hold one 1x1 Conv2d and one BatchNorm2d; "
               f"it holds {[type(m).__name__ for m in extra]}." + (f" {hint}" if hint else ""))
        ours = next(m for m in downsample.modules() if isinstance(m, kind))
        ours.load_state_dict(theirs[0].state_dict())
