"""The exercises that analyse training runs: plain against residual (chapter 4),
early stopping and the networks worth choosing, the Pareto front (chapter 7).

Each checker rejects the wrong answers learners write with a hint that
names the mistake, and accepts right answers written differently (NumPy or
Python numbers, another algorithm). (tests/test_exercise_registry.py runs
every checker on the notebooks' solution, stub and a None answer.) The wrong
answers here are written out as a learner would write them, not taken from
the checkers' own tables of slips.

No test trains: the checkers read numbers, and the runs they are given here
are written out (the notebooks, run by nbval, pass the real ones); the Pareto
tests also read the real records, as the notebook does.
"""
import json
import statistics
import time
from functools import cache

import numpy as np
import pytest
from exercise_cells import NET_COSTS, RECORDS, ROOT, exercise_namespace

from cnnlab import ranking
from cnnlab.exercises import comparison, resnet
from cnnlab.exercises.comparison import check_early_stop, check_pareto
from cnnlab.exercises.resnet import check_plain_vs_residual


def curve(start, window, steps=30, **edits):
    """Steps 1-10 at `start`, 11-30 at `window`, then 0.3; edits s11=5.0 set step 11."""
    losses = [start] * 10 + [window] * 20 + [0.3] * (steps - 30)
    for name, value in edits.items():
        losses[int(name[1:]) - 1] = value
    return losses


# Runs as the notebook's training cell returns them: two seeds per arm, 30 losses.
TRAINED = {"plain": [curve(1.8, 0.61), curve(1.8, 0.73)],
           "residual": [curve(1.2, 0.47), curve(1.3, 0.51)]}
OVERLAPPING = {"plain": [curve(1.8, 0.61), curve(1.8, 0.49)],
               "residual": [curve(1.2, 0.47), curve(1.3, 0.51)]}
VAL_LOSSES = [2.21, 1.99, 1.57, 1.03, 0.76, 0.69, 0.67, 0.56, 0.58, 0.53,
              0.48, 0.48, 0.45, 0.46, 0.47, 0.46, 0.47, 0.45, 0.47, 0.45]


def rejected(check, answer, data, capsys) -> str:
    assert check(answer, data) is False
    out = capsys.readouterr().out
    assert out.startswith("✗ ") and out.count("\n") == 1, out
    return out


# --- plain_vs_residual ------------------------------------------------------------

def window_means(runs, start=10, stop=30):
    return {arm: [statistics.mean(float(x) for x in run[start:stop]) for run in curves]
            for arm, curves in runs.items()}


def by_ranges(means):
    if max(means["residual"]) < min(means["plain"]):
        return "residual"
    if max(means["plain"]) < min(means["residual"]):
        return "plain"
    return "no difference"


def lower(plain, residual):
    return "residual" if residual < plain else "plain" if plain < residual else "no difference"


def test_verdict_on_the_trained_runs_is_checked_against_those_runs(capsys):
    solution = exercise_namespace("solutions", "04_resnet.ipynb")["verdict"]
    assert check_plain_vs_residual(solution, OVERLAPPING)  # a different verdict, also right
    # Window means: TRAINED plain [0.61, 0.73] all above residual [0.47, 0.51];
    # OVERLAPPING plain [0.61, 0.49] has a run between the residual ones.
    assert solution(TRAINED) == "residual" and solution(OVERLAPPING) == "no difference"
    capsys.readouterr()
    # Right on every made-up case, but it always calls the learner's runs "residual".
    def stubborn(runs):
        return "residual" if len(runs["plain"][0]) == 30 and len(runs["plain"]) == 2 \
            and runs["plain"][0][0] == 1.8 else solution(runs)
    out = rejected(check_plain_vs_residual, stubborn, OVERLAPPING, capsys)
    assert "on your trained runs: expected 'no difference', got 'residual'" in out
    assert "plain [0.61, 0.49], residual [0.47, 0.51]" in out


def test_verdict_needs_the_runs_the_cell_trained(capsys):
    solution = exercise_namespace("solutions", "04_resnet.ipynb")["verdict"]
    out = rejected(check_plain_vs_residual, solution, {"plain": TRAINED["plain"]}, capsys)
    assert "the keys 'plain' and 'residual'" in out
    short = {arm: [run[:20] for run in runs] for arm, runs in TRAINED.items()}
    out = rejected(check_plain_vs_residual, solution, short, capsys)
    assert "at least two runs of at least 30 training losses" in out


