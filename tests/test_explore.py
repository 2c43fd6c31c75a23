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


def test_smallest_input_markdown_reads_both_searches():
    table = explore.smallest_input_markdown(["lenet", "resnet18"], 1, 64)
    # LeNet's flatten takes 16*4*4 only: 28 px for both searches. ResNet-18
    # (x2 upsampled) runs from 1 px; its maps stay 2x2 from 17 px: 34, 17, 9,
    # 5, 3, 2 after the upsampling, the stem, the pool and the three halvings.
    assert "| `lenet` | 28 px | 28 px |" in table
    assert "| `resnet18` | 1 px | 17 px |" in table
    assert "| `lenet` | over 20 px | over 20 px |" in explore.smallest_input_markdown(
        ["lenet"], 1, 20)


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


def test_most_confused_lists_ties_in_class_order():
    cm = torch.zeros(4, 4, dtype=torch.long)
    cm[3, 0] = cm[1, 2] = cm[2, 1] = 5  # three pairs tied at 5
    cm[0, 3] = 7
    assert explore.most_confused(cm, 4) == [(0, 3, 7), (1, 2, 5), (2, 1, 5), (3, 0, 5)]


def test_confused_markdown_gives_each_pair_the_other_way_round():
    labels = torch.tensor([5] * 12 + [3] * 9 + [9] * 2)
    predicted = torch.tensor([3] * 12 + [5] * 9 + [9] * 2)
    table = explore.confused_markdown(explore.confusion_matrix(predicted, labels), 2)
    rows = table.splitlines()[2:]
    assert rows == ["| 5 | 3 | 12 | 9 (3 read as 5) |", "| 3 | 5 | 9 | 12 (5 read as 3) |"]
    right = explore.confusion_matrix(labels, labels)
    assert explore.confused_markdown(right) == "No test digit is misread."


def test_confused_markdown_keeps_every_pair_tied_with_the_kth():
    # LeNet seed 42's five largest: 5->3 and 9->7 (12), 4->9 (11), then 2->7,
    # 3->5 and 3->7 all at 9: cutting at five would drop 3->7 silently.
    cm = torch.zeros(10, 10, dtype=torch.long)
    for (true, read), n in {(5, 3): 12, (9, 7): 12, (4, 9): 11, (2, 7): 9, (3, 5): 9,
                            (3, 7): 9, (7, 2): 8}.items():
        cm[true, read] = n
    assert explore.most_confused(cm, 5) == [(5, 3, 12), (9, 7, 12), (4, 9, 11),
                                            (2, 7, 9), (3, 5, 9)]
    assert explore.most_confused(cm, 5, ties=True)[-1] == (3, 7, 9)
    table = explore.confused_markdown(cm)
    rows = [line for line in table.splitlines() if line.startswith("| ") and
            line[2].isdigit()]
    assert len(rows) == 6 and rows[-1] == "| 3 | 7 | 9 | 0 (7 read as 3) |"
    assert ("The last 3 rows tie at 9 test digits, so the table lists all 6 pairs "
            "rather than cut the tie at 5." in table)
    # Without a tie at the cut, exactly k rows and no note.
    cm[3, 7] = 8
    assert "tie" not in explore.confused_markdown(cm)
    assert len(explore.most_confused(cm, 5, ties=True)) == 5


def test_chapter_10_lists_every_recorded_full_run():
    """Its stored run list is compared by nbval (no nbval-ignore-output tag) and
    here: a record that lands without the page re-executed fails this test."""
    import json
    from pathlib import Path

    from cnnlab.results import is_full_run, load_runs

    page = Path(__file__).resolve().parent.parent / "book" / "10_explore.ipynb"
    cells = [c for c in json.loads(page.read_text())["cells"]
             if c["cell_type"] == "code" and "recorded full run(s)" in "".join(c["source"])]
    assert len(cells) == 1, "chapter 10 has no single cell that lists the recorded runs"
    assert "nbval-ignore-output" not in cells[0]["metadata"].get("tags", [])
    printed = "".join("".join(o.get("text", "")) for o in cells[0]["outputs"]
                      if o.get("output_type") == "stream")
    runs = [r for r in load_runs() if is_full_run(r)]
    names = [f"{r.model} ({r.provenance.get('device', '?')}, seed {r.config.get('seed')})"
             for r in runs]
    assert f"{len(runs)} recorded full run(s): {', '.join(names)}" in printed, (
        "book/10_explore.ipynb's stored run list is stale against results/runs; "
        "re-execute it (make notebooks)")


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
    assert len(fig.axes) == 6  # 6 maps: one row of 6, not 8 columns with 2 left blank
    fig = explore.feature_map_figure(torch.zeros(16, 8, 8), "C3")
    assert len(fig.axes) == 16 and sum(bool(ax.images) for ax in fig.axes) == 16  # 2 x 8


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


