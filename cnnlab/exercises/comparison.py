"""Checkers for the comparison exercises (chapter 7).

* ``check_early_stop``: the learner's ``early_stop(val_losses, patience)``
  against a patience rule written out here, on made-up validation curves and
  on the curve the notebook trained.
* ``check_pareto``: the learner's ``choice_rows(recorded, net_costs)``
  (each network's validation accuracy and mult-adds) against the rule, on
  made-up records and on the recorded ones; then the learner's
  ``pareto_front(rows)`` against the definition of the front, on made-up
  tables and on the rows of the records.

Neither trains anything: both read numbers, so each check takes
milliseconds.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Callable

from . import checker, expect, expect_equal, shown
from ._harness import as_count, as_real, close, plain_str
from ..costs import Cost
from ..ranking import beats as _beats  # the front's rule, as chapter 7 reads it
from ..results import RunResult

CHAPTER = "chapter 7 (Comparing the five networks)"
NOTEBOOK = "07_comparison.ipynb"
# A right answer takes microseconds on these lists; a few seconds are plenty
# even on a busy machine, and stop an answer that loops forever soon.
SECONDS = 5.0


# --- Exercise 1: early stopping ----------------------------------------------

def _early_stop(losses: Sequence[float], patience: int, *, ties_improve: bool = False,
                against_previous: bool = False, extra_wait: int = 0,
                keep_true_best: bool = False) -> tuple[int, int]:
    """(stop epoch, kept epoch), epochs from 1: the rule, and some of its slips.

    An epoch improves when its loss is strictly below the best so far;
    training stops at the end of the ``patience``-th epoch in a row that does
    not improve, or at the last epoch; the best epoch up to the stop is kept.
    With ``against_previous`` an epoch "improves" on the one before it, and
    ``keep_true_best`` then still keeps the lowest loss up to the stop.
    """
    best, kept, waited, previous = math.inf, 0, 0, math.inf
    lowest, lowest_epoch = math.inf, 0
    for epoch, loss in enumerate((float(v) for v in losses), start=1):
        reference = previous if against_previous else best
        better = loss <= reference if ties_improve else loss < reference
        previous = loss
        if loss < lowest:
            lowest, lowest_epoch = loss, epoch
        if better:
            best, kept, waited = loss, (lowest_epoch if keep_true_best else epoch), 0
        else:
            waited += 1
            if waited == patience + extra_wait:
                return epoch, (lowest_epoch if keep_true_best else kept)
    return len(losses), (lowest_epoch if keep_true_best else kept)


def _first_increase(losses: Sequence[float], patience: int) -> tuple[int, int]:
    return _early_stop(losses, 1)


def _first_rise(losses: Sequence[float], patience: int) -> tuple[int, int]:
    """The slip as learners write it: stop at the first loss above the one before,
    keep the epoch before it; without a rise, the last epoch for both."""
    values = [float(v) for v in losses]
    rise = next((e for e in range(2, len(values) + 1) if values[e - 1] > values[e - 2]), None)
    return (rise, rise - 1) if rise else (len(values), len(values))


def _keep_last(losses: Sequence[float], patience: int) -> tuple[int, int]:
    stop, _ = _early_stop(losses, patience)
    return stop, stop


def _zero_based(losses: Sequence[float], patience: int) -> tuple[int, int]:
    stop, kept = _early_stop(losses, patience)
    return stop - 1, kept - 1


def _best_of_all(losses: Sequence[float], patience: int) -> tuple[int, int]:
    stop, _ = _early_stop(losses, patience)
    values = [float(v) for v in losses]
    return stop, values.index(min(values)) + 1


def _minimum_plus_patience(losses: Sequence[float], patience: int) -> tuple[int, int]:
    """The slip: find the lowest loss of the whole curve, stop ``patience`` later."""
    values = [float(v) for v in losses]
    best = values.index(min(values)) + 1
    return min(best + patience, len(values)), best


_SEE_STOP = f"See {CHAPTER}, 'Learning curves of the recorded runs'."
# The usual slips, each as the answer it amounts to, and what to tell the learner.
EARLY_STOP_SLIPS: list[tuple[Callable[[Sequence[float], int], tuple[int, int]], str]] = [
    (_zero_based,
     "both numbers are one too small: count epochs from 1 (enumerate(val_losses, start=1))"),
    (_keep_last,
     "you keep the weights of the epoch at which training stops, but that epoch (and the "
     "patience epochs before it) did not improve: keep the best epoch seen so far"),
    *[(slip, "you stop at the first epoch that does not improve, whatever the patience; "
             "patience p lets p epochs in a row go by without an improvement, and stops "
             "at the p-th") for slip in (_first_increase, _first_rise)],
    (lambda losses, p: _early_stop(losses, p, ties_improve=True),
     "an epoch that only EQUALS the best loss is not an improvement: use <, not <=, so a "
     "plateau counts towards the patience and the earlier of two equal epochs is kept"),
    (lambda losses, p: _early_stop(losses, p, against_previous=True),
     "you compared each epoch with the one before it; compare with the BEST loss so far, "
     "or a curve that wobbles above its best never stops"),
    (lambda losses, p: _early_stop(losses, p, against_previous=True, keep_true_best=True),
     "you count the patience from the last epoch that beat the one before it; count it "
     "from the BEST loss so far (an epoch improves only when it beats the best), or a "
     "curve that wobbles above its best never stops"),
    (_minimum_plus_patience,
     "you took the lowest loss of the WHOLE curve and stopped patience epochs after it; "
     "training cannot see the epochs it has not run yet: walk the epochs in order and "
     "stop at the patience-th epoch in a row that does not beat the best so far"),
    (lambda losses, p: _early_stop(losses, p, extra_wait=1),
     "you stop one epoch late: stop AT the p-th epoch in a row without an improvement, "
     "not after it"),
    (_best_of_all,
     "you kept the best epoch of the whole curve, including epochs after the stop, which "
     "training never ran: keep the best epoch up to the stop"),
]


def _early_stop_cases() -> list[tuple[str, Sequence[float], int]]:
    """(what, validation losses, patience), each built to catch one slip."""
    import numpy as np

    return [
        ("a curve that keeps falling", [2.0, 1.5, 1.2, 1.0, 0.9, 0.85], 2),
        ("a U-shaped curve", [1.0, 0.7, 0.5, 0.45, 0.47, 0.5, 0.55, 0.6], 2),
        ("noise that recovers within the patience",
         [1.0, 0.6, 0.65, 0.62, 0.55, 0.58, 0.6, 0.57, 0.7], 3),
        ("a plateau of equal losses", [1.0, 0.5, 0.5, 0.5, 0.4], 2),
        ("a loss that returns to its best and rises",
         [1.0, 0.5, 0.6, 0.5, 0.7, 0.8, 0.9], 3),
        ("patience 1", [1.0, 0.9, 0.95, 0.8], 1),
        ("a patience longer than the curve", [0.9, 0.7, 0.8, 0.85], 10),
        ("a single epoch", [0.7], 2),
        ("NumPy float32 losses, the lowest after the stop",
         np.array([1.0, 0.8, 0.85, 0.9, 0.95, 0.5], dtype=np.float32), 3),
        ("a wobble above the best that never improves",
         [1.0, 0.6, 0.7, 0.65, 0.66, 0.64, 0.69, 0.67], 2),
    ]


def _as_epochs(got: object, call: str) -> tuple[int, int]:
    expect(isinstance(got, (tuple, list)) and len(got) == 2,
           f"{call} returned {shown(got)}; return a pair (stop epoch, kept epoch).")
    return (as_count(got[0], f"{call}[0], the stop epoch"),
            as_count(got[1], f"{call}[1], the kept epoch"))


def _check_real_curve(val_losses: object) -> list[float]:
    where = "pass result.epoch_val_loss from the training cell above"
    expect(isinstance(val_losses, Sequence) and len(val_losses) >= 2,
           f"the validation losses must be a list of at least two numbers: {where}.")
    return [as_real(v, f"val_losses[{i}]") for i, v in enumerate(val_losses)]


@checker("early_stop", answers="early_stop", seconds=SECONDS)
def check_early_stop(early_stop: Callable[[Sequence[float], int], tuple[int, int]],
                     val_losses: object) -> None:
    """Check ``early_stop(val_losses, patience) -> (stop epoch, kept epoch)`` on
    made-up curves and on ``val_losses``, the curve the notebook trained."""
    real = _check_real_curve(val_losses)
    cases = _early_stop_cases() + [(f"your curve, patience {p}", real, p) for p in (1, 2, 3, 5)]

    def answer(losses: Sequence[float], patience: int, what: str) -> tuple[int, int]:
        return _as_epochs(early_stop(copy.deepcopy(losses), patience),
                          f"early_stop(val_losses, {patience}) on {what}")

    answers = [answer(losses, p, what) for what, losses, p in cases]
    for (what, losses, patience), got in zip(cases, answers):
        expected = _early_stop(losses, patience)
        if got == expected:
            continue
        # A slip is named only when it gives the learner's answer on every curve:
        # on one curve several slips can give the same pair by chance.
        hint = next((hint for slip, hint in EARLY_STOP_SLIPS
                     if [slip(c, p) for _, c, p in cases] == answers),
                    "an epoch improves when its loss is below the best so far; stop at the "
                    "patience-th epoch in a row without an improvement (or at the last "
                    "epoch), and keep the best epoch up to there")
        shown = [round(float(v), 4) for v in losses]
        expect_equal(f"early_stop({shown}, patience={patience}) ({what})", expected, got,
                     f"{hint}. {_SEE_STOP}")


# --- Exercise 2: the networks worth choosing ---------------------------------

Row = tuple[str, float, float]  # (name, accuracy %: higher is better, mult-adds: lower)
Recorded = Mapping[str, Sequence[RunResult]]
Costs = Mapping[str, Cost]
_SEE_FRONT = f"See {CHAPTER}, 'Accuracy against cost'."


def _mean(values: Iterable[float]) -> float:
    values = [float(v) for v in values]
    return math.fsum(values) / len(values)


def _accuracy(runs: Sequence[RunResult]) -> float:
    """The rule: the mean over the runs of the last epoch's validation accuracy, in %."""
    return _mean(100 * float(r.epoch_val_accuracy[-1]) for r in runs)