def test_verdict_comparing_one_seed_is_told_a_seed_is_one_sample(capsys):
    def first_seed(runs):
        m = window_means(runs)
        return lower(m["plain"][0], m["residual"][0])

    out = rejected(check_plain_vs_residual, first_seed, TRAINED, capsys)
    assert "you compared the first run of each arm only" in out
    assert "every one of its runs is below every run of the other" in out


def test_verdict_comparing_means_is_told_about_the_overlap(capsys):
    def means(runs):
        m = window_means(runs)
        return lower(statistics.mean(m["plain"]), statistics.mean(m["residual"]))

    out = rejected(check_plain_vs_residual, means, TRAINED, capsys)
    assert "you compared the arms' mean losses" in out
    assert "larger than the spread between seeds" in out


def test_verdict_pairing_seeds_is_told_they_are_not_pairs(capsys):
    def paired(runs):
        m = window_means(runs)
        pairs = list(zip(m["plain"], m["residual"]))
        return ("residual" if all(r < p for p, r in pairs) else
                "plain" if all(p < r for p, r in pairs) else "no difference")

    assert "you compared the runs seed by seed" in rejected(
        check_plain_vs_residual, paired, TRAINED, capsys)


@pytest.mark.parametrize("start,stop,hint", [
    (0, None, "you averaged the whole curve"),
    (0, 10, "you averaged steps 1-10"),
    # Each window slip is named for the steps it took (the issue: all three were
    # once told "off by one").
    (11, 31, "you averaged losses[11:31], which is steps 12-31"),  # 0-based read as steps
    (9, 29, "you averaged losses[9:29], which is steps 10-29"),
    (10, 29, "you averaged losses[10:29], which is steps 11-29 (19 losses)"),  # one short
    (11, 30, "you averaged losses[11:30], which is steps 12-30 (19 losses)"),
    (9, 30, "you averaged losses[9:30], which is steps 10-30 (21 losses)"),
    (10, 31, "you averaged losses[10:31], which is steps 11-31 (21 losses)"),
])
def test_verdict_on_another_window_is_told_which_steps(start, stop, hint, capsys):
    def windowed(runs):
        return by_ranges(window_means(runs, start, stop))

    out = rejected(check_plain_vs_residual, windowed, TRAINED, capsys)
    assert hint in out
    assert "losses[10:30]" in out


def test_verdict_with_swapped_labels_is_told_lower_is_better(capsys):
    def swapped(runs):
        m = window_means(runs)
        if max(m["residual"]) < min(m["plain"]):
            return "plain"  # "the plain net's loss is the higher one, so plain wins"
        if max(m["plain"]) < min(m["residual"]):
            return "residual"
        return "no difference"

    assert "your labels are swapped" in rejected(check_plain_vs_residual, swapped, TRAINED,
                                                 capsys)


def test_verdict_that_is_wrong_another_way_gets_the_numbers_and_the_rule(capsys):
    out = rejected(check_plain_vs_residual, lambda runs: "residual", TRAINED, capsys)
    assert "mean losses over steps 11-30 are plain [" in out
    assert "else return 'no difference'" in out
    out = rejected(check_plain_vs_residual, lambda runs: "Residual", TRAINED, capsys)
    assert "returned 'Residual'; return one of 'residual', 'plain', 'no difference'" in out


def test_verdict_written_with_numpy_or_sorting_passes(capsys):
    def with_numpy(runs):
        m = {arm: np.asarray(curves, dtype=np.float32)[:, 10:30].mean(axis=1)
             for arm, curves in runs.items()}
        if m["residual"].max() < m["plain"].min():
            return "residual"
        if m["plain"].max() < m["residual"].min():
            return "plain"
        return "no difference"

    def by_sorting(runs):
        ranked = sorted((statistics.fmean(run[10:30]), arm)
                        for arm, curves in runs.items() for run in curves)
        arms = [arm for _, arm in ranked]
        n = len(runs["residual"])
        if arms[:n] == ["residual"] * n and ranked[n - 1][0] < ranked[n][0]:
            return "residual"
        if arms[:len(runs["plain"])] == ["plain"] * len(runs["plain"]) \
                and ranked[len(runs["plain"]) - 1][0] < ranked[len(runs["plain"])][0]:
            return "plain"
        return "no difference"

    as_arrays = {arm: [np.array(run) for run in runs] for arm, runs in TRAINED.items()}
    for answer in (with_numpy, by_sorting):
        assert check_plain_vs_residual(answer, TRAINED)
        assert check_plain_vs_residual(answer, as_arrays)
    assert capsys.readouterr().out.count("✓ plain_vs_residual: passed") == 4  # 2 answers x 2


