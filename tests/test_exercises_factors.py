"""The chapter 8 (factors) checkers reject plausible wrong answers with a
specific message, and accept right answers written differently.

(tests/test_exercise_registry.py runs every checker on the notebooks'
solution, stub and a None answer.) The test that trains LeNet for 2 epochs
on the CPU is marked slow (tens of seconds on an idle laptop CPU).
"""

import pytest
from exercise_cells import rejected
import torch
from torch import nn

from cnnlab.exercises.factors import check_lenet_98_5, check_training_memory
from cnnlab.models import count_parameters, get_model

NOTEBOOK = "08_factors.ipynb"


# --- training_memory_bytes --------------------------------------------------

def leaf_output_bytes(model, batch_size):
    """Activations as the outputs of every leaf layer (forward hooks)."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        total += output.numel() * output.element_size()
    handles = [m.register_forward_hook(count) for m in model.modules()
               if next(m.children(), None) is None]
    model.train()
    model(torch.zeros(batch_size, 1, 28, 28))
    for h in handles:
        h.remove()
    return total


def memory(parameters=4, gradients=4, optimizer=8, activations=leaf_output_bytes):
    """An answer with the given bytes per parameter for each fixed part.

    The right ones: a float32 weight is 4 bytes, so is its gradient, and
    AdamW keeps two float32 states per weight (8 bytes).
    """
    def training_memory_bytes(model, batch_size):
        n = count_parameters(model)
        return {"parameters_bytes": parameters * n, "gradients_bytes": gradients * n,
                "optimizer_state_bytes": optimizer * n,
                "activations_bytes": activations(model, batch_size)}
    return training_memory_bytes


def test_training_memory_accepts_leaf_outputs_as_activations(capsys):
    # The statement offers forward hooks as the simpler way: it must pass.
    assert check_training_memory(memory()) is True
    assert "passed" in capsys.readouterr().out


def test_training_memory_rejects_torchinfo_style_parts(capsys):
    # torchinfo's "Estimated Total Size" has no gradients nor optimizer state.
    out = rejected(check_training_memory, memory(gradients=0, optimizer=0), capsys=capsys)
    n = count_parameters(get_model("lenet"))
    assert (f"gradients_bytes for get_model('lenet') at batch 1: expected {4 * n}, got 0"
            in out)
    assert "it is missing (0 bytes)" in out


def test_training_memory_rejects_one_adam_state(capsys):
    out = rejected(check_training_memory, memory(optimizer=4), capsys=capsys)
    assert "AdamW keeps two (exp_avg and exp_avg_sq)" in out


def test_training_memory_rejects_float64(capsys):
    out = rejected(check_training_memory, memory(parameters=8), capsys=capsys)
    assert "float32 numbers take 4 bytes, not 8" in out


def test_training_memory_rejects_the_activations_of_one_image(capsys):
    answer = memory(activations=lambda model, batch_size: leaf_output_bytes(model, 1))
    out = rejected(check_training_memory, answer, capsys=capsys)
    # Batch 256 and ±30%: the checker's own largest LeNet case and its tolerance.
    assert "total for get_model('lenet') at batch 256: cnnlab.memory estimates" in out
    assert "outside the ±30% allowed" in out


def test_training_memory_rejects_no_activations(capsys):
    out = rejected(check_training_memory, memory(activations=lambda m, b: 0), capsys=capsys)
    assert "activations_bytes for get_model('lenet') at batch 1 is 0" in out


# --- check_lenet_98_5 -------------------------------------------------------

def adamw(params, steps_per_epoch, epochs):
    return torch.optim.AdamW(params, lr=1e-3), None


def test_lenet_98_5_rejects_too_many_parameters_before_training(capsys):
    def wide_lenet():
        return nn.Sequential(
            nn.Conv2d(1, 32, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(64 * 4 * 4, 120), nn.ReLU(), nn.Linear(120, 10))
    n = count_parameters(wide_lenet())

    def optimizer_never_made(params, steps_per_epoch, epochs):
        raise AssertionError("the cap must be checked before anything else")
    out = rejected(check_lenet_98_5, wide_lenet, optimizer_never_made, capsys=capsys)
    # The exercise's cap: LeNet-5's 44,426 plus room for batch norm.
    assert f"your model has {n:,} parameters, over the cap of 60,000" in out


def test_lenet_98_5_rejects_a_wrong_output_shape(capsys):
    def no_classifier():
        return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 64))
    out = rejected(check_lenet_98_5, no_classifier, adamw, capsys=capsys)
    assert "output shape for a (2, 1, 28, 28) batch: expected (2, 10), got (2, 64)" in out


@pytest.mark.slow
def test_lenet_98_5_rejects_the_packages_sigmoid_lenet(capsys):
    # The report's recipe: sigmoid LeNet-5, AdamW at 0.001, no schedule.
    out = rejected(check_lenet_98_5, lambda: get_model("lenet"), adamw, capsys=capsys)
    assert "validation accuracy 9" in out  # 9x%: it learns, but not to 98.5%
    # 2 epochs of 48,000 / 128 = 375 steps each.
    assert f"after {2 * 48_000 // 128} steps (2 epochs of batch 128), below 98.5%" in out
    assert "ReLU instead of sigmoid" in out


# --- training_memory_bytes: the parameters counted as activations (issue 24) ---------

def saved_with_parameters(model, batch_size):
    """What autograd saves, every storage once, the weights' own included."""
    saved = {}

    def pack(t):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t
    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(torch.zeros(batch_size, 1, 28, 28))
    return sum(saved.values())


def test_training_memory_rejects_the_parameters_counted_as_activations(capsys):
    # LeNet at batch 1: 177,704 bytes of parameters, about 35 KB of activations, so
    # the total was within the 30% tolerance (+24%); the part itself is 6x too big.
    out = rejected(check_training_memory, memory(activations=saved_with_parameters),
                   capsys=capsys)
    assert "activations_bytes for get_model('lenet') at batch 1" in out
    assert "the parameters' own storages counted" in out
