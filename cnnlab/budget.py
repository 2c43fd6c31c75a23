"""How much a chapter trains: the full recipe on a GPU, a short budget on a CPU.

Decided here, in one place, and overridden by one environment variable:

    CNNLAB_BUDGET=full    the report's recipe (5 epochs, all data)
    CNNLAB_BUDGET=short   a few dozen steps per model (one epoch for LeNet), for a CPU
    (unset or auto)       full when a CUDA GPU is present, else short

Both budgets run the same code path (``cnnlab.train.fit``); the short one
only stops early and validates/tests on fewer images, and says so.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

from .data import N_TEST, N_TRAIN, N_VAL
from .train import TrainConfig

BUDGET_ENV = "CNNLAB_BUDGET"


@dataclass(frozen=True)
class ShortBudget:
    """A CPU budget for one model: steps, and how many images to evaluate."""

    steps: int
    val_images: int
    test_images: int


# Sized from measured CPU step times (batch 128, 2 cores): LeNet ~8 ms,
# MobileNet ~0.5 s, ResNet-18 ~0.6 s, GoogLeNet ~0.75 s, AlexNet ~2.5-2.9 s,
# alexnet_large ~5.5 s per step. Each stays within about half a minute, but
# AlexNet: 40 steps (about two minutes) is where its recorded seed-42 run's
# loss has fallen from ln 10 to about 0.5 (mean of steps 31-40: 0.47), so the
# chapter's run shows the network learning, not only its first moments.
SHORT = {
    "lenet": ShortBudget(steps=375, val_images=12_000, test_images=10_000),  # 1 epoch
    "alexnet": ShortBudget(steps=40, val_images=500, test_images=1_000),
    "alexnet_large": ShortBudget(steps=3, val_images=200, test_images=500),
    "resnet18": ShortBudget(steps=30, val_images=1_000, test_images=1_000),
    "mobilenet_v1": ShortBudget(steps=30, val_images=1_000, test_images=1_000),
    "googlenet": ShortBudget(steps=25, val_images=1_000, test_images=1_000),
}


def budget_name() -> str:
    """'full' or 'short', from $CNNLAB_BUDGET or the hardware."""
    value = os.environ.get(BUDGET_ENV, "auto").strip().lower()
    if value in ("", "auto"):
        return "full" if torch.cuda.is_available() else "short"
    if value not in ("full", "short"):
        raise ValueError(f"{BUDGET_ENV} must be 'full', 'short' or 'auto', got {value!r}")
    return value


def chapter_config(model: str, budget: str | None = None, **overrides) -> TrainConfig:
    """The TrainConfig a chapter trains ``model`` with under the budget."""
    budget = budget or budget_name()
    if budget == "full":
        return TrainConfig(model=model, **overrides)
    short = SHORT[model]
    settings = dict(model=model, max_steps=short.steps, val_images=short.val_images,
                    test_images=short.test_images,
                    eval_every=max(1, short.steps // 5), eval_subset=None)
    return TrainConfig(**(settings | overrides))


def describe(config: TrainConfig) -> str:
    """One sentence saying what a run under ``config`` covers."""
    if config.max_steps is None and config.val_images is None and config.test_images is None:
        between = (f"on the first {config.eval_subset:,} validation images every "
                   f"{config.eval_every} steps and " if config.eval_subset else "")
        return (f"Full recipe: {config.epochs} epochs of 48,000 images, batch "
                f"{config.batch_size}, validated {between}on all 12,000 at each epoch "
                f"end, and tested on 10,000 images.")
    val = f"{config.val_images:,}" if config.val_images else "12,000"
    test = f"{config.test_images:,}" if config.test_images else "10,000"
    return (f"Short budget (set {BUDGET_ENV}=full for the full recipe): "
            f"{config.max_steps:,} steps of batch {config.batch_size}, "
            f"validated on {val} and tested on {test} images.")


def run_work(config: TrainConfig, n_train: int = N_TRAIN, n_val: int = N_VAL,
             n_test: int = N_TEST) -> tuple[int, int]:
    """The training steps and the images evaluated (every validation point
    and the test pass) of a run of ``config`` on splits of these sizes,
    counted before it runs: what ``cnnlab.train.train`` will do.

    Multiplied by the seconds of one step and of one evaluation batch, it
    gives a run's length on this machine.
    """
    per_epoch = math.ceil(n_train / config.batch_size)
    total = config.epochs * per_epoch
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    val = min(n_val, config.val_images or n_val)
    between = min(val, config.eval_subset or val)  # the cheap check between epoch ends
    evaluated = 0
    for step in range(1, total + 1):
        whole = step % per_epoch == 0 or step == total
        if whole or step % config.eval_every == 0:
            evaluated += val if whole else between
    return total, evaluated + min(n_test, config.test_images or n_test)
