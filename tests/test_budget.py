"""cnnlab.budget: what a chapter trains, and how much work a run is before it runs."""
import pytest

from cnnlab.budget import run_work
from cnnlab.data import N_TEST, N_TRAIN, N_VAL
from cnnlab.train import TrainConfig, fit


@pytest.mark.parametrize("settings", [
    dict(epochs=2, eval_every=7, eval_subset=100),          # subsets between epoch ends
    dict(epochs=1, eval_every=5, eval_subset=None, max_steps=13, val_images=60,
         test_images=70),                                     # stopped mid-epoch
])
def test_run_work_counts_what_a_real_run_does(small, settings):
    config = TrainConfig(model="lenet", device="cpu", batch_size=128, **settings)
    result = fit(config, small, progress=False)
    steps, evaluated = run_work(config, len(small.train), len(small.val), len(small.test))
    assert steps == len(result.train_loss)
    tested = min(len(small.test), config.test_images or len(small.test))
    assert evaluated == sum(result.val_images) + tested


def test_run_work_of_the_full_recipe():
    # 375 steps an epoch; 15 validations between epoch ends on 2,000 images and
    # 5 at epoch ends on all 12,000; the test set once.
    steps, evaluated = run_work(TrainConfig(model="lenet"))
    assert (N_TRAIN, N_VAL, N_TEST) == (48_000, 12_000, 10_000)
    every_125 = [s for s in range(125, 1876, 125) if s % 375]
    assert steps == 1875
    assert evaluated == len(every_125) * 2_000 + 5 * 12_000 + 10_000


def test_pages_state_the_short_budget_that_budget_py_sets():
    """intro, setup and troubleshooting give the steps of the chapters'
    larger nets as a range; it must be SHORT's (it drifted once)."""
    import re
    from pathlib import Path

    from cnnlab.budget import SHORT

    larger = [SHORT[m].steps for m in ("alexnet", "resnet18", "mobilenet_v1", "googlenet")]
    expected = f"{min(larger)} to {max(larger)}"
    root = Path(__file__).resolve().parents[1] / "book"
    for page in ("intro.md", "setup.md", "09_troubleshooting.md"):
        text = " ".join((root / page).read_text().split())  # lines joined
        found = re.findall(r"(\d+ to \d+) steps for (?:each of )?the chapters' larger nets", text)
        assert found == [expected], (page, found, expected)
