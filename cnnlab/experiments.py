"""What the controlled experiments say: each arm's recorded runs, a table, a
verdict that says only what the seeds show, and a figure.

An experiment (``cnnlab.plan.EXPERIMENTS``) trains arms that differ in one
thing, each with the same seeds. ``verdict`` calls an arm ahead only when
every arm has all its planned seeds and the gap between the means is over
twice the larger standard deviation (``compare``); otherwise it says what is
missing or that the seeds cannot tell the arms apart.

``experiment_table`` names the commit each arm's runs were recorded at, so a
page shows when the runs of one experiment come from different code.

The sentences a chapter adds around them (an experiment's design, how its
seeds' results sit, one arm against the others) are
``cnnlab.experiment_text``'s.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .findings import Spread, _and, accuracy_spread, machine_name, separated
from .plan import EXPERIMENTS, Planned, experiment_runs, load_planned
from .plots import ARM_COLOURS
from .results import QUIET_SHARE, RESULTS_DIR, RunResult, cpu_share, plain, skip_note


@dataclass(frozen=True)
class Arm:
    """One arm of an experiment: its runs recorded so far and its command."""

    name: str
    runs: tuple[RunResult, ...]
    planned: int
    command: str  # for the first seed; the others add --seed
    key: str = ""  # its configuration, seed left out (``config_key``): its colour

    @property
    def spread(self) -> Spread | None:
        return accuracy_spread(list(self.runs)) if self.runs else None


def experiment_arms(name: str, root: Path = RESULTS_DIR,
                    device: str = "cpu") -> list[Arm]:
    """The arms of experiment ``name`` with the runs recorded for each."""
    arms = []
    for arm, planned in experiment_runs(name).items():
        found = [r for p in planned if (r := _planned_record(p, device, root))]
        arms.append(Arm(arm, tuple(found), len(planned), planned[0].command(),
                        config_key(planned[0])))
    return arms


def config_key(p: Planned) -> str:
    """What a planned run trains, without its seed: the same for every seed of
    an arm, and for an arm that two experiments share."""
    return p.filename().rsplit("-seed", 1)[0]


def arm_colours() -> dict[str, str]:
    """One colour per arm configuration (``config_key``), the same in every
    experiment that shares it (option B is one colour on all three ResNet-18
    figures), and different for every configuration of one model, so that
    no two figures of a chapter give one colour two meanings."""
    colours: dict[str, str] = {}
    used: dict[str, int] = {}
    for name in EXPERIMENTS:
        for planned in experiment_runs(name).values():
            key, model = config_key(planned[0]), planned[0].config.model
            if key not in colours:
                colours[key] = ARM_COLOURS[used.get(model, 0) % len(ARM_COLOURS)]
                used[model] = used.get(model, 0) + 1
    return colours


def _planned_record(p: Planned, device: str, root: Path) -> RunResult | None:
    """The record of the planned run ``p``, or None (with a one-line note if a
    file is there but cannot count: unreadable, or another run's config)."""
    r, state, detail = load_planned(p, device, root)
    if state == "unreadable":
        skip_note(p.path(device, root), detail.removeprefix(f"{p.path(device, root)}: "))
    elif state == "mismatch":
        skip_note(p.path(device, root), f"not this arm's run ({detail})")
    return r


def experiment_table(arms: list[Arm]) -> str:
    """Markdown: test accuracy per arm, mean ± standard deviation over seeds,
    and the commit(s) its runs were recorded at (``_commits``); under the
    table, a line when the experiment's runs span several commits, then the
    command that reruns each arm (a command inside the table would make it
    wider than the page)."""
    lines = ["| arm | test accuracy (%) | each seed | training time (s) | commit |",
             "|---|---|---|---|---|"]
    machines = {machine_name(r) for a in arms for r in a.runs}
    for a in arms:
        if not a.runs:
            lines.append(f"| {a.name} | not recorded yet (0 of {a.planned}) | | | |")
            continue
        each = ", ".join(f"{100 * r.test_accuracy:.2f}" for r in a.runs)
        lines.append(f"| {a.name} | {a.spread.text(a.planned)} | {each} "
                     f"| {_times(list(a.runs))} "
                     f"| {_commits(list(a.runs))} |")
    if len(machines) > 1:
        lines += ["", f"These runs ran on {len(machines)} different machines (the time "
                      f"column names each): a training time compares only with a time "
                      f"from the same machine, so the column cannot say which arm is "
                      f"faster across machines."]
    commits = {c for a in arms for r in a.runs for c in _all_commits7(r)}
    if len(commits) > 1:
        lines += ["", f"These runs were recorded at {len(commits)} different commits of "
                      "the code (the last column): a gap between two runs from different "
                      "commits can come from a change in the code as well as from the arm "
                      "or the seed."]
    lines += ["", "To rerun an arm's first seed (add `--seed N` for another of its seeds):", ""]
    lines += [f"* {a.name}: `{a.command}`" for a in arms]
    return "\n".join(lines)


def _commit7(r: RunResult) -> str:
    """The commit a run was recorded at, as its first 7 hex digits (keeping a
    '+dirty' mark), from the record's ``provenance.git_commit``."""
    commit = r.provenance.get("git_commit")
    if not commit:
        return "unknown"
    sha, dirty, _ = str(commit).partition("+dirty")
    return sha[:7] + ("+dirty" if dirty else "")


def _all_commits7(r: RunResult) -> list[str]:
    """Every commit run ``r`` trained at: the one it started at, then any it
    was resumed at after a stop (``provenance.resumed_at_commits``)."""
    later = r.provenance.get("resumed_at_commits") or []
    return [_commit7(r)] + [str(c)[:7] for c in later]


def _commits(runs: list[RunResult]) -> str:
    """The table's commit cell: '777d492' when every run has the same commit,
    else each commit with its seeds, '5f1818f (seed 42); 777d492 (seeds 43, 44)';
    a run resumed at other commits reads '934ca0c, resumed at b30c8b7 and
    f8a985d (seed 45)'."""
    seeds: dict[str, list[str]] = {}
    for r in runs:
        first, *later = _all_commits7(r)
        label = first + (f", resumed at {_and(later)}" if later else "")
        seeds.setdefault(label, []).append(str(r.config.get("seed", "?")))
    if len(seeds) == 1:
        return plain(next(iter(seeds)))
    return "; ".join(f"{plain(c)} (seed{'s' if len(s) > 1 else ''} {', '.join(s)})"
                     for c, s in seeds.items())


def by_machine(runs: list[RunResult]) -> dict[str, list[RunResult]]:
    """``runs`` grouped by ``findings.machine_name``, in order of first run:
    a time compares only with a time from the same machine."""
    groups: dict[str, list[RunResult]] = {}
    for r in runs:
        groups.setdefault(machine_name(r), []).append(r)
    return groups


def quiet_runs(runs: list[RunResult]) -> list[RunResult]:
    """The runs that had at least 90% of their threads' time (a run that
    shared the CPU is slower than its machine); a run that kept no CPU time
    counts as quiet."""
    return [r for r in runs if (cpu_share(r) or 1.0) >= QUIET_SHARE]


def _times(runs: list[RunResult]) -> str:
    """The table's time cell: ``_quiet_seconds`` per machine, with its name
    (a time means nothing without its machine)."""
    return "; ".join(_quiet_seconds(group) + (f" on {m}" if m != "?" else "")
                     for m, group in by_machine(runs).items())


def _quiet_seconds(runs: list[RunResult]) -> str:
    """Mean training time over the runs that had their cores to themselves
    (a run that shared the CPU is slower than the CPU; its time is left out,
    and the cell says how many were)."""
    quiet = quiet_runs(runs)
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
    much, 0 if the seeds cannot tell them apart, None while seeds are missing
    (or, as ``findings.separated`` rules, when an arm has a single seed).
    """
    if any(len(arm.runs) < arm.planned or not arm.runs for arm in (a, b)):
        return None
    return separated(a.spread, b.spread)  # the book's one rule


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
    high, low = ("higher", "lower") if len(done) == 2 else ("highest", "lowest")
    text = (f"Over {best.planned} seeds each, {best.name} scored {high} "
            f"({best.spread.mean:.2f}%) and {worst.name} {low} "
            f"({worst.spread.mean:.2f}%): a gap of {gap:.2f} points, against a "
            f"seed-to-seed standard deviation of up to {noise:.2f} points. ")
    both = "these two arms" if len(done) > 2 else "the arms"
    if compare(best, worst):
        return text + (f"The gap is more than twice that spread: at this budget "
                       f"{both} differ.")
    return text + (f"The gap is within twice that spread: at this budget these "
                   f"seeds cannot tell {both} apart.")


def experiment_figure(arms: list[Arm], title: str = "") -> Figure:
    """Validation accuracy of each arm: the mean over its seeds, with the range.

    The arms are variants of one model, so they are drawn in ``ARM_COLOURS``,
    which no model uses: a model's own colour means that model on every page.
    Each arm keeps its configuration's colour (``arm_colours``) on every figure.
    """
    fig = Figure(figsize=(8, 3.8), layout="constrained")
    ax = fig.subplots()
    colours = arm_colours()
    for i, a in enumerate(arms):
        if not a.runs:
            continue
        colour = colours.get(a.key, ARM_COLOURS[i % len(ARM_COLOURS)])
        steps = a.runs[0].val_step
        acc = np.array([[100 * v for v in r.val_accuracy] for r in a.runs
                        if r.val_step == steps])
        ax.plot(steps, acc.mean(0), color=colour, marker=".",
                label=f"{a.name} ({len(acc)} seeds)")
        ax.fill_between(steps, acc.min(0), acc.max(0), color=colour, alpha=0.2)
        # Points on the whole validation set (the epoch ends): large dots.
        images = np.array(a.runs[0].val_images or [0] * len(steps))
        full = images == images.max()
        ax.plot(np.array(steps)[full], acc.mean(0)[full], "o", color=colour,
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


def experiment_status(names: list[str]) -> str:
    """Markdown bullets: each experiment's recorded runs and its ``verdict``."""
    bullets = []
    for name in names:
        arms = experiment_arms(name)
        done, planned = sum(len(a.runs) for a in arms), sum(a.planned for a in arms)
        bullets.append(f"* **{experiment_title(name)}**, {done} of {planned} one-epoch "
                       f"runs recorded. {verdict(arms)}")
    return "\n".join(bullets)


def results_or_note(arms: list[Arm]) -> str:
    """Markdown: the experiment's table and ``verdict`` once every arm has a
    run; before that, one short note naming each arm still without one and
    the command that trains its first seed (no empty table, no verdict)."""
    if all(a.runs for a in arms):
        return experiment_table(arms) + "\n\n" + verdict(arms)
    missing = [a for a in arms if not a.runs]
    each = " ".join(f"No run of the arm “{a.name}” is recorded yet (0 of {a.planned}); "
                    f"`{a.command}` trains its first seed alone." for a in missing)
    return (f"**Not recorded yet.** {each} `make record-cpu` records every missing "
            f"run in the plan's order; this section shows the runs, their table and "
            f"the verdict once every arm has one.")
