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
