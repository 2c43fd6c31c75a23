"""tests/browser_check.py must catch what a reader would see broken."""
import json

import browser_check
import pytest
from browser_check import page_problems, table_problems
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


# The table check. table_problems reads TABLE_PROBE's report out of the DOM;
# the probe itself is tried in Chromium on tables that wrap, scroll and fit.

def _report(*cells: dict, tables: int = 1) -> str:
    body = json.dumps({"tables": tables, "squeezed": list(cells)})
    return f'<body><script type="application/json" id="table-probe">{body}</script></body>'


SQUEEZED = {"table": 2, "columns": ["arm", "training time (s)"], "column": "training time (s)",
            "text": "training time (s)", "words": 3, "lines": 3, "broken": None, "overflow": 0}


def test_a_squeezed_cell_is_reported_with_its_table_and_column():
    [problem] = page_problems("<table></table>", _report(SQUEEZED), "", INKY)
    assert problem.startswith("table 2 (arm | training time (s)) is squeezed")
    assert 'column "training time (s)"' in problem
    assert "one word per line (3 words on 3 lines)" in problem


def test_a_broken_or_overflowing_word_is_reported():
    broken = {**SQUEEZED, "words": 1, "lines": 2, "broken": "11,175,370"}
    out = {**SQUEEZED, "table": 3, "lines": 1, "overflow": 40}
    problems = table_problems("<table>", _report(broken, out))
    assert 'the word "11,175,370" broken across lines' in problems[0]
    assert "runs 40 px out of its cell" in problems[1]


def test_many_squeezed_cells_are_named_three_at_a_time():
    [problem] = table_problems("<table>", _report(*[SQUEEZED] * 5))
    assert problem.count("one word per line") == 3 and problem.endswith("and 2 more cells")


def test_tables_that_were_not_measured_are_reported():
    assert any("not measured" in p for p in page_problems("<table>", "<body></body>", "", INKY))
    assert table_problems("<table>", _report()) == []


# Tables in a 360 px column: 1 squeezed; 2 scrolls; 3 fits; 4 a word broken
# mid-word; 5 a line break after a hyphen in a cell wider than the word
# (ordinary typesetting); 6 a column narrower than the word "mult-adds".
ROW = ("<tr><td>report's block (reuse_conv1)</td><td>97.01 ± 0.93 (3 of 5 seeds)</td>"
       "<td>232 (2 of 3 seeds; 1 that shared the CPU left out)</td>"
       "<td><code>python -m cnnlab train resnet18 --epochs 1 --shortcut zero_pad</code></td></tr>")
HEAD = ("<thead><tr><th>arm</th><th>test accuracy (%)</th><th>training time (s)</th>"
        "<th>rerun one seed</th></tr></thead>")
PAGE = f"""<!DOCTYPE html><html><head><meta charset="utf-8"><style>
  body {{ font: 16px sans-serif; }} .column {{ width: 360px; }}
  td, th {{ padding: 4px; border: 1px solid #999; }}
</style></head><body><div class="column">
  <table id="wraps">{HEAD}<tbody>{ROW}</tbody></table>
  <div style="overflow-x: auto"><table id="scrolls" style="white-space: nowrap">
    {HEAD}<tbody>{ROW}</tbody></table></div>
  <table id="fits"><thead><tr><th>model</th><th>parameters</th></tr></thead>
    <tbody><tr><td>ResNet-18 (option B)</td><td>11,175,370</td></tr></tbody></table>
  <table id="breaks" style="width: 60px; word-break: break-all"><tr>
    <td>11,175,370</td></tr></table>
  <table id="hyphen-fits" style="font: 16px monospace"><tr>
    <td style="width: 12ch">xx xxxxx-yyyyy</td><td>a b</td></tr></table>
  <table id="hyphen-squeezed"><tr><td style="width: 1px">mult-adds</td></tr></table>
  <details><summary>hidden</summary><table><tr><td>a b c d</td></tr></table></details>
</div></body></html>"""


