"""Made-up records, and the parser MyST uses, for the tests of what the book
says about records."""
from markdown_it import MarkdownIt

from cnnlab.experiments import Arm
from cnnlab.results import RunResult


def fake_run(model="resnet18", seed=42, acc=0.98, steps=(25, 50), images=(1000, 12000),
             **config) -> RunResult:
    return RunResult(
        model=model, parameters=1, config={"seed": seed, **config}, steps_per_epoch=50,
        train_loss=[2.3, 1.0] * 25, val_step=list(steps),
        val_accuracy=[0.5, acc], val_loss=[1.0, 0.1], epoch_val_accuracy=[acc],
        epoch_val_loss=[0.1], test_accuracy=acc, test_loss=0.1, train_seconds=10.0,
        images_per_second=100.0, peak_memory_bytes=None, peak_memory_kind="none",
        provenance={"device": "cpu", "device_name": "a CPU", "date": "2026-11-29",
                    "git_commit": "0" * 40}, val_images=list(images))


def cpu_run(model, seed, acc, seconds=10.0, cpu=None, threads=2, name="AMD EPYC",
             peak=None, kind="process_peak_rss_during_run"):
    r = fake_run(model, seed, acc / 100, device="cpu")
    r.train_seconds, r.cpu_seconds = seconds, cpu
    r.images_per_second = 240_000 / seconds  # 5 epochs of 48,000 images
    r.provenance |= {"cpu_threads": threads, "device_name": name}
    r.peak_memory_bytes, r.peak_memory_kind = peak, kind
    return r


def experiment_run(seed: int, acc: float) -> RunResult:
    return RunResult(
        model="resnet18", parameters=1, config={"seed": seed}, steps_per_epoch=50,
        train_loss=[1.0] * 50, val_step=[50], val_accuracy=[acc], val_loss=[0.1],
        epoch_val_accuracy=[acc], epoch_val_loss=[0.1], test_accuracy=acc, test_loss=0.1,
        train_seconds=10.0, images_per_second=100.0, peak_memory_bytes=None,
        peak_memory_kind="none", provenance={"device": "cpu"}, val_images=[12000])


def experiment_arm(name: str, accs: list[float], planned: int = 3, seconds: float = 10.0,
        share: float = 1.0) -> Arm:
    """An arm whose seeds 42, 43, ... scored ``accs`` (%), each trained for
    ``seconds`` with ``share`` of its 2 threads' time."""
    runs = []
    for i, acc in enumerate(accs):
        r = experiment_run(42 + i, acc / 100)
        r.config["device"] = "cpu"
        r.train_seconds, r.cpu_seconds = seconds, share * seconds * 2
        r.provenance["cpu_threads"] = 2
        runs.append(r)
    return Arm(name, tuple(runs), planned, "cmd")


def rendered(markdown: str) -> list:
    """The block tokens markdown-it (the parser MyST uses) makes of ``markdown``."""
    return MarkdownIt("commonmark").enable("table").parse(markdown)
