"""The checker framework: pass, not done, wrong answer, crashing answer."""
from cnnlab.exercises import CheckFailed, expect_equal, run_check


def test_pass(capsys):
    assert run_check("demo", lambda: None) is True
    assert capsys.readouterr().out == "✓ demo: passed\n"


def test_not_done(capsys):
    def todo():
        raise NotImplementedError
    assert run_check("demo", todo) is False
    assert "not done yet" in capsys.readouterr().out


def test_wrong_answer_names_expected_and_actual(capsys):
    assert run_check("demo", lambda: expect_equal("flatten size", 256, 400, "28, not 32")) is False
    out = capsys.readouterr().out
    assert "✗ demo: flatten size: expected 256, got 400. Hint: 28, not 32" in out


def test_crashing_answer_is_reported_not_raised(capsys):
    assert run_check("demo", lambda: 1 / 0) is False
    assert "ZeroDivisionError" in capsys.readouterr().out


def test_check_failed_is_an_assertion():
    assert issubclass(CheckFailed, AssertionError)
