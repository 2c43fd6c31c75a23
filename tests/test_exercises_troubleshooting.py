"""The chapter 9 (troubleshooting) checkers reject plausible wrong answers
with a specific message, and accept right answers written differently.

(tests/test_exercise_registry.py runs every checker on the notebooks'
solution, stub and a None answer.)
"""
import pytest

from cnnlab.exercises.troubleshooting import cases, check_largest_batch, check_which_bug


# --- which_bug ------------------------------------------------------------------

def test_every_kind_is_produced_live_at_least_twice():
    kinds = [kind for _, kind in cases()]
    assert all(kinds.count(k) >= 2 for k in ("flatten", "shortcut", "memory",
                                            "input too small"))
    messages = [m for m, _ in cases()]
    assert len(set(messages)) == len(messages)  # different numbers each time


def test_matching_on_the_word_size_confuses_two_kinds(capsys):
    def by_size(message):
        if "size" in message:
            return "shortcut"
        return "memory" if "memory" in message else "flatten"

    assert not check_which_bug(by_size)
    out = capsys.readouterr().out
    assert "but it is 'input too small'" in out and "Output size is too small" in out
    assert out.count("\n") == 1


def test_matching_one_messages_numbers_does_not_pass(capsys):
    def by_numbers(message):
        return "flatten" if "128x256" in message else "shortcut"

    assert not check_which_bug(by_numbers)
    assert "but it is 'flatten'" in capsys.readouterr().out


def test_a_regex_answer_written_differently_passes(capsys):
    import re

    patterns = {"flatten": r"mat1 and mat2", "shortcut": r"must match the size",
                "memory": r"(?i)out of memory|can't allocate", "input too small": r"too small"}

    def by_regex(message):
        return next(k for k, p in patterns.items() if re.search(p, message))

    assert check_which_bug(by_regex)
    assert "✓" in capsys.readouterr().out


# --- largest_batch ----------------------------------------------------------------

def _linear(model, budget):
    """A right answer written differently: solve the linear growth from two estimates."""
    from cnnlab.memory import estimate_training_memory

    one, two = (estimate_training_memory(model, b).total for b in (1, 2))
    per_image, fixed = two - one, one - (two - one)
    return max(0, (budget - fixed) // per_image)


def _first_that_does_not_fit(model, budget):
    return _linear(model, budget) + 1


def _powers_of_two(model, budget):
    from cnnlab.memory import estimate_training_memory

    batch = 1
    while estimate_training_memory(model, 2 * batch).total <= budget:
        batch *= 2
    return batch if estimate_training_memory(model, batch).total <= budget else 0


def test_largest_batch_from_the_linear_growth_passes(capsys):
    assert check_largest_batch(_linear)
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (_first_that_does_not_fit, "return the largest batch that fits, not the first"),
    (_powers_of_two, "any batch size counts, not only powers of two"),
    # the first case, LeNet in 300 MiB, fits far more than 128 (8,876)
    (lambda model, budget: 128, "but a batch of 129 fits too"),
])
def test_largest_batch_rejects_the_usual_slips(wrong, hint, capsys):
    assert not check_largest_batch(wrong)
    out = capsys.readouterr().out
    assert hint in out and out.count("\n") == 1


# --- issue 24: numbers in the messages; the largest batch's slips named ------------------

def test_an_answer_keyed_on_the_papers_400x120_does_not_pass(capsys):
    def by_numbers(message):  # Bug 1's numbers, as the report printed them
        if "400x120" in message:
            return "flatten"
        if "must match" in message:
            return "shortcut"
        return "input too small" if "too small" in message else "memory"

    assert not check_which_bug(by_numbers)
    assert "but it is 'flatten'" in capsys.readouterr().out


def test_no_number_is_common_to_all_the_messages_of_a_kind():
    import re

    # Numbers such as 400x120, 98.00 or 256, not the digits of a word (mat1) or a
    # lone digit ("GPU 0", "err == 0"), which no answer could key on.
    kinds = {}
    for message, kind in cases():
        numbers = re.findall(r"(?<![A-Za-z_])\d+(?:[x.]\d+)*", message)
        kinds.setdefault(kind, []).append({n for n in numbers if len(n) > 1})
    for kind, numbers in kinds.items():
        assert not set.intersection(*numbers), (kind, set.intersection(*numbers))


def _search(fits):
    """The solution's search (double, then bisect) for any rule of what fits."""
    if not fits(1):
        return 0
    low, high = 1, 2
    while fits(high):
        low, high = high, 2 * high
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def activations_only(model, budget):
    from cnnlab.memory import estimate_training_memory
    return _search(lambda b: estimate_training_memory(model, b).activations_bytes <= budget)


def budget_read_as_mib(model, budget):
    from cnnlab.memory import estimate_training_memory
    return _search(lambda b: estimate_training_memory(model, b).total / 2**20 <= budget)


def one_when_nothing_fits(model, budget):
    from cnnlab.memory import estimate_training_memory
    return max(1, _search(lambda b: estimate_training_memory(model, b).total <= budget))


def linear_search(model, budget):
    from cnnlab.memory import estimate_training_memory
    batch = 1
    while estimate_training_memory(model, batch + 1).total <= budget:
        batch += 1
    return batch if estimate_training_memory(model, batch).total <= budget else 0


@pytest.mark.parametrize("wrong, hint", [
    (activations_only, "that is the largest batch whose ACTIVATIONS fit"),
    (budget_read_as_mib, "the budget read as MiB: the budget is in bytes"),
    # the checker's last case: alexnet_large in 512 MiB, where a batch of 1 needs 894
    (one_when_nothing_fits, "more than the budget: when nothing fits, return 0"),
    (linear_search, "made more than 200 memory estimates and was still searching"),
])
def test_largest_batch_slips_are_named(wrong, hint, capsys):
    assert not check_largest_batch(wrong)
    out = capsys.readouterr().out
    assert hint in out and out.count("\n") == 1
