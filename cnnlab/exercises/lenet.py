"""Checkers for the LeNet-5 exercises (chapter 2).

* ``check_flatten_size``: the learner's ``flatten_size(input_size, padding)``
  against the numel of the package LeNet's ``features`` output, measured.
* ``check_conv_output_size``: the learner's ``conv_output_size(size, kernel,
  stride, padding)`` against a real convolution's output (``F.conv2d``, what
  ``nn.Conv2d`` runs).
* ``check_trace``: the learner's forward-hook shape tracer against
  ``cnnlab.shapes.trace_shapes`` on three models.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from functools import cache
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import checker, expect, expect_equal, shown
from ._harness import as_count, equal, one_thread, plain_str, quiet_torch
from ..models import get_model
from ..shapes import receptive_fields, trace_shapes

CHAPTER = "chapter 2 (LeNet-5)"
NOTEBOOK = "02_lenet.ipynb"


# --- Exercise 1: flatten_size ----------------------------------------------

# (input_size, padding): MNIST, the paper's 32, odd sizes where the pooling
# rounds down, and padded inputs. All are large enough for the two stages.
FLATTEN_CASES = [(28, 0), (32, 0), (28, 2), (29, 0), (31, 0), (33, 0),
                 (16, 0), (20, 1), (36, 0), (64, 3), (27, 2)]


@cache
def _lenet_features() -> nn.Module:
    with quiet_torch():
        return get_model("lenet").features.eval()


def _measured_flatten(size: int, padding: int) -> int:
    """The oracle: run LeNet's conv/pool stages on a padded image and count."""
    with quiet_torch():
        x = F.pad(torch.zeros(1, 1, size, size), (padding,) * 4)
        return _lenet_features()(x).numel()


