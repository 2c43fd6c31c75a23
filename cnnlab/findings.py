"""What the recorded runs say: summaries, verdicts and figures the book shows.

Everything here reads ``results/`` (the plan in ``cnnlab.plan`` names the
files), so a page says exactly what is recorded, and says plainly what is
not yet.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .plots import smooth
from .plan import EXPERIMENTS, FULL_RUNS, Planned, config_mismatch, experiment_runs
from .report import REPORT
from .results import (RESULTS_DIR, ResultFormatError, RunResult, cpu_share, provenance_line,
                      plain, recorded_runs, skip_note)


@dataclass(frozen=True)
class Spread:
    """Test accuracy (%) over the seeds of one model or arm."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.mean(self.values)

    @property
    def std(self) -> float:
        """Sample standard deviation (0 for a single run)."""
        return statistics.stdev(self.values) if self.n > 1 else 0.0

    def text(self, planned: int | None = None) -> str:
        """'97.29 ± 0.36 (3 seeds)', '97.57' for one run; with ``planned``,
        '97.10 ± 0.20 (2 of 3 seeds)' while seeds are missing."""
        of = f"{self.n} of {planned}" if planned and planned != self.n else f"{self.n}"
        if self.n == 1:
            return f"{self.mean:.2f}" + (f" ({of} seeds)" if planned and planned != 1 else "")
        return f"{self.mean:.2f} ± {self.std:.2f} ({of} seeds)"


def accuracy_spread(runs: list[RunResult]) -> Spread:
    """The test accuracies of ``runs``, in percent."""
    return Spread(tuple(100 * r.test_accuracy for r in runs))


def device_runs(model: str, folder: str | Path | None = None) -> list[RunResult]:
    """The recorded full runs of ``model`` on the device of its first (GPU first)."""
    runs = recorded_runs(model, folder)
    if not runs:
        return []
    device = runs[0].provenance.get("device")
    return [r for r in runs if r.provenance.get("device") == device]


def run_summary(model: str, folder: str | Path | None = None) -> str:
    """Markdown: the recorded full run(s) of ``model`` beside the report's row."""
    runs = device_runs(model, folder)
    report = REPORT.get(model)
    if not runs:
        how = ("`make record-cpu` records it (in the background, resumably)."
               if model in {m for m, _ in FULL_RUNS} else
               "It is too slow for the CPU plan; a GPU session records it "
               "(`bash benchmarks/gpu_session.sh record`).")
        return f"No full run of `{model}` is recorded yet. {how}"
    lines = ["| | test accuracy (%) | training time (s) | images/s | device |",
             "|---|---|---|---|---|"]
    seconds = statistics.mean(r.train_seconds for r in runs)
    speed = statistics.mean(r.images_per_second for r in runs)
    devices = sorted({plain(f"{r.provenance.get('device_name', '?')} "
                            f"({r.provenance.get('device', '?')}, "
                            f"{r.provenance.get('cpu_threads', '?')} threads)")
                      for r in runs})
    lines.append(f"| cnnlab, recorded | {accuracy_spread(runs).text()} | {seconds:,.0f} "
                 f"| {speed:,.0f} | {'; '.join(devices)} |")
    if report is not None:
        lines.append(f"| the report | {report.test_accuracy:.2f} | (see below) "
                     f"| | NVIDIA GeForce MX250 (laptop GPU) |")
    lines.append("")
    if report is not None:
        lines += [report_position(model, runs), ""]
        lines += [f"The report's time, {report.seconds:,.0f} s, is not comparable "
                  f"with ours: another machine, and the report does not say what its "
                  f"timer covered. Ours counts the training steps only.", ""]
    lines += [f"Provenance: {provenance_line(r)}." for r in runs]
    lines += ["", shared_note(runs)]
    return "\n".join(lines).rstrip()


