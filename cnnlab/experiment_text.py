"""The design and the sentences a chapter shows about a controlled experiment.

``cnnlab.experiments`` reads an experiment's arms and gives its table, its
verdict and its figure; this module words the rest of a page's section:
``experiment_design`` (what the arms share and what sets them apart, from
the plan), ``load_note`` (which runs shared the CPU), ``seed_differences``
and ``range_overlaps`` (how the seeds' results sit against each other),
``verdict_against`` (one arm against each of the others) and
``input_size_comparison`` (28 px against 56 px, beside the report's numbers).
Chapter 4's experiments page (book/04b_resnet_experiments) calls each in one line.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict
from pathlib import Path

from .data import N_TEST, N_TRAIN, N_VAL
from .experiments import Arm, by_machine, compare, experiment_arms, quiet_runs, verdict
from .findings import separated, span_text
from .models import DEFAULT_DROPOUT
from .plan import EXPERIMENT_BUDGET, Planned, experiment_runs
from .report import REPORT, REPORT_RESNET18_28PX
from .results import RESULTS_DIR, RunResult, cpu_share


def find_arm(arms: list[Arm], prefix: str) -> Arm:
    """The one arm whose name starts with ``prefix``."""
    found = [a for a in arms if a.name.startswith(prefix)]
    if len(found) != 1:
        names = ", ".join(f"“{a.name}”" for a in arms)
        raise ValueError(f"{len(found)} arms start with {prefix!r}; the arms are: {names}")
    return found[0]


def _quoted(names: list[str]) -> str:
    """'“a”', '“a” and “b”', '“a”, “b” and “c”'."""
    q = [f"“{n}”" for n in names]
    return " and ".join(q) if len(q) < 3 else ", ".join(q[:-1]) + " and " + q[-1]


def builder_options(p: Planned) -> str:
    """The builder options that set a planned run's arm apart, as one code span:
    ``shortcut="projection", upsample=1`` (dropout too, where the run sets it)."""
    options = dict(p.config.options)
    if p.config.dropout is not None:
        options["dropout"] = p.config.dropout
    if not options:
        return "none (the defaults)"
    return "`" + ", ".join(f'{k}="{v}"' if isinstance(v, str) else f"{k}={v!r}"
                           for k, v in options.items()) + "`"


def _shared_settings(configs: list[dict]) -> str:
    """The sentence on what every planned run shares (``configs``: ``asdict``
    of each run's ``TrainConfig``), or which settings differ besides the arm's."""
    n, c = len(configs), configs[0]
    differ = [k for k in c if k not in ("options", "seed", "dropout")
              and any(other[k] != c[k] for other in configs)]
    if differ:
        return (f"The {n} planned runs differ in more than their builder options and "
                f"seed: {', '.join(f'`{k}`' for k in differ)} differ too.")
    steps = math.ceil(N_TRAIN / c["batch_size"])  # the last batch may be smaller
    length = (f"{c['epochs']} epoch{'s' if c['epochs'] != 1 else ''} ({steps} steps of "
              f"batch {c['batch_size']}{' each' if c['epochs'] != 1 else ''})")
    if c["max_steps"]:
        length += f", stopped after at most {c['max_steps']:,} steps"
    default = DEFAULT_DROPOUT.get(c["model"])
    dropout = (f", dropout {default:g} (the model's default)"
               if all(d["dropout"] is None for d in configs) and default is not None
               else "")
    val, test = c["val_images"] or N_VAL, c["test_images"] or N_TEST
    validated = f"validated every {c['eval_every']} steps on "
    if c["eval_subset"] and c["eval_subset"] < val:
        validated += (f"the first {c['eval_subset']:,} validation images and on all "
                      f"{val:,} at the end of each epoch")
    else:
        validated += f"all {val:,} validation images"
    return (f"Every run: `{c['model']}`, {length}, AdamW with learning rate {c['lr']:g} "
            f"and weight decay {c['weight_decay']:g}{dropout}; {validated}; tested on "
            f"{'all' if test == N_TEST else 'the first'} {test:,} test images. Apart "
            f"from the builder options and the seed, the {n} planned runs share every "
            f"setting.")


def _shared_records(name: str, arm: str, runs: list[Planned]) -> list[str]:
    """Sentences naming the other experiments whose records this arm reuses."""
    seeds = [p.config.seed for p in runs]
    others: dict[tuple[str, str], list[int]] = {}
    for p in runs:
        for experiment, other in zip(p.experiment.split("+"), p.arms):
            if experiment != name:
                others.setdefault((experiment, other), []).append(p.config.seed)
    parts = [f"of “{other}” in experiment `{experiment}` "
             + (f"(all {len(seeds)} of its seeds)" if shared == seeds
                else f"(seed{'s' if len(shared) > 1 else ''} "
                     f"{', '.join(map(str, shared))})")
             for (experiment, other), shared in others.items()]
    if not parts:
        return []
    return [f"The runs of “{arm}” are the records " + " and ".join(parts)
            + ": one record per seed, read by each experiment that plans it."]


def experiment_design(name: str, root: Path = RESULTS_DIR, device: str = "cpu") -> str:
    """Markdown: the plan of experiment ``name``. A table of its arms (the
    builder options that set each apart, as code; the seeds planned and those
    recorded so far), then what every run shares, and which arms reuse the
    records of another experiment."""
    planned = experiment_runs(name)
    recorded = {a.name: sorted(r.config["seed"] for r in a.runs)
                for a in experiment_arms(name, root, device)}
    lines = ["| arm | builder options | seeds planned | seeds recorded |",
             "|---|---|---|---|"]
    for arm, runs in planned.items():
        lines.append(f"| {arm} | {builder_options(runs[0])} | "
                     f"{', '.join(str(p.config.seed) for p in runs)} | "
                     f"{', '.join(map(str, recorded[arm])) or 'none yet'} |")
    configs = [asdict(p.config) for runs in planned.values() for p in runs]
    notes = [_shared_settings(configs)]
    for arm, runs in planned.items():
        notes += _shared_records(name, arm, runs)
    return "\n".join(lines) + "\n\n" + " ".join(notes)


def load_note(arms: list[Arm]) -> str:
    """How busy the CPU was when the runs of ``arms`` were recorded, machine
    by machine (a load on one machine says nothing of another): the load
    average as each run ended, and the share of its threads' time it got."""
    runs = [r for a in arms for r in a.runs]
    if not runs:
        return ""
    groups = by_machine(runs)
    parts = [_machine_load(m, group, len(groups) > 1) for m, group in groups.items()]
    if not any(parts):
        return f"The {len(runs)} runs recorded neither the load nor their CPU time."
    text = "; ".join(p for p in parts if p)
    return (text[0].upper() + text[1:] + " (`provenance.load_average` and `cpu_seconds` "
            "in each record).")


def _machine_load(machine: str, runs: list[RunResult], name_it: bool) -> str:
    """One machine's part of ``load_note`` ('' when its runs kept neither).
    ``cpu_threads`` is the threads PyTorch used, not the machine's cores."""
    loads = [r.provenance["load_average"][0] for r in runs
             if r.provenance.get("load_average")]
    shares = [100 * s for r in runs if (s := cpu_share(r)) is not None]
    threads = sorted({r.provenance.get("cpu_threads") for r in runs} - {None})
    where = f" on the {machine}" if name_it else ""
    with_threads = (f" (PyTorch on {'/'.join(map(str, threads))} threads)"
                    if threads else "")
    n = f"these {len(runs)} runs" if len(runs) > 1 else "this run"
    parts = []
    if loads:
        parts.append(f"when {n}{where} ended, the 1-minute load average was "
                     f"{span_text(loads)}")
    if shares:
        whose = "they" if len(runs) > 1 else "it"
        lead = f"{whose} got" if loads else f"{n}{where} got"
        parts.append(f"{lead} {span_text(shares, '.0f')} % of "
                     f"{'their' if len(runs) > 1 else 'its'} threads' time"
                     f"{with_threads}")
    return ", and ".join(parts)


def seed_differences(arms: list[Arm], first: str, second: str) -> str:
    """Seed by seed, the test accuracy of the arm named ``first`` (a prefix)
    minus that of ``second``, for the seeds both have recorded."""
    a, b = find_arm(arms, first), find_arm(arms, second)
    acc = [{r.config["seed"]: 100 * r.test_accuracy for r in arm.runs} for arm in (a, b)]
    seeds = sorted(acc[0].keys() & acc[1].keys())
    if not seeds:
        return f"No seed is recorded in both “{a.name}” and “{b.name}” yet."
    return "\n".join(f"seed {s}: {a.name} - {b.name} = {acc[0][s] - acc[1][s]:+.2f} points"
                     for s in seeds)


def range_overlaps(arms: list[Arm]) -> str:
    """Markdown bullets, pair by pair: do the two arms' seeds overlap (lowest
    to highest test accuracy)? Where they do not, how often seed noise alone
    would split the results that cleanly: 2 of the C(n + m, n) equally likely
    ways to share the ranks of n and m results between the two arms."""
    done = [a for a in arms if a.runs]
    lines = [f"* “{a.name}”: no seed recorded yet." for a in arms if not a.runs]
    span = {a.name: (min(a.spread.values), max(a.spread.values)) for a in done}
    for i, a in enumerate(done):
        for b in done[i + 1:]:
            (alo, ahi), (blo, bhi) = span[a.name], span[b.name]
            if alo <= bhi and blo <= ahi:
                lines.append(f"* “{a.name}”, {alo:.2f} to {ahi:.2f}, and “{b.name}”, "
                             f"{blo:.2f} to {bhi:.2f}: the ranges overlap.")
                continue
            hi, lo = (a, b) if alo > bhi else (b, a)
            n, m = len(hi.runs), len(lo.runs)
            ways = math.comb(n + m, n)
            text = (f"* Every recorded seed of “{hi.name}” ({span[hi.name][0]:.2f} at "
                    f"worst) scored higher than every one of “{lo.name}” "
                    f"({span[lo.name][1]:.2f} at best). ")
            if ways == 2:
                text += ("With one result in each arm, any two results split this "
                         "cleanly: it says nothing.")
            else:
                text += (f"If seed noise alone were at work, each of the {ways} ways to "
                         f"share the ranks of these {n + m} results between the two arms "
                         f"would be equally likely, and 2 of them give a split this clean, "
                         f"either way round: a hint, not a verdict.")
            lines.append(text)
    return "\n".join(lines)


def verdict_against(arms: list[Arm], subject: str) -> str:
    """Markdown: the arm named ``subject`` (a prefix) against each other arm,
    one ``verdict`` paragraph per pair once every seed is recorded, then one
    sentence on what the seeds separate, by ``compare``'s rule."""
    me = find_arm(arms, subject)
    others = [a for a in arms if a is not me]
    missing = [a.name for a in arms if not a.runs or len(a.runs) < a.planned]
    if missing:
        return (f"Not every planned seed is recorded yet (missing in: "
                f"{_quoted(missing)}), so this page does not yet rank “{me.name}” "
                f"against {_quoted([a.name for a in others])}.")
    paragraphs = [f"**Against {o.name}.** " + verdict([me, o]) for o in others]
    outcome = [compare(me, o) for o in others]
    if all(o == 0 for o in outcome):
        which = ("the other arm" if len(others) == 1 else
                 "either of the others" if len(others) == 2 else "any of the others")
        paragraphs.append(f"So at this budget the seeds cannot tell “{me.name}” from "
                          f"{which}.")
    else:
        words = {1: "higher than {} by more than twice the larger standard deviation",
                 -1: "lower than {} by more than twice the larger standard deviation",
                 0: "within twice the larger standard deviation of {}"}
        paragraphs.append(f"So at this budget “{me.name}” scored "
                          + " and ".join(words[o].format(f"“{a.name}”")
                                         for o, a in zip(outcome, others)) + ".")
    return "\n\n".join(paragraphs)


def _time_ratios(small: Arm, large: Arm) -> str:
    """'2.8 times as long as a 28 px run (239 s against 84 s on average)',
    one such clause per machine that ran both arms (a time compares only
    with a time from the same machine), or '' when none did quietly."""
    clauses = []
    smalls, larges = by_machine(list(small.runs)), by_machine(list(large.runs))
    for m in dict.fromkeys([*smalls, *larges]):  # machines in order of first run
        s, l = (_mean_quiet_seconds(runs.get(m, [])) for runs in (smalls, larges))
        if s is not None and l is not None:
            clauses.append((m, l / s, l, s))
    if len(clauses) == 1:
        _, ratio, l, s = clauses[0]
        return (f"{ratio:.1f} times as long as a 28 px run ({l:,.0f} s against "
                f"{s:,.0f} s on average)")
    return " and ".join(f"{ratio:.1f} times as long as a 28 px run on the {m} ({l:,.0f} s "
                        f"against {s:,.0f} s on average)" for m, ratio, l, s in clauses)


def _mean_quiet_seconds(runs: list[RunResult]) -> float | None:
    """Mean training time of the ``quiet_runs`` (``experiment_table``'s
    rule), or None if none was quiet."""
    quiet = quiet_runs(runs)
    return statistics.mean(r.train_seconds for r in quiet) if quiet else None


def input_size_comparison(arms: list[Arm], report_28: float = REPORT_RESNET18_28PX,
                          report_56: float = REPORT["resnet18"].test_accuracy) -> str:
    """Markdown: the experiment's 28 px and 56 px arms (names starting "28 px"
    and "56 px") beside the report's two numbers, then what the seeds say
    about the gap, and how the training times compare."""
    small, large = find_arm(arms, "28 px"), find_arm(arms, "56 px")
    epochs = EXPERIMENT_BUDGET["epochs"]

    def cell(a: Arm) -> str:
        return a.spread.text(a.planned) if a.runs else f"not recorded yet (0 of {a.planned})"

    table = "\n".join([
        "| test accuracy (%) | 28 px | 56 px |", "|---|---|---|",
        f"| the report's | {report_28:g} | {report_56:.2f} |",
        f"| recorded here (option B, {epochs} epoch{'s' if epochs != 1 else ''}) "
        f"| {cell(small)} | {cell(large)} |"])
    report_gap = report_56 - report_28
    if not (small.runs and large.runs):
        return table + ("\n\nOne of the two sizes has no recorded run yet, so there "
                        "is nothing to set beside the report's gap of "
                        f"{report_gap:.1f} points.")
    gap = large.spread.mean - small.spread.mean
    noise = max(large.spread.std, small.spread.std)
    stated = (f"56 px minus 28 px is {gap:+.2f} points, against a seed-to-seed standard "
              f"deviation of up to {noise:.2f} points")
    final = compare(large, small)
    if final is None:
        seen = separated(large.spread, small.spread)
        text = (f"With {len(small.runs)} of {small.planned} seeds recorded at 28 px and "
                f"{len(large.runs)} of {large.planned} at 56 px, {stated}. ")
        if seen is None:
            text += ("An arm with a single seed has no spread to measure the gap "
                     "against, so nothing is called. ")
        elif seen == 0:
            text += ("So far the seeds cannot separate the two sizes: they neither confirm "
                     f"nor contradict the report's gap of {report_gap:.1f} points."
                     + _overtaken(small, large) + " ")
        else:
            agree = "in the direction" if seen == 1 else "against the direction"
            text += (f"So far the gap is more than twice that spread, {agree} the report "
                     f"found (56 px higher by {report_gap:.1f} points). ")
        text += "This page calls no difference until every planned seed is recorded."
    elif final == 0:
        text = (f"Here the seeds cannot tell 28 px from 56 px apart: {stated}. At this "
                f"budget they do not reproduce the report's gap of {report_gap:.1f} points; "
                f"the report's two numbers come from another budget (and it also added "
                f"dropout on the way to 56 px), so this neither confirms nor contradicts "
                f"them." + _overtaken(small, large))
    elif final == 1:
        text = (f"Here too 56 px scored higher: {stated}, so the gap is more than twice "
                f"that spread. The seeds agree with the direction the report found "
                f"(its gap: {report_gap:.1f} points).")
    else:
        text = (f"Here 28 px scored higher: {stated}, more than twice that spread. The "
                f"seeds go against the direction the report found (56 px higher by "
                f"{report_gap:.1f} points).")
    ratios = _time_ratios(small, large)
    if ratios:
        text += (f"\n\nTraining time is another matter: in these records a 56 px run "
                 f"took {ratios}. At 56 px "
                 f"each feature map has twice the height and width it has at 28 px, or "
                 f"nearly (7 against 4 after stage 2), so three to four times as many "
                 f"positions to compute; the exact ratio of times depends on the machine "
                 f"and its load.")
    return table + "\n\n" + text


def _overtaken(small: Arm, large: Arm) -> str:
    """A sentence counting the seeds of the lower-scoring arm above every seed
    of the higher one ('' if none): how far the seeds' ranges interleave."""
    lo, hi = sorted((small, large), key=lambda a: a.spread.mean)
    above = sum(v > max(hi.spread.values) for v in lo.spread.values)
    if not above:
        return ""
    return (f" Of the {lo.spread.n} recorded seeds of “{lo.name}”, the arm with the "
            f"lower mean, {above} scored above every seed of “{hi.name}”.")
