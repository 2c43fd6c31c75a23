"""What the recorded full runs say: summaries, verdicts and figures the book shows.

Everything here reads ``results/`` (the plan in ``cnnlab.plan`` names the
files), so a page says exactly what is recorded, and says plainly what is
not yet. The controlled experiments are ``cnnlab.experiments``'s; the
networks ranked against each other, ``cnnlab.ranking``'s; what each network
costs per image, ``cnnlab.costs``'s.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .data import N_VAL
from .plots import model_colour, model_name, seed_style, smooth
from .plan import FULL_RUNS
from .report import REPORT
from .results import QUIET_SHARE, RunResult, cpu_share, plain, recorded_runs


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

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def text(self, planned: int | None = None) -> str:
        """'97.29 ± 0.35 (3 seeds)', '97.56' for one run; with ``planned``,
        '97.10 ± 0.20 (2 of 3 seeds)' while seeds are missing."""
        of = f"{self.n} of {planned}" if planned and planned != self.n else f"{self.n}"
        if self.n == 1:
            return f"{self.mean:.2f}" + (f" ({of} seeds)" if planned and planned != 1 else "")
        return f"{self.mean:.2f} ± {self.std:.2f} ({of} seeds)"


def accuracy_spread(runs: list[RunResult]) -> Spread:
    """The test accuracies of ``runs``, in percent."""
    return Spread(tuple(100 * r.test_accuracy for r in runs))


def span_text(values: list[float], spec: str = ".1f", unit: str = "") -> str:
    """'2.1 to 7.0 s', or '2.1 s' when every value prints the same
    (``spec`` is the format of each number, ``unit`` follows the last)."""
    lo, hi = format(min(values), spec), format(max(values), spec)
    return f"{lo}{unit}" if lo == hi else f"{lo} to {hi}{unit}"


def device_runs(model: str, folder: str | Path | None = None) -> list[RunResult]:
    """The recorded full runs of ``model`` on the device of its first (GPU first)."""
    runs = recorded_runs(model, folder)
    if not runs:
        return []
    device = runs[0].provenance.get("device")
    return [r for r in runs if r.provenance.get("device") == device]


# Chapter 7's table of every run's time and load (beside its one section on
# provenance); the chapters' summaries link to it. A link to the notebook
# works in Jupyter (it opens the page) and, in a cell whose output MyST-NB
# reads as MyST (``markdown_format: myst``), in the built book too, where it
# becomes a link to the section.
TIMES_TABLE = "07_comparison.ipynb#training-time-from-the-records"


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
    seeds = ", ".join(str(r.config.get("seed")) for r in runs)
    spread = accuracy_spread(runs)
    # say what "±" means where it appears (one seed shows a plain number)
    head = "test accuracy (%)" + (", mean ± sample SD over seeds" if spread.n > 1 else "")
    lines = [f"| | {head} | seeds |", "|---|---|---|",
             f"| cnnlab, recorded | {spread.text()} | {plain(seeds)} |"]
    if report is not None:
        lines += [f"| the report | {report.test_accuracy:.2f} | one run |", "",
                  report_position(model, runs)]
    lines += ["", timing_sentence(runs, report.seconds if report else None)]
    return "\n".join(lines).rstrip()


def timing_sentence(runs: list[RunResult], report_seconds: float | None = None) -> str:
    """A few short sentences: how long the recorded ``runs`` trained and on
    what, whether other work shared the CPU, and where the per-seed details
    are. Times from different machines are given per machine, each with its
    seeds, and never averaged.
    """
    by_machine: dict[str, list[RunResult]] = {}
    for r in runs:
        by_machine.setdefault(_machine_phrase(r), []).append(r)
    if len(by_machine) == 1:
        who = "The run" if len(runs) == 1 else f"Each of the {len(runs)} seeds"
        text = f"{who} trained in {_times(runs)} on {next(iter(by_machine))}"
    else:  # 'Seed 42 trained in ... on A; seeds 43 and 44 in ... on B'
        parts = [f"{_seeds(group)} in {_times(group)} on {machine}"
                 for machine, group in by_machine.items()]
        parts[0] = parts[0].replace(" in ", " trained in ", 1)
        text = "; ".join(parts)
        text = text[0].upper() + text[1:]
    machines = "machine needs" if len(by_machine) == 1 else "machines need"
    shared = [(r, _shared(r)) for r in runs]  # judged once per run
    busy = [r for r, s in shared if s]
    unknown = [r for r, s in shared if s is None and r.config.get("device") == "cpu"]
    if busy:
        during = ("it" if len(runs) == 1 else _seeds(busy) if len(busy) < len(runs)
                  else "both" if len(runs) == 2 else "all of them")
        text += (f". Other work shared the CPU during {during}, so "
                 + ("that time is" if len(busy) == 1 else "those times are")
                 + f" longer than the {machines}.")
    elif unknown:
        which = "" if len(unknown) == len(runs) else f" for {_seeds(unknown)}"
        text += f". Whether other work shared the CPU is not recorded{which}."
    elif runs and runs[0].config.get("device") == "cpu":
        text += (", with its cores to itself." if len(runs) == 1 else
                 ", each with its cores to itself.")
    else:
        text += "."
    if report_seconds is not None:
        text += (f" The report's {report_seconds:,.0f} s came from another machine and a "
                 f"timer it does not describe, so it does not compare with ours.")
    return text + f" Per-seed times and loads: [Training time, from the records]({TIMES_TABLE})."


def _times(runs: list[RunResult]) -> str:
    """'24 s', '24 to 25 s'; two runs, both named in the runs' order, which is
    their seeds' ('4,060 and 2,335 s' for seeds 43 and 44)."""
    seconds = [r.train_seconds for r in runs]
    if len(seconds) == 2 and format(seconds[0], ",.0f") != format(seconds[1], ",.0f"):
        return f"{seconds[0]:,.0f} and {seconds[1]:,.0f} s"
    return span_text(seconds, ",.0f", " s")


