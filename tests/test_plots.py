"""cnnlab.plots: one colour per model, the same in every figure."""
from matplotlib.colors import to_hex

from cnnlab.models import list_models
from cnnlab.plots import MODEL_COLOURS, bar_figure, comparison_figure, model_colour
from cnnlab.results import RunResult


def test_every_model_has_its_own_colour():
    assert set(MODEL_COLOURS) == set(list_models())
    assert len(set(MODEL_COLOURS.values())) == len(MODEL_COLOURS)
    assert model_colour("not a model") not in MODEL_COLOURS.values()


def run(model: str) -> RunResult:
    return RunResult(model=model, parameters=1, config={}, steps_per_epoch=2,
                     train_loss=[1.0, 0.5], val_step=[1, 2], val_accuracy=[0.5, 0.6],
                     val_loss=[1.0, 0.9], epoch_val_accuracy=[0.6], epoch_val_loss=[0.9],
                     test_loss=0.9, test_accuracy=0.6, train_seconds=1.0,
                     images_per_second=2.0, peak_memory_bytes=None,
                     peak_memory_kind="process_peak_rss", val_images=[10, 10])


def test_the_figures_draw_each_model_in_its_colour():
    runs = [run("googlenet"), run("lenet")]
    lines = comparison_figure(runs).axes[0].get_lines()
    assert [to_hex(line.get_color()) for line in lines] == [
        MODEL_COLOURS["googlenet"].lower(), MODEL_COLOURS["lenet"].lower()]
    bars = bar_figure(runs).axes[0].patches
    assert [to_hex(b.get_facecolor()) for b in bars] == [
        MODEL_COLOURS["googlenet"].lower(), MODEL_COLOURS["lenet"].lower()]


def test_seeds_of_one_model_get_distinct_styles_and_arms_no_models_colour():
    from cnnlab.plots import ARM_COLOURS, SEED_STYLES, seed_style

    assert len({seed_style(i) for i in range(len(SEED_STYLES))}) == len(SEED_STYLES)
    assert len({line for line, _ in SEED_STYLES}) == len(SEED_STYLES)  # lines alone differ
    model = {c.lower() for c in MODEL_COLOURS.values()} | {model_colour("?").lower()}
    assert not {c.lower() for c in ARM_COLOURS} & model
    assert len(set(ARM_COLOURS)) == len(ARM_COLOURS)
