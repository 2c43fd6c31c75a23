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


def test_lenet_accepts_only_28():
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        explore.layer_table("lenet", 32)
    assert explore.smallest_input("lenet", 20, 40) == 28


def test_smallest_input_of_a_pooling_net():
    """A 3x3 conv (no padding) then a 2x2 pool needs at least 4 px."""
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Flatten())
    net.input_shape = (1, 28, 28)
    assert explore.smallest_input(net) == 4
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
    assert explore.misclassified(probs, labels).tolist() == [1, 3, 2]


def test_predict_gives_probabilities(mnist):
    probs = explore.predict(get_model("lenet"), mnist.test.images[:50])
    assert probs.shape == (50, 10)
    assert torch.allclose(probs.sum(1), torch.ones(50), atol=1e-5)


def test_activations_and_filters(mnist):
    model = get_model("lenet")
    maps = explore.activations(model, "features.0", mnist.test.images[0])
    assert maps.shape == (6, 24, 24)
    assert explore.first_layer_filters(model).shape == (6, 5, 5)
    fig = explore.feature_map_figure(maps, "C1")
    assert len(fig.axes) == 8


@pytest.mark.parametrize("name", ["lenet", "resnet18", "googlenet"])
def test_architecture_figure_is_drawn_from_the_model(name):
    model = get_model(name)
    stages = explore._stage_shapes(model, 28)
    assert [s[0] for s in stages] == [n for n, _ in model.named_children()
                                      if n in {s[0] for s in stages}]
    assert sum(s[2] for s in stages) == count_parameters(model)
    fig = explore.architecture_figure(name)
    assert name in fig.axes[0].get_title()