def test_verdict_accepts_either_side_of_an_exact_tie_on_the_trained_runs(capsys):
    tie = {"plain": [curve(1.8, 0.5), curve(1.8, 0.7)],
           "residual": [curve(1.2, 0.3), curve(1.2, 0.5)]}  # the ranges touch at 0.5
    solution = exercise_namespace("solutions", "04_resnet.ipynb")["verdict"]
    assert solution(tie) == "no difference"

    def float32_tie(runs):  # float32 rounding can put a touching pair either side
        return "residual" if runs["residual"][1][10] == 0.5 and len(runs["plain"]) == 2 \
            and runs["plain"][1][10] == 0.7 else solution(runs)

    assert check_plain_vs_residual(float32_tie, tie)


def test_verdict_that_never_returns_is_stopped(capsys):
    def spin(runs):
        i = 0
        while i < len(runs["plain"]):  # forgot i += 1
            pass

    start = time.perf_counter()  # the check's own limit: a few seconds, not 30
    assert f"still running after {resnet.VERDICT_SECONDS:g} s" in rejected(
        check_plain_vs_residual, spin, TRAINED, capsys)
    assert time.perf_counter() - start < resnet.VERDICT_SECONDS + 5


def test_every_slip_in_the_checker_is_caught_by_the_made_up_runs():
    cases = [runs for _, runs in resnet._plain_vs_residual_cases()]
    expected = [resnet._verdict_oracle(runs) for runs in cases]
    seen = {}
    for slip, hint in resnet.PLAIN_VS_RESIDUAL_SLIPS:
        answers = tuple(slip(runs) for runs in cases)
        assert list(answers) != expected, hint
        seen.setdefault(answers, set()).add(hint)
    assert all(len(hints) == 1 for hints in seen.values()), "two slips look the same"


# --- early_stop -----------------------------------------------------------------------

def test_early_stop_solution_on_the_example_and_edges():
    early_stop = exercise_namespace("solutions", "07_comparison.ipynb")["early_stop"]
    # The notebook's example: best 0.7 at epoch 2; epochs 3 and 4 do not beat it.
    assert early_stop([1.0, 0.7, 0.8, 0.75, 0.9], 2) == (4, 2)
    assert early_stop([0.5], 1) == (1, 1)
    assert early_stop([0.9, 0.8, 0.7], 1) == (3, 3)  # never stops: the last epoch, the best


def test_early_stop_at_the_first_increase_is_told_about_patience(capsys):
    def first_increase(val_losses, patience):
        for epoch in range(2, len(val_losses) + 1):
            if val_losses[epoch - 1] > val_losses[epoch - 2]:
                return epoch, epoch - 1
        return len(val_losses), len(val_losses)

    out = rejected(check_early_stop, first_increase, VAL_LOSSES, capsys)
    assert "you stop at the first epoch that does not improve, whatever the patience" in out


def test_early_stop_keeping_the_last_epoch_is_told_to_keep_the_best(capsys):
    solution = exercise_namespace("solutions", "07_comparison.ipynb")["early_stop"]

    def keep_last(val_losses, patience):
        stop, _ = solution(val_losses, patience)
        return stop, stop  # "the weights we have when we stop"

    out = rejected(check_early_stop, keep_last, VAL_LOSSES, capsys)
    assert "keep the best epoch seen so far" in out


def test_early_stop_counting_from_zero_is_told_to_count_from_one(capsys):
    def zero_based(val_losses, patience):
        best, kept, waited = float("inf"), 0, 0
        for epoch, loss in enumerate(val_losses):
            if loss < best:
                best, kept, waited = loss, epoch, 0
            else:
                waited += 1
                if waited == patience:
                    return epoch, kept
        return len(val_losses) - 1, kept

    out = rejected(check_early_stop, zero_based, VAL_LOSSES, capsys)
    assert "count epochs from 1" in out


def test_early_stop_treating_a_tie_as_improvement_is_told_to_use_less_than(capsys):
    def ties_improve(val_losses, patience):
        best, kept, waited = float("inf"), 0, 0
        for epoch, loss in enumerate(val_losses, start=1):
            if loss <= best:
                best, kept, waited = loss, epoch, 0
            else:
                waited += 1
                if waited == patience:
                    return epoch, kept
        return len(val_losses), kept

    out = rejected(check_early_stop, ties_improve, VAL_LOSSES, capsys)
    assert "use <, not <=" in out
    assert "a plateau of equal losses" in out