@checker("flatten_size", answers="flatten_size")
def check_flatten_size(flatten_size: Callable[..., int]) -> None:
    """Check ``flatten_size(input_size, padding=0)`` for LeNet's two conv/pool stages."""
    for size, padding in FLATTEN_CASES:
        call = f"flatten_size({size}, padding={padding})"
        expected = _measured_flatten(size, padding)  # first: the answer runs after
        got = flatten_size(size, padding=padding)
        got = as_count(got, call, "a size is a whole number: use // for the division")
        if got != expected:
            side = size + 2 * padding
            sides = [side]
            for _ in range(2):  # conv5 takes 4 pixels off, pool2 halves (rounding down)
                sides += [sides[-1] - 4, (sides[-1] - 4) // 2]
            hint = (f"the side goes {' -> '.join(map(str, sides))}, so the maps are "
                    f"16 x {sides[-1]} x {sides[-1]}")
            # The paper's value, and the learner gives it for MNIST itself: Bug 1.
            # (A pool that rounds up also gives 400 for some odd sizes.)
            if got == 400 and expected != 400 and flatten_size(28, padding=0) == 400:
                hint = ("400 = 16*5*5 is the paper's value for 32x32 inputs; "
                        + hint + f" (see {CHAPTER}, 'Bug 1: a LeNet written for "
                        f"32x32 images').")
            else:
                hint += (f"; padding adds 2*padding to the side first, each 5x5 conv "
                         f"takes 4 off, each 2x2 pool halves and rounds down (see "
                         f"{CHAPTER}, 'The shape trace').")
            expect_equal(call, expected, got, hint)


# --- Exercise 2: conv_output_size ------------------------------------------

# (size, kernel, stride, padding): LeNet's and AlexNet's layers, "same"
# padding, strides that do not divide evenly, a 1x1 conv.
CONV_CASES = [(28, 5, 1, 0), (28, 3, 1, 1), (224, 11, 4, 2), (56, 3, 2, 1),
              (7, 3, 2, 0), (28, 5, 2, 2), (27, 3, 2, 0), (13, 3, 1, 1),
              (6, 3, 2, 0), (10, 1, 1, 0), (9, 4, 3, 1), (32, 7, 2, 3)]


# Taken at import: an answer that patches nn.Conv2d.forward (or F.conv2d)
# cannot change the oracle's convolution.
_conv2d = F.conv2d


def _measured_conv(size: int, kernel: int, stride: int, padding: int) -> int:
    """The oracle: the side of a real convolution's output (what nn.Conv2d runs)."""
    with quiet_torch():
        out = _conv2d(torch.zeros(1, 1, size, size), torch.zeros(1, 1, kernel, kernel),
                      stride=stride, padding=padding)
        return out.shape[-1]


# The usual slips, each as the formula it amounts to, and what to tell the learner.
CONV_SLIPS = [
    (lambda n, k, s, p: (n - k + p) // s + 1,
     "padding adds p pixels on BOTH sides: n - k + 2p"),
    (lambda n, k, s, p: math.ceil((n - k + 2 * p) / s) + 1,
     "a window that does not fit is dropped: round the division DOWN (floor, //), not up"),
    (lambda n, k, s, p: (n - k + 2 * p) // s,
     "the first window position counts too: add 1 after dividing"),
]


def _conv_hint(conv_output_size: Callable[..., int]) -> str:
    """Name the slip the answer makes, if it matches one on every case.

    One wrong value can match several slips by chance ((224 - 11 + 2*2 + 1) // 4
    is also (224 - 11 + 2) // 4 + 1), so a slip is named only when its formula
    gives the learner's answer for all the cases.
    """
    for slip, hint in CONV_SLIPS:
        try:
            if all(conv_output_size(n, k, stride=s, padding=p) == slip(n, k, s, p)
                   for n, k, s, p in CONV_CASES):
                return hint
        except Exception:  # the answer fails on some case: no slip to name
            break
    return "n_out = floor((n - k + 2p) / s) + 1"


@checker("conv_output_size", answers="conv_output_size")
def check_conv_output_size(conv_output_size: Callable[..., int]) -> None:
    """Check ``conv_output_size(size, kernel, stride=1, padding=0)`` against nn.Conv2d."""
    for size, kernel, stride, padding in CONV_CASES:
        call = f"conv_output_size({size}, {kernel}, stride={stride}, padding={padding})"
        expected = _measured_conv(size, kernel, stride, padding)  # first: the answer runs after
        got = conv_output_size(size, kernel, stride=stride, padding=padding)
        got = as_count(got, call, "a size is a whole number: use // for the division")
        if got != expected:
            expect_equal(f"{call} (what nn.Conv2d gives)", expected, got,
                         _conv_hint(conv_output_size) + f"; see {CHAPTER}, 'The shape trace'.")


# --- Exercise 3: trace -----------------------------------------------------

class _SharedActivation(nn.Module):
    """A small 3-channel net that calls one ReLU module twice.

    A tracer that hooks leaf modules must record the ReLU at both calls, in
    the order they happen; one that walks the module list instead does not.
    """

    def __init__(self) -> None:
        super().__init__()
        self.input_shape = (3, 20, 20)
        self.conv1 = nn.Conv2d(3, 8, 3)
        self.act = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 4, 3, padding=1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 9 * 9, 10))

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.act(self.conv1(x)))  # (N, 8, 9, 9)
        return self.head(self.act(self.conv2(x)))


def _trace_cases() -> list[tuple[str, nn.Module, int]]:
    with quiet_torch():
        return [("get_model('lenet')", get_model("lenet"), 28),
                ("get_model('resnet18')", get_model("resnet18"), 28),
                ("a small 3-channel net that calls its ReLU twice",
                 _SharedActivation(), 20)]


def _hooks_left(model: nn.Module) -> int:
    # Private, but the only way to see hooks a handle was never removed for.
    return sum(len(m._forward_hooks) for m in model.modules())