# ------------------------------------------------- the GoogLeNet page's tables

def test_layer_markdown_says_when_a_size_does_not_fit():
    assert explore.layer_markdown("lenet", 32).startswith("**lenet cannot take 32 px:**")
    table = explore.layer_markdown("resnet18", 14,
                                   keep=lambda r: r.name.startswith("layer4"))
    assert "layer4.1.conv2" in table and "layer3" not in table and "⚠ 1x1 map" in table


def test_inception_rows_follow_the_papers_table():
    rows = explore.inception_rows("googlenet")
    # Szegedy et al. 2015, Table 1, output depth of each module.
    paper_out = [256, 480, 512, 512, 512, 528, 832, 832, 1024]
    assert [r.name for r in rows] == ["3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"]
    assert [r.out_channels for r in rows] == paper_out
    assert [r.next_in for r in rows] == paper_out  # the last: fc takes 1024
    assert all(r.adds_up for r in rows)
    # Table 1, 3a: #1x1 64, #3x3 reduce 96, #3x3 128, #5x5 reduce 16, #5x5 32, pool proj 32
    assert rows[0].in_channels == 192 and rows[0].widths == (64, 96, 128, 16, 32, 32)
    model = get_model("googlenet")
    assert rows[0].parameters == count_parameters(model.inception3[0])


def test_inception_rows_catch_a_module_that_does_not_add_up():
    """A 1x1 branch one channel too wide: the sum, the measured output and
    the next module's input no longer agree, and the table says so."""
    model = get_model("googlenet")
    module = model.inception3[0]
    module.branch1[0] = nn.Conv2d(192, 65, 1)  # the paper's 64, plus one
    rows = explore.inception_rows(model)
    assert not rows[0].adds_up and rows[0].out_channels == 257 and rows[0].next_in == 256
    assert all(r.adds_up for r in rows[1:])
    assert "257 ✗ (measured 257)" in explore.inception_markdown(rows)


def test_five_by_five_savings_against_the_formula():
    from cnnlab.models.googlenet import INCEPTION

    savings = explore.five_by_five_savings("googlenet")
    assert [name for name, _, _ in savings] == list(INCEPTION)
    for (_, direct, reduced), (cin, *_, r, c5, _) in zip(savings, INCEPTION.values()):
        # a k x k conv: cin * k * k * cout weights + cout biases
        assert direct == cin * 25 * c5 + c5
        assert reduced == (cin * r + r) + (r * 25 * c5 + c5)
    # 3a: 192 * 25 * 32 + 32 = 153,632 against 3,088 + 12,832 = 15,920
    assert savings[0][1:] == (153_632, 15_920)


# --------------------------------------------------------- curves and figures

def _run(model="googlenet", seed=42, steps=(25, 50), acc=(0.1, 0.95), losses=100):
    from types import SimpleNamespace

    return SimpleNamespace(model=model, config={"seed": seed}, val_step=list(steps),
                           val_accuracy=list(acc), train_loss=[2.3] * losses)


def test_first_step_at():
    run = _run(steps=(25, 50, 75), acc=(0.2, 0.9, 0.95))
    assert explore.first_step_at(run, 0.9) == 50  # reached exactly counts
    assert explore.first_step_at(run, 0.5) == 50
    assert explore.first_step_at(run, 0.96) is None


