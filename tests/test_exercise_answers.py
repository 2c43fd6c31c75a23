"""Every checker accepts every right answer, in any numeric type a learner
uses, and stops on an answer that never ends.

Right answers written differently: NumPy and Python integers, 0-d tensors,
float32 ratios, the page's rounded constants. Wrong answers that used to
hang or pass: an endless batch generator, a function that never returns.
"""
import math
import time

import numpy as np
import pytest
import torch
from torch import nn

from cnnlab.exercises import run_check, time_limit
from cnnlab.exercises.alexnet import check_fc1_share, check_linear_params
from cnnlab.exercises.data import check_batches, check_normalise
from cnnlab.exercises.googlenet import check_inception_out_channels, check_inception_params
from cnnlab.exercises.lenet import check_conv_output_size, check_flatten_size
from cnnlab.exercises.mobilenet import check_macs_ratio, check_param_counts
from cnnlab.exercises.resnet import _smallest_factor, check_smallest_upsample
from cnnlab.models import count_parameters, get_model


def conv_out(n, k, stride=1, padding=0):
    return (n - k + 2 * padding) // stride + 1


def flatten(size, padding=0):
    side = size + 2 * padding
    for _ in range(2):  # conv 5x5, then pool 2x2
        side = (side - 4) // 2
    return 16 * side * side


def linear(n_in, n_out):
    return n_in * n_out + n_out


def inception_out(row):
    _, c1, _, c3, _, c5, pool = row
    return c1 + c3 + c5 + pool


def inception_params(row):
    cin, c1, c3r, c3, c5r, c5, pool = row
    weights = cin * c1 + cin * c3r + 9 * c3r * c3 + cin * c5r + 25 * c5r * c5 + cin * pool
    return weights + c1 + c3r + c3 + c5r + c5 + pool  # one bias per output channel


def standard(cin, cout, k=3):
    return k * k * cin * cout


def separable(cin, cout, k=3):
    return k * k * cin + cin * cout


def macs_ratio(cin, cout, k, h, w):
    return (k * k * cin + cin * cout) / (k * k * cin * cout)


# Each right answer, returned as a NumPy integer, a 0-d tensor or a Python int.
AS = {"numpy int64": np.int64, "numpy int32": np.int32, "0-d tensor": torch.tensor,
      "python int": int}


@pytest.mark.parametrize("kind", AS)
def test_integer_answers_pass_in_every_type(kind, capsys):
    wrap = AS[kind]
    assert check_conv_output_size(lambda n, k, stride=1, padding=0:
                                  wrap(conv_out(n, k, stride, padding)))
    assert check_flatten_size(lambda size, padding=0: wrap(flatten(size, padding)))
    assert check_linear_params(lambda n_in, n_out: wrap(linear(n_in, n_out)))
    assert check_inception_out_channels(lambda row: wrap(inception_out(row)))
    assert check_inception_params(lambda row: wrap(inception_params(row)))
    assert check_param_counts(lambda cin, cout, k=3: wrap(standard(cin, cout, k)),
                              lambda cin, cout, k=3: wrap(separable(cin, cout, k)))
    # the checker's own oracle as the answer: this test is about the type only
    assert check_smallest_upsample(lambda min_size: wrap(_smallest_factor(min_size)))
    assert capsys.readouterr().out.count("✓") == 7  # one per check above


def test_a_whole_float_is_not_a_size(capsys):
    assert not check_flatten_size(lambda size, padding=0: float(flatten(size, padding)))
    assert "return an int" in capsys.readouterr().out


def test_ratios_computed_in_float32_pass(capsys):
    def fc1_share(name):
        model = get_model(name)
        fc1 = next(m for m in model.modules() if isinstance(m, nn.Linear))
        return np.float32(count_parameters(fc1)) / np.float32(count_parameters(model))

    assert check_fc1_share(fc1_share)
    assert check_macs_ratio(lambda cin, cout, k, h, w: torch.tensor(
        macs_ratio(cin, cout, k, h, w), dtype=torch.float32))
    assert capsys.readouterr().out.count("✓") == 2  # one per check above


def test_a_ratio_off_by_a_real_mistake_still_fails(capsys):
    # the pointwise conv's cost forgotten: 1/k^2, far outside float32 rounding
    assert not check_macs_ratio(lambda cin, cout, k, h, w: np.float32(1 / k ** 2))
    assert "depthwise conv alone" in capsys.readouterr().out


def test_normalise_with_the_pages_rounded_constants_passes(capsys):
    # cnnlab.data's MEAN 0.13066... and STD 0.30810... as the page prints them.
    assert check_normalise(lambda x: ((x.float() / 255 - 0.1307) / 0.3081).unsqueeze(1))
    assert capsys.readouterr().out == "✓ normalise: passed\n"


