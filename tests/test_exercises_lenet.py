"""The chapter 2 (LeNet-5) checkers reject plausible wrong answers with a specific
message, and accept right answers written differently.

(tests/test_exercise_registry.py runs every checker on the notebooks'
solution, stub and a None answer.)
"""

from exercise_cells import rejected
import torch
from torch import nn

from cnnlab.exercises.lenet import (check_conv_output_size, check_flatten_size,
                                    check_receptive_field, check_trace)

NOTEBOOK = "02_lenet.ipynb"


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
    assert ("trace was given get_model('lenet') in train mode and left it in eval mode: "
            "you switch it to eval mode and never back") in out


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


# --- receptive_field ----------------------------------------------------------

def _layers(model):
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d))]


def _k(m):
    return m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]


def _s(m):
    return m.stride if isinstance(m.stride, int) else m.stride[0]


def test_receptive_field_without_the_jump_is_told_about_strides(capsys):
    def no_jump(model):
        size, out = 1, []
        for m in _layers(model):
            size += _k(m) - 1
            out.append(size)
        return out

    assert not check_receptive_field(no_jump)
    out = capsys.readouterr().out
    # LeNet's C1, S2, C3, S4 (k 5, 2, 5, 2; strides 1, 2, 1, 2): with the jump
    # 1+4, +1*1, +4*2, +1*2 = 5, 6, 14, 16 (test_concepts.py); without, 5, 6, 10, 11.
    assert "expected [5, 6, 14, 16], got [5, 6, 10, 11]" in out
    assert "multiply the jump by each layer's stride" in out


def test_receptive_field_with_the_stride_applied_too_early_is_rejected(capsys):
    def early(model):  # jump updated before it is used
        size, jump, out = 1, 1, []
        for m in _layers(model):
            jump *= _s(m)
            size += (_k(m) - 1) * jump
            out.append(size)
        return out

    assert not check_receptive_field(early)
    assert "size += (k - 1) * jump, then jump *= stride" in capsys.readouterr().out


def test_receptive_field_written_backwards_from_the_output_passes(capsys):
    # r_in = s * r_out + (k - s), from the top layer down: the same numbers.
    def backwards(model):
        layers, out = _layers(model), []
        for top in range(len(layers)):
            r = 1
            for m in reversed(layers[:top + 1]):
                r = _s(m) * (r - 1) + _k(m)
            out.append(r)
        return out

    assert check_receptive_field(backwards)
    assert "✓" in capsys.readouterr().out


# --- slow_start (trains LeNet: a few seconds) -------------------------------------------

def first_below(losses, start=1):
    """The first step (from 1) whose average of the last 20 losses is under 2.0."""
    for step in range(start, len(losses) + 1):
        window = losses[max(0, step - 20):step]
        if sum(window) / len(window) < 2.0:
            return step
    return None


def exercise_run(activation, **changes):
    from cnnlab.train import TrainConfig, fit

    settings = dict(model="lenet", options={"activation": activation}, max_steps=300,
                    eval_every=300, val_images=1_000, test_images=1_000, device="cpu")
    return fit(TrainConfig(**{**settings, **changes}), progress=False).train_loss


def test_slow_start_passes_a_hand_written_average_without_training_twice(monkeypatch,
                                                                         capsys):
    from cnnlab.exercises import lenet

    # The exercise's run and rule: 300 steps; the first step whose last 20 losses
    # average under 2.0 (chance, ln 10, is 2.30). A strict 20-step window, written out.
    def by_hand(activation):
        return first_below(exercise_run(activation), start=20)

    def no_second_run(activation):
        raise AssertionError("the oracle trained again what the answer had trained")

    # The oracle's losses are the answer's own run's (the same config): the check
    # trains two runs, not four. (The check runs in a child: the patch reaches it.)
    monkeypatch.setattr(lenet, "_losses", no_second_run)
    assert lenet.check_slow_start(by_hand)
    assert capsys.readouterr().out == "✓ slow_start: passed\n"


def test_slow_start_is_not_checked_against_a_run_with_another_config(capsys):
    from cnnlab.exercises.lenet import check_slow_start

    # Three times the learning rate: another run, whose steps are not the exercise's.
    out = rejected(check_slow_start, lambda activation: first_below(
        exercise_run(activation, lr=3e-3)), capsys=capsys)
    assert "slow_start('sigmoid'): expected" in out


def test_slow_start_rejects_a_guess_and_an_off_by_one(solution, capsys):
    from cnnlab.exercises.lenet import check_slow_start

    solution = solution["slow_start"]
    assert not check_slow_start(lambda activation: 100)
    assert "average the last 20 training losses" in capsys.readouterr().out
    assert not check_slow_start(lambda activation: solution(activation) - 1)
    assert "count steps from 1" in capsys.readouterr().out
    assert not check_slow_start(lambda activation: solution(activation) + 1)
    assert "not the step after it" in capsys.readouterr().out