def test_early_stop_comparing_with_the_previous_epoch_is_told_to_use_the_best(capsys):
    def against_previous(val_losses, patience):
        waited, kept = 0, 1
        for epoch in range(2, len(val_losses) + 1):
            if val_losses[epoch - 1] < val_losses[epoch - 2]:
                waited, kept = 0, epoch
            else:
                waited += 1
                if waited == patience:
                    return epoch, kept
        return len(val_losses), kept

    out = rejected(check_early_stop, against_previous, VAL_LOSSES, capsys)
    assert "compare with the BEST loss so far" in out


def test_early_stop_one_epoch_late_is_told_where_to_stop(capsys):
    def late(val_losses, patience):
        best, kept, waited = float("inf"), 0, 0
        for epoch, loss in enumerate(val_losses, start=1):
            if loss < best:
                best, kept, waited = loss, epoch, 0
            elif waited == patience:  # checks before counting this epoch
                return epoch, kept
            else:
                waited += 1
        return len(val_losses), kept

    assert "you stop one epoch late" in rejected(check_early_stop, late, VAL_LOSSES, capsys)


def test_early_stop_written_differently_passes(capsys):
    def by_index(val_losses, patience):  # numpy ints back, a list instead of a tuple
        losses = np.asarray(val_losses, dtype=np.float64)
        best = 0
        for i in range(1, len(losses)):
            if losses[i] < losses[best]:
                best = i
            elif i - best == patience:
                return [np.int64(i + 1), np.int64(best + 1)]
        return [np.int64(len(losses)), np.int64(best + 1)]

    def by_slices(val_losses, patience):  # the first epoch whose last `patience` all fail
        losses = [float(v) for v in val_losses]
        for stop in range(1, len(losses) + 1):
            seen = losses[:stop]
            best = seen.index(min(seen)) + 1
            if stop - best >= patience:
                return stop, best
        return len(losses), losses.index(min(losses)) + 1

    for answer in (by_index, by_slices):
        assert check_early_stop(answer, VAL_LOSSES)
        assert check_early_stop(answer, np.array(VAL_LOSSES, dtype=np.float32).tolist())
    assert capsys.readouterr().out.count("✓ early_stop: passed") == 4  # 2 answers x 2


def test_early_stop_needs_the_curve_the_cell_trained(capsys):
    solution = exercise_namespace("solutions", "07_comparison.ipynb")["early_stop"]
    assert "a list of at least two numbers" in rejected(check_early_stop, solution, [0.5],
                                                        capsys)
    assert "return a pair (stop epoch, kept epoch)" in rejected(
        check_early_stop, lambda losses, patience: 3, VAL_LOSSES, capsys)


def test_early_stop_that_never_returns_is_stopped(capsys):
    def spin(val_losses, patience):
        epoch, waited = 1, 0
        while waited < patience:  # forgot to move to the next epoch
            if val_losses[epoch - 1] >= val_losses[0]:
                waited += 0

    start = time.perf_counter()  # the check's own limit: a few seconds, not 30
    assert f"still running after {comparison.SECONDS:g} s" in rejected(
        check_early_stop, spin, VAL_LOSSES, capsys)
    assert time.perf_counter() - start < comparison.SECONDS + 5


def test_every_early_stop_slip_is_caught_by_the_made_up_curves():
    cases = comparison._early_stop_cases()
    expected = [comparison._early_stop(losses, p) for _, losses, p in cases]
    seen = {}
    for slip, hint in comparison.EARLY_STOP_SLIPS:
        answers = tuple(slip(losses, p) for _, losses, p in cases)
        assert list(answers) != expected, hint
        seen.setdefault(answers, set()).add(hint)
    assert all(len(hints) == 1 for hints in seen.values()), "two slips look the same"


# --- choice_rows and pareto_front ----------------------------------------------------

@cache  # reading the records and counting the costs takes seconds: once per session
def real_records() -> tuple:
    """``recorded`` and ``net_costs`` as the notebook's cell builds them."""
    from cnnlab import costs, findings

    recorded = findings.full_runs()
    return recorded, costs.model_costs(recorded)


def solution():
    namespace = exercise_namespace("solutions", "07_comparison.ipynb")
    return namespace["choice_rows"], namespace["pareto_front"]