def test_normalise_written_as_one_division_passes(capsys):
    from cnnlab.data import MEAN, STD
    assert check_normalise(lambda x: ((x.float() - 255 * MEAN) / (255 * STD))[:, None])
    assert capsys.readouterr().out == "✓ normalise: passed\n"


def test_normalise_with_half_and_half_still_fails(capsys):
    assert not check_normalise(lambda x: ((x.float() / 255 - 0.5) / 0.5).unsqueeze(1))
    assert "a black pixel (0) should become" in capsys.readouterr().out


def test_an_endless_batch_generator_is_stopped_at_once(capsys):
    def batches(images, labels, batch_size, generator):
        order = torch.randperm(len(labels), generator=generator)
        while True:  # forgot to stop after the last slice
            for start in range(0, len(labels), batch_size):
                idx = order[start:start + batch_size]
                yield images[idx], labels[idx]

    start = time.perf_counter()
    assert not check_batches(batches)
    # Well under the checkers' 30 s limit: stopped by counting, not by the clock.
    assert time.perf_counter() - start < 10
    # The checker's first case: 1,000 examples (as in test_exercises_data.py).
    assert "more than the 1000 examples of one epoch" in capsys.readouterr().out


def test_an_answer_that_never_returns_is_stopped_after_the_limit(capsys):
    def spin():
        while True:
            try:
                sum(range(1000))
            except Exception:  # a learner's catch-all must not keep it alive
                pass

    start = time.perf_counter()
    assert run_check("spin", spin, seconds=0.5) is False
    assert time.perf_counter() - start < 5  # 0.5 s, and a wide margin for a busy machine
    assert "still running after 0.5 s" in capsys.readouterr().out


def test_without_a_limit_a_slow_check_runs_to_the_end(capsys):
    assert run_check("slow", lambda: time.sleep(0.3), seconds=None) is True
    with time_limit(None):
        time.sleep(0.01)
    assert "✓ slow: passed" in capsys.readouterr().out


def test_the_limit_is_lifted_after_the_check():
    assert run_check("quick", lambda: None, seconds=0.2)
    time.sleep(0.4)  # twice the limit: no alarm left behind to fire here


def test_the_training_check_scores_on_validation_not_test(monkeypatch, capsys):
    from cnnlab.exercises import factors

    def spy(model, split, **kwargs):
        # The check runs in a child process: the spy reports in what it prints.
        print(f"scored on the validation split: {torch.equal(split.labels, data.val.labels)}")
        return 0.0, 1.0

    monkeypatch.setattr(factors, "evaluate", spy)
    monkeypatch.setattr(factors, "EPOCHS", 0)  # no training: only the scoring
    data = factors.load_mnist()
    assert factors.check_lenet_98_5(lambda: get_model("lenet"),
                                    lambda p, s, e: (torch.optim.SGD(p, lr=0.1), None))
    out = capsys.readouterr().out
    assert out.count("scored on") == 1  # once, and on validation, not data.test
    assert "scored on the validation split: True" in out


# --- the residual block, output for output ----------------------------------

class _Block(nn.Module):
    """A basic block whose forward can be made wrong in the ways learners do."""

    def __init__(self, cin, cout, stride=1, relu_mid=True, relu_end_of_f=False,
                 relu_before_add=False):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.proj = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                   nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())
        self.flags = (relu_mid, relu_end_of_f, relu_before_add)

    def forward(self, x):
        relu_mid, relu_end_of_f, relu_before_add = self.flags
        out = self.bn1(self.conv1(x))
        out = self.bn2(self.conv2(torch.relu(out) if relu_mid else out))
        if relu_end_of_f:
            out = torch.relu(out)
        if relu_before_add:
            return torch.relu(out) + self.proj(x)
        return torch.relu(out + self.proj(x))


def _variant(**flags):
    return lambda cin, cout, stride=1: _Block(cin, cout, stride, **flags)


def test_a_right_block_written_differently_passes(capsys):
    from cnnlab.exercises.resnet import check_basic_block
    assert check_basic_block(_variant())
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize("flags", [{"relu_mid": False}, {"relu_end_of_f": True}],
                         ids=["no ReLU between the convs", "a ReLU at the end of F"])
def test_a_block_with_a_misplaced_relu_is_rejected_by_its_outputs(flags, capsys):
    from cnnlab.exercises.resnet import check_basic_block
    assert not check_basic_block(_variant(**flags))
    out = capsys.readouterr().out
    assert "output differs from the package's block" in out
    assert "conv1 -> bn1 -> ReLU -> conv2 -> bn2" in out


