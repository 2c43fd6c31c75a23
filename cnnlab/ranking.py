"""Chapter 7's comparison: the five networks side by side, ranked only where
their seeds separate them.

Each function turns the recorded full runs (``findings.full_runs``) into one
table or paragraph, so the page calls it in one line and says no more than
the seeds show. The rule is the experiments' (``findings.separated``: a gap
over twice the larger spread), and a network is placed against another only
once every seed the plan (``cnnlab.plan``) has for it is recorded. What one
network's runs say on its own chapter is ``cnnlab.findings``'s.
"""
from __future__ import annotations

from .findings import (Spread, _and, accuracy_spread, machine_name, report_position,
                       separated)
from .plan import FULL_RUNS
from .report import REPORT
from .results import RunResult


def first_epoch_ranking(recorded: dict[str, list[RunResult]]) -> str:
    """Markdown: each network's validation accuracy after one epoch (mean
    over its seeds), then, against the report's reading of its curves
    (``REPORT_SPEED_TIERS``), only what the seeds separate (``separated``,
    between networks whose planned seeds are all in, ``all_seeds_in``: a gap
    over twice the larger spread), whether it agrees with the report or not.
    A network with seeds still to record is placed against no other,
    however large the gap."""
    from .report import REPORT_SPEED_TIERS

    ours = {name: Spread(tuple(100 * r.epoch_val_accuracy[0] for r in runs))
            for name, runs in recorded.items() if name in REPORT_SPEED_TIERS and runs}
    if len(ours) < 2:
        return ("Fewer than two networks have a recorded full run, so this page cannot "
                "compare their curves yet.")
    order = sorted(ours, key=lambda n: ours[n].mean, reverse=True)
    sentences = ["Validation accuracy (%) after the first epoch, mean over seeds: "
                 + ", ".join(f"`{n}` {ours[n].text(planned_seeds(n) or None)}"
                             for n in order) + "."]
    ready = [n for n in order if all_seeds_in(n, ours[n].n)]
    pairs = [(a, b) for i, a in enumerate(ready) for b in ready[i + 1:]]
    calls = {"agree": [], "against": [], "together": []}
    close = []
    for a, b in pairs:
        apart = separated(ours[a], ours[b])
        if apart == 0:
            close.append(f"`{a}` and `{b}`")
        elif apart == 1:
            ta, tb = REPORT_SPEED_TIERS[a], REPORT_SPEED_TIERS[b]
            key = "agree" if ta < tb else "against" if ta > tb else "together"
            calls[key].append(f"`{a}` ahead of `{b}`")
    if calls["agree"]:
        sentences.append("The seeds put " + "; ".join(calls["agree"])
                         + ", as the report's reading has it.")
    if calls["against"]:
        sentences.append("Against the report's order, and beyond the spread of our "
                         "seeds: " + "; ".join(calls["against"]) + ".")
    if calls["together"]:
        sentences.append("The seeds put " + "; ".join(calls["together"])
                         + ", which the report placed together.")
    if close:
        each = "the gap is" if len(close) == 1 else "each gap is"
        sentences.append("The seeds cannot separate " + "; ".join(close)
                         + f": {each} within twice the larger spread.")
    if not any(calls.values()) and not close:
        sentences.append("No two networks have all their planned seeds yet, so the "
                         "seeds separate none of them.")
    waiting = [n for n in order if n not in ready]
    if waiting:
        names, verb, _ = _still_to_record(waiting, {n: ours[n].n for n in waiting})
        agrees = "it agrees" if len(waiting) == 1 else "they agree"
        sentences.append(f"{names} {verb} seeds still to record, so whether {agrees} "
                         f"with the report's order is still open, however large a gap "
                         f"looks.")
    return " ".join(sentences)


def planned_seeds(model: str) -> int:
    """How many seeds of ``model``'s full recipe the plan records (0: none)."""
    return sum(m == model for m, _ in FULL_RUNS)


def all_seeds_in(model: str, n: int) -> bool:
    """Whether ``n`` recorded seeds of ``model`` are every seed the plan has
    for it (two or more for a model outside the plan): the condition that
    ``experiments.compare`` puts on an arm before it calls a difference, so
    the comparison ranks a network only once its seeds are all in."""
    return n >= max(2, planned_seeds(model))


