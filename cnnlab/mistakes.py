"""What trained networks get wrong, read from the predictions in their records.

Every full-run record keeps the class its network predicted for each of
the 10,000 test images (``RunResult.predictions``), so a page can show a
confusion matrix, the digits a network misreads, and how the five
networks' mistakes overlap, without training anything. (Records made
before records kept predictions have none.)

For a chapter's "what the network gets wrong" section: ``mistakes_text``
says how to read the two figures, from the record, or, while no record
keeps predictions, gives one short note and the command that records
them; ``recorded_confusion_figure`` and ``recorded_misread_figure`` draw
the figures, or return None, so that a page without predictions shows the
note and nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from matplotlib.figure import Figure

from .findings import device_runs
from .plan import FULL_RUNS
from .plots import model_name
from .results import RunResult

DIGITS = 10


@dataclass(frozen=True)
class Predictions:
    """One network's predicted class for each test image, and its record."""

    model: str
    seed: int
    classes: np.ndarray  # (10_000,) uint8
    record: RunResult

    def wrong(self, labels: np.ndarray) -> np.ndarray:
        """Indices of the test images this network gets wrong."""
        return np.flatnonzero(self.classes != labels)


def recorded_predictions(model: str, folder=None) -> Predictions | None:
    """The predictions of ``model``'s first recorded full run that keeps them
    (seed order), or None when no record of it does yet."""
    for r in sorted(device_runs(model, folder), key=lambda r: r.config.get("seed")):
        if r.test_predictions is not None:
            return Predictions(model, r.config.get("seed"), r.predictions(), r)
    return None