def _machine_phrase(r: RunResult) -> str:
    """'an AMD EPYC (2 threads)', 'an NVIDIA H100' (with its article)."""
    name = machine_name(r)
    article = "an" if name[:1] in "AEIOU" or name.startswith("NVIDIA") else "a"
    threads = r.provenance.get("cpu_threads")
    return (f"{article} {name}"
            + (f" ({plain(threads)} threads)" if r.config.get("device") == "cpu" and threads
               else ""))


def _seeds(runs: list[RunResult]) -> str:
    """'seed 42', or 'seeds 42, 43 and 44'."""
    seeds = [plain(r.config.get("seed")) for r in runs]
    return ("seed " if len(seeds) == 1 else "seeds ") + _and(seeds)


def _shared(r: RunResult) -> bool | None:
    """Whether other work shared the CPU during CPU run ``r``: judged by its
    share of its threads' time, else by the 15-minute load average when it
    ended; None when it recorded neither, or on a GPU."""
    share = cpu_share(r)
    if share is not None:
        return share < QUIET_SHARE
    load = (r.provenance.get("load_average") or [None] * 3)[2]
    if load is None or r.config.get("device") != "cpu":
        return None
    return load > r.provenance.get("cpu_threads", 1)


def report_position(model: str, runs: list[RunResult]) -> str:
    """One sentence: where the report's single test accuracy falls against
    the range of our seeds of ``model`` ('' when the report has no row)."""
    report = REPORT.get(model)
    if report is None or not runs:
        return ""
    spread = accuracy_spread(runs)
    lo, hi, theirs = spread.low, spread.high, report.test_accuracy
    seeds = ", ".join(str(r.config.get("seed")) for r in runs)
    if spread.n == 1:
        gap = theirs - lo
        return (f"The report's {theirs:.2f}% is {abs(gap):.2f} points "
                f"{'above' if gap > 0 else 'below'} our one seed ({seeds}: {lo:.2f}%); one "
                f"seed cannot say whether that gap is more than seed-to-seed noise.")
    where = (f"inside the range of our {spread.n} seeds ({seeds}: {lo:.2f} to {hi:.2f}%)"
             if lo <= theirs <= hi else
             f"{theirs - hi:.2f} points above the best of our {spread.n} seeds "
             f"({seeds}: {lo:.2f} to {hi:.2f}%)" if theirs > hi else
             f"{lo - theirs:.2f} points below the worst of our {spread.n} seeds "
             f"({seeds}: {lo:.2f} to {hi:.2f}%)")
    return f"The report's single run, {theirs:.2f}%, lies {where}."