def _cost(runs: Sequence[RunResult], cost: Cost) -> float:
    """The rule: mult-adds per digit, counted from the model (the same on any machine)."""
    return float(cost.mult_adds)


def _choice_rows(recorded: Recorded, net_costs: Costs) -> list[Row]:
    """One row per network that has runs: (name, accuracy %, mult-adds per digit)."""
    return [(name, _accuracy(runs), _cost(runs, net_costs[name]))
            for name, runs in recorded.items()]


_LAST_VAL = "use each run's validation accuracy after the last epoch, epoch_val_accuracy[-1]"
_ONE_RUN = ("you used one run of a network that has several. One seed is one draw: take "
            "the mean over all of the network's runs")
# The usual slips in a row's accuracy, each as the number it gives, and what to say.
ACCURACY_SLIPS: list[tuple[Callable[[Sequence[RunResult]], float], str]] = [
    (lambda runs: _mean(100 * float(r.test_accuracy) for r in runs),
     "you used the test accuracy. Choosing a network is a decision, and chapter 1 makes "
     "every decision on the validation split and keeps the test split for one measurement "
     "at the end: " + _LAST_VAL),
    (lambda runs: _mean(100 * max(float(v) for v in r.epoch_val_accuracy) for r in runs),
     "you took each run's best epoch. The recorded network is the one at the end of "
     "training (its test accuracy was measured on those weights): " + _LAST_VAL),
    (lambda runs: _mean(100 * float(r.epoch_val_accuracy[0]) for r in runs),
     "epoch_val_accuracy[0] is the first epoch's accuracy; the last epoch's is "
     "epoch_val_accuracy[-1]"),
    (lambda runs: _mean(100 * _mean(r.epoch_val_accuracy) for r in runs),
     "you averaged each run over its epochs; take each run's last epoch, "
     "epoch_val_accuracy[-1], then the mean over the runs"),
    (lambda runs: _mean(float(r.epoch_val_accuracy[-1]) for r in runs),
     "the records keep accuracies as fractions (0.983); give the row's accuracy in "
     "percent (98.3)"),
    (lambda runs: 100 * float(runs[0].epoch_val_accuracy[-1]), _ONE_RUN),
    (lambda runs: 100 * float(runs[-1].epoch_val_accuracy[-1]), _ONE_RUN),
]
_TIMES = ("The recorded times were measured on different machines, some of them shared "
          "with other work (chapter 7, 'How these runs were recorded'), so they do not "
          "compare from row to row: use the mult-adds per digit, net_costs[name].mult_adds, "
          "which are the same on every machine")