def report_position(model: str, runs: list[RunResult]) -> str:
    """One sentence: where the report's single test accuracy falls against
    the range of our seeds of ``model`` ('' when the report has no row)."""
    report = REPORT.get(model)
    if report is None or not runs:
        return ""
    values = sorted(100 * r.test_accuracy for r in runs)
    lo, hi, theirs = values[0], values[-1], report.test_accuracy
    seeds = ", ".join(str(r.config.get("seed")) for r in runs)
    if len(values) == 1:
        gap = theirs - lo
        return (f"The report's {theirs:.2f}% is {abs(gap):.2f} points "
                f"{'above' if gap > 0 else 'below'} our one seed ({seeds}: {lo:.2f}%); one "
                f"seed cannot say whether that gap is more than seed-to-seed noise.")
    where = (f"inside the range of our {len(values)} seeds ({seeds}: {lo:.2f} to {hi:.2f}%)"
             if lo <= theirs <= hi else
             f"{theirs - hi:.2f} points above the best of our {len(values)} seeds "
             f"({seeds}: {lo:.2f} to {hi:.2f}%)" if theirs > hi else
             f"{lo - theirs:.2f} points below the worst of our {len(values)} seeds "
             f"({seeds}: {lo:.2f} to {hi:.2f}%)")
    return f"The report's single run, {theirs:.2f}%, lies {where}."


def shared_note(runs: list[RunResult]) -> str:
    """Whether each CPU run had its cores to itself, in a sentence or two ('' on a GPU).

    Each run is judged by the best measure it recorded: its share of its
    threads' time (``cpu_seconds``), else the 15-minute load average when it
    ended; runs that recorded neither are named as unknown.
    """
    cpu = [r for r in runs if r.config.get("device") == "cpu"]
    if not cpu:
        return ""
    busy, quiet, unknown = [], [], []
    for r in cpu:
        name = plain(f"{r.model} (seed {r.config.get('seed')})")
        share = cpu_share(r)
        load = (r.provenance.get("load_average") or [None] * 3)[2]
        threads = r.provenance.get("cpu_threads", 1)
        if share is not None:
            if share < 0.9:
                busy.append(f"{name} got {100 * share:.0f}% of its threads' time")
            else:
                quiet.append(name)
        elif load is not None:
            if load > threads:
                busy.append(f"when {name} ended, the load average over 15 minutes "
                            f"was {load:.1f} on {threads} threads")
            else:
                quiet.append(name)
        else:
            unknown.append(name)
    sentences = []
    if busy:
        sentences.append("Other work shared the CPU: " + "; ".join(busy) + ". This CPU "
                         "can train those runs faster than their time and images/s say.")
    if quiet and not busy:
        sentences.append("The training processes had their cores to themselves.")
    elif quiet:
        sentences.append("The others had their cores to themselves: "
                         + ", ".join(quiet) + ".")
    if unknown:
        sentences.append("Whether other work shared the CPU is not recorded for "
                         + ", ".join(unknown) + ", so their times may be longer "
                         "than this CPU needs.")
    return " ".join(sentences)


def curves_figure(runs: list[RunResult], title: str = "",
                  window: int = 50) -> Figure:
    """Training loss and validation accuracy of recorded runs, one colour each.

    Validation points on the whole set (epoch ends) are filled; points on
    the subset between epoch ends (``TrainConfig.eval_subset``) are hollow.
    """
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    for i, r in enumerate(runs):
        colour = f"C{i}"
        label = f"{r.model}, seed {r.config.get('seed')}"
        ax_loss.plot(np.arange(1, len(r.train_loss) + 1), smooth(r.train_loss, window),
                     color=colour, label=label)
        acc = np.array([100 * a for a in r.val_accuracy])
        step = np.array(r.val_step)
        full = np.array(r.val_images or [0] * len(step)) == max(r.val_images or [0])
        ax_acc.plot(step, acc, color=colour, alpha=0.5)
        ax_acc.plot(step[full], acc[full], "o", color=colour, label=label)
        ax_acc.plot(step[~full], acc[~full], "o", mfc="white", color=colour)
    ax_loss.set(xlabel="training step", ylabel=f"training loss (mean of {window})",
                yscale="log", title="Training loss")
    ax_acc.set(xlabel="training step", ylabel="validation accuracy (%)",
               title="Validation (filled: all 12,000; hollow: a subset)")
    ax_acc.legend(fontsize=8)
    lo = min((100 * min(r.val_accuracy) for r in runs if r.val_accuracy), default=0)
    ax_acc.set_ylim(max(lo - 1, 0), 100)
    if title:
        fig.suptitle(title)
    fig.patch.set_facecolor("white")
    return fig


# ---------------------------------------------------------------- experiments

