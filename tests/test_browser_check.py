"""tests/browser_check.py must catch what a reader would see broken."""
import browser_check
from browser_check import page_problems
from check_built_book import WIDGET

MATH = '<span class="math notranslate nohighlight">\\(F(x)\\)</span>'
TYPESET = '<span class="math notranslate nohighlight"><mjx-container class="MathJax"></mjx-container></span>'
INKY = 0.2  # a page 20% ink; browser_check calls a first screen under 1% ink blank


def test_a_typeset_page_without_errors_passes():
    assert page_problems(MATH, TYPESET, "", INKY) == []


def test_formulas_left_as_tex_are_reported():
    problems = page_problems(MATH, MATH, "", INKY)
    assert any("not typeset" in p for p in problems)
    assert any("raw TeX" in p for p in problems)


def test_one_raw_formula_among_typeset_ones_is_reported():
    display_raw = '<div class="math notranslate nohighlight">\\[x\\]</div>'
    assert any("raw TeX" in p for p in page_problems(MATH, TYPESET + display_raw, "", INKY))


def test_a_page_without_formulas_needs_no_mathjax():
    assert page_problems("<p>text</p>", "<p>text</p>", "", INKY) == []


def test_a_blank_page_is_reported():
    # 0.1% ink, under the 1% bar
    assert any("blank" in p for p in page_problems("<p></p>", "<p></p>", "", 0.001))


def test_an_uncaught_script_error_is_reported_once():
    line = ('[1:1:1129/134033.630202:INFO:CONSOLE:62] "Uncaught SyntaxError: Identifier '
            "'THEBE_JS_URL' has already been declared\", source: file:///book/04.html (62)")
    problems = page_problems("", "", line + "\n" + line, INKY)
    assert problems == ["script error: Uncaught SyntaxError: Identifier 'THEBE_JS_URL' "
                        "has already been declared"]


def test_console_chatter_is_not_an_error():
    line = '[1:1:1129/1:INFO:CONSOLE:1] "[PST]: Changed to auto mode using the light theme.", source: x (1)'
    assert page_problems("", "", line, INKY) == []


def test_a_widget_without_its_static_view_is_reported():
    dom = f'<script type="{WIDGET}">{{"model_id": "x"}}</script><section>next</section>'
    assert any("widget" in p for p in page_problems("", dom, "", INKY))


def test_without_chromium_the_checks_are_skipped_loudly(monkeypatch, capsys):
    monkeypatch.setattr(browser_check.shutil, "which", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    assert browser_check.main([]) == 0
    assert "BROWSER CHECKS SKIPPED" in capsys.readouterr().err


def test_ci_requires_chromium(monkeypatch):
    monkeypatch.setattr(browser_check.shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "true")
    assert browser_check.main([]) == 1
    monkeypatch.delenv("CI")
    assert browser_check.main(["--require"]) == 1