# The usual slips in a row's cost.
COST_SLIPS: list[tuple[Callable[[Sequence[RunResult], Cost], float], str]] = [
    (lambda runs, cost: _mean(r.train_seconds for r in runs),
     "you used the training time. " + _TIMES),
    (lambda runs, cost: _mean(r.images_per_second for r in runs),
     "you used the throughput (images per second). " + _TIMES),
    (lambda runs, cost: float(cost.parameters),
     "you used the parameters; this exercise puts the mult-adds per digit on the cost axis, "
     "net_costs[name].mult_adds (the question after the check tries the parameters)"),
    (lambda runs, cost: cost.mult_adds / 1e6,
     "give the mult-adds as counted, net_costs[name].mult_adds, not in millions"),
]


def made_up_run(model: str, seed: int, val: Sequence[float], test: float, seconds: float,
                machine: str = "AMD EPYC", parameters: int = 0) -> RunResult:
    """A made-up full run (the checker's test records, and the tests'): ``val`` its
    validation accuracy (a fraction) at each epoch end, ``test`` its test accuracy,
    ``seconds`` its training time, on ``machine``."""
    epochs = len(val)
    return RunResult(
        model=model, parameters=parameters, config={"model": model, "seed": seed,
                                                    "epochs": epochs, "device": "cpu"},
        steps_per_epoch=1, train_loss=[2.0 - 0.3 * e for e in range(epochs)],
        val_step=list(range(1, epochs + 1)), val_accuracy=list(val),
        val_loss=[1.0 - v for v in val], epoch_val_accuracy=list(val),
        epoch_val_loss=[1.0 - v for v in val], test_accuracy=test, test_loss=1.0 - test,
        train_seconds=seconds, images_per_second=48_000 * epochs / seconds,
        peak_memory_bytes=None, peak_memory_kind="process_peak_rss",
        provenance={"device": "cpu", "device_name": machine, "cpu_threads": 2},
        val_images=[12_000] * epochs)


