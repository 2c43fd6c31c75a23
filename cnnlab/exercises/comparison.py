"""Checkers for the comparison exercises (chapter 7).

* ``check_early_stop``: the learner's ``early_stop(val_losses, patience)``
  against a patience rule written out here, on made-up validation curves and
  on the curve the notebook trained.
* ``check_pareto``: the learner's ``pareto_front(rows)`` against the
  definition of the front, on made-up tables and on the recorded one.

Neither trains anything: both read numbers, so each check takes
milliseconds.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Callable

from . import checker, expect, expect_equal, shown
from ._harness import as_count, as_real, plain_str

CHAPTER = "chapter 7 (Comparing the five nets)"
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


# --- Exercise 2: the Pareto front --------------------------------------------

Row = tuple[str, float, float]  # (name, accuracy: higher is better, seconds: lower)


def _beats(a: Row, b: Row) -> bool:
    """a is at least as good as b on both counts and better on one."""
    return a[1] >= b[1] and a[2] <= b[2] and (a[1] > b[1] or a[2] < b[2])


def _front(rows: Sequence[Row], beats: Callable[[Row, Row], bool] = _beats) -> list[str]:
    """The names no other row beats, fastest first (a stable sort: input order on ties)."""
    kept = [r for r in rows if not any(beats(o, r) for o in rows if o is not r)]
    return [r[0] for r in sorted(kept, key=lambda r: r[2])]


def _slower_is_better(rows: Sequence[Row]) -> list[str]:
    flipped = [(n, a, -s) for n, a, s in rows]
    return _front(flipped)


def _strictly_both(a: Row, b: Row) -> bool:
    return a[1] > b[1] and a[2] < b[2]


def _at_least_both(a: Row, b: Row) -> bool:
    return a[1] >= b[1] and a[2] <= b[2]


def _pareto_tables() -> list[tuple[str, list[Row]]]:
    import numpy as np

    return [
        ("five models", [("a", 97.0, 10.0), ("b", 99.0, 3000.0), ("c", 98.5, 2000.0),
                         ("d", 98.3, 4000.0), ("e", 97.8, 3900.0)]),
        ("two identical rows", [("x", 98.0, 100.0), ("y", 98.0, 100.0),
                                ("z", 97.0, 50.0), ("w", 99.0, 300.0)]),
        ("equal accuracy, one of them slower", [("p", 98.0, 100.0), ("q", 98.0, 200.0),
                                                ("r", 99.0, 300.0)]),
        ("equal time, one of them less accurate", [("s", 97.5, 100.0), ("t", 98.5, 100.0),
                                                   ("u", 96.0, 20.0)]),
        ("a single row", [("only", 95.0, 12.0)]),
        ("NumPy numbers, the rows not in any order",
         [("m3", np.float32(98.9), np.int64(700)), ("m1", np.float32(96.5), np.int64(40)),
          ("m4", np.float32(98.1), np.int64(900)), ("m2", np.float32(97.9), np.int64(300))]),
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
    by_time = [r[0] for r in sorted(rows, key=lambda r: r[2])]
    if len(rows) > 1 and got in by_accuracy and got != by_time:
        return ("you sorted the models by accuracy: the front keeps only the models that no "
                "other model beats on accuracy AND time, and drops the rest")
    if set(got) == set(_slower_is_better(rows)) != set(expected):
        return "less training time is better: a model beats another if it is FASTER"
    for name in got:
        row = by_name[name]
        winner = next((o for o in rows if o is not row and _beats(o, row)), None)
        if winner is not None:
            if _strictly_both(winner, row):
                return (f"{name!r} ({row[1]:g} %, {row[2]:g} s) is beaten by {winner[0]!r} "
                        f"({winner[1]:g} %, {winner[2]:g} s), which is more accurate and "
                        f"faster: drop every model that another one beats")
            return (f"{name!r} ({row[1]:g} %, {row[2]:g} s) is beaten by {winner[0]!r} "
                    f"({winner[1]:g} %, {winner[2]:g} s): equal on one count and better on "
                    f"the other is beaten too")
    for name in expected:
        if name in got:
            continue
        row = by_name[name]
        twin = next((o for o in rows if o is not row and float(o[1]) == float(row[1])
                     and float(o[2]) == float(row[2])), None)
        if twin is not None:
            return (f"{name!r} and {twin[0]!r} are identical ({row[1]:g} %, {row[2]:g} s): "
                    f"neither beats the other, so keep both")
        return (f"{name!r} ({row[1]:g} %, {row[2]:g} s) is on the front: no other model is "
                f"at least as accurate and at least as fast, and better on one of the two")
    if got == expected[::-1]:
        return "the front is listed fastest first (which is also least accurate first)"
    return "list the front in order of training time, fastest first"


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


def _check_real_rows(rows: object) -> list[Row]:
    where = "pass the `rows` the cell above built from the records"
    expect(isinstance(rows, Sequence) and len(rows) >= 1
           and all(isinstance(r, Sequence) and len(r) == 3 and isinstance(r[0], str)
                   for r in rows),
           f"the table must be a list of (name, accuracy, seconds) rows: {where}.")
    return [(r[0], as_real(r[1], f"the accuracy of {r[0]!r}"),
             as_real(r[2], f"the seconds of {r[0]!r}")) for r in rows]


@checker("pareto_front", answers="pareto_front", seconds=SECONDS)
def check_pareto(pareto_front: Callable[[list[Row]], list[str]], rows: object) -> None:
    """Check ``pareto_front(rows) -> [name, ...]`` (rows of (name, accuracy,
    seconds)) on made-up tables and on ``rows``, the table of the records."""
    tables = _pareto_tables() + [("the recorded table", _check_real_rows(rows))]
    for what, table in tables:
        call = f"pareto_front(rows) on {what}"
        got = _as_names(pareto_front(copy.deepcopy(table)), call, table)
        expected = _front(table)
        if _same_up_to_ties(got, expected, table):
            continue
        shown = [(n, round(float(a), 2), round(float(s), 1)) for n, a, s in table]
        expect_equal(f"pareto_front({shown})", expected, got,
                     f"{_pareto_hint(got, table)}. See {CHAPTER}, 'Accuracy against cost'.")