@pytest.fixture(scope="module")
def probed(tmp_path_factory) -> dict:
    """TABLE_PROBE's report on PAGE, as Chromium rendered it at 1280 px."""
    browser = browser_check.find_browser()
    if browser is None:
        pytest.skip("no Chromium on this machine")
    folder = tmp_path_factory.mktemp("tables")
    (folder / "page.html").write_text(PAGE)
    dom, _ = browser_check.open_page(browser, folder / "page.html", folder / "page.png")
    report = json.loads(browser_check.PROBE_REPORT.search(dom).group(1))
    return {"dom": dom, "tables": report["tables"],
            "squeezed": {cell["table"] for cell in report["squeezed"]},
            "problems": table_problems(PAGE, dom)}


def test_the_probe_measures_every_visible_table(probed):
    assert probed["tables"] == 6  # the one in the closed <details> is hidden


def test_a_table_squeezed_into_its_column_is_caught(probed):
    assert 1 in probed["squeezed"]
    assert any(p.startswith("table 1 ") and "one word per line" in p
               for p in probed["problems"])


def test_a_table_that_scrolls_or_fits_passes(probed):
    assert 2 not in probed["squeezed"] and 3 not in probed["squeezed"]


def test_a_word_broken_across_lines_is_caught(probed):
    assert any(p.startswith("table 4 ") and 'the word "11,175,370" broken' in p
               for p in probed["problems"])


def test_a_break_after_a_hyphen_is_caught_only_where_the_word_does_not_fit(probed):
    assert 5 not in probed["squeezed"]  # "xx xxxxx-" / "yyyyy": the word fits in 12ch
    assert any(p.startswith("table 6 ") and 'the word "mult-adds" broken' in p
               for p in probed["problems"])


# The book's own fix (_static/tables.js and tables.css) on the table that
# squeezes above, in the theme's scrolling box: no cell reads one word per line.
FIXED_PAGE = f"""<!DOCTYPE html><html><head><meta charset="utf-8">
<link rel="stylesheet" href="{(browser_check.ROOT / '_static/tables.css').as_uri()}">
<script src="{(browser_check.ROOT / '_static/tables.js').as_uri()}"></script><style>
  body {{ font: 16px sans-serif; }} .bd-article {{ width: 360px; }}
  .pst-scrollable-table-container {{ overflow-x: auto; }}
  td, th {{ padding: 4px; border: 1px solid #999; }} p {{ margin: 0; }}
</style></head><body><article class="bd-article">
  <div class="pst-scrollable-table-container"><table>
    {HEAD.replace("<th>", "<th><p>").replace("</th>", "</p></th>")}
    <tbody>{ROW.replace("<td>", "<td><p>").replace("</td>", "</p></td>")}</tbody></table></div>
  <div class="pst-scrollable-table-container"><table><tr><td><p>mult-adds</p></td>
    <td><p>stochastic diagonal Levenberg-Marquardt</p></td></tr></table></div>
  <details><summary>opened once the page has loaded</summary>
    <div class="pst-scrollable-table-container"><table>
      {HEAD.replace("<th>", "<th><p>").replace("</th>", "</p></th>")}
      <tbody>{ROW.replace("<td>", "<td><p>").replace("</td>", "</p></td>")}</tbody>
    </table></div></details>
</article><script>
  // After tables.js's last pass (once fonts are ready), before the probe's.
  addEventListener("load", () => document.fonts.ready.then(
    () => setTimeout(() => document.querySelector("details").open = true)));
</script></body></html>"""


def test_the_books_table_style_keeps_every_cell_readable(tmp_path):
    browser = browser_check.find_browser()
    if browser is None:
        pytest.skip("no Chromium on this machine")
    (tmp_path / "page.html").write_text(FIXED_PAGE)
    dom, _ = browser_check.open_page(browser, tmp_path / "page.html", tmp_path / "page.png")
    assert table_problems(FIXED_PAGE, dom) == []
    assert '"tables":3' in browser_check.PROBE_REPORT.search(dom).group(1)
    assert "cell-one-line" in dom  # tables.js ran (the same page without it squeezes)


def test_every_document_in_the_toc_is_opened_sections_included():
    docs = browser_check.toc_pages(browser_check.ROOT / "_toc.yml")
    assert docs[0] == "book/intro" and len(docs) == len(set(docs))
    assert docs.index("book/04b_resnet_experiments") == docs.index("book/04_resnet") + 1
