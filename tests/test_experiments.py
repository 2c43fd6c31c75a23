"""experiment_table: a table narrow enough for the page, and each arm's command under it.

(The arms, the verdict and the training-time rule are tested in test_findings.py.)
"""
from markdown_it import MarkdownIt

from cnnlab.experiments import Arm, experiment_table
from cnnlab.results import RunResult

COMMAND = "python -m cnnlab train resnet18 --epochs 1 --eval-every 25 --eval-subset 1000"


def run(seed: int, acc: float) -> RunResult:
    return RunResult(
        model="resnet18", parameters=1, config={"seed": seed}, steps_per_epoch=50,
        train_loss=[1.0] * 50, val_step=[50], val_accuracy=[acc], val_loss=[0.1],
        epoch_val_accuracy=[acc], epoch_val_loss=[0.1], test_accuracy=acc, test_loss=0.1,
        train_seconds=10.0, images_per_second=100.0, peak_memory_bytes=None,
        peak_memory_kind="none", provenance={"device": "cpu"}, val_images=[12000])


ARMS = [Arm("option A (zero_pad)", (run(42, 0.97), run(43, 0.98)), 3,
            f"{COMMAND} --shortcut zero_pad"),
        Arm("option B (projection)", (), 3, f"{COMMAND} --shortcut projection")]


def rendered(markdown: str) -> list:
    """The block tokens markdown-it (the parser MyST uses) makes of ``markdown``."""
    return MarkdownIt("commonmark").enable("table").parse(markdown)


def test_the_table_has_four_columns_on_every_row_and_no_command():
    table = experiment_table(ARMS).split("\n\n")[0].splitlines()
    assert table[0] == "| arm | test accuracy (%) | each seed | training time (s) |"
    assert len(table) == 2 + len(ARMS)
    assert all(row.count("|") == 5 for row in table)  # 4 cells
    assert "`" not in "\n".join(table) and "python" not in "\n".join(table)
    # The recorded arm: mean of 97 and 98, each seed; the other: its count.
    assert table[2].startswith("| option A (zero_pad) | 97.50 ± 0.71 (2 of 3 seeds) | 97.00, 98.00 |")
    assert table[3] == "| option B (projection) | not recorded yet (0 of 3) | | |"


def test_each_arms_command_is_listed_under_the_table_in_order():
    tokens = rendered(experiment_table(ARMS))
    kinds = [t.type for t in tokens if t.type.endswith("_open") and t.level == 0]
    assert kinds == ["table_open", "paragraph_open", "bullet_list_open"]
    items = [t.content for t in tokens if t.type == "inline" and t.level == 3]
    assert items == [f"{a.name}: `{a.command}`" for a in ARMS]
    intro = next(t.content for t in tokens if t.type == "inline" and t.level == 1)
    assert intro == "To rerun an arm's first seed (add `--seed N` for another of its seeds):"