def _made_up_records() -> list[tuple[str, dict[str, list[RunResult]], dict[str, Cost]]]:
    """(what, recorded, net_costs): the numbers differ under every slip above.

    In the first, "wide" is less accurate than "deep" on validation and more
    accurate on test, and costs more mult-adds but less time: the test
    accuracy or the time would keep it on the front. "huge" has a cost and no
    run, as alexnet_large has in the notebook.
    """
    small, deep, wide = Cost(44_000, 300_000, 28), Cost(11_000_000, 120_000_000, 56), \
        Cost(43_000_000, 320_000_000, 56)
    recorded = {
        "deep": [made_up_run("deep", 42, [0.96, 0.98, 0.986], 0.984, 1_900.0, "Intel Xeon",
                      deep.parameters),
                 made_up_run("deep", 43, [0.97, 0.99, 0.982], 0.990, 5_700.0, "AMD EPYC",
                      deep.parameters)],
        "small": [made_up_run("small", 42, [0.90, 0.955, 0.962], 0.970, 25.0, "AMD EPYC", 44_000),
                  made_up_run("small", 43, [0.91, 0.965, 0.958], 0.966, 24.0, "AMD EPYC", 44_000),
                  made_up_run("small", 44, [0.89, 0.950, 0.957], 0.972, 26.0, "AMD EPYC", 44_000)],
        "wide": [made_up_run("wide", 42, [0.95, 0.99, 0.983], 0.991, 3_400.0, "Intel Xeon",
                      wide.parameters)],
    }
    costs = {"small": small, "wide": wide, "deep": deep,
             "huge": Cost(58_000_000, 1_060_000_000, 224)}
    solo = {"solo": [made_up_run("solo", 42, [0.97, 0.975], 0.98, 100.0, "AMD EPYC", 1_000)]}
    return [("made-up records of three networks, and a fourth with a cost and no run",
             recorded, costs),
            ("made-up records of one network with one run", solo,
             {"solo": Cost(1_000, 50_000, 28)})]


