"""What trained networks get wrong, read from the predictions in their records.

Every full-run record keeps the class its network predicted for each of
the 10,000 test images (``RunResult.predictions``), so a page can show a
confusion matrix, the digits a network misreads, and how the five
networks' mistakes overlap, without training anything.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from matplotlib.figure import Figure

from .findings import device_runs
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
    ax.set_title(f"{p.model} (seed {p.seed}): {wrong} of {len(labels):,} test digits "
                 f"wrong;\nthe diagonal (right answers) is left blank", fontsize=10)
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
                      f"{p.model} (seed {p.seed}): the first {len(wrong)} test digits it "
                      f"misreads, in test-set order (true → predicted)")


def majority_vote(predictions: list[Predictions], labels: np.ndarray) -> np.ndarray:
    """Each image's most voted class; a tie goes to the most accurate network
    among those that voted for a tied class."""
    order = sorted(predictions, key=lambda p: -(p.classes == labels).mean())
    votes = np.zeros((len(labels), DIGITS))
    for rank, p in enumerate(order):
        # One vote each, plus a tie-breaker far smaller than a vote: 2**-rank
        # outweighs all the lower ranks' together, so among tied classes the
        # one the most accurate voter chose wins.
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
        lines.append(f"| all {len(self.wrong)} wrong on the same digit | "
                     f"{len(self.by_all)} | |")
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
        # Two voters tie wherever they disagree, and a tie goes to the more
        # accurate one: the vote is that network, by construction.
        lines.append(f"With two networks the vote cannot gain anything: wherever they "
                     f"disagree the vote is a tie, which goes to the more accurate one, so "
                     f"the vote is {best} ({len(o.vote_wrong)} test digits wrong). A vote "
                     f"needs three networks or more to outvote a mistake.")
    else:
        lines.append(f"The majority vote {verb} the best single network, {best} "
                     f"({len(o.vote_wrong)} against {len(o.wrong[best])} test digits).")
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
    models = [p.model for p in predictions]
    names = (" and ".join(models) if len(models) == 2 else
             ", ".join(models[:-1]) + " and " + models[-1] if len(models) > 2 else models[0])
    who = (f"both {names}" if len(models) == 2 else
           f"all {len(models)} of {names}" if len(models) > 2 else names)
    return digit_grid(images[shown], captions,
                      f"The {len(o.by_all)} test digits {who} get wrong "
                      f"(first {len(shown)}); caption: true digit, then each network's "
                      f"answer in that order")
