"""shapes: the layer tables the book's pages show, and the output-size formula."""
import pytest
import torch
from torch import nn

from cnnlab import explore
from cnnlab.models import count_parameters, get_model
from cnnlab.shapes import (layer_settings, output_side, settings_table, shape_markdown,
                           size_steps, size_steps_markdown, trace_shapes)


def _body(table: str) -> list[list[str]]:
    """The cells of each row of a Markdown table, header and rule left out."""
    return [[c.strip() for c in line.strip("|").split("|")]
            for line in table.splitlines()[2:]]


def test_one_row_per_layer_and_the_parameters_add_up():
    model = get_model("lenet")
    records = trace_shapes(model)
    rows = _body(shape_markdown(records))
    assert len(rows) == len(records)
    # The oracle: the model's own parameter count, not the records'.
    assert sum(int(r[3].replace(",", "")) for r in rows) == count_parameters(model)
    # LeNet's C1 at 28 px: 6 maps of 28 - 5 + 1 = 24 px, 6 * 25 + 6 weights.
    assert rows[0] == ["`features.0`", "Conv2d", "6x24x24", "156", ""]


def test_warnings_become_notes_and_keep_picks_rows():
    records = trace_shapes(get_model("resnet18"), size=14)
    flagged = [r for r in records if r.warning]
    rows = _body(shape_markdown(records, keep=lambda r: r.warning))
    assert len(rows) == len(flagged) > 0
    assert all(row[-1] == f"⚠ {r.warning}" for row, r in zip(rows, flagged))
    assert shape_markdown(records, keep=lambda r: False) == "(no layer matches)"


def test_layer_table_rows_get_a_mult_adds_column():
    rows = explore.layer_table("lenet", 28)
    body = _body(shape_markdown(rows))
    assert len(body[0]) == 6  # layer, type, output, parameters, mult-adds, note
    # C1: 156 weights, each used at 24 x 24 positions (torchinfo's count).
    assert body[0][4] == f"{156 * 24 * 24:,}"


# --- The output-size formula and the layer table (chapter 2) -----------------

def _real_side(layer: nn.Module, n: int, channels: int = 1) -> int:
    """The oracle: the side PyTorch's own layer gives an n x n input."""
    with torch.no_grad():
        return layer(torch.zeros(1, channels, n, n)).shape[-1]


def test_formula_rows_equal_the_traced_sides_of_lenet_at_28_and_32():
    model = get_model("lenet")
    for size, features, expected in (
            (28, model, [24, 12, 8, 4]),            # the package's LeNet, whole
            # The paper's Fig. 2: C1 28x28, S2 14x14, C3 10x10, S4 5x5. The
            # whole LeNet cannot take 32 px (its flatten expects 256), so
            # only its convolution and pooling stages are traced.
            (32, model.features, [28, 14, 10, 5])):
        steps = size_steps(features, size)
        assert [st.n_out for st in steps] == expected
        assert [st.traced for st in steps] == expected
        assert all(st.agrees for st in steps)
        assert [st.n_in for st in steps] == [size] + expected[:-1]  # one chain


def test_without_trace_nothing_runs():
    model = get_model("lenet")
    with pytest.raises(RuntimeError):   # at 32 px the flatten gives 400 values, not 256
        size_steps(model, 32)
    steps = size_steps(model, 32, trace=False)
    assert [st.n_out for st in steps] == [28, 14, 10, 5]
    assert all(st.traced is None and st.agrees is None for st in steps)
    assert "| traced |" in size_steps_markdown(steps)
    assert "✓" not in size_steps_markdown(steps)


@pytest.mark.parametrize("size", [28, 27, 9])
def test_padded_and_strided_layers_follow_pytorch(size):
    # k=3, p=1, s=2 then k=3, p=0, s=2: at 28 the pool's (14 - 3) / 2 is 5.5,
    # so the floor in the formula matters.
    conv = nn.Conv2d(1, 4, kernel_size=3, stride=2, padding=1)
    pool = nn.MaxPool2d(kernel_size=3, stride=2)
    steps = size_steps(nn.Sequential(conv, pool), size)
    after_conv = _real_side(conv, size)
    after_pool = _real_side(pool, after_conv, channels=4)
    assert [(st.kernel, st.padding, st.stride) for st in steps] == [(3, 1, 2), (3, 0, 2)]
    assert [st.n_out for st in steps] == [after_conv, after_pool]
    assert [st.traced for st in steps] == [after_conv, after_pool]
    assert output_side(size, 3, stride=2, padding=1) == after_conv


@pytest.mark.parametrize("layer, n", [
    (nn.MaxPool2d(2, ceil_mode=True), 7),      # rounds up: 4, the formula 3
    (nn.Conv2d(1, 1, 3, dilation=2), 10),      # sees 5x5: 6, the formula 8
])
def test_a_layer_the_formula_misses_is_flagged(layer, n):
    steps = size_steps(nn.Sequential(layer), n)
    assert steps[0].traced == _real_side(layer, n) != steps[0].n_out
    assert steps[0].agrees is False
    row = _body(size_steps_markdown(steps))[0]
    assert row[3] == str(steps[0].traced) and row[4].startswith("⚠")


def test_the_formula_rows_show_the_numbers():
    rows = _body(size_steps_markdown(size_steps(get_model("lenet"), 28)))
    assert rows[0] == ["`features.0`", "Conv2d", "`(28 - 5 + 2*0) // 1 + 1 = 24`", "24", "✓"]
    assert rows[3][2] == "`(8 - 2 + 2*0) // 2 + 1 = 4`"


def test_layer_settings_are_read_from_the_module():
    assert layer_settings(nn.Conv2d(6, 16, 5)) == "6 -> 16 channels, 5x5 kernel"
    assert (layer_settings(nn.Conv2d(1, 4, 3, stride=2, padding=1))
            == "1 -> 4 channels, 3x3 kernel, stride 2, padding 1")
    assert (layer_settings(nn.Conv2d(1, 4, (3, 1), dilation=2))
            == "1 -> 4 channels, 3x1 kernel, dilation 2")
    assert layer_settings(nn.MaxPool2d(2)) == "2x2 window, stride 2"
    assert layer_settings(nn.AvgPool2d(3, stride=1, padding=1)) == "3x3 window, stride 1, padding 1"
    assert layer_settings(nn.Linear(256, 120)) == "256 -> 120"
    assert layer_settings(nn.Sigmoid()) == layer_settings(nn.Flatten()) == ""


def test_settings_table_has_every_layer_and_the_model_total():
    model = get_model("lenet")
    records = trace_shapes(model)
    rows = _body(settings_table(model))
    assert [r[0] for r in rows[:-1]] == [f"`{r.name}`" for r in records]
    assert [r[3] for r in rows[:-1]] == [" x ".join(map(str, r.output_shape)) for r in records]
    assert rows[-1][1] == "**total**"
    assert rows[-1][4] == f"**{count_parameters(model):,}**"
    modules = dict(model.named_modules())
    assert [r[2] for r in rows[:-1]] == [layer_settings(modules[r.name]) for r in records]
    assert rows[1][2] == "" and rows[0][2] == "1 -> 6 channels, 5x5 kernel"
