"""Exercise checkers: immediate, specific feedback for the exercise notebooks.

Every checker takes the learner's answer (a function, a class, a number),
runs it against an oracle (a real forward pass, PyTorch's own layers, a
formula derived in the checker) and prints one of three lines:

    ✓ <exercise>: passed
    … <exercise>: not done yet (fill in the TODO cell, then run this again)
    ✗ <exercise>: <what was expected, what came back, where to look>

A checker never raises, so an untouched notebook runs top to bottom. It
returns True only on a pass, which the tests use.

One module per chapter holds that chapter's checkers (``lenet``,
``resnet``, ...).
"""
from __future__ import annotations

from typing import Callable


class CheckFailed(AssertionError):
    """The answer is wrong; the message says how."""


def expect(condition: bool, message: str) -> None:
    """Raise CheckFailed(message) unless ``condition``."""
    if not condition:
        raise CheckFailed(message)


def expect_equal(what: str, expected, got, hint: str = "") -> None:
    """Raise CheckFailed naming ``what``, the expected and the actual value."""
    if expected != got:
        raise CheckFailed(f"{what}: expected {expected!r}, got {got!r}."
                          + (f" Hint: {hint}" if hint else ""))


def run_check(name: str, check: Callable[[], None]) -> bool:
    """Run ``check`` and print the verdict; True only if it passed."""
    try:
        check()
    except NotImplementedError:
        print(f"… {name}: not done yet (fill in the TODO cell, then run this again)")
        return False
    except CheckFailed as err:
        print(f"✗ {name}: {err}")
        return False
    except Exception as err:  # the learner's code crashed: say where, don't crash
        print(f"✗ {name}: your code raised {type(err).__name__}: {err}")
        return False
    print(f"✓ {name}: passed")
    return True
