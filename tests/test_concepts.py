"""The package helpers behind the chapters' concept sections: receptive
fields, per-layer gradient norms, and LeNet's activation option."""
import pytest
import torch
from torch import nn

from cnnlab.explore import gradient_norms
from cnnlab.models import count_parameters, get_model
from cnnlab.shapes import measured_receptive_field, receptive_fields


def test_lenet_receptive_fields_follow_the_recurrence():
    # size_out = size_in + (k - 1) * jump_in, jump_out = jump_in * stride, from (1, 1):
    # C1 5x5/1: 1 + 4*1 = 5 (jump 1); S2 2x2/2: 5 + 1*1 = 6 (jump 2);
    # C3 5x5/1: 6 + 4*2 = 14 (jump 2); S4 2x2/2: 14 + 1*2 = 16 (jump 4).
    fields = receptive_fields(get_model("lenet"))
    assert [(f.size, f.jump) for f in fields] == [(5, 1), (6, 2), (14, 2), (16, 4)]


@pytest.mark.parametrize("name", ["lenet", "alexnet"])
def test_the_recurrence_agrees_with_autograd(name):
    model = get_model(name)
    size = 28 if name == "lenet" else 56  # alexnet measured on its upsampled input
    if name == "alexnet":
        model = model.features  # its first layer sees the 56 px image
        model.input_shape = (1, 56, 56)
    for field in receptive_fields(model):
        if field.size <= size:
            assert measured_receptive_field(model, field.name, size) == field.size, field


def test_measuring_leaves_the_model_as_it_was():
    model = get_model("lenet").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    measured_receptive_field(model, "features.3")
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_gradient_norms_name_every_weight_layer_in_order_and_touch_nothing():
    torch.manual_seed(0)
    model = get_model("lenet").train()
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    norms = gradient_norms(model, x, y)
    assert list(norms) == ["features.0", "features.3", "classifier.1", "classifier.3",
                           "classifier.5"]
    assert all(v > 0 for v in norms.values())
    assert all(p.grad is None for p in model.parameters()) and model.training


def test_sigmoids_starve_the_first_layer_and_relus_do_not():
    # The measurement chapter 2 shows: at initialisation the sigmoid LeNet's
    # first conv gets a gradient hundreds of times smaller than its last layer
    # (each sigmoid scales the gradient by at most 1/4); the ReLU LeNet's
    # layers get gradients of the same order.
    torch.manual_seed(0)
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    ratios = {}
    for activation in ("sigmoid", "relu"):
        torch.manual_seed(42)
        norms = gradient_norms(get_model("lenet", activation=activation), x, y)
        ratios[activation] = norms["classifier.5"] / norms["features.0"]
    # Loose bars, an order of magnitude either side (measured: about 2,700 and 2.2).
    assert ratios["sigmoid"] > 100
    assert ratios["relu"] < 10


def test_the_relu_lenet_differs_only_in_its_activations():
    sigmoid, relu = get_model("lenet"), get_model("lenet", activation="relu")
    # 44,426: the report's count, derived layer by layer in test_models.py (LENET).
    assert count_parameters(sigmoid) == count_parameters(relu) == 44_426
    kinds = [type(m) for m in relu.modules() if not list(m.children())]
    assert nn.ReLU in kinds and nn.Sigmoid not in kinds
    with pytest.raises(ValueError, match="activation must be one of sigmoid, relu"):
        get_model("lenet", activation="tanh")


def test_mobilenet_width_multiplier_thins_every_layer():
    from cnnlab.models.mobilenet import thin

    full, half = get_model("mobilenet_v1"), get_model("mobilenet_v1", width=0.5)
    # width 1 is the package's network: 3,216,650, derived in test_models.py
    # (mobilenet_count) and the report's count.
    assert count_parameters(full) == 3_216_650
    convs = lambda m: [c.out_channels for c in m.modules() if isinstance(c, nn.Conv2d)]
    assert convs(half) == [thin(c, 0.5) for c in convs(full)] == [c // 2 for c in convs(full)]
    assert half.fc.in_features == int(1024 * 0.5)  # the last layer's 1024 channels, thinned
    with pytest.raises(ValueError, match="width"):
        get_model("mobilenet_v1", width=0)


def test_mobilenet_upsample_sets_the_input_size():
    from cnnlab.shapes import trace_shapes

    for upsample in (1, 2, 4):
        px = 28 * upsample
        first = trace_shapes(get_model("mobilenet_v1", upsample=upsample))[0]
        assert first.name == "upsample" and first.output_shape[1:] == (px, px)


def test_the_plain_net_has_no_shortcut_at_all():
    """shortcut="none": every block is relu(F(x)), nothing added back."""
    import torch.nn.functional as F

    from cnnlab.models.resnet import PlainBlock, resnet18
    plain, zero_pad = resnet18(shortcut="none"), resnet18(shortcut="zero_pad")
    blocks = [m for m in plain.modules() if isinstance(m, PlainBlock)]
    assert len(blocks) == 8  # 4 stages x 2 blocks, none of them residual
    # Option A's shortcut has no parameters either, so the counts match.
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(plain) == count(zero_pad)
    block = blocks[2].eval()  # the first block of layer2: it changes the shape
    x = torch.randn(2, 64, 14, 14)
    torch.testing.assert_close(block(x), F.relu(block.residual(x)))
    # and an identity-shaped block does not add x back either
    same = blocks[1].eval()
    assert not torch.allclose(same(x), F.relu(same.residual(x) + x))


def test_resnet34_has_the_papers_34_weight_layers():
    """Paper, Table 1: 34 layers = the 7x7 stem + 2 x (3 + 4 + 6 + 3) 3x3 convs + fc."""
    from cnnlab.models.resnet import resnet34
    for shortcut in ("none", "zero_pad"):  # neither adds a weight layer of its own
        model = resnet34(shortcut=shortcut)
        layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        assert len(layers) == 1 + 2 * (3 + 4 + 6 + 3) + 1


def test_train_losses_trains_in_place_on_the_same_batches_for_one_seed():
    from cnnlab.data import load_mnist
    from cnnlab.explore import train_losses
    train = load_mnist().train.head(640)

    def run(seed):
        torch.manual_seed(0)
        model = get_model("lenet", activation="relu")
        before = [p.clone() for p in model.parameters()]
        losses = train_losses(model, train, steps=10, batch_size=64, seed=seed)
        moved = any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
        return losses, moved

    first, moved = run(0)
    assert moved and len(first) == 10  # steps=10: one loss per step
    assert run(0)[0] == first          # same seed: same batches, same losses
    assert run(1)[0] != first          # another seed: another batch order
    assert sum(first[-3:]) < sum(first[:3])  # a ReLU LeNet learns in 10 steps
    with pytest.raises(ValueError, match="need 704 images"):  # 11 x 64 > 640
        train_losses(get_model("lenet"), train, steps=11, batch_size=64)