def _row_hint(value: float, right: float, slips: list[tuple[float, str]]) -> str | None:
    """The hint of the one slip that gives ``value`` (None if none does, or several)."""
    hints = {hint for number, hint in slips if close(value, number)}
    return hints.pop() if len(hints) == 1 and not close(value, right) else None


def _as_rows(got: object, call: str, recorded: Recorded,
             net_costs: Costs) -> dict[str, tuple[float, float]]:
    """The learner's rows by name, each checked for its form."""
    expect(isinstance(got, (list, tuple))
           and all(isinstance(r, (list, tuple)) and len(r) == 3 for r in got),
           f"{call} returned {shown(got)}; return a list of (name, accuracy, mult_adds) rows.")
    rows: dict[str, tuple[float, float]] = {}
    for r in got:
        expect(isinstance(r[0], str),
               f"{call} returned the row {shown(r)}; a row starts with the network's name.")
        name = plain_str(r[0])  # an exact str: a subclass's __eq__ could say yes to any name
        if name not in recorded:
            expect(False, f"{call} returned a row for {name!r}, which "
                   + ("has no recorded run: give a row only for the networks in `recorded`"
                      if name in net_costs else "is not a network of `recorded`") + ".")
        expect(name not in rows, f"{call} returned two rows for {name!r}.")
        rows[name] = (as_real(r[1], f"the accuracy of {name!r}"),
                      as_real(r[2], f"the mult-adds of {name!r}"))
    missing = [n for n in recorded if n not in rows]
    expect(not missing, f"{call} has no row for {missing[0]!r}: give one row per network "
                        f"in `recorded`." if missing else "")
    return rows


def _check_rows(choice_rows: Callable[[Recorded, Costs], list[Row]], what: str,
                recorded: Recorded, net_costs: Costs) -> None:
    """``choice_rows`` on one set of records against the rule, naming the slip."""
    call = f"choice_rows(recorded, net_costs) on {what}"
    got = _as_rows(choice_rows(copy.deepcopy(recorded), copy.deepcopy(net_costs)), call,
                   recorded, net_costs)
    for name, runs in recorded.items():
        accuracy, cost = got[name]
        right = _accuracy(runs)
        if not close(accuracy, right):
            hint = (_row_hint(accuracy, right, [(f(runs), h) for f, h in ACCURACY_SLIPS])
                    or "the accuracy is the mean, over the network's runs, of "
                       "100 * epoch_val_accuracy[-1]")
            expect(False, f"{call}: the accuracy of {name!r} ({len(runs)} run"
                          f"{'s' if len(runs) > 1 else ''}) should be {right:.3f} %, got "
                          f"{accuracy:.3f}. Hint: {hint}.")
        right = _cost(runs, net_costs[name])
        if not close(cost, right):
            hint = (_row_hint(cost, right, [(f(runs, net_costs[name]), h)
                                            for f, h in COST_SLIPS])
                    or "the cost is the network's mult-adds per digit, "
                       "net_costs[name].mult_adds")
            shown_cost = f"{cost:,.0f}" if abs(cost) >= 1000 else f"{cost:g}"
            expect(False, f"{call}: the cost of {name!r} should be {right:,.0f} mult-adds, "
                          f"got {shown_cost}. Hint: {hint}.")


