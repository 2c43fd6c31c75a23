"""Check the built HTML book as a reader gets it, without a browser.

`make test` runs it after the book build:

    .venv/bin/python tests/check_built_book.py .cache/book-test/_build/html

It fails (exit 1) when

- a page listed in _toc.yml was not built;
- a figure on a page is missing or blank, or is transparent (the theme's
  dark mode would draw black text on a dark page);
- an image has no alt text (or only its file name, Sphinx's default);
- a widget has no static view after it: in the static book no kernel runs,
  so a widget alone would leave a hole in the page, and the cell that
  follows it must show the same view as a figure, table or text;
- a page with formulas loads MathJax from anywhere but the book itself
  (the book must read offline), or does not load it at all;
- a link points to an address that is known not to be the course's
  repository (_ext/repo_links.py lists them).

tests/browser_check.py then opens the pages in headless Chromium.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from urllib.parse import urlparse

import yaml
from matplotlib.image import imread

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "_ext"))
from repo_links import PLACEHOLDER_URLS  # noqa: E402  (the one list of them)

WIDGET = "application/vnd.jupyter.widget-view+json"
# What counts as a static view in a cell's output: a figure, a table, a list
# (a Markdown output) or printed text.
STATIC_VIEW = re.compile(r'<img |<table|<ul|class="output (stream|text_plain)')
CELL_OUTPUT = 'class="cell_output'


def toc_pages(toc: Path) -> list[str]:
    """Every document named in _toc.yml, root first, sections after their
    chapter, without its suffix."""
    def walk(entries: list[dict]) -> list[str]:
        found = []
        for entry in entries:
            found += [entry[key] for key in ("root", "file") if key in entry]
            for key in ("parts", "chapters", "sections"):
                found += walk(entry.get(key, []))
        return found
    return walk([yaml.safe_load(toc.read_text())])


def ink(png: Path, height: int | None = None) -> float:
    """Share of pixels that are not near-white (in the top ``height`` rows, if given)."""
    pixels = imread(png)[:height]
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    rgb = pixels[..., :3].astype(float)
    if rgb.max() > 1:  # 8-bit values
        rgb = rgb / 255
    return float((rgb.mean(axis=2) < 0.9).mean())  # near-white: brighter than 90% white


def figure_problems(page: Path, html: str) -> list[str]:
    """Figures the page (whose text is ``html``) shows that are missing or blank."""
    problems = []
    for src in re.findall(r'<img [^>]*src="([^"]+)"', html):
        if "_images/" not in src:  # logos and badges from the theme
            continue
        path = (page.parent / src).resolve()
        if not path.is_file():
            problems.append(f"{page.name}: figure {src} is missing")
        elif path.suffix == ".png" and ink(path) < 0.005:  # a chosen bar: under 0.5% ink
            problems.append(f"{page.name}: figure {src} is blank")
        elif path.suffix == ".png" and transparent(path):
            problems.append(f"{page.name}: figure {src} is transparent: unreadable "
                            "in dark mode (give the figure a white facecolor)")
    return problems


def transparent(png: Path) -> bool:
    """True when some pixel of ``png`` is not fully opaque."""
    pixels = imread(png)
    return pixels.ndim == 3 and pixels.shape[2] == 4 and float(pixels[..., 3].min()) < 1


def alt_text_problems(page: Path, html: str) -> list[str]:
    """Images on the page without alt text that says what they show."""
    problems = []
    for tag in re.findall(r"<img [^>]*>", html):
        src = re.search(r'src="([^"]*)"', tag)
        alt = re.search(r'alt="([^"]*)"', tag)
        text = alt.group(1).strip() if alt else ""
        # Sphinx's default alt text is the image's path: no help to a reader.
        if not text or re.search(r"\.(png|jpe?g|svg|gif)$", text) or "_images/" in text:
            name = src.group(1) if src else tag[:60]
            problems.append(f"{page.name}: image {name} has no alt text (add "
                            "mystnb.image.alt to the cell's metadata)")
    return problems


def math_problems(page: Path, html: str) -> list[str]:
    """MathJax must come from the book itself, on every page with formulas."""
    problems = []
    scripts = re.findall(r'<script [^>]*src="([^"]+)"', html)
    for src in scripts:
        if src.startswith(("http:", "https:", "//")) and "mathjax" in src.lower():
            problems.append(f"{page.name}: MathJax loaded from {src}: formulas "
                            "would not render offline")
    has_math = 'class="math' in html
    if has_math and not any("_static/mathjax/" in src for src in scripts):
        problems.append(f"{page.name}: has formulas but does not load the book's "
                        "own MathJax (_static/mathjax/)")
    return problems


def placeholder_link_problems(page: Path, html: str) -> list[str]:
    """Links or sources that point to a placeholder repository address."""
    problems = []
    # The repository itself, and the launch links built from its owner/name
    # (Colab: .../github/OWNER/REPO/blob/..., Binder: .../gh/OWNER/REPO/...).
    owner_repos = [urlparse(p).path.strip("/").lower() for p in PLACEHOLDER_URLS]
    for url in re.findall(r'(?:href|src)="([^"]+)"', html):
        if not url.startswith(("http:", "https:")):
            continue
        path = urlparse(url).path.lower()
        for owner_repo in owner_repos:
            if f"/{owner_repo}/" in path + "/":
                problems.append(f"{page.name}: link to {url}, a placeholder, not "
                                "the course's repository (set repository.url in _config.yml)")
    return problems


def widgets_without_static_view(html: str) -> int:
    """How many widgets have no static view before the next widget or section."""
    starts = [m.start() for m in re.finditer(re.escape(WIDGET), html)]
    missing = 0
    for i, start in enumerate(starts):
        bounds = [len(html)] + starts[i + 1:i + 2]  # the end, or the next widget
        section = html.find("<section", start)
        if section != -1:
            bounds.append(section)
        end = min(bounds)
        after = html[start + len(WIDGET):end]
        outputs = after.split(CELL_OUTPUT)[1:]  # the output areas after the widget
        if not any(STATIC_VIEW.search(out) for out in outputs):
            missing += 1
    return missing


def check(html_root: Path, toc: Path = ROOT / "_toc.yml") -> list[str]:
    """Everything wrong with the built book at ``html_root`` (empty if fine)."""
    problems = []
    for doc in toc_pages(toc):
        page = html_root / f"{doc}.html"
        if not page.is_file():
            problems.append(f"{doc}: not built ({page} is missing)")
            continue
        html = page.read_text()
        problems += figure_problems(page, html)
        problems += alt_text_problems(page, html)
        problems += math_problems(page, html)
        problems += placeholder_link_problems(page, html)
        missing = widgets_without_static_view(html)
        if missing:
            problems.append(f"{page.name}: {missing} widget(s) without a static view "
                            "after them: the offline page would show a hole")
    return problems


def main(argv: list[str]) -> int:
    html_root = Path(argv[1]) if len(argv) > 1 else ROOT / "_build" / "html"
    if not html_root.is_dir():
        print(f"no built book at {html_root}: run `make book` first", file=sys.stderr)
        return 1
    problems = check(html_root)
    for p in problems:
        print(f"FAIL {p}")
    pages = len(toc_pages(ROOT / "_toc.yml"))
    print(f"{pages} pages checked: {'ok' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
