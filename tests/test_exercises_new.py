"""The newer checkers: receptive fields (chapter 2), batch normalization by
hand (chapter 4) and which bug a message means (chapter 9). Each passes its
solution, calls its stub not done yet, rejects the wrong answers learners
write with a hint that names the mistake, and accepts right answers
written differently."""
import pytest
import torch
from exercise_cells import exercise_namespace
from torch import nn

from cnnlab.exercises.lenet import check_receptive_field
from cnnlab.exercises.resnet import check_batch_norm
from cnnlab.exercises.troubleshooting import cases, check_which_bug

CASES = [("02_lenet.ipynb", "receptive_field", check_receptive_field),
         ("04_resnet.ipynb", "batch_norm", check_batch_norm),
         ("08_troubleshooting.ipynb", "which_bug", check_which_bug)]


@pytest.mark.parametrize("notebook,name,check", CASES, ids=[n for _, n, _ in CASES])
def test_passes_the_solution_and_not_the_stub(notebook, name, check, capsys):
    assert check(exercise_namespace("solutions", notebook)[name]) is True
    assert capsys.readouterr().out == f"✓ {name}: passed\n"
    assert check(exercise_namespace("exercises", notebook)[name]) is False
    assert f"… {name}: not done yet" in capsys.readouterr().out


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


# --- batch_norm -----------------------------------------------------------------

def _bn(unbiased_running=True, unbiased_norm=False, momentum_on_old=False, update=True,
        eval_uses_batch=False, per_tensor=False):
    # PyTorch's BatchNorm2d defaults: momentum 0.1 on the new batch, eps 1e-5.
    def batch_norm(x, gamma, beta, running_mean, running_var, training):
        shape, dims = (1, -1, 1, 1), (0, 2, 3)
        if training or eval_uses_batch:
            n = x.numel() // x.shape[1]
            if per_tensor:
                mean = x.mean().expand(x.shape[1])
                var = x.var(unbiased=False).expand(x.shape[1])
            else:
                mean = x.mean(dims)
                var = x.var(dims, unbiased=False)
            var_running = var * n / (n - 1) if unbiased_running else var
            if unbiased_norm:
                var = var * n / (n - 1)
            if training and update:
                a, b = (0.1, 0.9) if momentum_on_old else (0.9, 0.1)
                running_mean.mul_(a).add_(b * mean)
                running_var.mul_(a).add_(b * var_running)
        else:
            mean, var = running_mean, running_var
        return (gamma.view(shape) * (x - mean.view(shape)) / torch.sqrt(var.view(shape) + 1e-5)
                + beta.view(shape))
    return batch_norm


def test_batch_norm_written_with_functional_batch_norm_passes(capsys):
    def via_functional(x, gamma, beta, running_mean, running_var, training):
        return torch.nn.functional.batch_norm(x, running_mean, running_var, gamma, beta,
                                              training=training)

    assert check_batch_norm(via_functional)
    assert check_batch_norm(_bn())
    assert capsys.readouterr().out.count("✓") == 2  # one per answer above


@pytest.mark.parametrize("slip, hint", [
    ({"unbiased_running": False}, "running_var must be updated with the UNBIASED"),
    ({"unbiased_norm": True}, "normalise with the BIASED batch variance"),
    ({"momentum_on_old": True}, "the momentum weighs the NEW batch"),
    ({"update": False}, "update running_mean and running_var in place"),
    ({"per_tensor": True}, "one mean and one variance PER CHANNEL"),
    ({"eval_uses_batch": True}, "In eval mode normalise with running_mean"),
])
def test_batch_norm_slips_get_a_hint_that_names_them(slip, hint, capsys):
    assert not check_batch_norm(_bn(**slip))
    out = capsys.readouterr().out
    assert hint in out and out.count("\n") == 1


# --- which_bug ------------------------------------------------------------------

def test_every_kind_is_produced_live_at_least_twice():
    kinds = [kind for _, kind in cases()]
    assert all(kinds.count(k) >= 2 for k in ("flatten", "shortcut", "memory",
                                            "input too small"))
    messages = [m for m, _ in cases()]
    assert len(set(messages)) == len(messages)  # different numbers each time


def test_matching_on_the_word_size_confuses_two_kinds(capsys):
    def by_size(message):
        if "size" in message:
            return "shortcut"
        return "memory" if "memory" in message else "flatten"

    assert not check_which_bug(by_size)
    out = capsys.readouterr().out
    assert "but it is 'input too small'" in out and "Output size is too small" in out
    assert out.count("\n") == 1


def test_matching_one_messages_numbers_does_not_pass(capsys):
    def by_numbers(message):
        return "flatten" if "128x256" in message else "shortcut"

    assert not check_which_bug(by_numbers)
    assert "but it is 'flatten'" in capsys.readouterr().out