def rows_by_validation(recorded, net_costs):  # a right answer, as a learner writes it
    return [(name, statistics.mean(100 * r.epoch_val_accuracy[-1] for r in runs),
             net_costs[name].mult_adds) for name, runs in recorded.items()]


def pareto_rejected(choice_rows, pareto_front, capsys) -> str:
    assert check_pareto(choice_rows, pareto_front, RECORDS, NET_COSTS) is False
    out = capsys.readouterr().out
    assert out.startswith("✗ ") and out.count("\n") == 1, out
    return out


def rows_rejected(choice_rows, capsys) -> str:
    return pareto_rejected(choice_rows, solution()[1], capsys)


def front_rejected(pareto_front, capsys) -> str:
    return pareto_rejected(rows_by_validation, pareto_front, capsys)


def test_pareto_solution_on_the_records_and_by_hand():
    choice_rows, pareto_front = solution()
    # By hand, on the written-out records: googlenet (97.38 %, 79.9 M mult-adds) is
    # beaten by mobilenet_v1 (98.39 %, 42.1 M); each of the others is more accurate
    # than every cheaper network.
    assert pareto_front(choice_rows(RECORDS, NET_COSTS)) == \
        ["lenet", "mobilenet_v1", "resnet18", "alexnet"]
    recorded, net_costs = real_records()
    rows = choice_rows(recorded, net_costs)
    assert rows == rows_by_validation(recorded, net_costs)
    front = pareto_front(rows)
    # By hand: a network is off the front exactly when another is more accurate and
    # cheaper (no two recorded networks tie on either number).
    for name, accuracy, mult_adds in rows:
        beaten = any(a > accuracy and m < mult_adds for _, a, m in rows)
        assert (name in front) != beaten, name
    assert check_pareto(choice_rows, pareto_front, recorded, net_costs)


def test_rows_on_the_test_accuracy_are_told_to_choose_on_validation(capsys):
    def on_test(recorded, net_costs):
        return [(name, statistics.mean(100 * r.test_accuracy for r in runs),
                 net_costs[name].mult_adds) for name, runs in recorded.items()]

    out = rows_rejected(on_test, capsys)
    assert "you used the test accuracy" in out and "epoch_val_accuracy[-1]" in out


def test_rows_on_the_training_time_are_told_it_does_not_compare(capsys):
    def on_time(recorded, net_costs):
        return [(name, statistics.mean(100 * r.epoch_val_accuracy[-1] for r in runs),
                 statistics.mean(r.train_seconds for r in runs))
                for name, runs in recorded.items()]

    out = rows_rejected(on_time, capsys)
    assert "you used the training time" in out and "different machines" in out


def test_rows_on_the_parameters_are_told_to_use_mult_adds(capsys):
    def on_parameters(recorded, net_costs):
        return [(name, statistics.mean(100 * r.epoch_val_accuracy[-1] for r in runs),
                 net_costs[name].parameters) for name, runs in recorded.items()]

    out = rows_rejected(on_parameters, capsys)
    assert "you used the parameters" in out and "net_costs[name].mult_adds" in out


def test_rows_on_the_best_epoch_are_told_to_use_the_last(capsys):
    def best_epoch(recorded, net_costs):
        return [(name, statistics.mean(100 * max(r.epoch_val_accuracy) for r in runs),
                 net_costs[name].mult_adds) for name, runs in recorded.items()]

    out = rows_rejected(best_epoch, capsys)
    assert "you took each run's best epoch" in out


def test_rows_in_fractions_or_on_one_seed_are_told_so(capsys):
    def fractions(recorded, net_costs):
        return [(name, statistics.mean(r.epoch_val_accuracy[-1] for r in runs),
                 net_costs[name].mult_adds) for name, runs in recorded.items()]

    def first_seed(recorded, net_costs):
        return [(name, 100 * runs[0].epoch_val_accuracy[-1], net_costs[name].mult_adds)
                for name, runs in recorded.items()]

    assert "in percent" in rows_rejected(fractions, capsys)
    assert "you used one run of a network that has several" in \
        rows_rejected(first_seed, capsys)


def test_rows_for_every_costed_model_are_told_to_keep_the_recorded_ones(capsys):
    def every_model(recorded, net_costs):  # alexnet_large has a cost and no run
        return [(name, statistics.mean(100 * r.epoch_val_accuracy[-1]
                                       for r in recorded.get(name, [])) if name in recorded
                 else 0.0, cost.mult_adds) for name, cost in net_costs.items()]

    out = rows_rejected(every_model, capsys)
    assert "has no recorded run: give a row only for the networks in `recorded`" in out


