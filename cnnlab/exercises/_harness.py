"""Small helpers shared by the chapter checkers that run tensors."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, TypeVar

import torch

T = TypeVar("T")


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
