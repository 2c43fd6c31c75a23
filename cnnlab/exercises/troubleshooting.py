"""Checkers for the troubleshooting exercises (chapter 9).

* ``check_which_bug``: the learner's ``which_bug(message)`` names the kind of
  mistake behind a real PyTorch error message. The messages are produced
  here, live, by running the course's buggy code at several sizes (and, for
  out of memory, read from the recorded run under a memory cap), so an
  answer that matches one message's numbers does not pass.
* ``check_largest_batch``: the learner's ``largest_batch(model, budget)``,
  the largest batch whose estimated training memory fits a budget, checked
  with ``cnnlab.memory.estimate_training_memory`` at the answer and one more.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import expect, run_check, shown
from ._harness import as_count, given, plain_str, quiet_torch
from ..memory import estimate_training_memory
from ..models import get_model
from ..models.resnet import BasicBlock
from ..results import RESULTS_DIR

CHAPTER = "chapter 9 (Troubleshooting)"
KINDS = ("flatten", "shortcut", "memory", "input too small")
# What each kind is, for the hints.
MEANING = {
    "flatten": "the first Linear layer expects another number of inputs than the "
               "flattened feature maps hold (bug 1)",
    "shortcut": "a residual addition of two tensors of different shapes (bug 2)",
    "memory": "an allocation failed: out of memory (bug 3)",
    "input too small": "a pooling or convolution window no longer fits on the feature "
                       "map: the input is too small for the network",
}


def _error_of(run: Callable[[], object]) -> str:
    """The message a piece of the course's buggy code raises."""
    try:
        run()
    except RuntimeError as err:
        return f"RuntimeError: {err}"
    raise AssertionError("the buggy code did not fail")  # a bug in this checker


def _flatten_bug(batch: int, size: int) -> str:
    """Bug 1: LeNet's classifier written for 32x32 inputs, fed smaller digits."""
    features = get_model("lenet").features
    head = nn.Sequential(nn.Flatten(), nn.Linear(16 * 5 * 5, 120))
    return _error_of(lambda: head(features(torch.zeros(batch, 1, size, size))))


class _AlwaysAddsX(BasicBlock):
    """Bug 2: a block that adds x whatever the shape of F(x)."""

    def forward(self, x):
        return F.relu(self.residual(x) + x)


def _shortcut_bug(cin: int, cout: int, size: int) -> str:
    block = _AlwaysAddsX(cin, cout, stride=2)
    return _error_of(lambda: block(torch.zeros(1, cin, size, size)))


def _too_small_bug(size: int) -> str:
    """AlexNet-large's features without the upsampling, on a small input."""
    features = get_model("alexnet_large").features
    return _error_of(lambda: features(torch.zeros(1, 1, size, size)))


def _memory_messages(root: Path = RESULTS_DIR) -> list[str]:
    """The real out-of-memory errors recorded under a memory cap, and the form
    of PyTorch's CUDA message (there is no GPU to produce it live here)."""
    record = root / "experiments" / "oom-alexnet_large-cpu.json"
    messages = []
    if record.is_file():
        cases = json.loads(record.read_text())["cases"]
        messages = [c["error"] for c in cases if c.get("error")]
    messages.append("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate "
                    "98.00 MiB. GPU 0 has a total capacity of 1.96 GiB of which "
                    "17.19 MiB is free.")
    return messages


def cases() -> list[tuple[str, str]]:
    """(message, kind) pairs: every kind at least twice, with different numbers."""
    with quiet_torch():
        pairs = [(_flatten_bug(128, 28), "flatten"), (_flatten_bug(7, 30), "flatten"),
                 (_shortcut_bug(64, 128, 14), "shortcut"),
                 (_shortcut_bug(128, 256, 8), "shortcut"),
                 (_too_small_bug(28), "input too small"),
                 (_too_small_bug(40), "input too small")]
    pairs += [(m, "memory") for m in _memory_messages()]
    return pairs


def _check_which_bug(which_bug: Callable[[str], str] | None) -> None:
    which_bug = given(which_bug)
    for message, kind in cases():
        got = which_bug(message)
        # An exact str: a subclass's __eq__ could say yes to every kind.
        got = plain_str(got) if isinstance(got, str) else got
        expect(isinstance(got, str) and got in KINDS,
               f"which_bug returned {shown(got)}; return one of "
               f"{', '.join(map(repr, KINDS))}.")
        first_line = message.splitlines()[0]
        if len(first_line) > 150:
            first_line = first_line[:150] + " ..."
        expect(got == kind,
               f"which_bug called this message {got!r}, but it is {kind!r}, "
               f"{MEANING[kind]}. The message: \"{first_line}\". Look for the words that "
               f"only this kind of error has (the numbers change with every model and "
               f"batch); see {CHAPTER}.")


def check_which_bug(which_bug: Callable[[str], str] | None) -> bool:
    """Check ``which_bug(message) -> kind`` on real error messages of every kind."""
    return run_check("which_bug", lambda: _check_which_bug(which_bug))


# --- Exercise 2: the largest batch that fits ----------------------------------

MiB = 2 ** 20
GiB = 2 ** 30
# (model, budget): the report's 2 GiB card for two models, a budget that is
# not a round number, and one too small for even a batch of one.
BATCH_CASES = [("alexnet_large", 2 * GiB), ("resnet18", 2 * GiB), ("lenet", 300 * MiB),
               ("mobilenet_v1", 1234 * MiB), ("alexnet_large", 512 * MiB)]


def _fits(model: nn.Module, batch: int, budget: int) -> tuple[bool, int]:
    """Whether ``batch`` fits the budget by the estimate, and the estimate."""
    total = estimate_training_memory(model, batch).total
    return total <= budget, total


def _check_largest_batch(largest_batch: Callable[[nn.Module, int], int] | None) -> None:
    largest_batch = given(largest_batch)
    for name, budget in BATCH_CASES:
        with torch.device("meta"):  # estimates only: nothing is allocated
            model = get_model(name)
        call = f"largest_batch(get_model({name!r}), {budget / MiB:,.0f} MiB)"
        got = as_count(largest_batch(model, budget), call)
        expect(got >= 0, f"{call} returned {got}; a batch size is 0 (nothing fits) or more.")
        if got == 0:
            fits, total = _fits(model, 1, budget)
            expect(not fits, f"{call} returned 0, but a batch of 1 needs "
                             f"{total / MiB:,.0f} MiB by the estimate, which fits; see "
                             f"{CHAPTER}, 'Bug 3: CUDA out of memory'.")
            continue
        fits, total = _fits(model, got, budget)
        expect(fits, f"{call} returned {got}, but a batch of {got} needs {total / MiB:,.0f} "
                     f"MiB by the estimate, more than the budget: return the largest batch "
                     f"that fits, not the first that does not.")
        more, total_more = _fits(model, got + 1, budget)
        power_of_two = got & (got - 1) == 0
        expect(not more,
               f"{call} returned {got}, but a batch of {got + 1} fits too "
               f"({total_more / MiB:,.0f} MiB by the estimate)"
               + ("; any batch size counts, not only powers of two" if power_of_two else
                  "; search further") + f". See {CHAPTER}, 'Bug 3: CUDA out of memory'.")


def check_largest_batch(largest_batch: Callable[[nn.Module, int], int] | None) -> bool:
    """Check ``largest_batch(model, budget_bytes)`` against the memory estimate."""
    return run_check("largest_batch", lambda: _check_largest_batch(largest_batch))