def test_rows_written_differently_pass(capsys):
    def with_numpy(recorded, net_costs):  # float32 means, lists for rows, sorted by name
        return [[name, np.mean(np.array([r.val_accuracy[-1] for r in recorded[name]],
                                        dtype=np.float32)) * 100,
                 np.int64(net_costs[name].mult_adds)] for name in sorted(recorded)]

    def by_hand(recorded, net_costs):  # the epoch-end list, a plain sum
        rows = []
        for name, runs in recorded.items():
            total = sum(run.epoch_val_accuracy[len(run.epoch_val_accuracy) - 1] for run in runs)
            rows.append((name, 100 * total / len(runs), float(net_costs[name].mult_adds)))
        return tuple(rows)

    pareto_front = solution()[1]
    recorded, net_costs = real_records()
    for answer in (with_numpy, by_hand):
        assert check_pareto(answer, pareto_front, RECORDS, NET_COSTS)
        assert check_pareto(answer, pareto_front, recorded, net_costs)
    assert capsys.readouterr().out.count("✓ pareto_front: passed") == 4  # 2 answers x 2


def test_pareto_sorted_by_accuracy_is_told_to_drop_beaten_nets(capsys):
    def by_accuracy(rows):
        return [name for name, _, _ in sorted(rows, key=lambda r: r[1], reverse=True)]

    out = front_rejected(by_accuracy, capsys)
    assert "you sorted the models by accuracy" in out


def test_pareto_keeping_a_beaten_net_is_told_which_net_beats_it(capsys):
    def neighbours(rows):  # each row against the one before it only
        ordered = sorted(rows, key=lambda r: r[2])
        kept = [ordered[0]] + [b for a, b in zip(ordered, ordered[1:]) if b[1] > a[1]]
        return [name for name, _, _ in kept]

    out = front_rejected(neighbours, capsys)
    # 'b', 'd' here, 'p', 'q' below: rows of the checker's own made-up tables.
    assert "'d' (98.3 %, 4000 M mult-adds) is beaten by 'b' (99 %, 3000 M mult-adds)" in out
    assert "drop every model that another one beats" in out


def test_pareto_with_a_tie_rule_that_keeps_an_equal_but_costlier_net(capsys):
    def strict_on_both(rows):
        kept = [r for r in rows if not any(o[1] > r[1] and o[2] < r[2] for o in rows)]
        return [name for name, _, _ in sorted(kept, key=lambda r: r[2])]

    out = front_rejected(strict_on_both, capsys)
    assert "'q' (98 %, 200 M mult-adds) is beaten by 'p' (98 %, 100 M mult-adds)" in out
    assert "equal on one count and better on the other is beaten too" in out


def test_pareto_with_a_tie_rule_that_drops_identical_nets(capsys):
    def at_least_on_both(rows):
        kept = [r for r in rows
                if not any(o is not r and o[1] >= r[1] and o[2] <= r[2] for o in rows)]
        return [name for name, _, _ in sorted(kept, key=lambda r: r[2])]

    def sweep(rows):  # cheapest first, keep a net only if it beats the best accuracy so far
        best, front = -1.0, []
        for name, accuracy, _ in sorted(rows, key=lambda r: (r[2], -r[1])):
            if accuracy > best:
                best, front = accuracy, front + [name]
        return front

    for answer in (at_least_on_both, sweep):
        out = front_rejected(answer, capsys)
        assert ("are identical (98 %, 100 M mult-adds): neither beats the other, so keep both"
                in out)


def test_pareto_with_the_rule_turned_round_is_told_which_way(capsys):
    def costlier_is_better(rows):
        kept = [r for r in rows if not any(
            o[1] >= r[1] and o[2] >= r[2] and (o[1] > r[1] or o[2] > r[2]) for o in rows)]
        return [name for name, _, _ in sorted(kept, key=lambda r: r[2])]

    def less_accurate_is_better(rows):
        kept = [r for r in rows if not any(
            o[1] <= r[1] and o[2] <= r[2] and (o[1] < r[1] or o[2] < r[2]) for o in rows)]
        return [name for name, _, _ in sorted(kept, key=lambda r: r[2])]

    def the_beaten_ones(rows):  # the dominance test the wrong way round
        beaten = [r for r in rows if any(
            o[1] >= r[1] and o[2] <= r[2] and (o[1] > r[1] or o[2] < r[2]) for o in rows)]
        return [name for name, _, _ in sorted(beaten, key=lambda r: r[2])]

    assert "fewer mult-adds is better" in front_rejected(costlier_is_better, capsys)
    assert "a higher accuracy is better" in front_rejected(less_accurate_is_better, capsys)
    assert "you returned the models that another model beats" in \
        front_rejected(the_beaten_ones, capsys)