def _seeds_so_far(model: str, n: int) -> str:
    """'1 of 3 seeds', '2 of 3 seeds'; '1 seed' for a model outside the plan."""
    planned = planned_seeds(model)
    return f"{n} of {planned} seeds" if planned else f"{n} seed{'s' if n != 1 else ''}"


def _still_to_record(names: list[str], n: dict[str, int]) -> tuple[str, str, str]:
    """The networks whose seeds are not all in, as '`a` (1 of 3 seeds) and
    `b` (2 of 3 seeds)', with the verb and pronoun that agree with them."""
    text = _and([f"`{m}` ({_seeds_so_far(m, n[m])})" for m in names])
    return (text, "has", "it") if len(names) == 1 else (text, "have", "them")


def _seeds(runs: list[RunResult]) -> str:
    return ", ".join(str(r.config.get("seed")) for r in runs)


def _seed_count(model: str, runs: list[RunResult]) -> str:
    """'3 of 3 (42, 43, 44)', '1 of 3 (42)'; '1 (42)' outside the plan."""
    planned = planned_seeds(model)
    return (f"{len(runs)} of {planned}" if planned else f"{len(runs)}") + f" ({_seeds(runs)})"


def accuracy_table(recorded: dict[str, list[RunResult]]) -> str:
    """Markdown: each network's seeds, test accuracy and the report's number."""
    from .models import list_models

    lines = ["| network | seeds recorded | test accuracy (%) | each seed (%) "
             "| the report's (%) |", "|---|---|---|---|---|"]
    for name in list_models():
        runs, report = recorded.get(name, []), REPORT.get(name)
        theirs = f"{report.test_accuracy:.2f}" if report else "no row"
        if not runs:
            none = "none yet" if planned_seeds(name) else "none (not in the CPU plan)"
            lines.append(f"| `{name}` | {none} | | | {theirs} |")
            continue
        spread = accuracy_spread(runs)
        mean = f"{spread.mean:.2f}" + (f" ± {spread.std:.2f}" if spread.n > 1 else "")
        each = ", ".join(f"{v:.2f}" for v in spread.values)
        lines.append(f"| `{name}` | {_seed_count(name, runs)} | {mean} | {each} | {theirs} |")
    return "\n".join(lines)


def report_verdicts(recorded: dict[str, list[RunResult]]) -> str:
    """Markdown bullets: for each network in the report, how many seeds back
    our number and where the report's single run falls against them."""
    bullets = []
    for name in REPORT:
        runs = recorded.get(name, [])
        if not runs:
            bullets.append(f"* **`{name}`**: no full run recorded yet, so nothing to set "
                           f"the report's {REPORT[name].test_accuracy:.2f}% against.")
            continue
        text = (f"* **`{name}`** ({len(runs)} seed{'s' if len(runs) > 1 else ''}). "
                + report_position(name, runs))
        still = planned_seeds(name) - len(runs)
        if still > 0 and len(runs) > 1:
            text += (f" The plan has {still} more seed{'s' if still > 1 else ''} to "
                     f"record, which may widen that range.")
        bullets.append(text)
    return "\n".join(bullets)