def test_steps_to_markdown():
    from types import SimpleNamespace

    arms = [SimpleNamespace(name="a", runs=(_run(seed=42), _run(seed=43, acc=(0.1, 0.2)))),
            SimpleNamespace(name="b", runs=(_run(seed=43, steps=(25, 75)),)),
            SimpleNamespace(name="c", runs=())]
    lines = explore.steps_to_markdown(arms, 0.9).splitlines()
    assert lines[0] == "| arm | seed 42 | seed 43 |"
    assert lines[2:] == ["| a | 50 | not in 100 steps |",
                         "| b | not recorded | 75 |",
                         "| c | not recorded | not recorded |"]
    empty = [SimpleNamespace(name="c", runs=())]
    assert explore.steps_to_markdown(empty) == "No run of these arms is recorded yet."


def test_live_figure_draws_the_live_run_over_the_recorded_one():
    from matplotlib.colors import to_hex

    from cnnlab.plots import model_colour

    live = _run(steps=(5, 10, 25), acc=(0.1, 0.1, 0.12), losses=25)
    recorded = [_run(steps=(125, 250, 1875), acc=(0.3, 0.5, 0.98), losses=1875)]
    fig = explore.live_figure(live, recorded)
    ax_loss, ax_acc = fig.axes
    for ax in (ax_loss, ax_acc):
        assert ax.get_xscale() == "log"
        drawn = [line for line in ax.lines if len(line.get_xdata()) > 2]
        # one colour, the model's, for the recorded run and the live one
        colours = {to_hex(line.get_color()) for line in drawn}
        assert colours == {model_colour("googlenet").lower()}
        assert [t.get_text() for t in ax.texts if "your run" in t.get_text()] == \
            ["your run is here"]
    xs = {len(line.get_xdata()): line for line in ax_acc.lines}
    assert list(xs[3].get_xdata()) in ([5, 10, 25], [125, 250, 1875])
    # the arrow points at the live run's last validation point
    arrow = next(t for t in ax_acc.texts if t.get_text() == "your run is here")
    assert tuple(arrow.xy) == (25, 12.0)
    assert explore.live_figure(live, []).axes  # no record yet: the live run alone


def test_live_figure_smooths_the_live_and_recorded_runs_over_one_window():
    import math

    from types import SimpleNamespace

    def run(losses):
        return SimpleNamespace(model="mobilenet_v1", config={"seed": 42}, val_step=[len(losses)],
                               val_accuracy=[0.5], train_loss=list(losses))

    # a loss that falls fast over the first steps, then stays low: where the
    # windows differ, the curves part at the same step
    full = [2.3 * math.exp(-k / 5) + 0.1 for k in range(1875)]

    def loss_lines(live_steps):
        fig = explore.live_figure(run(full[:live_steps]), [run(full)])
        lines = {len(line.get_xdata()): line for line in fig.axes[0].lines
                 if len(line.get_xdata()) > 2}
        return lines[1875].get_ydata(), lines[live_steps].get_ydata(), fig.axes[0].get_ylabel()

    for live_steps, label in ((30, "mean of 6 steps"), (8, "each step, unsmoothed"),
                              (1875, "mean of 50 steps")):
        recorded, live, ylabel = loss_lines(live_steps)
        # identical losses give identical curves over the live run's steps
        assert list(recorded[:live_steps]) == list(live)
        assert ylabel == f"training loss ({label})"
    recorded, _, _ = loss_lines(8)
    assert list(recorded) == full  # window 1: the recorded raw loss, noise and all
    recorded, _, _ = loss_lines(1875)
    assert recorded[-1] == pytest.approx(sum(full[-50:]) / 50)  # full length: 50 steps, as before


def test_prediction_and_filter_figures():
    import torch
    from matplotlib.colors import to_hex

    from cnnlab.plots import model_colour

    probs = torch.full((10,), 0.1)
    fig = explore.prediction_figure(torch.zeros(28, 28), probs, label=3, title="t")
    bars = fig.axes[1].patches
    assert {to_hex(b.get_facecolor()) for b in bars} == {model_colour("lenet").lower()}
    assert [b.get_linewidth() for b in bars].index(2) == 3  # the true class, outlined
    assert [t.get_position()[0] for t in fig.axes[1].texts if t.get_text() == "true"] == [3]
    model = get_model("lenet")
    fig = explore.filters_figure(model, "C1")
    images = [ax.images[0] for ax in fig.axes]
    assert len(images) == 6  # LeNet's C1 has six 5x5 filters
    low, high = images[0].get_clim()
    assert low == -high == -float(explore.first_layer_filters(model).abs().max())
