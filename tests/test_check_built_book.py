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


# --- alt text, dark mode, offline math, placeholder links -------------------

def _page_with(tmp_path, html_text, pixels=None):
    """A one-page book whose page is ``html_text`` (and its figure, if given)."""
    drawn = np.ones((20, 20, 3))
    drawn[5:15, 5:15] = 0
    html, toc = _book(tmp_path, drawn if pixels is None else pixels)
    (html / "book" / "intro.html").write_text(html_text)
    toc.write_text("format: jb-book\nroot: book/intro\n")
    return html, toc


FIG = 'src="../_images/fig.png"'


def test_an_image_without_alt_text_is_reported(tmp_path):
    assert any("has no alt text" in p for p in check(*_page_with(tmp_path, f"<img {FIG} />")))


def test_sphinx_default_alt_text_the_file_path_is_reported(tmp_path):
    page = f'<img alt="../_images/fig.png" {FIG} />'
    assert any("has no alt text" in p for p in check(*_page_with(tmp_path, page)))


def test_an_image_whose_alt_text_says_what_it_shows_passes(tmp_path):
    page = f'<img alt="Validation accuracy against step." {FIG} />'
    assert check(*_page_with(tmp_path, page)) == []


def test_a_transparent_figure_is_reported_for_dark_mode(tmp_path):
    rgba = np.zeros((20, 20, 4))
    rgba[5:15, 5:15, 3] = 1  # an opaque black square on a transparent ground
    page = f'<img alt="A black square." {FIG} />'
    problems = check(*_page_with(tmp_path, page, pixels=rgba))
    assert any("transparent" in p for p in problems)


MATH = '<span class="math notranslate nohighlight">\\(x\\)</span>'


def test_math_from_a_cdn_is_reported(tmp_path):
    page = MATH + '<script defer="defer" src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>'
    problems = check(*_page_with(tmp_path, page))
    assert any("MathJax loaded from https://cdn" in p for p in problems)
    assert any("does not load the book's own MathJax" in p for p in problems)


def test_math_served_by_the_book_passes(tmp_path):
    page = MATH + '<script defer="defer" src="../_static/mathjax/tex-chtml.js"></script>'
    assert check(*_page_with(tmp_path, page)) == []


def test_links_to_the_placeholder_repository_are_reported(tmp_path):
    page = ('<a href="https://github.com/cnnlab/cnnlab">repository</a>'
            '<a href="https://colab.research.google.com/github/cnnlab/cnnlab/blob/main/'
            'book/02_lenet.ipynb">Colab</a>')
    problems = [p for p in check(*_page_with(tmp_path, page)) if "placeholder" in p]
    assert len(problems) == 2


def test_links_to_a_real_repository_pass(tmp_path):
    page = ('<a href="https://github.com/someone/cnnlab">repository</a>'
            '<a href="https://github.com/cnnlab/cnnlab-notes">another project</a>')
    assert check(*_page_with(tmp_path, page)) == []