@dataclass(frozen=True)
class Arm:
    """One arm of an experiment: its runs recorded so far and its command."""

    name: str
    runs: tuple[RunResult, ...]
    planned: int
    command: str  # for the first seed; the others add --seed

    @property
    def spread(self) -> Spread | None:
        return accuracy_spread(list(self.runs)) if self.runs else None


def experiment_arms(name: str, root: Path = RESULTS_DIR,
                    device: str = "cpu") -> list[Arm]:
    """The arms of experiment ``name`` with the runs recorded for each."""
    arms = []
    for arm, planned in experiment_runs(name).items():
        found = [r for p in planned if (r := _planned_record(p, device, root))]
        arms.append(Arm(arm, tuple(found), len(planned), planned[0].command()))
    return arms


def _planned_record(p: Planned, device: str, root: Path) -> RunResult | None:
    """The record of the planned run ``p``, or None (with a one-line note if a
    file is there but cannot count: unreadable, or another run's config)."""
    path = p.path(device, root)
    if not path.exists() and not path.is_symlink():
        return None
    try:
        r = RunResult.load(path)
    except (ResultFormatError, OSError) as err:
        skip_note(path, str(err).removeprefix(f"{path}: "))
        return None
    mismatch = config_mismatch(r, p)
    if mismatch:
        skip_note(path, f"not this arm's run ({mismatch})")
        return None
    return r


def experiment_table(arms: list[Arm]) -> str:
    """Markdown: test accuracy per arm, mean ± standard deviation over seeds."""
    lines = ["| arm | test accuracy (%) | each seed | training time (s) | rerun one seed |",
             "|---|---|---|---|---|"]
    for a in arms:
        if not a.runs:
            lines.append(f"| {a.name} | not recorded yet (0 of {a.planned}) | | "
                         f"| `{a.command}` |")
            continue
        each = ", ".join(f"{100 * r.test_accuracy:.2f}" for r in a.runs)
        lines.append(f"| {a.name} | {a.spread.text(a.planned)} | {each} "
                     f"| {_quiet_seconds(list(a.runs))} | `{a.command}` |")
    return "\n".join(lines)


def _quiet_seconds(runs: list[RunResult]) -> str:
    """Mean training time over the runs that had their cores to themselves
    (a run that shared the CPU is slower than the CPU; its time is left out,
    and the cell says how many were)."""
    quiet = [r for r in runs if (cpu_share(r) or 1.0) >= 0.9]
    if not quiet:
        return "(every seed shared the CPU)"
    text = f"{statistics.mean(r.train_seconds for r in quiet):,.0f}"
    shared = len(runs) - len(quiet)
    if shared:
        text += (f" ({len(quiet)} of {len(runs)} seeds; {shared} that shared the CPU "
                 f"left out)")
    return text


def compare(a: Arm, b: Arm) -> int | None:
    """``verdict``'s rule for two arms: +1 if ``a`` scored higher than ``b``
    by more than twice the larger standard deviation, -1 if lower by that
    much, 0 if the seeds cannot tell them apart, None while seeds are missing.
    """
    if any(len(arm.runs) < arm.planned or not arm.runs for arm in (a, b)):
        return None
    gap = a.spread.mean - b.spread.mean
    if abs(gap) <= 2 * max(a.spread.std, b.spread.std):
        return 0
    return 1 if gap > 0 else -1


def verdict(arms: list[Arm]) -> str:
    """One paragraph saying what the recorded seeds show, and no more.

    Two arms are called apart only when the gap between their means is
    larger than twice the larger of their standard deviations; otherwise
    the seeds cannot tell them apart at this budget.
    """
    done = [a for a in arms if a.runs and len(a.runs) == a.planned]
    if len(done) < len(arms):
        missing = [f"“{a.name}”" for a in arms if a not in done]
        return ("Not every arm has all its seeds recorded yet (missing in: "
                + "; ".join(missing) + "), so this page draws no conclusion yet.")
    ranked = sorted(done, key=lambda a: a.spread.mean, reverse=True)
    best, worst = ranked[0], ranked[-1]
    gap = best.spread.mean - worst.spread.mean
    noise = max(best.spread.std, worst.spread.std)
    text = (f"Over {best.planned} seeds each, {best.name} scored highest "
            f"({best.spread.mean:.2f}%) and {worst.name} lowest "
            f"({worst.spread.mean:.2f}%): a gap of {gap:.2f} points, against a "
            f"seed-to-seed standard deviation of up to {noise:.2f} points. ")
    both = "these two arms" if len(done) > 2 else "the arms"
    if compare(best, worst):
        return text + (f"The gap is more than twice that spread: at this budget "
                       f"{both} differ.")
    return text + (f"The gap is within twice that spread: at this budget these "
                   f"seeds cannot tell {both} apart.")