def test_pareto_in_the_wrong_order_is_told_cheapest_first(capsys):
    pareto_front = solution()[1]
    out = front_rejected(lambda rows: pareto_front(rows)[::-1], capsys)
    assert "listed cheapest first" in out


def test_pareto_written_differently_passes(capsys):
    def sweep_with_ties(rows):  # one pass over the rows sorted by cost, ties kept
        front, best = [], None
        for name, accuracy, cost in sorted(rows, key=lambda r: (r[2], -r[1])):
            if best is None or accuracy > best[0] or (accuracy, cost) == best:
                front.append(name)
                best = (accuracy, cost)
        return tuple(front)

    def with_numpy(rows):
        acc = np.array([r[1] for r in rows], dtype=np.float32)
        cost = np.array([r[2] for r in rows], dtype=np.float64)
        beaten = [bool(np.any((acc >= a) & (cost <= c) & ((acc > a) | (cost < c))))
                  for a, c in zip(acc, cost)]
        order = np.argsort(cost, kind="stable")
        return [rows[i][0] for i in order if not beaten[i]]

    recorded, net_costs = real_records()
    for answer in (sweep_with_ties, with_numpy):
        assert check_pareto(rows_by_validation, answer, RECORDS, NET_COSTS)
        assert check_pareto(rows_by_validation, answer, recorded, net_costs)
    assert capsys.readouterr().out.count("✓ pareto_front: passed") == 4  # 2 answers x 2


def test_pareto_names_must_come_from_the_table(capsys):
    out = front_rejected(lambda rows: ["LeNet"], capsys)
    assert "which is not a row of the table" in out
    out = front_rejected(lambda rows: [rows[0][0], rows[0][0]], capsys)
    assert "a name twice" in out


def test_pareto_needs_the_records_the_cell_read(capsys):
    choice_rows, pareto_front = solution()
    assert check_pareto(choice_rows, pareto_front, {}, NET_COSTS) is False
    assert "pass the `recorded` and `net_costs` that the cell above built" in \
        capsys.readouterr().out
    assert check_pareto(choice_rows, pareto_front, RECORDS, {}) is False
    assert "`net_costs` must give the cost of every network" in capsys.readouterr().out



# --- reading the front: chapter 7's rule, not "two seeds each" --------------------------

def front_reading(folder: str, recorded: dict, capsys) -> str:
    """What the notebook's "Reading the front" cell prints for ``recorded`` (the
    solution's choice_rows and pareto_front, the cell as ``folder`` holds it)."""
    cells = json.loads((ROOT / folder / "07_comparison.ipynb").read_text())["cells"]
    [source] = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"
                and "pareto_front(rows)" in "".join(c["source"])]
    assert "ranking.off_the_front" in source  # chapter 7's rule, not one of its own
    choice_rows, pareto_front = solution()
    capsys.readouterr()
    exec(source, {"statistics": statistics, "ranking": ranking, "passed": True,
                  "choice_rows": choice_rows, "pareto_front": pareto_front,
                  "recorded": recorded, "net_costs": NET_COSTS})
    return capsys.readouterr().out


@pytest.mark.parametrize("folder", ["exercises", "solutions"])
def test_reading_the_front_ranks_only_once_every_planned_seed_is_in(folder, capsys):
    assert ranking.planned_seeds("mobilenet_v1") == ranking.planned_seeds("googlenet") == 3

    def runs(model, vals):
        return [comparison.made_up_run(model, 42 + i, [0.9, v], v, 1_000.0)
                for i, v in enumerate(vals)]

    googlenet = runs("googlenet", [0.973, 0.974, 0.975])
    # mobilenet_v1 is cheaper and a point more accurate, far beyond twice either spread;
    # with 2 of its 3 planned seeds, chapter 7 still ranks neither network.
    two_of_three = front_reading(folder, {"mobilenet_v1": runs("mobilenet_v1", [0.984, 0.985]),
                                          "googlenet": googlenet}, capsys)
    assert "googlenet (97.40 %, 3 of 3 seeds) is beaten by mobilenet_v1 (98.45 %, 2 of 3 " \
        "seeds): seeds still to record, so the two cannot be ranked yet" in two_of_three
    assert "more than twice" not in two_of_three
    # With the third seed in, the same gap is ranked.
    three = runs("mobilenet_v1", [0.984, 0.985, 0.9845])
    all_in = front_reading(folder, {"mobilenet_v1": three, "googlenet": googlenet}, capsys)
    assert "3 of 3 seeds): the gap is more than twice the larger standard deviation" in all_in

