"""benchmarks/mutation.py's list stays runnable: every anchor is in its file once.

A mutation whose old text moved or changed can no longer be applied, and
the mutation score silently stops covering it; this cheap check catches
that when the code moves, not an hour into a mutation run.
"""
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("mutation", ROOT / "benchmarks" / "mutation.py")
mutation = importlib.util.module_from_spec(_spec)
sys.modules["mutation"] = mutation  # dataclasses look the module up by name
_spec.loader.exec_module(mutation)


def test_every_anchor_occurs_exactly_once_in_this_checkout():
    assert mutation.check_anchors(ROOT, mutation.MUTATIONS) == []


def test_ids_are_unique():
    ids = [m.id for m in mutation.MUTATIONS]
    assert len(ids) == len(set(ids))


def test_a_moved_or_repeated_anchor_is_reported(tmp_path):
    (tmp_path / "f.py").write_text("a = 1\nb = 2\nb = 2\n")
    moved = mutation.Mutation("moved", "f.py", "c = 3", "c = 4", "gone")
    twice = mutation.Mutation("twice", "f.py", "b = 2", "b = 3", "repeated")
    once = mutation.Mutation("once", "f.py", "a = 1", "a = 0", "fine")
    missing = mutation.Mutation("missing", "g.py", "a", "b", "no file")
    problems = mutation.check_anchors(tmp_path, [moved, twice, once, missing])
    assert [p.split(":")[0] for p in problems] == ["moved", "twice", "missing"]
    assert "occurs 0 times" in problems[0] and "occurs 2 times" in problems[1]


def test_the_mutation_runs_leave_this_file_out(monkeypatch, tmp_path):
    """A mutant replaces its own anchor, so the anchor check above would fail
    under every mutation and count it as caught: the runs must not include it."""
    seen = []

    class Stop(Exception):
        pass

    def popen(cmd, **kwargs):
        seen.append(cmd)
        raise Stop

    monkeypatch.setattr(mutation.subprocess, "Popen", popen)
    try:
        mutation.run_tests(tmp_path, {}, ["tests"], timeout=1)
    except Stop:
        pass
    assert "--ignore=tests/test_mutation_list.py" in seen[0]
    assert Path(__file__).relative_to(ROOT).as_posix() in mutation.IGNORED


def test_a_hint_only_orders_the_search(monkeypatch, tmp_path):
    """A hinted test that fails is a catch; one that passes (or no longer
    exists) leaves the verdict to the whole suite: a hint never makes one."""
    earlier = tmp_path / "earlier.json"
    earlier.write_text('{"mutations": [{"id": "a", "caught": true, "detail": "t.py::x"},'
                       ' {"id": "b", "caught": false, "detail": ""}]}')
    hints = mutation.load_hints([earlier])
    assert hints == {"a": "t.py::x"}
    outcomes = iter([("failed", ["t.py::x"], 2.0), ("passed", [], 1.0), ("error", [], 1.0)])
    monkeypatch.setattr(mutation, "run_tests", lambda *a, **k: next(outcomes))
    assert mutation.try_hint(tmp_path, {}, "t.py::x", 10) == ("failed", ["t.py::x"], 2.0)
    assert mutation.try_hint(tmp_path, {}, "t.py::x", 10) is None
    assert mutation.try_hint(tmp_path, {}, "t.py::gone", 10) is None
    assert mutation.try_hint(tmp_path, {}, None, 10) is None
