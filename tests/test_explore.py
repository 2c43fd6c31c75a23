"""The logic behind the explorer widgets."""
import pytest
import torch
from torch import nn
from torchinfo import summary

from cnnlab import explore
from cnnlab.models import count_parameters, get_model


@pytest.mark.parametrize("name", ["lenet", "mobilenet_v1", "resnet18", "googlenet"])
def test_layer_table_matches_torchinfo(name):
    """Per-layer mult-adds and parameters add up to torchinfo's totals (the oracle)."""
    model = get_model(name)
    rows = explore.layer_table(model, 28)
    info = summary(model, input_size=(1, 1, 28, 28), verbose=0)
    assert sum(r.mult_adds for r in rows) == info.total_mult_adds
    assert sum(r.parameters for r in rows) == count_parameters(model)


def test_layer_table_flags_collapsed_maps():
    rows = explore.layer_table("resnet18", 14)
    assert any("1x1" in r.warning for r in rows)
    assert not any("1x1" in r.warning for r in explore.layer_table("lenet", 28))


def test_global_pool_is_not_flagged():
    """A global average pool outputs 1x1 by design; only collapsed inputs are flagged."""
    # Without the x2 up-sampling, 224 px is the size ResNet was designed for.
    rows = {r.name: r for r in explore.layer_table(get_model("resnet18", upsample=1), 224)}
    assert rows["avgpool"].output_shape == (512, 1, 1)  # He et al. Table 1: conv5_x 512
    assert rows["avgpool"].warning == ""
    assert rows["layer4.1.conv2"].output_shape == (512, 224 // 32, 224 // 32)  # 5 halvings
    assert not any(r.warning for r in rows.values())


def test_lenet_accepts_only_28():
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        explore.layer_table("lenet", 32)
    assert explore.smallest_input("lenet", 20, 40) == 28  # its fc takes 16*4*4: 28 px only


def test_smallest_input_of_a_pooling_net():
    """A 3x3 conv (no padding) then a 2x2 pool needs at least 4 px."""
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Flatten())
    net.input_shape = (1, 28, 28)
    assert explore.smallest_input(net) == 4  # (4 - 2) // 2 = 1
    assert explore.smallest_input(net, min_map=2) == 6  # (6 - 2) // 2 = 2


def test_resnet_needs_more_pixels_for_2x2_maps():
    runs = explore.smallest_input("resnet18", 1, 64)
    keeps_2x2 = explore.smallest_input("resnet18", 1, 64, min_map=2)
    assert runs < keeps_2x2
    rows = explore.layer_table("resnet18", keeps_2x2)
    assert min(min(r.output_shape[1:]) for r in rows
               if len(r.output_shape) == 3 and r.kind != "AdaptiveAvgPool2d") >= 2


def test_confusion_matrix_and_most_confused():
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    predicted = torch.tensor([0, 1, 1, 2, 2, 2])
    cm = explore.confusion_matrix(predicted, labels, classes=3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 2], [0, 0, 1]]
    assert explore.most_confused(cm, 2) == [(1, 2, 2), (0, 1, 1)]


def test_misclassified_most_confident_first():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.7, 0.3]])
    labels = torch.tensor([0, 0, 0, 1])
    # Rows 1, 2 and 3 are wrong, with confidence 0.8, 0.6 and 0.7.
    assert explore.misclassified(probs, labels).tolist() == [1, 3, 2]


def test_predict_gives_probabilities(mnist):
    probs = explore.predict(get_model("lenet"), mnist.test.images[:50])
    assert probs.shape == (50, 10)
    assert torch.allclose(probs.sum(1), torch.ones(50), atol=1e-5)


def test_activations_and_filters(mnist):
    model = get_model("lenet")
    maps = explore.activations(model, "features.0", mnist.test.images[0])
    assert maps.shape == (6, 24, 24)  # C1: 6 maps of 28 - 5 + 1 px
    assert explore.first_layer_filters(model).shape == (6, 5, 5)
    fig = explore.feature_map_figure(maps, "C1")
    assert len(fig.axes) == 8  # one row of 8 columns (the default): 6 maps, 2 left blank