# --- a check's time limit must not stop an import halfway ------------------------------

def test_the_upsampling_check_imports_dynamo_before_its_time_limit_starts():
    # Building a model on the meta device imports torch._dynamo the first time. Inside
    # the check's time limit, on a busy CPU, the limit could stop that import halfway,
    # and every later fit() in the notebook then failed with an ImportError (seen when
    # solutions/04_resnet.ipynb ran under load). In a fresh process, the module must be
    # there before the learner's code runs.
    import subprocess
    import sys

    # (The check runs in a child process: the answer reports in what it prints.)
    code = ("import sys\n"
            "from cnnlab.exercises.resnet import check_smallest_upsample\n"
            "def answer(min_size):\n"
            "    print('torch._dynamo' in sys.modules)\n"
            # the right factors: layer4 is 1, 2, 4, 7, 8 px at x1, x2, x4, x7, x9 (x8: 7 px)
            "    return {1: 1, 2: 2, 4: 4, 7: 7, 8: 9}[min_size]\n"
            "assert check_smallest_upsample(answer)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.splitlines()[0] == "True", out


# --- issue 24: a tie that counts as a win; early_stop slips named for what they do -----

def test_verdict_counting_a_tie_as_a_win_is_rejected(capsys):
    def ties_win(runs):
        m = window_means(runs)
        if max(m["residual"]) <= min(m["plain"]):  # "not worse than any plain run"
            return "residual"
        if max(m["plain"]) <= min(m["residual"]):
            return "plain"
        return "no difference"

    out = rejected(check_plain_vs_residual, ties_win, TRAINED, capsys)
    assert "ranges that touch" in out and "Compare with <, not <=" in out


def test_verdict_with_a_tolerance_for_touching_ranges_passes(capsys):
    # A right answer written differently: each arm's range as a sorted pair.
    def with_intervals(runs):
        m = window_means(runs)
        (p_lo, p_hi), (r_lo, r_hi) = sorted(m["plain"])[::len(m["plain"]) - 1], \
            sorted(m["residual"])[::len(m["residual"]) - 1]
        return "residual" if r_hi < p_lo else "plain" if p_hi < r_lo else "no difference"

    assert check_plain_vs_residual(with_intervals, TRAINED)
    assert capsys.readouterr().out == "✓ plain_vs_residual: passed\n"


def test_early_stop_counting_patience_from_the_last_drop_keeps_the_best(capsys):
    # The "comparing each epoch with the previous one", as learners also write
    # it: the best epoch tracked properly, the patience reset by any drop.
    def previous_resets_patience(val_losses, patience):
        best, kept, waited = float("inf"), 0, 0
        for epoch, loss in enumerate(val_losses, start=1):
            if loss < best:
                best, kept = loss, epoch
            if epoch > 1 and loss < val_losses[epoch - 2]:
                waited = 0
            elif epoch > 1:
                waited += 1
                if waited == patience:
                    return epoch, kept
        return len(val_losses), kept

    out = rejected(check_early_stop, previous_resets_patience, VAL_LOSSES, capsys)
    assert "you count the patience from the last epoch that beat the one before it" in out


def test_early_stop_from_the_global_minimum_is_told_training_cannot_see_ahead(capsys):
    def global_minimum(val_losses, patience):
        best = min(range(len(val_losses)), key=lambda i: val_losses[i]) + 1
        return min(best + patience, len(val_losses)), best

    out = rejected(check_early_stop, global_minimum, VAL_LOSSES, capsys)
    assert "you took the lowest loss of the WHOLE curve" in out


def test_early_stop_wrong_another_way_is_told_what_was_expected_plainly(capsys):
    # No known slip gives these answers: the line shows both pairs and the rule,
    # and names no slip.
    out = rejected(check_early_stop, lambda losses, patience: (1, 1), VAL_LOSSES, capsys)
    assert "expected (6, 6), got (1, 1)" in out
    assert "an epoch improves when its loss is below the best so far" in out