def _check_real_records(recorded: object, net_costs: object) -> None:
    where = "pass the `recorded` and `net_costs` that the cell above built"
    expect(isinstance(recorded, Mapping) and len(recorded) >= 1
           and all(isinstance(n, str) and isinstance(rs, Sequence) and len(rs) >= 1
                   for n, rs in recorded.items()),
           f"`recorded` must map each network's name to its recorded runs: {where}.")
    expect(all(isinstance(r, RunResult) and len(r.epoch_val_accuracy) >= 1
               for rs in recorded.values() for r in rs),
           f"`recorded` must hold recorded runs, each with its validation accuracies: {where}.")
    expect(isinstance(net_costs, Mapping)
           and all(isinstance(net_costs.get(n), Cost) for n in recorded),
           f"`net_costs` must give the cost of every network in `recorded`: {where}.")


def _mult_adds(value: float) -> str:
    return f"{float(value) / 1e6:g} M mult-adds"


def _front(rows: Sequence[Row], beats: Callable[[Row, Row], bool] = _beats) -> list[str]:
    """The names no other row beats, cheapest first (a stable sort: input order on ties)."""
    kept = [r for r in rows if not any(beats(o, r) for o in rows if o is not r)]
    return [r[0] for r in sorted(kept, key=lambda r: r[2])]


def _strictly_both(a: Row, b: Row) -> bool:
    return a[1] > b[1] and a[2] < b[2]


def _pareto_tables() -> list[tuple[str, list[Row]]]:
    import numpy as np

    return [
        ("five models", [("a", 97.0, 10e6), ("b", 99.0, 3000e6), ("c", 98.5, 2000e6),
                         ("d", 98.3, 4000e6), ("e", 97.8, 3900e6)]),
        ("two identical rows", [("x", 98.0, 100e6), ("y", 98.0, 100e6),
                                ("z", 97.0, 50e6), ("w", 99.0, 300e6)]),
        ("equal accuracy, one of them costlier", [("p", 98.0, 100e6), ("q", 98.0, 200e6),
                                                  ("r", 99.0, 300e6)]),
        ("equal cost, one of them less accurate", [("s", 97.5, 100e6), ("t", 98.5, 100e6),
                                                   ("u", 96.0, 20e6)]),
        ("a single row", [("only", 95.0, 12e6)]),
        ("NumPy numbers, the rows not in any order",
         [("m3", np.float32(98.9), np.int64(700_000_000)),
          ("m1", np.float32(96.5), np.int64(40_000_000)),
          ("m4", np.float32(98.1), np.int64(900_000_000)),
          ("m2", np.float32(97.9), np.int64(300_000_000))]),
    ]


def _same_up_to_ties(got: list[str], expected: list[str], rows: Sequence[Row]) -> bool:
    """Equal lists, except that identical rows may come in either order."""
    key = {r[0]: (float(r[2]), float(r[1])) for r in rows}
    return (sorted(got) == sorted(expected)
            and [key[n] for n in got] == [key[n] for n in expected])


