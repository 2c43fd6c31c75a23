"""cnnlab.memory: the training-memory estimate, checked by hand and against torchinfo."""
import sys

import pytest
import torch
from torch import nn

from cnnlab.memory import (estimate_training_memory, on_meta, saved_activation_bytes,
                           torchinfo_estimate_bytes)
from cnnlab.models import count_parameters, get_model


@pytest.mark.parametrize("name", ["lenet", "resnet18"])
def test_parameters_and_gradients_are_four_bytes_each(name):
    model = get_model(name)
    est = estimate_training_memory(model, 8)
    assert est.parameters_bytes == 4 * count_parameters(model)
    assert est.gradients_bytes == est.parameters_bytes


def test_dtype_bytes_scales_the_parameter_parts():
    model = get_model("lenet")
    est = estimate_training_memory(model, 8, dtype_bytes=2)
    assert est.parameters_bytes == 2 * count_parameters(model)  # 2 bytes x 44,426


def test_adamw_keeps_two_numbers_per_parameter_sgd_none():
    model = get_model("lenet")
    adamw = estimate_training_memory(model, 8)
    assert adamw.optimizer_state_bytes == 2 * adamw.parameters_bytes
    assert estimate_training_memory(model, 8, optimizer="sgd").optimizer_state_bytes == 0


def test_total_is_the_sum_of_the_parts():
    est = estimate_training_memory(get_model("lenet"), 8)
    assert est.total == (est.parameters_bytes + est.gradients_bytes
                         + est.optimizer_state_bytes + est.activations_bytes)


@pytest.mark.parametrize("name", ["lenet", "resnet18"])
def test_activations_grow_linearly_with_the_batch(name):
    model = get_model(name)
    a8 = estimate_training_memory(model, 8).activations_bytes
    a16 = estimate_training_memory(model, 16).activations_bytes
    # Batch norm also saves per-channel statistics, which do not grow with
    # the batch: hence "about" twice (measured: 1.99999 for LeNet, 1.993 for ResNet-18).
    assert a16 / a8 == pytest.approx(2.0, rel=0.01)


def test_one_linear_layer_saves_exactly_its_input():
    # y = x W^T + b: the gradient of W needs x; the input needs no gradient,
    # so W is not saved; b's gradient needs nothing. Saved: x alone.
    model = nn.Linear(20, 5)
    batch, features = 3, 20
    x = torch.randn(batch, features)
    assert saved_activation_bytes(model, x) == batch * features * 4  # 240 bytes


def test_one_linear_layer_with_the_loss():
    # Cross-entropy = log_softmax then nll_loss. log_softmax saves its output
    # (B x C floats); nll_loss saves that same tensor (counted once), the
    # int64 targets (B x 8 bytes) and a float32 scalar, the total weight.
    batch, features, classes = 3, 20, 5
    est = estimate_training_memory(nn.Linear(features, classes), batch,
                                   input_size=(features,))
    expected = batch * features * 4 + batch * classes * 4 + batch * 8 + 4
    assert est.activations_bytes == expected  # 240 + 60 + 24 + 4 = 328


def test_meta_device_gives_the_same_estimate_as_the_cpu():
    assert (estimate_training_memory(on_meta("resnet18"), 16)
            == estimate_training_memory(get_model("resnet18"), 16))


def test_the_model_is_left_as_it_was():
    model = get_model("resnet18").eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.random.get_rng_state()
    estimate_training_memory(model, 4)
    assert not model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(rng, torch.random.get_rng_state())
    assert all(p.grad is None for p in model.parameters())


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown optimizer"):
        estimate_training_memory(get_model("lenet"), 8, optimizer="adagrad")
    with pytest.raises(ValueError, match="batch_size"):
        estimate_training_memory(get_model("lenet"), 0)


def test_torchinfo_counts_input_params_and_twice_the_parametrised_outputs():
    # What the module docstring says torchinfo 1.8 adds up, recomputed with
    # our own hooks: a change in torchinfo makes this fail.
    model, batch = get_model("lenet"), 16
    outputs = 0

    def hook(module, _inputs, output):
        nonlocal outputs
        if next(module.children(), None) is None and any(True for _ in module.parameters()):
            outputs += output.numel() * output.element_size()

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    x = torch.zeros(batch, 1, 28, 28)
    model(x)
    for h in handles:
        h.remove()
    # The input as torchinfo sizes it: sys.getsizeof of its storage, the
    # bytes plus the Python object's header.
    input_bytes = sys.getsizeof(x.untyped_storage())
    assert input_bytes >= batch * 28 * 28 * 4
    expected = input_bytes + 4 * count_parameters(model) + 2 * outputs
    assert torchinfo_estimate_bytes(model, batch) == expected


@pytest.mark.parametrize("name", ["alexnet", "alexnet_large", "googlenet"])
def test_torchinfo_is_below_where_memory_sits_outside_parametrised_layers(name):
    # AlexNet: its optimizer state and gradients (3 x 43-58 M parameters);
    # GoogLeNet: ReLUs, pools and concatenations torchinfo does not count.
    model = on_meta(name)
    # A chosen bar; measured ratios: 1.83 (alexnet), 1.64 (alexnet_large), 2.07 (googlenet).
    assert estimate_training_memory(model, 128).total > 1.5 * torchinfo_estimate_bytes(model, 128)


def test_torchinfo_is_no_upper_bound_for_conv_bn_relu_nets():
    # MobileNet: torchinfo counts each conv and batch-norm output twice,
    # four copies where autograd keeps about two.
    model = on_meta("mobilenet_v1")
    assert torchinfo_estimate_bytes(model, 128) > estimate_training_memory(model, 128).total


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v1"])
def test_estimate_matches_a_measured_training_step(name):
    # An independent measurement: PyTorch's MemTracker follows every tensor
    # allocated during a real step (forward with the previous gradients still
    # alive, as in cnnlab.train.fit, then backward and AdamW).
    mem_tracker = pytest.importorskip("torch.distributed._tools.mem_tracker")
    torch.manual_seed(0)
    model, batch = get_model(name), 16
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,))

    def step():
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # the optimizer state and the gradients now exist
    tracker = mem_tracker.MemTracker()
    tracker.track_external(model, opt, x, y)
    with tracker:
        step()
    peak = tracker.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"]
    estimate = estimate_training_memory(model, batch).total
    # A tolerance: measured within 0.1% for both models.
    assert estimate == pytest.approx(peak, rel=0.02)


def test_a_step_under_a_memory_cap_fails_for_real_and_fits_with_room():
    from cnnlab.memory import train_under_memory_cap

    # 1 MiB cannot hold LeNet's step at batch 128 (its first conv's output
    # alone is 128 x 6 x 24 x 24 x 4 bytes = 1.69 MiB); 1 GiB holds it easily.
    tight = train_under_memory_cap("lenet", 128, 2**20)
    assert tight["outcome"] == "failed" and tight["error"].startswith("RuntimeError")
    roomy = train_under_memory_cap("lenet", 128, 2**30)
    assert roomy == {"batch_size": 128, "outcome": "trained two steps", "error": None}


def test_on_meta_builds_the_registered_model_without_data():
    model = on_meta("resnet18", shortcut="zero_pad")
    assert all(p.device.type == "meta" for p in model.parameters())
    assert count_parameters(model) == 11_001_546  # the zero-pad count (DESIGN.md)
