"""The chapter 2 (LeNet-5) checkers: they pass the solution, reject the stub
and reject plausible wrong answers with a specific message.

The solution and the stub are the "exercise" cells of the two notebooks,
run here, so these tests test what the notebooks contain.
"""

import pytest
from exercise_cells import rejected
import torch

from cnnlab.exercises.lenet import (check_conv_output_size, check_flatten_size,
                                    check_receptive_field, check_trace)

NOTEBOOK = "02_lenet.ipynb"


CHECKS = [("flatten_size", check_flatten_size),
          ("conv_output_size", check_conv_output_size),
          ("trace", check_trace),
          ("receptive_field", check_receptive_field)]


@pytest.mark.parametrize("name,check", CHECKS, ids=[n for n, _ in CHECKS])
def test_passes_the_solution(name, check, solution, capsys):
    assert check(solution[name]) is True
    assert capsys.readouterr().out == f"✓ {name}: passed\n"


@pytest.mark.parametrize("name,check", CHECKS, ids=[n for n, _ in CHECKS])
def test_rejects_the_stub(name, check, stub, capsys):
    assert check(stub[name]) is False
    assert f"… {name}: not done yet" in capsys.readouterr().out


@pytest.mark.parametrize("name,check", CHECKS, ids=[n for n, _ in CHECKS])
def test_a_none_placeholder_is_not_done_yet(name, check, capsys):
    assert check(None) is False
    assert "not done yet" in capsys.readouterr().out


# --- flatten_size: plausible wrong answers ----------------------------------

def flatten_size_of_the_paper(input_size, padding=0):
    return 16 * 5 * 5  # bug 1 of the report: the 32x32 value


def flatten_size_with_true_division(input_size, padding=0):
    side = input_size + 2 * padding
    for _ in range(2):
        side = (side - 4) / 2
    return 16 * side * side


def flatten_size_ignoring_padding(input_size, padding=0):
    side = input_size
    for _ in range(2):
        side = (side - 4) // 2
    return 16 * side * side


def test_flatten_size_rejects_the_papers_400(capsys):
    out = rejected(check_flatten_size, flatten_size_of_the_paper, capsys=capsys)
    # 28 -conv5-> 24 -pool-> 12 -conv5-> 8 -pool-> 4: 16*4*4 = 256; the paper's 32 px: 16*5*5 = 400.
    assert f"flatten_size(28, padding=0): expected {16 * 4 * 4}, got {16 * 5 * 5}" in out
    assert "16*5*5 is the paper's value for 32x32 inputs" in out
    assert "28 -> 24 -> 12 -> 8 -> 4" in out


def test_flatten_size_rejects_a_float(capsys):
    out = rejected(check_flatten_size, flatten_size_with_true_division, capsys=capsys)
    assert "flatten_size(28, padding=0) returned 256.0 (float)" in out  # 16 * 4.0 * 4.0
    assert "return an int" in out


def test_flatten_size_rejects_ignored_padding(capsys):
    out = rejected(check_flatten_size, flatten_size_ignoring_padding, capsys=capsys)
    # padding 2 keeps C1 at 28 (28 + 2*2 - 5 + 1): 28 -> 14 -> 10 -> 5, 16*5*5 = 400.
    assert f"flatten_size(28, padding=2): expected {16 * 5 * 5}, got {16 * 4 * 4}" in out
    assert "padding adds 2*padding" in out


# --- conv_output_size: plausible wrong answers ------------------------------

def conv_output_size_padding_once(size, kernel, stride=1, padding=0):
    return (size - kernel + padding) // stride + 1


def conv_output_size_rounding_up(size, kernel, stride=1, padding=0):
    return -(-(size - kernel + 2 * padding) // stride) + 1


def test_conv_output_size_rejects_padding_on_one_side(capsys):
    out = rejected(check_conv_output_size, conv_output_size_padding_once, capsys=capsys)
    # (28 + 2*1 - 3) // 1 + 1 = 28; padding once: (28 + 1 - 3) // 1 + 1 = 27.
    assert "conv_output_size(28, 3, stride=1, padding=1) (what nn.Conv2d gives): " \
           "expected 28, got 27" in out
    assert "padding adds p pixels on BOTH sides" in out


def test_conv_output_size_rejects_rounding_up(capsys):
    out = rejected(check_conv_output_size, conv_output_size_rounding_up, capsys=capsys)
    # floor((224 + 2*2 - 11) / 4) + 1 = floor(54.25) + 1 = 55; rounding up gives 56.
    assert "conv_output_size(224, 11, stride=4, padding=2) (what nn.Conv2d gives): " \
           f"expected {(224 + 2 * 2 - 11) // 4 + 1}, got {-(-(224 + 2 * 2 - 11) // 4) + 1}" in out
    assert "round the division DOWN" in out


# --- trace: plausible wrong answers -----------------------------------------

def tracer(select_all=False, with_batch=False, remove=True, restore_mode=True):
    """A hook-based tracer with one of the usual slips switched on."""
    def trace(model, input_size):
        records, handles = [], []
        for name, module in model.named_modules():
            if not select_all and next(module.children(), None) is not None:
                continue

            def hook(mod, inputs, output, name=name):
                shape = tuple(output.shape) if with_batch else tuple(output.shape[1:])
                records.append((name, shape))
            handles.append(module.register_forward_hook(hook))
        channels = getattr(model, "input_shape", (1,))[0]
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, channels, input_size, input_size))
        if remove:
            for handle in handles:
                handle.remove()
        if restore_mode:
            model.train()
        return records
    return trace


def test_trace_rejects_containers(capsys):
    out = rejected(check_trace, tracer(select_all=True), capsys=capsys)
    assert "recorded modules that are not leaves: 'features', 'classifier', ''" in out


def test_trace_rejects_the_batch_dimension(capsys):
    out = rejected(check_trace, tracer(with_batch=True), capsys=capsys)
    # C1: 6 maps of 28 - 5 + 1 = 24 px, for a batch of one.
    assert "'features.0' has shape (1, 6, 24, 24); leave out the batch dimension" in out


def test_trace_rejects_hooks_left_behind(capsys):
    out = rejected(check_trace, tracer(remove=False), capsys=capsys)
    # One per leaf: (conv, activation, pool) x 2, then flatten, 3 linears, 2 activations.
    assert f"trace left {3 * 2 + 1 + 3 + 2} forward hooks on get_model('lenet')" in out


def test_trace_rejects_a_model_left_in_eval_mode(capsys):
    out = rejected(check_trace, tracer(restore_mode=False), capsys=capsys)
    assert "trace left get_model('lenet') in eval mode" in out


def test_trace_rejects_modules_listed_instead_of_called(capsys):
    # Walking the module list misses the second call of a shared ReLU.
    def trace(model, input_size):
        shapes = tracer()(model, input_size)
        seen, once = set(), []
        for name, shape in shapes:
            if name not in seen:
                seen.add(name)
                once.append((name, shape))
        return once
    out = rejected(check_trace, trace, capsys=capsys)
    assert "a small 3-channel net that calls its ReLU twice" in out
    assert "in the order the forward pass makes them" in out