def seed_spread_text(model: str, runs: list[RunResult]) -> str:
    """What the seeds of ``model`` say about seed-to-seed noise, in a sentence
    or two: how far changing only the seed moved the test accuracy."""
    name = model_name(model)
    if not runs:
        return f"No full run of {name} is recorded yet: run `make record-cpu`."
    spread = accuracy_spread(runs)
    if spread.n == 1:
        return (f"One seed of {name} is recorded so far ({spread.low:.2f}%): the spread "
                f"between seeds needs more of them.")
    lo, hi = spread.low, spread.high
    return (f"Changing only the seed moved {name}'s test accuracy by {hi - lo:.2f} "
            f"points ({lo:.2f} to {hi:.2f}% over {spread.n} seeds). Two single runs "
            f"that differ by less than that may differ by the seed alone; {spread.n} "
            f"seeds give only a rough lower bound on the spread.")


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
        shared, share = _shared(r), cpu_share(r)
        if shared is None:
            unknown.append(name)
        elif not shared:
            quiet.append(name)
        elif share is not None:
            busy.append(f"{name} got {100 * share:.0f}% of its threads' time")
        else:
            busy.append(f"when {name} ended, the load average over 15 minutes was "
                        f"{r.provenance['load_average'][2]:.1f} on "
                        f"{r.provenance.get('cpu_threads', 1)} threads")
    sentences = []
    if busy:
        sentences.append("Other work shared the CPU: " + "; ".join(busy) + ". Those "
                         "runs' times are longer, and their images/s lower, than their "
                         "machine gives with its cores free.")
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
    """Training loss and validation accuracy of recorded runs.

    Each model in its book colour (``plots.model_colour``); the seeds of
    one model in that colour, told apart by line style and marker
    (``plots.seed_style``). Validation points on the whole set (epoch ends)
    are filled; points on the subset between epoch ends
    (``TrainConfig.eval_subset``) are hollow.
    """
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    seen: dict[str, int] = {}
    for r in runs:
        colour = model_colour(r.model)
        line, marker = seed_style(seen.get(r.model, 0))
        seen[r.model] = seen.get(r.model, 0) + 1
        label = f"{model_name(r.model)}, seed {r.config.get('seed')}"
        ax_loss.plot(np.arange(1, len(r.train_loss) + 1), smooth(r.train_loss, window),
                     color=colour, ls=line, label=label)
        acc = np.array([100 * a for a in r.val_accuracy])
        step = np.array(r.val_step)
        full = np.array(r.val_images or [0] * len(step)) == max(r.val_images or [0])
        ax_acc.plot(step, acc, color=colour, ls=line, alpha=0.5)
        ax_acc.plot(step[full], acc[full], marker, ls="none", color=colour, label=label)
        ax_acc.plot(step[~full], acc[~full], marker, ls="none", mfc="white", color=colour)
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


# ------------------------------------------------------------ the comparison
# Chapter 7 sets the five networks side by side: the runs, the seed rule and
# the records' machines and memory are here; the tables and paragraphs that
# rank the networks are cnnlab.ranking's.

def full_runs(models: list[str] | None = None,
              folder: str | Path | None = None) -> dict[str, list[RunResult]]:
    """The recorded full runs of each model that has any (``device_runs``)."""
    from .models import list_models

    found = {m: device_runs(m, folder) for m in (models or list_models())}
    return {m: runs for m, runs in found.items() if runs}