def test_a_regex_answer_written_differently_passes(capsys):
    import re

    patterns = {"flatten": r"mat1 and mat2", "shortcut": r"must match the size",
                "memory": r"(?i)out of memory|can't allocate", "input too small": r"too small"}

    def by_regex(message):
        return next(k for k, p in patterns.items() if re.search(p, message))

    assert check_which_bug(by_regex)
    assert "✓" in capsys.readouterr().out


# --- largest_batch ----------------------------------------------------------------

def test_largest_batch_passes_the_solution_and_not_the_stub(capsys):
    from cnnlab.exercises.troubleshooting import check_largest_batch

    assert check_largest_batch(exercise_namespace("solutions", "08_troubleshooting.ipynb")
                               ["largest_batch"])
    assert check_largest_batch(exercise_namespace("exercises", "08_troubleshooting.ipynb")
                               ["largest_batch"]) is False
    out = capsys.readouterr().out
    assert "✓ largest_batch: passed" in out and "… largest_batch: not done yet" in out


def _linear(model, budget):
    """A right answer written differently: solve the linear growth from two estimates."""
    from cnnlab.memory import estimate_training_memory

    one, two = (estimate_training_memory(model, b).total for b in (1, 2))
    per_image, fixed = two - one, one - (two - one)
    return max(0, (budget - fixed) // per_image)


def _first_that_does_not_fit(model, budget):
    return _linear(model, budget) + 1


def _powers_of_two(model, budget):
    from cnnlab.memory import estimate_training_memory

    batch = 1
    while estimate_training_memory(model, 2 * batch).total <= budget:
        batch *= 2
    return batch if estimate_training_memory(model, batch).total <= budget else 0


def test_largest_batch_from_the_linear_growth_passes(capsys):
    from cnnlab.exercises.troubleshooting import check_largest_batch
    assert check_largest_batch(_linear)
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (_first_that_does_not_fit, "return the largest batch that fits, not the first"),
    (_powers_of_two, "any batch size counts, not only powers of two"),
    # the first case, alexnet_large in the report's 2 GiB, fits more than 128
    (lambda model, budget: 128, "but a batch of 129 fits too"),
])
def test_largest_batch_rejects_the_usual_slips(wrong, hint, capsys):
    from cnnlab.exercises.troubleshooting import check_largest_batch
    assert not check_largest_batch(wrong)
    out = capsys.readouterr().out
    assert hint in out and out.count("\n") == 1


# --- recompute_bn_stats -------------------------------------------------------------

def _recompute(reset=True, cumulative=True, train_mode=True, restore=True, step=False):
    def recompute_bn_stats(model, batches):
        was_training = model.training
        bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        momenta = [bn.momentum for bn in bns]
        for bn in bns:
            if reset:
                bn.reset_running_stats()
            if cumulative:
                bn.momentum = None
        model.train(train_mode)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for x in batches:
            if step:  # a training step slipped in
                model(x).sum().backward()
                optimizer.step()
            else:
                with torch.no_grad():
                    model(x)
        for bn, m in zip(bns, momenta):
            bn.momentum = m
        if restore:
            model.train(was_training)
    return recompute_bn_stats


def test_recompute_bn_passes_the_solution_and_update_bn_itself(capsys):
    from torch.optim.swa_utils import update_bn

    from cnnlab.exercises.mobilenet import check_recompute_bn

    solution = exercise_namespace("solutions", "05_mobilenet.ipynb")["recompute_bn_stats"]
    stub = exercise_namespace("exercises", "05_mobilenet.ipynb")["recompute_bn_stats"]
    assert check_recompute_bn(solution)
    assert check_recompute_bn(lambda model, batches: update_bn(batches, model))
    assert not check_recompute_bn(stub)
    out = capsys.readouterr().out
    assert out.count("✓ recompute_bn_stats: passed") == 2 and "not done yet" in out


@pytest.mark.parametrize("slip, hint", [
    ({"cumulative": False}, "the last batches dominate"),
    ({"reset": False}, "the stale values stay in the average"),
    # the checker's 5 batches, each keeping 1 - 0.1 (the default momentum) of the old
    ({"reset": False, "cumulative": False}, "still weigh 0.9^5"),
    ({"train_mode": False}, "only in training mode"),
    ({"restore": False}, "left it in training mode"),
    ({"step": True}, "changed"),
])
def test_recompute_bn_slips_get_a_hint_that_names_them(slip, hint, capsys):
    from cnnlab.exercises.mobilenet import check_recompute_bn

    assert not check_recompute_bn(_recompute(**slip))
    out = capsys.readouterr().out
    assert hint in out and out.count("\n") == 1


# --- zero_pad_shortcut and lrn --------------------------------------------------------

def test_zero_pad_shortcut_and_lrn_pass_their_solutions_not_their_stubs(capsys):
    from cnnlab.exercises.alexnet import check_lrn
    from cnnlab.exercises.resnet import check_zero_pad_shortcut

    for notebook, name, check in (("04_resnet.ipynb", "zero_pad_shortcut", check_zero_pad_shortcut),
                                  ("03_alexnet.ipynb", "lrn", check_lrn)):
        assert check(exercise_namespace("solutions", notebook)[name])
        assert not check(exercise_namespace("exercises", notebook)[name])
    out = capsys.readouterr().out
    assert out.count("passed") == 2 and out.count("not done yet") == 2  # two checks


