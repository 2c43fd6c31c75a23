"""cnnlab.architecture: diagrams drawn from the model object add up to the model."""
import pytest

from cnnlab import architecture, explore
from cnnlab.models import count_parameters, get_model


@pytest.mark.parametrize("name", ["lenet", "alexnet", "resnet18", "mobilenet_v1", "googlenet"])
def test_architecture_units_add_up_to_the_model(name):
    """The boxes hold every parameter once and end on the 10 logits."""
    model = get_model(name)
    units = architecture.architecture_units(model)
    assert sum(u.parameters for u in units) == count_parameters(model)
    assert units[0].output_shape == (1, 28, 28)
    assert units[-1].output_shape == (10,)
    # Every box's shape is one the leaf-layer shape trace also sees, except an
    # Inception module's: it concatenates its branches, which no leaf outputs.
    traced = {r.output_shape for r in explore.layer_table(model, 28)}
    assert all(u.output_shape in traced for u in units[1:] if u.label != "Inception")


def test_lenet_diagram_reads_like_the_paper():
    """Activations, flatten and friends fold into the box before them."""
    units = architecture.architecture_units(get_model("lenet"))
    # 28 -conv5-> 24 -pool-> 12 -conv5-> 8 -pool-> 4, and 16 * 4 * 4 = 256.
    assert [(u.label, u.output_shape) for u in units] == [
        ("28 px image", (1, 28, 28)),
        ("conv 5x5 + sigmoid", (6, 24, 24)), ("max-pool 2x2 /2", (6, 12, 12)),
        ("conv 5x5 + sigmoid", (16, 8, 8)), ("max-pool 2x2 /2 + flatten", (256,)),
        ("linear + sigmoid", (120,)), ("linear + sigmoid", (84,)), ("linear", (10,))]


def test_blocks_that_shrink_the_map_show_their_stride():
    labels = {u.name: u.label for u in architecture.architecture_units(get_model("resnet18"))}
    assert labels["layer2.0"] == "BasicBlock /2"
    assert labels["layer2.1"] == "BasicBlock"


def test_unexpanded_stages_are_one_box_each():
    units = architecture.architecture_units(get_model("resnet18"), expand=())
    labels = {u.name: u.label for u in units}
    assert labels["layer3"] == "2 x BasicBlock"
    assert labels["conv1"] == "conv 7x7 /2 + BN"
    # 56 px halved five times (stem, pool, layers 2-4), rounding up: 28, 14, 7, 4, 2.
    assert next(u for u in units if u.name == "layer4").output_shape == (512, 2, 2)


def test_architecture_figure_draws_one_box_per_unit():
    fig = architecture.architecture_figure("googlenet", per_row=8)
    ax = fig.axes[0]
    units = architecture.architecture_units(get_model("googlenet"))
    boxes = [p for p in ax.patches if type(p).__name__ == "FancyBboxPatch"]
    assert len(boxes) == len(units)
    # and the four-branch bar under each of the nine Inception modules (3a-b, 4a-e, 5a-b)
    bars = [p for p in ax.patches if type(p).__name__ == "Rectangle"]
    assert sum(1 for u in units if u.branches) == 9 and len(bars) == 9 * 4
    assert "GoogLeNet at 28 px" in ax.get_title()  # the book's name, not the id
    texts = {t.get_text() for t in ax.texts}
    # 4e: 256 + 320 + 128 + 128 = 832 channels, at 56 -> 28 -> 14 -> 7 -> 3 px.
    assert "inception4.4e" in texts and "832x3x3" in texts


def test_architecture_units_know_the_skips_and_branches():
    resnet = architecture.architecture_units(get_model("resnet18"))
    skips = {u.name: u.skip for u in resnet if u.skip}
    # 8 basic blocks; the first of stages 2-4 changes the shape: a projection
    assert len(skips) == 8
    assert [n for n, s in skips.items() if s == "projection"] == ["layer2.0", "layer3.0",
                                                                   "layer4.0"]
    googlenet = {u.name: u.branches for u in architecture.architecture_units(get_model("googlenet"))}
    # the paper's Table 1, module 3a: #1x1 64, #3x3 128, #5x5 32, pool proj 32
    assert googlenet["inception3.3a"] == (64, 128, 32, 32)
    assert sum(googlenet["inception5.5b"]) == 384 + 384 + 128 + 128  # 5b: 1024


def test_architecture_figure_draws_one_skip_arc_per_residual_block():
    fig = architecture.architecture_figure("resnet18")
    arcs = [t for t in fig.axes[0].texts if t.get_text() in ("+x", "+proj(x)")]
    assert len(arcs) == 8  # 4 stages x 2 basic blocks