def separated(a: Spread, b: Spread) -> int | None:
    """Whether the seeds put ``a`` ahead of ``b`` (+1), behind it (-1), or
    cannot separate them (0): apart only when both have two seeds or more
    and the gap between the means is over twice the larger spread. None when
    either has a single seed, which has no spread of its own."""
    if a.n < 2 or b.n < 2:
        return None
    gap = a.mean - b.mean
    if abs(gap) <= 2 * max(a.std, b.std):
        return 0
    return 1 if gap > 0 else -1


def _and(words: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return " and ".join(words) if len(words) < 3 else ", ".join(words[:-1]) + " and " + words[-1]


# What a record's peak memory measures, in a few words (``RunResult.peak_memory_kind``).
MEMORY_KINDS = {"cuda_max_memory_allocated": "the GPU tensors PyTorch allocated",
                "mps_driver_allocated": "what the MPS driver allocated",
                "process_peak_rss": "the process's peak resident memory (RSS) since "
                                    "it started",
                "process_peak_rss_during_run": "the process's peak resident memory "
                                               "(RSS) during the run"}


def machine_name(r: RunResult) -> str:
    """The record's processor or GPU, short: 'Intel(R) Xeon(R) Processor'
    reads 'Intel Xeon' (trademark signs and filler words dropped)."""
    import re

    name = str(r.provenance.get("device_name", "?"))
    name = re.sub(r"\((R|TM)\)|\b(Processor|CPU)\b", "", name, flags=re.I)
    return plain(" ".join(name.split()) or "?")


def _device_text(r: RunResult) -> str:
    p = r.provenance
    threads = f", {p.get('cpu_threads', '?')} threads" if p.get("device") == "cpu" else ""
    return machine_name(r) + plain(threads)


def records_table(recorded: dict[str, list[RunResult]]) -> str:
    """Markdown: time, throughput and peak memory of every full run, each on
    its own machine, with its share of its cores; then what the columns
    measure and which runs shared the CPU (``shared_note``)."""
    lines = ["| network | seed | machine | training time (s) | images/s "
             "| share of cores | peak memory (MiB) |", "|---|---|---|---|---|---|---|"]
    runs = [r for rs in recorded.values() for r in rs]
    for r in runs:
        share = cpu_share(r)
        peak = ("" if r.peak_memory_bytes is None else
                f"{r.peak_memory_bytes / 2**20:,.0f}"
                + ("*" if r.peak_memory_kind == "process_peak_rss" else ""))
        lines.append(f"| `{r.model}` | {r.config.get('seed')} | {_device_text(r)} "
                     f"| {r.train_seconds:,.0f} | {r.images_per_second:,.0f} "
                     f"| {'—' if share is None else f'{100 * share:.0f}%'} | {peak} |")
    return "\n".join(lines + ["", memory_note(runs), "", shared_note(runs)]).strip()


def memory_note(runs: list[RunResult]) -> str:
    """What the peak memory column measures, and where a peak is not the run's own."""
    kinds = {r.peak_memory_kind for r in runs if r.peak_memory_bytes is not None}
    if not kinds:
        return ""
    main = sorted(k for k in kinds if k != "process_peak_rss")
    text = ("Peak memory is " + _and([MEMORY_KINDS.get(k, plain(k)) for k in main])
            if main else "Peak memory is the process's peak resident memory (RSS)")
    if "process_peak_rss" in kinds:
        text += ("; * marks an older record whose peak counts from the process's start, "
                 "not only during its run")
    text += "."
    if kinds & {"process_peak_rss", "process_peak_rss_during_run"}:
        text += (" A process's resident memory holds Python, the PyTorch libraries and "
                 "the dataset as well as the model's tensors: a ceiling on what the "
                 "model needed, not its own footprint.")
    lifetime: dict[int, list[str]] = {}
    for r in runs:
        if r.peak_memory_kind == "process_peak_rss" and r.peak_memory_bytes:
            lifetime.setdefault(r.peak_memory_bytes, []).append(
                f"`{r.model}` (seed {r.config.get('seed')})")
    for peak, names in lifetime.items():
        if len(names) > 1:
            text += (f" {_and(names)} show the same peak, {peak / 2**20:,.0f} MiB: "
                     f"they ran one after the other in one process, so it is not each "
                     f"run's own.")
    return text


def validation_note(runs: list[RunResult]) -> str:
    """How often the runs validated and on how many images (filled points:
    the whole validation set; hollow: a subset), with the standard error of
    an accuracy measured on the subset."""
    schemes: dict[tuple, list[str]] = {}
    for r in runs:
        key = (r.config.get("eval_every"), tuple(r.val_images))
        schemes.setdefault(key, []).append(f"`{r.model}` (seed {r.config.get('seed')})")
    sentences = []
    for (every, images), names in schemes.items():
        full = max(images, default=0)
        subset = sorted({n for n in images if n < full})
        who = (_and(names) if len(schemes) > 1 or len(names) == 1 else
               "Both runs" if len(names) == 2 else f"All {len(names)} runs")
        points = images.count(full)
        text = (f"{who}: validated every {every} steps, {points} "
                f"point{'s' if points != 1 else ''} on all {full:,} images (filled)")
        if subset:
            counts = ", ".join(f"{sum(n == s for n in images)} on the first {s:,}"
                               for s in subset)
            final = statistics.mean(r.val_accuracy[-1] for r in runs)
            noise = 100 * (final * (1 - final) / min(subset)) ** 0.5
            text += (f" and {counts} (hollow). At these runs' final accuracy "
                     f"({100 * final:.1f}% on average), one standard error on "
                     f"{min(subset):,} images is about {noise:.1f} points")
        sentences.append(text + ".")
    return "\n\n".join(sentences) if sentences else "No full run is recorded yet."


def early_validation(model: str, folder: str | Path | None = None) -> str:
    """One sentence: the eval-mode accuracy of ``model``'s recorded full runs
    at their first validation point and at the end of their first epoch
    (one run: its two numbers; several: the range over the seeds)."""
    runs = [r for r in device_runs(model, folder) if r.val_step and r.epoch_val_accuracy]
    if not runs:
        return f"No full run of `{model}` is recorded yet, so its early validation is unknown."
    step, images = runs[0].val_step[0], (runs[0].val_images or [0])[0]
    same = [r for r in runs if r.val_step[0] == step and (r.val_images or [0])[0] == images]

    def span(values: list[float]) -> str:
        return span_text([100 * v for v in values], ".2f", "%")

    seeds = _and([str(r.config.get("seed")) for r in same])
    which = (f"the recorded run (seed {seeds})" if len(same) == 1 else
             f"the {len(same)} recorded runs (seeds {seeds})")
    subset = f"the first {images:,} validation images" if images else "the validation images"
    return (f"In eval mode, {which} scored {span([r.val_accuracy[0] for r in same])} "
            f"at step {step} (the first validation point, on {subset}), and "
            f"{span([r.epoch_val_accuracy[0] for r in same])} on all {N_VAL:,} after the "
            f"first epoch.")


def provenance_table(runs: list[RunResult]) -> str:
    """Markdown: where and when each record was made, and from which code."""
    from .provenance import short_commit

    lines = ["| network | seed | recorded | machine | torch | commit |",
             "|---|---|---|---|---|---|"]
    for r in runs:
        p = r.provenance
        lines.append(f"| `{r.model}` | {r.config.get('seed')} "
                     f"| {plain(str(p.get('date', '?'))[:10])} | {_device_text(r)} "
                     f"| {plain(p.get('torch', '?'))} "
                     f"| {plain(short_commit(p.get('git_commit')))} |")
    return "\n".join(lines)
