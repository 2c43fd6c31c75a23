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
    # LeNet's flatten size: 16*4*4 = 256 on 28 px images, 16*5*5 = 400 on 32 px.
    assert run_check("demo", lambda: expect_equal("flatten size", 256, 400, "28, not 32")) is False
    out = capsys.readouterr().out
    assert "✗ demo: flatten size: expected 256, got 400. Hint: 28, not 32" in out


def test_crashing_answer_is_reported_not_raised(capsys):
    assert run_check("demo", lambda: 1 / 0) is False
    assert "ZeroDivisionError" in capsys.readouterr().out


def test_check_failed_is_an_assertion():
    assert issubclass(CheckFailed, AssertionError)


def test_a_time_limit_never_stops_an_import_halfway():
    """torch imports modules lazily (torch._dynamo at a first optimiser or a
    meta-device model): a limit that fired inside such an import would leave
    the module half-built, and every later cell that needs it broken."""
    import importlib.abc
    import importlib.util
    import sys
    import time

    import pytest

    from cnnlab.exercises import TookTooLong, time_limit

    class SlowImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path, target=None):
            return importlib.util.spec_from_loader(name, self) if name == NAME else None

        def create_module(self, spec):
            return None

        def exec_module(self, module):
            end = time.perf_counter() + 0.5  # five times the limit below
            while time.perf_counter() < end:
                pass
            module.complete = True

    NAME = "_cnnlab_slow_import_demo"
    finder = SlowImport()
    sys.meta_path.insert(0, finder)
    try:
        with pytest.raises(TookTooLong):
            with time_limit(0.1):
                __import__(NAME)
                while True:  # the limit must still stop the learner's loop
                    pass
        assert sys.modules[NAME].complete
    finally:
        sys.meta_path.remove(finder)
        sys.modules.pop(NAME, None)


def test_an_error_in_the_checkers_own_code_is_not_called_the_learners(capsys):
    # The call fails in the checker's frame: the answer takes one argument where the
    # exercise says two. That is not "your code raised".
    from cnnlab.exercises.alexnet import check_linear_params
    assert check_linear_params(lambda n_in: n_in) is False
    out = capsys.readouterr().out
    assert out.startswith("✗ linear_params: the check could not use your answer (TypeError: ")
    assert "your code raised" not in out


def test_an_error_in_the_learners_code_is_still_theirs(capsys):
    from cnnlab.exercises.alexnet import check_linear_params
    assert check_linear_params(lambda n_in, n_out: n_in // 0) is False
    assert capsys.readouterr().out.startswith(
        "✗ linear_params: your code raised ZeroDivisionError: ")


def test_prepare_runs_in_the_callers_process_and_never_for_a_missing_answer(capsys):
    from cnnlab.exercises import checker, CHECKERS

    ran = []
    globals()["NOTEBOOK"] = "01_data.ipynb"  # the decorator reads its module's NOTEBOOK
    try:
        @checker("a demo with a prepare step", answers="x", prepare=lambda: ran.append(1))
        def check_demo(x):
            """The check runs in a child process: it sees what prepare left."""
            assert ran == [1]
        assert check_demo(None) is False and ran == []
        assert check_demo(3) is True and ran == [1]
    finally:
        CHECKERS.pop("a demo with a prepare step", None)
        globals().pop("NOTEBOOK", None)
    assert capsys.readouterr().out.endswith("✓ a demo with a prepare step: passed\n")