def _pareto_hint(got: list[str], rows: Sequence[Row]) -> str:
    """Name the mistake behind a wrong front."""
    expected = _front(rows)
    by_name = {r[0]: r for r in rows}
    by_accuracy = ([r[0] for r in sorted(rows, key=lambda r: -r[1])],
                   [r[0] for r in sorted(rows, key=lambda r: r[1])])
    by_cost = [r[0] for r in sorted(rows, key=lambda r: r[2])]
    if len(rows) > 1 and got in by_accuracy and got != by_cost:
        return ("you sorted the models by accuracy: the front keeps only the models that no "
                "other model beats on accuracy AND cost, and drops the rest")
    if got and set(got) == {r[0] for r in rows} - set(expected):
        return ("you returned the models that another model beats: the front is the models "
                "that NO other model beats")
    if set(got) == set(_front([(n, a, -c) for n, a, c in rows])) != set(expected):
        return ("fewer mult-adds is better: a model beats another if it costs LESS and is "
                "at least as accurate")
    if set(got) == set(_front([(n, -a, c) for n, a, c in rows])) != set(expected):
        return ("a higher accuracy is better: a model beats another if it is MORE accurate "
                "and costs no more")
    for name in got:
        row = by_name[name]
        winner = next((o for o in rows if o is not row and _beats(o, row)), None)
        if winner is not None:
            if _strictly_both(winner, row):
                return (f"{name!r} ({row[1]:g} %, {_mult_adds(row[2])}) is beaten by "
                        f"{winner[0]!r} ({winner[1]:g} %, {_mult_adds(winner[2])}), which "
                        f"is more accurate and cheaper: drop every model that another "
                        f"one beats")
            return (f"{name!r} ({row[1]:g} %, {_mult_adds(row[2])}) is beaten by "
                    f"{winner[0]!r} ({winner[1]:g} %, {_mult_adds(winner[2])}): equal on one "
                    f"count and better on the other is beaten too")
    for name in expected:
        if name in got:
            continue
        row = by_name[name]
        twin = next((o for o in rows if o is not row and float(o[1]) == float(row[1])
                     and float(o[2]) == float(row[2])), None)
        if twin is not None:
            return (f"{name!r} and {twin[0]!r} are identical ({row[1]:g} %, "
                    f"{_mult_adds(row[2])}): neither beats the other, so keep both")
        return (f"{name!r} ({row[1]:g} %, {_mult_adds(row[2])}) is on the front: no other "
                f"model is at least as accurate and at most as costly, and better on one "
                f"of the two")
    if got == expected[::-1]:
        return "the front is listed cheapest first (which is also least accurate first)"
    return "list the front in order of mult-adds, cheapest first"


def _as_names(got: object, call: str, rows: Sequence[Row]) -> list[str]:
    expect(isinstance(got, (list, tuple)) and all(isinstance(n, str) for n in got),
           f"{call} returned {shown(got)}; return a list of model names.")
    # Exact strs: a subclass's __eq__ could say yes to every name.
    got = [plain_str(n) for n in got]
    names = [r[0] for r in rows]
    unknown = [n for n in got if n not in names]
    if unknown:
        expect(False, f"{call} returned {shown(unknown[0])}, which is not a row of the table; "
                      f"return the names, the first item of each row.")
    expect(len(set(got)) == len(got), f"{call} returned {shown(got)}: a name twice.")
    return got


def _check_front(pareto_front: Callable[[list[Row]], list[str]], what: str,
                 table: list[Row]) -> None:
    call = f"pareto_front(rows) on {what}"
    got = _as_names(pareto_front(copy.deepcopy(table)), call, table)
    expected = _front(table)
    if _same_up_to_ties(got, expected, table):
        return
    shown_rows = [(n, round(float(a), 2), round(float(c))) for n, a, c in table]
    expect_equal(f"pareto_front({shown_rows})", expected, got,
                 f"{_pareto_hint(got, table)}. {_SEE_FRONT}")


@checker("pareto_front", answers=("choice_rows", "pareto_front"), seconds=SECONDS)
def check_pareto(choice_rows: Callable[[Recorded, Costs], list[Row]],
                 pareto_front: Callable[[list[Row]], list[str]],
                 recorded: object, net_costs: object) -> None:
    """Check ``choice_rows(recorded, net_costs) -> [(name, accuracy %, mult-adds)]``
    on made-up records and on the notebook's, then ``pareto_front(rows) ->
    [name, ...]`` on made-up tables and on the rows of the notebook's records."""
    _check_real_records(recorded, net_costs)
    for what, made_up, made_up_costs in _made_up_records():
        _check_rows(choice_rows, what, made_up, made_up_costs)
    _check_rows(choice_rows, "the recorded runs", recorded, net_costs)
    for what, table in _pareto_tables():
        _check_front(pareto_front, what, table)
    _check_front(pareto_front, "the rows of the recorded runs",
                 _choice_rows(recorded, net_costs))