def test_a_bare_except_cannot_keep_an_endless_loop_alive(capsys):
    import sys

    def spin():
        n = 0
        while True:
            try:
                n += 1
            except:  # noqa: E722  (the learner's catch-all swallows the first stop)
                continue

    start = time.perf_counter()
    assert run_check("bare", spin, seconds=0.5) is False
    assert time.perf_counter() - start < 5  # 0.5 s, and a wide margin for a busy machine
    assert "still running after 0.5 s" in capsys.readouterr().out
    assert sys.gettrace() is None  # no tracer left behind in the notebook


def test_a_forgotten_return_is_named_not_called_not_done_yet(capsys):
    def macs_ratio(cin, cout, k, h, w):
        (k * k * cin + cin * cout) / (k * k * cin * cout)  # forgot `return`

    assert not check_macs_ratio(macs_ratio)
    assert "returned None" in capsys.readouterr().out


def test_a_conv_hint_names_a_slip_only_when_every_case_fits_it(capsys):
    # (n - k + 2p + 1) // s: +1 before dividing. For (224, 11, 4, 2) it equals the
    # "padding once" slip by chance; it must not be told about padding.
    assert not check_conv_output_size(
        lambda n, k, stride=1, padding=0: (n - k + 2 * padding + 1) // stride)
    out = capsys.readouterr().out
    assert "BOTH sides" not in out and "n_out = floor((n - k + 2p) / s) + 1" in out
    assert not check_conv_output_size(lambda n, k, stride=1, padding=0: (n - k + padding) // stride + 1)
    assert "padding adds p pixels on BOTH sides" in capsys.readouterr().out


def test_a_pool_that_rounds_up_is_not_sent_to_bug_1(capsys):
    def flatten_size(size, padding=0):
        side = size + 2 * padding
        for _ in range(2):
            side = math.ceil((side - 4) / 2)
        return 16 * side * side

    assert not check_flatten_size(flatten_size)
    out = capsys.readouterr().out
    assert "paper's value for 32x32" not in out and "rounds down" in out


def test_a_block_whose_shortcut_bn_is_created_before_its_conv_passes(capsys):
    from cnnlab.exercises.resnet import check_basic_block

    class Block(nn.Module):
        def __init__(self, cin, cout, stride=1):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.project = stride != 1 or cin != cout
            if self.project:
                self.short_bn = nn.BatchNorm2d(cout)  # created first, applied second
                self.short_conv = nn.Conv2d(cin, cout, 1, stride, bias=False)

        def forward(self, x):
            s = self.short_bn(self.short_conv(x)) if self.project else x
            return torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))) + s)

    assert check_basic_block(Block)
    assert "✓" in capsys.readouterr().out


def _tracer(eval_mode=True, restore="as found", finally_block=True):
    """A shape tracer with the learner's possible slips switched on."""
    def trace(model, size):
        records, handles = [], []
        was_training = model.training
        for name, m in model.named_modules():
            if next(m.children(), None) is None:
                handles.append(m.register_forward_hook(
                    lambda mod, i, o, name=name: records.append((name, tuple(o.shape[1:])))))
        if eval_mode:
            model.eval()

        def cleanup():
            for h in handles:
                h.remove()
            model.train(was_training if restore == "as found" else True)

        channels = getattr(model, "input_shape", (1,))[0]
        if finally_block:
            try:
                with torch.no_grad():
                    model(torch.zeros(1, channels, size, size))
            finally:
                cleanup()
        else:
            with torch.no_grad():
                model(torch.zeros(1, channels, size, size))
            cleanup()
        return records
    return trace


@pytest.mark.parametrize("slip, message", [
    ({"eval_mode": False}, "running statistics"),
    # The slip: train() at the end whatever the mode, named as such.
    ({"restore": "always train"}, "given get_model('lenet') in eval mode and left it in "
                                  "train mode: you call model.train() at the end"),
    ({"finally_block": False}, "in a finally: block"),
])
def test_the_trace_checker_catches_every_way_of_not_leaving_the_model_as_found(
        slip, message, capsys):
    from cnnlab.exercises.lenet import check_trace
    assert check_trace(_tracer())  # the right tracer passes
    capsys.readouterr()
    assert not check_trace(_tracer(**slip))
    assert message in capsys.readouterr().out


def test_a_memory_total_too_big_is_told_to_count_less(capsys):
    from exercise_cells import exercise_namespace

    from cnnlab.exercises.factors import check_training_memory

    right = exercise_namespace("solutions", "08_factors.ipynb")["training_memory_bytes"]

    def doubled(model, batch_size):  # "x2 for the backward pass"
        parts = dict(right(model, batch_size))
        parts["activations_bytes"] *= 2
        return parts

    assert not check_training_memory(doubled)
    out = capsys.readouterr().out
    assert "too much: count each saved storage once" in out and "too little" not in out