def _as_records(got: object, what: str) -> list[tuple[str, tuple]]:
    expect(isinstance(got, list),
           f"trace on {what} returned a {type(got).__name__}; return a list of "
           f"(name, shape) pairs.")
    records = []
    for i, item in enumerate(got):
        expect(isinstance(item, (tuple, list)) and len(item) == 2
               and isinstance(item[0], str) and isinstance(item[1], (tuple, list)),
               f"trace on {what}: entry {i} is {shown(item)}; each entry should be a "
               f"(name, shape) pair, e.g. ('features.0', (6, 24, 24)).")
        records.append((plain_str(item[0]), tuple(int(s) for s in item[1])))
    return records


def _compare_traces(expected: list[tuple[str, tuple]], got: list[tuple[str, tuple]],
                    what: str, leaves: set[str]) -> None:
    containers = [name for name, _ in got if name not in leaves]
    expect(not containers,
           f"trace on {what} recorded modules that are not leaves: "
           f"{', '.join(repr(n) for n in dict.fromkeys(containers))}. Hook only the "
           f"modules with no children (next(m.children(), None) is None).")
    with_batch = [g for g, e in zip(got, expected) if g[1] == (1,) + e[1]]
    if with_batch:
        expect(False, f"trace on {what}: {with_batch[0][0]!r} has shape "
                      f"{with_batch[0][1]}; leave out the batch dimension "
                      f"(out.shape[1:]).")
    for i, (e, g) in enumerate(zip(expected, got)):
        expect(e == g,
               f"trace on {what}: entry {i} should be {e}, got {g}. Record every call "
               f"of every leaf module, in the order the forward pass makes them "
               f"(see {CHAPTER}, 'The shape trace').")
    expect_equal(f"number of entries for {what}", len(expected), len(got),
                 "one entry per call of a leaf module (a module called twice "
                 "appears twice)")


class _FailingNet(nn.Module):
    """A net whose forward pass fails after its first layer has run."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(5, 2)  # (2, 6, 6) maps cannot go into 5 inputs

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.conv(x))


@checker("trace", answers="trace")
def check_trace(trace: Callable[[nn.Module, int], list]) -> None:
    """Check ``trace(model, input_size)`` against ``cnnlab.shapes.trace_shapes``."""
    for what, model, size in _trace_cases():
        _check_trace_on(trace, what, model.train(), size)
    # A model in eval mode must stay in eval mode.
    _check_trace_on(trace, "get_model('lenet')", get_model("lenet").eval(), 28)
    _check_trace_fails_cleanly(trace)


def _check_trace_fails_cleanly(trace: Callable) -> None:
    # When the forward pass fails, the error reaches the caller, and the hooks
    # and the mode are still put back: the cleanup belongs in a finally: block.
    model = _FailingNet().train()
    try:
        trace(model, 8)
    except RuntimeError:
        pass
    left = _hooks_left(model)
    expect(left == 0,
           f"when the forward pass fails (a net whose second layer does not fit), your "
           f"trace left {left} forward hooks behind. Remove them in a finally: block, so "
           f"that they go even when the model raises.")
    expect(model.training,
           "when the forward pass fails, your trace left the model in eval mode; restore "
           "the mode in a finally: block too.")


def _check_trace_on(trace: Callable, what: str, model: nn.Module, size: int) -> None:
    was_training = model.training
    expected = [(r.name, r.output_shape) for r in trace_shapes(model, size)]
    leaves = {n for n, m in model.named_modules() if next(m.children(), None) is None}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    got = _as_records(trace(model, size), what)
    changed = [k for k, v in model.state_dict().items() if not equal(before[k], v)]
    expect(not changed,
           f"trace changed {len(changed)} of {what}'s buffers or weights (e.g. "
           f"{changed[:1]}): in training mode every BatchNorm updates its running "
           f"statistics with the zero input. Run the forward pass in eval mode "
           f"(model.eval()), then put the mode back.")
    _compare_traces(expected, got, what, leaves)
    left = _hooks_left(model)
    expect(left == 0,
           f"trace left {left} forward hooks on {what}; every later forward "
           f"pass would call them. Keep the handles that register_forward_hook "
           f"returns and call .remove() on each (in a finally: block).")
    if model.training != was_training:
        slip = ("you call model.train() at the end whatever the mode was" if model.training
                else "you switch it to eval mode and never back")
        expect(False, f"trace was given {what} in {'train' if was_training else 'eval'} "
                      f"mode and left it in {'train' if model.training else 'eval'} mode: "
                      f"{slip}. Put it back as it was (was_training = model.training first, "
                      f"model.train(was_training) last).")
    again = _as_records(trace(model, size), what)
    expect(again == got,
           f"a second trace of {what} gave {len(again)} entries, the first "
           f"{len(got)}: the first call left something behind on the model.")


# --- Exercise 4: receptive_field ---------------------------------------------

class _StridedChain(nn.Module):
    """Convolutions with strides and a pool: a stride earlier in the chain
    must widen every later layer's step (the jump)."""

    def __init__(self) -> None:
        super().__init__()
        self.input_shape = (1, 64, 64)
        self.layers = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.Conv2d(4, 4, 3),
                                    nn.MaxPool2d(3, 2), nn.Conv2d(4, 4, 5, stride=2),
                                    nn.Conv2d(4, 4, 1))


