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
# The first forward pass of an upsampling model on the meta device imports
# torch._dynamo (for its decompositions): seconds of work, more on a busy CPU.
# Imported here, with the checkers, so that those seconds are paid once in the
# notebook, never in each check's process against the learner's time limit.
import torch._dynamo  # noqa: F401
import torch.nn.functional as F
from torch import nn

from . import CheckFailed, checker, expect, shown
from ._harness import as_count, plain_str, quiet_torch
from ..memory import MemoryEstimate, estimate_training_memory
from ..models import get_model
from ..models.resnet import BasicBlock
from ..results import RESULTS_DIR

CHAPTER = "chapter 9 (Troubleshooting)"
NOTEBOOK = "09_troubleshooting.ipynb"
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


def _flatten_bug(batch: int, size: int, written_for: int, hidden: int) -> str:
    """Bug 1: LeNet's classifier written for ``written_for``-pixel inputs (its
    first Linear layer sized for their maps), fed ``size``-pixel digits."""
    features = get_model("lenet").features
    side = ((written_for - 4) // 2 - 4) // 2  # two 5x5 convs, each then a 2x2 pool
    head = nn.Sequential(nn.Flatten(), nn.Linear(16 * side * side, hidden))
    return _error_of(lambda: head(features(torch.zeros(batch, 1, size, size))))


class _AlwaysAddsX(BasicBlock):
    """Bug 2: a block that adds x whatever the shape of F(x)."""

    def forward(self, x):
        return F.relu(self.residual(x) + x)


def _shortcut_bug(cin: int, cout: int, stride: int, size: int) -> str:
    block = _AlwaysAddsX(cin, cout, stride=stride)
    return _error_of(lambda: block(torch.zeros(1, cin, size, size)))


def _too_small_bug(model: str, size: int) -> str:
    """An AlexNet's features without the upsampling, on a small input.

    On the meta device, which raises the same error: shapes only, and no
    58 M weights to initialise.
    """
    with torch.device("meta"):
        features = get_model(model).features
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
    """(message, kind) pairs: every kind at least twice, and no number common to
    all the messages of a kind (an answer keyed on "400x120" does not pass)."""
    with quiet_torch():
        pairs = [(_flatten_bug(128, 28, written_for=32, hidden=120), "flatten"),  # 400x120
                 (_flatten_bug(7, 40, written_for=36, hidden=84), "flatten"),     # 576x84
                 (_shortcut_bug(64, 128, 2, 14), "shortcut"),   # the map's side differs
                 (_shortcut_bug(128, 256, 1, 8), "shortcut"),   # the channels differ
                 (_too_small_bug("alexnet_large", 28), "input too small"),
                 (_too_small_bug("alexnet", 4), "input too small")]
    pairs += [(m, "memory") for m in _memory_messages()]
    return pairs


@checker("which_bug", answers="which_bug")
def check_which_bug(which_bug: Callable[[str], str]) -> None:
    """Check ``which_bug(message) -> kind`` on real error messages of every kind."""
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


# --- Exercise 2: the largest batch that fits ----------------------------------

MiB = 2 ** 20
GiB = 2 ** 30
# (model, budget): LeNet, whose batches are cheap to estimate (so a search that
# steps 1, 2, 3, ... meets MAX_ESTIMATES at once); one too small for even a
# batch of one; the report's 2 GiB card for two models; and a budget that is
# not a round number.
BATCH_CASES = [("lenet", 300 * MiB), ("alexnet_large", 512 * MiB),
               ("alexnet_large", 2 * GiB), ("resnet18", 2 * GiB),
               ("mobilenet_v1", 1234 * MiB)]
# Estimates one call may make. Doubling, then bisecting, takes about
# 2 * log2(answer): under 30 here. Stepping 1, 2, 3, ... takes as many as the
# answer is large (8,876 for LeNet in 300 MiB), minutes in all.
MAX_ESTIMATES = 200


class _TooManyEstimates(BaseException):
    """The answer's search went past MAX_ESTIMATES (a BaseException, so that an
    ``except Exception`` in the search cannot swallow it)."""


def _estimate(model: nn.Module, batch: int) -> MemoryEstimate:
    return estimate_training_memory(model, batch)


def _fits(model: nn.Module, batch: int, budget: int) -> tuple[bool, int]:
    """Whether ``batch`` fits the budget by the estimate, and the estimate."""
    total = _estimate(model, batch).total
    return total <= budget, total


def _largest_where(model: nn.Module, got: int, fits: Callable[[MemoryEstimate], bool]) -> bool:
    """True when ``got`` is the largest batch that ``fits`` (by one slip's rule)."""
    return got >= 1 and fits(_estimate(model, got)) and not fits(_estimate(model, got + 1))


def _counted(model: nn.Module) -> list[int]:
    """Count the forward passes through ``model`` (one per estimate); past
    MAX_ESTIMATES, stop the answer's search."""
    count = [0]

    def hook(_module: nn.Module, _inputs: tuple) -> None:
        count[0] += 1
        if count[0] > MAX_ESTIMATES:
            raise _TooManyEstimates

    model.register_forward_pre_hook(hook)
    return count


def _largest_batch_of(largest_batch: Callable, model: nn.Module, budget: int,
                      call: str) -> int:
    """The answer for one case, its search stopped past MAX_ESTIMATES."""
    _counted(model)
    try:
        got = largest_batch(model, budget)
    except _TooManyEstimates:
        raise CheckFailed(
            f"{call} made more than {MAX_ESTIMATES} memory estimates and was still "
            f"searching. Stepping through the batch sizes one at a time takes one estimate "
            f"per size, thousands here (minutes); double the batch until it no longer fits, "
            f"then bisect between the last size that fits and the first that does not "
            f"(about 2 * log2(answer) estimates). See {CHAPTER}, 'Bug 3: CUDA out of "
            f"memory'.") from None
    return as_count(got, call)


# Not quiet: the estimate measures what autograd saves, which needs autograd on.
@checker("largest_batch", answers="largest_batch", quiet=False)
def check_largest_batch(largest_batch: Callable[[nn.Module, int], int]) -> None:
    """Check ``largest_batch(model, budget_bytes)`` against the memory estimate."""
    for name, budget in BATCH_CASES:
        with torch.device("meta"):  # estimates only: nothing is allocated
            model = get_model(name)
        call = f"largest_batch(get_model({name!r}), {budget / MiB:,.0f} MiB)"
        got = _largest_batch_of(largest_batch, model, budget, call)
        model._forward_pre_hooks.clear()  # the checker's own estimates are not counted
        _check_largest_batch_case(model, budget, got, call)


def _check_largest_batch_case(model: nn.Module, budget: int, got: int, call: str) -> None:
    where = f"See {CHAPTER}, 'Bug 3: CUDA out of memory'."
    expect(got >= 0, f"{call} returned {got}; a batch size is 0 (nothing fits) or more.")
    one_fits, one = _fits(model, 1, budget)
    if got == 0:
        expect(not one_fits,
               f"{call} returned 0, but a batch of 1 needs {one / MiB:,.0f} MiB by the "
               f"estimate, within the budget of {budget / MiB:,.0f} MiB. The budget and "
               f"estimate_training_memory(model, b).total are both in bytes: compare them "
               f"as they are. {where}")
        return
    fits, total = _fits(model, got, budget)
    if not fits:
        if not one_fits:
            hint = (f"even a batch of 1 needs {one / MiB:,.0f} MiB, more than the budget: "
                    f"when nothing fits, return 0")
        elif _largest_where(model, got, lambda e: e.activations_bytes <= budget):
            hint = ("that is the largest batch whose ACTIVATIONS fit; the parameters, "
                    "their gradients and AdamW's two states take memory too: compare "
                    "estimate_training_memory(model, b).total with the budget")
        elif _largest_where(model, got, lambda e: e.total <= budget * MiB):
            hint = ("that is the largest batch whose estimate fits the budget read as "
                    "MiB: the budget is in bytes, as estimate_training_memory(...).total "
                    "is, so compare the two as they are")
        elif _fits(model, got - 1, budget)[0]:
            hint = "return the largest batch that fits, not the first that does not"
        else:
            hint = "return the largest batch whose estimated total is within the budget"
        expect(False, f"{call} returned {got}, but a batch of {got} needs {total / MiB:,.0f} "
                      f"MiB by the estimate, more than the budget of {budget / MiB:,.0f} "
                      f"MiB: {hint}. {where}")
    more, total_more = _fits(model, got + 1, budget)
    if more:
        doubled_only = got & (got - 1) == 0 and not _fits(model, 2 * got, budget)[0]
        hint = ("you doubled the batch until it no longer fit and stopped there; any batch "
                "size counts, not only powers of two: bisect between the last size that "
                "fits and the first that does not" if doubled_only else
                "search further: return the largest batch whose estimate fits")
        expect(False, f"{call} returned {got}, but a batch of {got + 1} fits too "
                      f"({total_more / MiB:,.0f} MiB by the estimate, within "
                      f"{budget / MiB:,.0f} MiB): {hint}. {where}")