def confusion_matrix(predicted: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Counts: row = the true digit, column = the predicted one."""
    counts = np.zeros((DIGITS, DIGITS), dtype=np.int64)
    np.add.at(counts, (labels.astype(np.int64), predicted.astype(np.int64)), 1)
    return counts


def most_confused(counts: np.ndarray) -> list[tuple[int, int, int]]:
    """The mistakes made most often: every off-diagonal cell of the confusion
    matrix ``counts`` that holds its largest count, ties included, as
    (true digit, predicted digit, count); empty when there is no mistake."""
    import torch

    from .explore import most_confused as largest_cells

    return largest_cells(torch.from_numpy(counts), k=1, ties=True)


def _seeds(seeds: list[int]) -> str:
    """'42', '42 and 43', '42, 43 and 44'."""
    words = [str(s) for s in seeds]
    return " and ".join(words) if len(words) < 3 else ", ".join(words[:-1]) + " and " + words[-1]


def _times(n: int) -> str:
    return {0: "never", 1: "once", 2: "twice"}.get(n, f"{n} times")


_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def test_digits() -> tuple[np.ndarray, np.ndarray]:
    """The test split's images and labels as NumPy arrays."""
    from .data import load_mnist

    test = load_mnist().test
    return test.images.numpy(), test.labels.numpy()


def _kept_sentence(name: str, runs: list[RunResult], p: Predictions) -> str:
    """Which of ``name``'s recorded full runs keep their predictions, and
    which one the figures show (``p``)."""
    seeds = [r.config.get("seed") for r in runs]
    kept = [r.config.get("seed") for r in runs if r.test_predictions is not None]
    if len(runs) == 1:
        return f"{name}'s one recorded full run, seed {p.seed}, keeps them"
    if len(kept) == len(runs):
        return (f"All of {name}'s recorded full runs (seeds {_seeds(seeds)}) keep them; "
                f"the two figures below show seed {p.seed}")
    if len(kept) == 1:
        return (f"Of {name}'s recorded full runs (seeds {_seeds(seeds)}), only seed "
                f"{p.seed}'s record keeps them (older records do not), and the two "
                f"figures below show it")
    return (f"Of {name}'s recorded full runs (seeds {_seeds(seeds)}), the records of seeds "
            f"{_seeds(kept)} keep them (older records do not); the two figures below "
            f"show seed {p.seed}")


def _confusion_sentence(counts: np.ndarray) -> str:
    """The most frequent mistake(s), read from the matrix, and the reverse."""
    top = most_confused(counts)
    if not top:
        return "This network reads every test digit right."
    if len(top) == 1:
        t, q, n = top[0]
        return (f"Here the most frequent mistake is a {t} read as a {q} ({n} test "
                f"digit{'s' if n != 1 else ''}); the reverse, a {q} read as a {t}, "
                f"happens {_times(int(counts[q, t]))}.")
    pairs = [f"a {t} read as a {q}" for t, q, _ in top]
    listed = " and ".join(pairs) if len(pairs) < 3 else ", ".join(pairs[:-1]) + " and " + pairs[-1]
    n, count = top[0][2], len(top)
    return (f"Here {_WORDS[count] if count < 10 else count} mistakes tie as the most "
            f"frequent: {listed}, {n} test digit{'s' if n != 1 else ''} each.")


def mistakes_text(model: str, name: str, n: int = 30, folder=None) -> str:
    """Markdown for a chapter's "what the network gets wrong" section.

    With a record that keeps predictions: what the two figures below it
    show (``recorded_confusion_figure``, ``recorded_misread_figure``) and how
    to read them, with the most frequent mistake read from the record.
    Without one: a single short note saying so, and the command that
    records the missing runs; the figure functions then return None.
    ``name`` is how the page names the network ("AlexNet").
    """
    runs = sorted(device_runs(model, folder), key=lambda r: r.config.get("seed"))
    p = recorded_predictions(model, folder)
    if p is None:
        text = f"No recorded run of {name} keeps its test predictions yet"
        if not runs:
            text = f"No full run of {name} is recorded yet"
        text += ", so there is no confusion matrix or misread digit to show here."
        if runs:
            seeds = [r.config.get("seed") for r in runs]
            text += (f" Its recorded run{'s' if len(seeds) > 1 else ''} (seed"
                     f"{'s' if len(seeds) > 1 else ''} {_seeds(seeds)}) "
                     f"{'were' if len(seeds) > 1 else 'was'} made before records kept them.")
        recorded = {r.config.get("seed") for r in runs}
        missing = [s for m, s in FULL_RUNS if m == model and s not in recorded]
        if missing:
            text += (f" The planned full run{'s' if len(missing) > 1 else ''} still to be "
                     f"recorded (seed{'s' if len(missing) > 1 else ''} {_seeds(missing)}) "
                     f"will keep them, and this section will then show "
                     f"{'their' if len(missing) > 1 else 'its'} mistakes.")
        return text
    images, labels = test_digits()
    counts = confusion_matrix(p.classes, labels)
    wrong = len(p.wrong(labels))
    shown = min(n, wrong)
    return "\n\n".join([
        f"A test accuracy says how many of the {len(labels):,} test digits a network "
        "misreads, not which. A record can keep its trained network's prediction for "
        "every test image, and then the mistakes can be read without training "
        f"anything. {_kept_sentence(name, runs, p)}. That network misreads {wrong:,} of "
        f"the {len(labels):,} test digits.",
        "The first is a confusion matrix: for each true digit (row), how often the "
        "network answered each digit (column). The diagonal holds the right answers and "
        "is left blank, so that only the mistakes are coloured. Look for the darkest "
        "cells, the pairs of digits this network confuses most, and for whether a "
        f"confusion goes both ways. {_confusion_sentence(counts)}",
        f"The second shows the first {shown} test digits it misreads, in the test set's "
        "order, each captioned true digit → answer. Some are hard for a person too; "
        "others are plain digits that a better network reads. Which kind dominates says "
        "how much is left to gain.",
    ])


def recorded_confusion_figure(model: str, folder=None) -> Figure | None:
    """``confusion_figure`` of ``model``'s first recorded run that keeps its
    predictions, or None (nothing to draw) when no record keeps them."""
    p = recorded_predictions(model, folder)
    return None if p is None else confusion_figure(p, test_digits()[1])


def recorded_misread_figure(model: str, n: int = 30, folder=None) -> Figure | None:
    """``misread_figure`` (the first ``n`` test digits misread) of ``model``'s
    first recorded run that keeps its predictions, or None when none does."""
    p = recorded_predictions(model, folder)
    if p is None:
        return None
    images, labels = test_digits()
    return misread_figure(p, images, labels, n)


def confusion_figure(p: Predictions, labels: np.ndarray) -> Figure:
    """The confusion matrix with its diagonal left out, so the mistakes show."""
    counts = confusion_matrix(p.classes, labels)
    off = counts.copy()
    np.fill_diagonal(off, 0)
    fig = Figure(figsize=(5.4, 4.6), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(off, cmap="Reds")
    for true in range(DIGITS):
        for pred in range(DIGITS):
            if off[true, pred]:
                ax.text(pred, true, str(off[true, pred]), ha="center", va="center",
                        fontsize=8, color="white" if off[true, pred] > off.max() / 2
                        else "black")
    ax.set(xticks=range(DIGITS), yticks=range(DIGITS), xlabel="predicted digit",
           ylabel="true digit")
    wrong = int(off.sum())
    ax.set_title(f"{model_name(p.model)} (seed {p.seed}): {wrong} of {len(labels):,} "
                 f"test digits wrong;\nthe diagonal (right answers) is left blank", fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8, label="test images")
    fig.patch.set_facecolor("white")
    return fig


def digit_grid(images: np.ndarray, captions: list[str], title: str,
               columns: int = 10) -> Figure:
    """Digits in a grid, each with a caption under it."""
    rows = max(1, -(-len(images) // columns))
    fig = Figure(figsize=(1.1 * columns, 1.35 * rows + 0.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, image, caption in zip(axes, images, captions):
        ax.imshow(image, cmap="gray_r")
        ax.set_title(caption, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.patch.set_facecolor("white")
    return fig


def misread_figure(p: Predictions, images: np.ndarray, labels: np.ndarray,
                   n: int = 30) -> Figure:
    """The first ``n`` test digits ``p`` gets wrong, each captioned 'true → predicted'."""
    wrong = p.wrong(labels)[:n]
    captions = [f"{labels[i]} → {p.classes[i]}" for i in wrong]
    return digit_grid(images[wrong], captions,
                      f"{model_name(p.model)} (seed {p.seed}): the first {len(wrong)} "
                      f"test digits it misreads, in test-set order (true → predicted)")


def majority_vote(predictions: list[Predictions], labels: np.ndarray) -> np.ndarray:
    """Each image's most voted class; a tie goes to the network with the
    highest validation accuracy among those that voted for a tied class.

    The tie-break is a choice, so it is made on validation (each record's
    accuracy on all 12,000 validation images after its last epoch), never on
    the test labels the vote is then scored against.
    """
    order = sorted(predictions, key=lambda p: -p.record.epoch_val_accuracy[-1])
    votes = np.zeros((len(labels), DIGITS))
    for rank, p in enumerate(order):
        # One vote each, plus a tie-breaker far smaller than a vote: 2**-rank
        # outweighs all the lower ranks' together, so among tied classes the
        # one the best voter on validation chose wins.
        votes[np.arange(len(labels)), p.classes] += 1 + 1e-3 * 2.0 ** -rank
    return votes.argmax(1).astype(np.uint8)


@dataclass(frozen=True)
class Overlap:
    """How the networks' mistakes overlap on the test set."""

    wrong: dict[str, np.ndarray]  # model -> indices it gets wrong
    by_all: np.ndarray            # indices every network gets wrong
    vote_wrong: np.ndarray        # indices the majority vote gets wrong
    seeds: dict[str, int] = field(default_factory=dict)  # model -> seed of its predictions

    def table(self, n_test: int) -> str:
        """Markdown: mistakes per network, by all of them, and by the vote."""
        lines = ["| | test digits wrong | test accuracy (%) |", "|---|---|---|"]
        for model, wrong in self.wrong.items():
            seed = f" (seed {self.seeds[model]})" if model in self.seeds else ""
            lines.append(f"| {model}{seed} | {len(wrong)} | "
                         f"{100 * (1 - len(wrong) / n_test):.2f} |")
        every = "both" if len(self.wrong) == 2 else f"all {len(self.wrong)}"
        lines.append(f"| {every} wrong on the same digit | {len(self.by_all)} | |")
        lines.append(f"| majority vote of the {len(self.wrong)} | {len(self.vote_wrong)} | "
                     f"{100 * (1 - len(self.vote_wrong) / n_test):.2f} |")
        return "\n".join(lines)


def overlap(predictions: list[Predictions], labels: np.ndarray) -> Overlap:
    """Which test digits each network gets wrong, which all of them do, and
    which their majority vote does."""
    wrong = {p.model: p.wrong(labels) for p in predictions}
    by_all = wrong[predictions[0].model]
    for w in wrong.values():
        by_all = np.intersect1d(by_all, w)
    vote = majority_vote(predictions, labels)
    return Overlap(wrong, by_all, np.flatnonzero(vote != labels),
                   {p.model: p.seed for p in predictions})


def overlap_text(o: Overlap, missing: list[str], n_test: int) -> str:
    """Markdown: the overlap table and what it says, computed from the records."""
    if len(o.wrong) < 2:
        return ("Fewer than two networks have a record that keeps its predictions, so "
                "there is no overlap to measure yet. Missing: " + ", ".join(missing) + ".")
    best = min(o.wrong, key=lambda m: len(o.wrong[m]))
    lines = [o.table(n_test), ""]
    gained = len(o.wrong[best]) - len(o.vote_wrong)
    verb = ("gets fewer wrong than" if gained > 0 else
            "gets as many wrong as" if gained == 0 else "gets more wrong than")
    if len(o.wrong) == 2:
        # Two voters tie wherever they disagree, and a tie goes to the one
        # better on validation: the vote is that network, by construction.
        same = next(m for m, w in o.wrong.items() if np.array_equal(w, o.vote_wrong))
        lines.append(f"With two networks the vote cannot gain anything: wherever they "
                     f"disagree the vote is a tie, which goes to the one with the higher "
                     f"validation accuracy, so the vote is {same} ({len(o.vote_wrong)} test "
                     f"digits wrong). A vote needs three networks or more to outvote a "
                     f"mistake.")
    else:
        lines.append(f"The majority vote {verb} the best single network, "
                     f"{model_name(best)} ({len(o.vote_wrong)} against "
                     f"{len(o.wrong[best])} test digits). That compares one record per "
                     f"network (the seeds in the table), so the gap is a single draw: "
                     f"whether voting helps would take votes over several seeds of each "
                     f"network, set against how far one network's seeds differ.")
    lines.append(f"{len(o.by_all)} test digits fool every network here.")
    if missing:
        lines.append(f"Not in this comparison yet, having no record that keeps its "
                     f"predictions: {', '.join(missing)}.")
    return "\n".join(lines)


def fooled_all_figure(o: Overlap, predictions: list[Predictions], images: np.ndarray,
                      labels: np.ndarray, n: int = 30) -> Figure:
    """The test digits that every network gets wrong, with each one's answers."""
    shown = o.by_all[:n]
    captions = [f"{labels[i]}: " + "".join(str(p.classes[i]) for p in predictions)
                for i in shown]
    models = [model_name(p.model) for p in predictions]
    names = (" and ".join(models) if len(models) == 2 else
             ", ".join(models[:-1]) + " and " + models[-1] if len(models) > 2 else models[0])
    who = (f"both {names}" if len(models) == 2 else
           f"all {len(models)} of {names}" if len(models) > 2 else names)
    return digit_grid(images[shown], captions,
                      f"The {len(o.by_all)} test digits {who} get wrong "
                      f"(first {len(shown)}); caption: true digit, then each network's "
                      f"answer in that order")