def test_zeros_before_the_input_channels_are_option_a_too(capsys):
    from cnnlab.exercises.resnet import check_zero_pad_shortcut

    def zeros_first(x, cout, stride):
        kept = x[:, :, ::stride, ::stride]
        return torch.nn.functional.pad(kept, (0, 0, 0, 0, cout - x.shape[1], 0))

    assert check_zero_pad_shortcut(zeros_first)
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (lambda x, cout, s: torch.cat([torch.nn.functional.avg_pool2d(x, s, s, ceil_mode=True),
                                   x.new_zeros(x.shape[0], cout - x.shape[1],
                                               -(-x.shape[2] // s), -(-x.shape[3] // s))], 1),
     "you averaged the pixels"),
    (lambda x, cout, s: torch.cat([x[:, :, 1::s, 1::s], x.new_zeros(
        x.shape[0], cout - x.shape[1], x[:, :, 1::s, 1::s].shape[2], x[:, :, 1::s, 1::s].shape[3])], 1),
     "you kept the odd pixels"),
    (lambda x, cout, s: torch.cat([x[:, :, ::s, ::s]] * (cout // x.shape[1]), 1),
     "extra channels must be zeros"),
    (lambda x, cout, s: torch.nn.functional.pad(x, (0, 0, 0, 0, 0, cout - x.shape[1])),
     "expected"),
])
def test_zero_pad_shortcut_slips(wrong, hint, capsys):
    from cnnlab.exercises.resnet import check_zero_pad_shortcut
    assert not check_zero_pad_shortcut(wrong)
    out = capsys.readouterr().out
    assert hint in out and out.count("\n") == 1


# Krizhevsky et al. 2012, section 3.3: k = 2, n = 5, alpha = 1e-4, beta = 0.75.
def test_lrn_with_pytorchs_alpha_convention_is_named(capsys):
    from cnnlab.exercises.alexnet import check_lrn

    def pytorch_alpha(a, size=5, alpha=1e-4, beta=0.75, k=2.0):
        return torch.nn.LocalResponseNorm(size, alpha=alpha, beta=beta, k=k)(a)

    assert not check_lrn(pytorch_alpha)
    assert "you divided alpha by the window size" in capsys.readouterr().out


def test_lrn_written_with_pytorchs_layer_and_the_right_alpha_passes(capsys):
    from cnnlab.exercises.alexnet import check_lrn

    def via_layer(a, size=5, alpha=1e-4, beta=0.75, k=2.0):
        return torch.nn.LocalResponseNorm(size, alpha=alpha * size, beta=beta, k=k)(a)

    assert check_lrn(via_layer)
    assert "✓" in capsys.readouterr().out


def test_lrn_without_the_neighbours_is_told_about_the_window(capsys):
    from cnnlab.exercises.alexnet import check_lrn
    assert not check_lrn(lambda a, size=5, alpha=1e-4, beta=0.75, k=2.0:
                         a / (k + alpha * a ** 2) ** beta)
    assert "the sum runs over the neighbouring channels" in capsys.readouterr().out


# --- slow_start (trains LeNet: a few seconds) -------------------------------------------

def test_slow_start_passes_the_solution_and_a_hand_written_average(capsys):
    from cnnlab.exercises.lenet import check_slow_start
    from cnnlab.train import TrainConfig, fit

    solution = exercise_namespace("solutions", "02_lenet.ipynb")["slow_start"]
    assert check_slow_start(solution)

    # The exercise's run and rule: 300 steps; the first step whose last 20
    # losses average under 2.0 (chance, ln 10, is 2.30).
    def by_hand(activation):  # a strict 20-step window, written out
        losses = fit(TrainConfig(model="lenet", options={"activation": activation},
                                 max_steps=300, eval_every=300, val_images=1_000,
                                 test_images=1_000, device="cpu"), progress=False).train_loss
        for step in range(20, len(losses) + 1):
            if sum(losses[step - 20:step]) / 20 < 2.0:
                return step
        return None

    assert check_slow_start(by_hand)
    assert capsys.readouterr().out.count("✓ slow_start: passed") == 2


def test_slow_start_rejects_the_stub_a_guess_and_an_off_by_one(capsys):
    from cnnlab.exercises.lenet import check_slow_start

    solution = exercise_namespace("solutions", "02_lenet.ipynb")["slow_start"]
    assert not check_slow_start(exercise_namespace("exercises", "02_lenet.ipynb")["slow_start"])
    assert "not done yet" in capsys.readouterr().out
    assert not check_slow_start(lambda activation: 100)
    assert "average the last 20 training losses" in capsys.readouterr().out
    assert not check_slow_start(lambda activation: solution(activation) - 1)
    assert "count steps from 1" in capsys.readouterr().out
