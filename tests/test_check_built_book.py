"""The built-book checker must catch the holes it is there to catch."""
import numpy as np
from matplotlib.image import imsave

from check_built_book import WIDGET, check, widgets_without_static_view

WIDGET_DIV = f'<script type="{WIDGET}">{{"model_id": "x"}}</script>'
CODE = '<div class="cell_input"><pre>explore.layer_table("lenet")</pre></div>'


def output(html: str) -> str:
    return f'<div class="cell_output docutils container">{html}</div>'


def test_widget_followed_by_a_static_figure_passes():
    html = WIDGET_DIV + CODE + output('<img src="../_images/a.png" />')
    assert widgets_without_static_view(html) == 0


def test_widget_with_only_code_after_it_is_a_hole():
    html = WIDGET_DIV + CODE + "<section><h2>next</h2>" + output("<table></table>")
    assert widgets_without_static_view(html) == 1


def test_each_widget_needs_its_own_static_view():
    html = WIDGET_DIV + CODE + WIDGET_DIV + output("<table></table>")
    assert widgets_without_static_view(html) == 1


def _book(tmp_path, pixels):
    html = tmp_path / "html"
    (html / "book").mkdir(parents=True)
    (html / "_images").mkdir()
    imsave(html / "_images" / "fig.png", pixels)
    (html / "book" / "intro.html").write_text('<img alt="f" src="../_images/fig.png" />')
    toc = tmp_path / "_toc.yml"
    toc.write_text("format: jb-book\nroot: book/intro\nparts:\n  - chapters:\n"
                   "      - file: book/02_lenet\n")
    return html, toc


def test_missing_pages_and_blank_figures_are_reported(tmp_path):
    html, toc = _book(tmp_path, np.ones((20, 20, 3)))
    problems = check(html, toc)
    assert any("book/02_lenet: not built" in p for p in problems)
    assert any("fig.png is blank" in p for p in problems)


def test_a_drawn_figure_is_not_blank(tmp_path):
    pixels = np.ones((20, 20, 3))
    pixels[5:15, 5:15] = 0  # a black square: a quarter of the image is ink
    html, toc = _book(tmp_path, pixels)
    (html / "book" / "02_lenet.html").write_text("<p>LeNet</p>")
    assert check(html, toc) == []
