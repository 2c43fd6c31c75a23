"""shapes.shape_markdown: the layer table the book's pages show."""
from cnnlab import explore
from cnnlab.models import count_parameters, get_model
from cnnlab.shapes import shape_markdown, trace_shapes


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