def experiment_figure(arms: list[Arm], title: str = "") -> Figure:
    """Validation accuracy of each arm: the mean over its seeds, with the range."""
    fig = Figure(figsize=(8, 3.8), layout="constrained")
    ax = fig.subplots()
    for i, a in enumerate(arms):
        if not a.runs:
            continue
        steps = a.runs[0].val_step
        acc = np.array([[100 * v for v in r.val_accuracy] for r in a.runs
                        if r.val_step == steps])
        ax.plot(steps, acc.mean(0), color=f"C{i}", marker=".",
                label=f"{a.name} ({len(acc)} seeds)")
        ax.fill_between(steps, acc.min(0), acc.max(0), color=f"C{i}", alpha=0.2)
        # Points on the whole validation set (the epoch ends): large dots.
        images = np.array(a.runs[0].val_images or [0] * len(steps))
        full = images == images.max()
        ax.plot(np.array(steps)[full], acc.mean(0)[full], "o", color=f"C{i}",
                markersize=7)
    ax.set(xlabel="training step", ylabel="validation accuracy (%)")
    ax.set_title((title or "Validation accuracy, mean over seeds") + "\nband: min to "
                 "max over seeds; large dots: all validation images; small: a subset",
                 fontsize=10)
    lo = min((100 * min(r.val_accuracy) for a in arms for r in a.runs), default=0)
    ax.set_ylim(max(lo - 1, 0), 100)
    if any(a.runs for a in arms):
        ax.legend(fontsize=9)
    else:
        ax.text(0.5, 0.5, "no run recorded yet", ha="center", transform=ax.transAxes)
    fig.patch.set_facecolor("white")
    return fig


def experiment_title(name: str) -> str:
    """The experiment's title, from the plan."""
    return EXPERIMENTS[name]["title"]


def first_epoch_ranking(recorded: dict[str, list[RunResult]]) -> str:
    """Markdown: our networks ranked by validation accuracy after one epoch,
    against the report's order (``REPORT_SPEED_TIERS``). Two networks are
    called the other way round only when the seeds separate them (each has
    two seeds or more, and the gap is over twice the larger spread)."""
    from .report import REPORT_SPEED_TIERS

    ours = {name: Spread(tuple(100 * r.epoch_val_accuracy[0] for r in runs))
            for name, runs in recorded.items() if name in REPORT_SPEED_TIERS and runs}
    if len(ours) < 2:
        return ("Fewer than two networks have a recorded full run, so this page cannot "
                "rank the curves yet.")
    order = sorted(ours, key=lambda n: ours[n].mean, reverse=True)
    text = ("Ours, by validation accuracy after one epoch (mean over seeds): "
            + ", ".join(f"`{n}` {ours[n].text()}" for n in order) + ". ")
    against = [(a, b) for a in order for b in order
               if REPORT_SPEED_TIERS[a] > REPORT_SPEED_TIERS[b]
               and order.index(a) < order.index(b)]
    apart = [(a, b) for a, b in against if ours[a].n > 1 and ours[b].n > 1
             and ours[a].mean - ours[b].mean > 2 * max(ours[a].std, ours[b].std)]
    unsure = [(a, b) for a, b in against if (a, b) not in apart]
    if apart:
        text += ("Against the report's order, and beyond the spread of our seeds: "
                 + "; ".join(f"`{a}` ahead of `{b}`" for a, b in apart) + ". ")
    if unsure:
        text += ("Our means also put " + "; ".join(f"`{a}` ahead of `{b}`" for a, b in unsure)
                 + ", against the report's order, but the seeds cannot separate those "
                   "(one seed, or a gap within twice the spread). ")
    if not against:
        text += "Among the recorded networks, this agrees with the report's order."
    return text.strip()
