"""Shared fixtures: a small slice of the real split for fast training tests."""
import os
import signal

import pytest
import torch
from exercise_cells import exercise_namespace

from cnnlab.data import MnistSplits, Split, load_mnist


# A shell starts a background job with SIGINT ignored, and the ignoring is
# inherited: the signal tests need Ctrl-C to arrive as it does in a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


# Under pytest-xdist (`make test` runs two workers) each worker gets its share
# of the cores: two workers each running two OpenMP threads on two cores would
# fight over them. Subprocesses the tests start inherit the share.
if os.environ.get("PYTEST_XDIST_WORKER"):
    _workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    _threads = max(1, torch.get_num_threads() // _workers)
    torch.set_num_threads(_threads)
    os.environ["OMP_NUM_THREADS"] = str(_threads)


@pytest.fixture(scope="session")
def mnist() -> MnistSplits:
    return load_mnist()


@pytest.fixture(scope="session")
def small(mnist: MnistSplits) -> MnistSplits:
    """2,560 train / 500 val / 500 test images: a few seconds of LeNet."""
    def head(split: Split, n: int) -> Split:
        return Split(split.images[:n].clone(), split.labels[:n].clone())
    return MnistSplits(head(mnist.train, 2560), head(mnist.val, 500), head(mnist.test, 500))


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    # Tests must not leak global torch settings into each other.
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


# The exercise-checker tests (test_exercises_*.py) each name their notebook
# in NOTEBOOK; these give them what its solution and its stub define.
@pytest.fixture(scope="module")
def solution(request) -> dict:
    """The names the solutions/ notebook's exercise cells define."""
    return exercise_namespace("solutions", request.module.NOTEBOOK)


@pytest.fixture(scope="module")
def stub(request) -> dict:
    """The names the exercises/ notebook's exercise cells define (the stubs)."""
    return exercise_namespace("exercises", request.module.NOTEBOOK)