def _receptive_cases() -> list[tuple[str, nn.Module]]:
    # On the meta device: the answer reads kernel sizes and strides only, and
    # alexnet_large's 58 M parameters are not worth initialising for that.
    with torch.device("meta"):
        return [("get_model('lenet')", get_model("lenet")),
                ("get_model('alexnet_large').features", get_model("alexnet_large").features),
                ("a chain of strided convs and a pool", _StridedChain())]


@checker("receptive_field", answers="receptive_field")
def check_receptive_field(receptive_field: Callable[[nn.Module], list]) -> None:
    """Check ``receptive_field(model) -> [size per conv/pool layer]`` on three models."""
    for what, model in _receptive_cases():
        expected = [f.size for f in receptive_fields(model)]
        got = receptive_field(model)
        expect(isinstance(got, (list, tuple)),
               f"receptive_field on {what} returned a {type(got).__name__}; return a list "
               f"of sizes, one per conv or pool layer.")
        got = [as_count(v, f"receptive_field on {what}, entry {i}")
               for i, v in enumerate(got)]
        expect_equal(f"number of sizes for {what}", len(expected), len(got),
                     "one size per Conv2d, MaxPool2d or AvgPool2d, in the order "
                     "named_modules() gives them")
        if got == expected:
            continue
        layers = [m for m in model.modules()
                  if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d))]
        kernels = [m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
                   for m in layers]
        no_jump, size = [], 1
        for k in kernels:  # the slip: every layer adds k - 1 pixels, whatever the strides
            size += k - 1
            no_jump.append(size)
        if got == no_jump:
            hint = ("you added k - 1 pixels per layer, but after a stride-s layer two "
                    "neighbouring units are s times further apart in the input: add "
                    "(k - 1) * jump and multiply the jump by each layer's stride")
        else:
            hint = ("start from size 1 and jump 1; for each layer, size += (k - 1) * jump, "
                    "then jump *= stride")
        expect_equal(f"receptive fields of {what}", expected, got,
                     f"{hint}; see {CHAPTER}, 'How much of the digit each layer sees'.")


# --- Exercise 5: the slow start, measured --------------------------------------

SLOW_START_STEPS = 300
THRESHOLD, WINDOW = 2.0, 20
# The answer trains two 300-step LeNets (seconds each on one thread), and the
# oracle two more where the answer's runs cannot serve. Past this, it is stuck.
SLOW_START_SECONDS = 240


