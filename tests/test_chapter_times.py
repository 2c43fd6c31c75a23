"""The landing page's chapter-times table: built only from recorded timings."""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("chapter_times",
                                               ROOT / "benchmarks" / "chapter_times.py")
chapter_times = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(chapter_times)


def _record(device, seconds):
    return {"device": device, "device_name": f"a {device}", "cpu_threads": 2,
            "budget": "short" if device == "cpu" else "full", "torch": "2.14.1",
            "warm_up_import_seconds": 21.0,
            "date": "2026-11-28T00:00:00+00:00", "git_commit": "0123456789abcdef",
            "chapters": {stem: {"title": stem, "seconds": s} for stem, s in seconds.items()}}


def test_table_has_a_row_per_chapter_and_a_total():
    table = chapter_times.times_table([_record("cpu", {"01_data": 42.0, "02_lenet": 75.0})])
    assert "| {doc}`01_data` | 42 s |" in table
    assert "| {doc}`02_lenet` | 1 min 15 s |" in table  # 75 s
    assert "| **all chapters** | **1 min 57 s** |" in table  # 42 + 75 = 117 s
    assert "No chapter has been timed on a GPU yet" in table
    assert "took 21 s" in table  # the untimed import, said next to the times


def test_a_gpu_record_adds_a_column():
    table = chapter_times.times_table([_record("cpu", {"01_data": 42.0}),
                                       _record("cuda", {"01_data": 9.0, "02_lenet": 5.0})])
    assert "| {doc}`01_data` | 42 s | 9 s |" in table
    assert "| {doc}`02_lenet` | not timed | 5 s |" in table
    assert "No chapter has been timed on a GPU yet" not in table


def test_markers_missing_is_an_error_not_a_lost_page():
    with pytest.raises(ValueError, match="CHAPTER-TIMES:START"):
        chapter_times.replace_between_markers("# intro without markers\n", "table")


def test_replacing_keeps_the_rest_of_the_page():
    page = f"before\n{chapter_times.START}\nold\n{chapter_times.END}\nafter\n"
    new = chapter_times.replace_between_markers(page, "new table")
    assert new == f"before\n{chapter_times.START}\nnew table\n{chapter_times.END}\nafter\n"


def test_intro_shows_exactly_the_recorded_times():
    """book/intro.md must not drift from results/chapter_times (no typed-in numbers)."""
    intro = chapter_times.INTRO.read_text()
    expected = chapter_times.replace_between_markers(
        intro, chapter_times.times_table(chapter_times.load_records()))
    assert intro == expected, "run `python benchmarks/chapter_times.py --intro-only`"