@pytest.mark.parametrize("name", ["lenet", "alexnet", "resnet18", "mobilenet_v1", "googlenet"])
def test_architecture_units_add_up_to_the_model(name):
    """The boxes hold every parameter once and end on the 10 logits."""
    model = get_model(name)
    units = explore.architecture_units(model)
    assert sum(u.parameters for u in units) == count_parameters(model)
    assert units[0].output_shape == (1, 28, 28)
    assert units[-1].output_shape == (10,)
    # Every box's shape is one the leaf-layer shape trace also sees, except an
    # Inception module's: it concatenates its branches, which no leaf outputs.
    traced = {r.output_shape for r in explore.layer_table(model, 28)}
    assert all(u.output_shape in traced for u in units[1:] if u.label != "Inception")


def test_lenet_diagram_reads_like_the_paper():
    """Activations, flatten and friends fold into the box before them."""
    units = explore.architecture_units(get_model("lenet"))
    # 28 -conv5-> 24 -pool-> 12 -conv5-> 8 -pool-> 4, and 16 * 4 * 4 = 256.
    assert [(u.label, u.output_shape) for u in units] == [
        ("28 px image", (1, 28, 28)),
        ("conv 5x5 + sigmoid", (6, 24, 24)), ("max-pool 2x2 /2", (6, 12, 12)),
        ("conv 5x5 + sigmoid", (16, 8, 8)), ("max-pool 2x2 /2 + flatten", (256,)),
        ("linear + sigmoid", (120,)), ("linear + sigmoid", (84,)), ("linear", (10,))]


def test_blocks_that_shrink_the_map_show_their_stride():
    labels = {u.name: u.label for u in explore.architecture_units(get_model("resnet18"))}
    assert labels["layer2.0"] == "BasicBlock /2"
    assert labels["layer2.1"] == "BasicBlock"


def test_unexpanded_stages_are_one_box_each():
    units = explore.architecture_units(get_model("resnet18"), expand=())
    labels = {u.name: u.label for u in units}
    assert labels["layer3"] == "2 x BasicBlock"
    assert labels["conv1"] == "conv 7x7 /2 + BN"
    # 56 px halved five times (stem, pool, layers 2-4), rounding up: 28, 14, 7, 4, 2.
    assert next(u for u in units if u.name == "layer4").output_shape == (512, 2, 2)


def test_architecture_figure_draws_one_box_per_unit():
    fig = explore.architecture_figure("googlenet", per_row=8)
    ax = fig.axes[0]
    units = explore.architecture_units(get_model("googlenet"))
    boxes = [p for p in ax.patches if type(p).__name__ == "FancyBboxPatch"]
    assert len(boxes) == len(units)
    # and the four-branch bar under each of the nine Inception modules (3a-b, 4a-e, 5a-b)
    bars = [p for p in ax.patches if type(p).__name__ == "Rectangle"]
    assert sum(1 for u in units if u.branches) == 9 and len(bars) == 9 * 4
    assert "googlenet" in ax.get_title()
    texts = {t.get_text() for t in ax.texts}
    # 4e: 256 + 320 + 128 + 128 = 832 channels, at 56 -> 28 -> 14 -> 7 -> 3 px.
    assert "inception4.4e" in texts and "832x3x3" in texts


def test_architecture_units_know_the_skips_and_branches():
    resnet = explore.architecture_units(get_model("resnet18"))
    skips = {u.name: u.skip for u in resnet if u.skip}
    # 8 basic blocks; the first of stages 2-4 changes the shape: a projection
    assert len(skips) == 8
    assert [n for n, s in skips.items() if s == "projection"] == ["layer2.0", "layer3.0",
                                                                   "layer4.0"]
    googlenet = {u.name: u.branches for u in explore.architecture_units(get_model("googlenet"))}
    # the paper's Table 1, module 3a: #1x1 64, #3x3 128, #5x5 32, pool proj 32
    assert googlenet["inception3.3a"] == (64, 128, 32, 32)
    assert sum(googlenet["inception5.5b"]) == 384 + 384 + 128 + 128  # 5b: 1024


def test_architecture_figure_draws_one_skip_arc_per_residual_block():
    fig = explore.architecture_figure("resnet18")
    arcs = [t for t in fig.axes[0].texts if t.get_text() in ("+x", "+proj(x)")]
    assert len(arcs) == 8  # 4 stages x 2 basic blocks


def test_predict_and_activations_leave_the_model_in_the_mode_they_found():
    import torch

    model = get_model("lenet").train()
    images = torch.zeros(3, 28, 28, dtype=torch.uint8)
    explore.predict(model, images)
    assert model.training  # they used to leave it in eval mode
    explore.activations(model, "features.0", images[0])
    assert model.training
    model.eval()
    explore.predict(model, images)
    assert not model.training