def _slow_start_config(activation: str):
    """The exercise's run, as its text gives it."""
    from ..train import TrainConfig

    return TrainConfig(model="lenet", options={"activation": activation},
                       max_steps=SLOW_START_STEPS, eval_every=SLOW_START_STEPS,
                       val_images=1_000, test_images=1_000, device="cpu")


@cache  # deterministic on one machine: train each oracle run once per process
def _losses(activation: str) -> tuple[float, ...]:
    """The training losses of the exercise's run, trained by the oracle.

    On one thread: a tiny net, where a second thread only adds waiting (on a
    busy 2-core CPU one thread ran these 300 steps 3 to 7 times faster).
    """
    from ..train import fit

    with torch.random.fork_rng(devices=[]), one_thread():
        return tuple(fit(_slow_start_config(activation), progress=False).train_loss)


@contextmanager
def _watching_runs() -> Iterator[list[tuple[object, tuple[float, ...]]]]:
    """Record the runs ``cnnlab.train.train`` makes meanwhile (``fit`` calls it):
    (config, training losses) for each run on the default data.

    The answer trains the exercise's run itself. When one of its runs has the
    exercise's config, its losses are the oracle's too (training is
    deterministic on one machine), and the check need not train them again:
    two runs instead of four. They are copied as the run ends, before the
    answer sees them.
    """
    from .. import train as training

    runs: list[tuple[object, tuple[float, ...]]] = []
    original = training.train

    def recorded(config, data=None, **kwargs):
        model, result = original(config, data, **kwargs)
        if data is None:
            runs.append((config, tuple(result.train_loss)))
        return model, result

    training.train = recorded
    try:
        yield runs
    finally:
        training.train = original


def _first_below(losses: tuple[float, ...], strict_window: bool) -> int | None:
    """The first step whose moving average of the last WINDOW losses is below THRESHOLD.

    ``strict_window`` counts only full windows (from step WINDOW on); otherwise
    the first steps average what exists so far, as ``cnnlab.plots.smooth`` does.
    """
    for step in range(WINDOW if strict_window else 1, len(losses) + 1):
        window = losses[max(0, step - WINDOW):step]
        if sum(window) / len(window) < THRESHOLD:
            return step
    return None


# Not quiet: the answer trains (autograd on); the check seeds and restores the RNG itself.
@checker("slow_start", answers="slow_start", seconds=SLOW_START_SECONDS, quiet=False)
def check_slow_start(slow_start: Callable[[str], int | None]) -> None:
    """Check ``slow_start(activation)`` against the same training runs (seconds)."""
    where = f"See {CHAPTER}, 'Why later networks use ReLU'."
    for activation in ("sigmoid", "relu"):
        call = f"slow_start({activation!r})"
        # Training seeds torch: keep the notebook's random state as it was.
        with torch.random.fork_rng(devices=[]), one_thread(), _watching_runs() as runs:
            got = slow_start(activation)
        config = _slow_start_config(activation)
        losses = next((run for seen, run in runs if seen == config), None)
        if losses is None:  # the answer trained some other run, or none: train ours
            losses = _losses(activation)
        right = {_first_below(losses, strict) for strict in (False, True)}
        if got is None:
            expect(right == {None}, f"{call} returned None, but the moving average falls "
                                    f"below {THRESHOLD} at step {min(right - {None})}. {where}")
            continue
        got = as_count(got, call)
        if got in right:
            continue
        if got in {r - 1 for r in right if r}:  # the step's index, counted from 0
            hint = "count steps from 1 (enumerate(averages, start=1))"
        elif got in {r + 1 for r in right if r}:
            hint = ("return the step at which the average first drops below the "
                    "threshold, not the step after it")
        else:
            hint = (f"train with the TrainConfig given above, average the last {WINDOW} "
                    f"training losses at each step, and return the first step below "
                    f"{THRESHOLD}")
        expect_equal(call, min(right), got, hint + f". {where}")