def accuracy_ranking(recorded: dict[str, list[RunResult]]) -> str:
    """A paragraph: which networks the seeds put ahead of which by test
    accuracy (``separated``), which they cannot separate, and why. As in the
    controlled experiments (``experiments.compare``), only networks whose
    planned seeds are all recorded (``all_seeds_in``) are compared; the
    others are named with how many seeds they have so far."""
    spreads = {n: accuracy_spread(runs) for n, runs in recorded.items()}
    if not spreads:
        return "No full run is recorded yet, so nothing can be ranked."
    order = sorted(spreads, key=lambda n: spreads[n].mean, reverse=True)
    ready = [n for n in order if all_seeds_in(n, spreads[n].n)]
    waiting = [n for n in order if n not in ready]
    pairs = [(a, b) for i, a in enumerate(ready) for b in ready[i + 1:]]
    apart = [(a, b) for a, b in pairs if separated(spreads[a], spreads[b]) == 1]
    close = [(a, b) for a, b in pairs if separated(spreads[a], spreads[b]) == 0]
    sentences = []
    each = "the gap is" if len(apart) == 1 else "each gap is"
    if apart:
        sentences.append("By test accuracy, the seeds put " + "; ".join(
            f"`{a}` ahead of `{b}` ({spreads[a].mean:.2f} ± {spreads[a].std:.2f} against "
            f"{spreads[b].mean:.2f} ± {spreads[b].std:.2f})" for a, b in apart)
            + f": {each} more than twice the larger spread.")
    elif len(ready) < 2:
        sentences.append("By test accuracy, fewer than two networks have all their "
                         "planned seeds yet, so the page ranks none of them.")
    else:
        sentences.append("By test accuracy, the seeds separate no two networks yet.")
    if close:
        each = "the gap is" if len(close) == 1 else "each gap is"
        sentences.append("They cannot separate " + "; ".join(
            f"`{a}` and `{b}` (a gap of {spreads[a].mean - spreads[b].mean:.2f} points)"
            for a, b in close) + f": {each} within twice the larger spread.")
    if waiting:
        names, verb, them = _still_to_record(waiting, {n: spreads[n].n for n in waiting})
        sentences.append(f"{names} {verb} seeds still to record. Like an experiment's "
                         f"arm, a network is ranked only once all its planned seeds are "
                         f"in, so the page does not place {them} above or below any "
                         f"other network yet, however large a gap looks.")
    several = {n: s for n, s in spreads.items() if s.n > 1}
    if several:
        widest = max(several, key=lambda n: several[n].high - several[n].low)
        s, runs = several[widest], recorded[widest]
        lo, hi = s.low, s.high
        machines = {machine_name(r) for r in runs}
        commits = {r.provenance.get("git_commit") for r in runs}
        mixed = [n for n in several if n != widest and _mixed(recorded[n])]
        if not _mixed(runs):
            sentences.append(f"For scale: seeds alone move `{widest}` from {lo:.2f}% "
                             f"to {hi:.2f}%.")
        else:
            where = " ".join([f"on {len(machines)} machines"] * (len(machines) > 1)
                             + [f"from {len(commits)} commits"] * (len(commits) > 1))
            seeds = _and([str(r.config.get("seed")) for r in runs])
            sentences.append(f"For scale: the runs of `{widest}` (seeds {seeds}) span "
                             f"{lo:.2f}% to {hi:.2f}%. They were recorded {where}, so "
                             f"that spread holds more than the seed's effect.")
        if mixed:
            names = _and([f"`{n}`" for n in mixed])
            sentences.append(f"The seeds of {names} also come from more than one "
                             f"machine or commit (the records table names each), so "
                             f"{'its' if len(mixed) == 1 else 'their'} spread holds "
                             f"more than the seed's effect too.")
    return " ".join(sentences)


def _mixed(runs: list[RunResult]) -> bool:
    """Whether ``runs`` come from more than one machine or commit."""
    return (len({machine_name(r) for r in runs}) > 1
            or len({r.provenance.get("git_commit") for r in runs}) > 1)


def beats(a: tuple[str, float, float], b: tuple[str, float, float]) -> bool:
    """Whether row ``a`` (name, accuracy, cost) beats row ``b``: at least as
    accurate and at most as costly, and strictly better on one of the two."""
    return a[1] >= b[1] and a[2] <= b[2] and (a[1] > b[1] or a[2] < b[2])


def off_the_front(rows: list[tuple[str, float, float]],
                  recorded: dict[str, list[RunResult]]) -> str:
    """Lines, one per pair: each network of ``rows`` (name, validation
    accuracy in %, cost) that another row beats (at least as accurate and at
    most as costly, strictly better on one), the row that beats it, the
    seeds behind each, and what the seed rule (``separated``, once
    ``all_seeds_in``) says of the accuracy gap, on the last epoch's
    validation accuracy of the runs in ``recorded``. Exercise 7.2 reads its
    Pareto front with it."""
    val = {n: Spread(tuple(100 * r.epoch_val_accuracy[-1] for r in runs))
           for n, runs in recorded.items()}
    lines = []
    for name, accuracy, cost in rows:
        for other, a, c in rows:
            if not beats((other, a, c), (name, accuracy, cost)):
                continue
            if not all(all_seeds_in(n, val[n].n) for n in (name, other)):
                rule = "seeds still to record, so the two cannot be ranked yet"
            elif separated(val[other], val[name]) == 1:
                rule = "the gap is more than twice the larger standard deviation"
            else:
                rule = "the gap is within twice the larger standard deviation"
            lines.append(f"{name} ({accuracy:.2f} %, {_seeds_so_far(name, val[name].n)}) "
                         f"is beaten by {other} ({a:.2f} %, "
                         f"{_seeds_so_far(other, val[other].n)}): {rule}")
    return "\n".join(lines) or "No network beats another on both counts."
