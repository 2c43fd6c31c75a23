"""Open every page of the built book in headless Chromium, offline, and check it.

`make test` runs it after the book build and tests/check_built_book.py:

    .venv/bin/python tests/browser_check.py .cache/book-test/_build/html

Chromium runs with every network request refused (a proxy that does not
exist), as a reader without network would see the book. For each page in
_toc.yml it fails (exit 1) when

- Chromium cannot open the page;
- the page's first screen is blank (nearly all one colour);
- the page has formulas and MathJax did not typeset them: no MathJax output
  in the rendered page, or raw TeX such as ``\\(`` or ``\\[`` left in it;
- a widget has no static view after it in the rendered page;
- a script fails with an uncaught error (which can stop the rest of a page's
  scripts from running);
- a table is squeezed at 1280 px: a cell of two or more words shows one word
  per line, or a word wider than its cell is broken across lines or runs out
  of it. A wide table must scroll instead (_static/tables.js and tables.css).

The tables are measured by a short script (TABLE_PROBE) run in the page: the
page is opened from a copy that adds the script and a <base> pointing at the
built book, so it loads the same styles and scripts.

Needs Debian's chromium (`apt-get install chromium`; `.ci/run` installs it).
Without it the checks are skipped with one loud line, and the exit status is
0, unless --require is given (CI gives it) or CI=true is set.

To look at the pages yourself: `--out DIR` keeps the screenshots, `--tall`
takes whole pages, `--dark` opens them in the theme's dark mode.
"""
from __future__ import annotations

import argparse
import html as html_lib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from check_built_book import ROOT, ink, toc_pages, widgets_without_static_view

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
OFFLINE = ["--proxy-server=http://127.0.0.1:9",  # nothing listens there: no network
           "--host-resolver-rules=MAP * ~NOTFOUND"]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--enable-logging=stderr", "--v=0",
         # Let the page's scripts (MathJax) finish before the DOM is dumped.
         "--virtual-time-budget=20000"]
DARK = ["--force-dark-mode", "--blink-settings=preferredColorScheme=0"]
# A math element whose content still starts with TeX: MathJax did not run on it.
RAW_TEX = re.compile(r'<span class="math[^"]*">\s*(\\\(|\\\[|\$)|'
                     r'<div class="math[^"]*">\s*(\\\[|\$\$)')
UNCAUGHT = re.compile(r'CONSOLE[^\]]*\] "(Uncaught [^"]*)"')
SCREEN_ROWS = 2400  # the "first screen" whose ink is measured

# Run in the page once it has loaded and MathJax has typeset it: every visible
# table cell, how many words it holds and on how many lines they sit, and any
# word broken across lines or wider than its cell. Its report (squeezed cells
# only) is left in the DOM as JSON for --dump-dom to carry out.
TABLE_PROBE = r"""
(() => {
  const FORMULA = "mjx-container";
  const BLOCK = /^(block|list-item|table|flex|grid|flow-root)/;
  // Rects -> the lines they sit on (a rect whose middle is below the line so
  // far starts a new line).
  const lineCount = rects => {
    const boxes = rects.filter(r => r.width > 0 && r.height > 0)
                       .sort((a, b) => a.top - b.top);
    let lines = 0, bottom = -Infinity;
    for (const r of boxes) {
      if ((r.top + r.bottom) / 2 > bottom) { lines += 1; bottom = r.bottom; }
      else bottom = Math.max(bottom, r.bottom);
    }
    return lines;
  };
  const blockOf = node => {
    for (let el = node.parentElement; el; el = el.parentElement)
      if (BLOCK.test(getComputedStyle(el).display)) return el;
  };
  // One cell: its words (a formula is one word; `x`, is one word, though
  // it spans two elements), the lines its text covers, the lines on which a
  // word starts, and any word broken across lines although it is wider than
  // the cell (a cell narrower than its longest word; a line break after the
  // hyphen of a word that would fit is ordinary typesetting).
  const probeCell = cell => {
    const style = getComputedStyle(cell), range = document.createRange();
    const inner = cell.clientWidth - parseFloat(style.paddingLeft)
                  - parseFloat(style.paddingRight);
    const rects = [], starts = [], text = [], formulas = new Set();
    let broken = null, spaceBefore = true, block = null;
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node; (node = walker.nextNode());) {
      const formula = node.parentElement.closest(FORMULA);
      if (formula) {  // its text is MathJax's hidden copy: the formula counts once
        if (!formulas.has(formula)) {
          formulas.add(formula);
          rects.push(formula.getBoundingClientRect());
          starts.push(formula.getBoundingClientRect());
          text.push("[formula]");
          spaceBefore = true;
        }
        continue;
      }
      const nodeBlock = blockOf(node);
      if (nodeBlock !== block) [block, spaceBefore] = [nodeBlock, true];
      range.selectNodeContents(node);
      rects.push(...range.getClientRects());
      for (const m of node.data.matchAll(/\S+/g)) {
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        const parts = [...range.getClientRects()].filter(r => r.width > 0);
        if (m.index > 0 || spaceBefore) {  // a new word
          starts.push(parts[0] || range.getBoundingClientRect());
          text.push(m[0]);
        } else {  // the rest of the word the last text node ended in
          text[text.length - 1] += m[0];
        }
        const width = parts.reduce((sum, r) => sum + r.width, 0);
        if (!broken && lineCount(parts) > 1 && width > inner + 0.5) broken = m[0];
      }
      spaceBefore = /\s$/.test(node.data);
    }
    return {text: text.join(" "), words: starts.length, lines: lineCount(rects),
            startLines: lineCount(starts), broken,
            overflow: Math.max(0, cell.scrollWidth - cell.clientWidth)};
  };
  const name = cell => probeCell(cell).text;
  const probe = () => {
    const found = [];
    let tables = 0;  // measured: tables hidden (in a closed <details>) are not
    [...document.querySelectorAll("table:not(.highlighttable)")].forEach((table, n) => {
      if (!table.checkVisibility()) return;
      tables += 1;
      const first = table.rows[0];
      const head = table.tHead ? [...table.tHead.rows].pop()
                 : first && [...first.cells].every(c => c.tagName === "TH") ? first : null;
      const names = head ? [...head.cells].map(name) : [];
      for (const row of table.rows) {
        [...row.cells].forEach((cell, i) => {
          const c = probeCell(cell);
          // One word per line: two or more words, and no line on which two start.
          const squeezed = (c.words > 1 && c.startLines === c.words) || c.broken
                           || c.overflow > 1;
          if (c.lines && squeezed)
            found.push({table: n + 1, columns: names, column: names[i] || "", ...c});
        });
      }
    });
    const out = document.createElement("script");
    out.type = "application/json";
    out.id = "table-probe";
    out.textContent = JSON.stringify({tables, squeezed: found}).replace(/</g, "\\u003c");
    document.body.append(out);
  };
  window.addEventListener("load", () => {
    const typeset = (window.MathJax && MathJax.startup && MathJax.startup.promise)
                    || Promise.resolve();
    Promise.all([typeset, document.fonts.ready]).catch(() => {})
           .then(() => setTimeout(probe, 100));
  });
})();
"""
PROBE_REPORT = re.compile(r'<script[^>]* id="table-probe"[^>]*>(.*?)</script>', re.S)


def find_browser() -> str | None:
    """The Chromium executable on PATH, or None."""
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def with_table_probe(html: str, folder: Path) -> str:
    """``html`` with TABLE_PROBE added, and a <base> so that a copy of the page
    saved elsewhere loads its styles, scripts and images from ``folder``."""
    base = f'<base href="{html_lib.escape(folder.resolve().as_uri())}/">'
    head = re.search(r"<head[^>]*>", html)
    html = html[:head.end()] + base + html[head.end():] if head else base + html
    script = f"<script>{TABLE_PROBE}</script>"
    end = html.rfind("</body>")
    return html[:end] + script + html[end:] if end != -1 else html + script


def open_page(browser: str, page: Path, png: Path, tall: bool = False,
              dark: bool = False) -> tuple[str, str]:
    """Load ``page`` offline, with TABLE_PROBE; save a screenshot to ``png``;
    return (DOM, console log)."""
    size = f"--window-size=1280,{16000 if tall else SCREEN_ROWS}"
    with tempfile.TemporaryDirectory() as tmp:
        probed = Path(tmp) / page.name
        probed.write_text(with_table_probe(page.read_text(), page.parent))
        done = subprocess.run(
            [browser, *FLAGS, *OFFLINE, *(DARK if dark else []), size,
             f"--user-data-dir={Path(tmp) / 'profile'}", f"--screenshot={png.resolve()}",
             "--dump-dom", probed.as_uri()],
            capture_output=True, text=True, timeout=180)
    if done.returncode != 0 or not png.is_file():
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"chromium exited with {done.returncode}: {tail[0]}")
    return done.stdout, done.stderr


def page_problems(built_html: str, dom: str, log: str, first_screen_ink: float) -> list[str]:
    """What is wrong with one page as Chromium rendered it."""
    problems = []
    if first_screen_ink < 0.01:  # a chosen bar: under 1% ink
        problems.append(f"blank: only {100 * first_screen_ink:.2f}% of its first screen is ink")
    if 'class="math' in built_html:
        if "<mjx-container" not in dom:
            problems.append("formulas not typeset: no MathJax output in the rendered page")
        raw = RAW_TEX.search(dom)
        if raw:
            problems.append(f"formula left as raw TeX: {dom[raw.start():raw.start() + 80]!r}")
    missing = widgets_without_static_view(dom)
    if missing:
        problems.append(f"{missing} widget(s) without a static view in the rendered page")
    for error in dict.fromkeys(UNCAUGHT.findall(log)):  # each distinct error once
        problems.append(f"script error: {error}")
    return problems + table_problems(built_html, dom)


def table_problems(built_html: str, dom: str, shown: int = 3) -> list[str]:
    """Tables squeezed so that a cell reads one word per line, or a word is
    broken or runs out of its cell (TABLE_PROBE's report in ``dom``); at most
    ``shown`` cells named per table."""
    found = PROBE_REPORT.search(dom)
    if found is None:
        return (["tables not measured: the table probe did not run in the page"]
                if "<table" in built_html else [])
    report = json.loads(found.group(1))
    by_table: dict[int, list[dict]] = {}
    for cell in report["squeezed"]:
        by_table.setdefault(cell["table"], []).append(cell)
    problems = []
    for number, cells in by_table.items():
        columns = " | ".join(name or "·" for name in cells[0]["columns"])
        what = [f'column "{c["column"]}": {squeeze(c)}' if c["column"] else squeeze(c)
                for c in cells[:shown]]
        more = f"; and {len(cells) - shown} more cells" if len(cells) > shown else ""
        problems.append(f"table {number} ({_short(columns, 70)}) is squeezed: "
                        + "; ".join(what) + more)
    return problems


def squeeze(cell: dict) -> str:
    """How one cell of TABLE_PROBE's report is squeezed, in words."""
    text = f'"{_short(cell["text"], 40)}"'
    if cell["broken"]:
        return f'{text} has the word "{_short(cell["broken"], 30)}" broken across lines'
    if cell["overflow"] > 1:
        return f"{text} runs {cell['overflow']} px out of its cell"
    return f"{text} reads one word per line ({cell['words']} words on {cell['lines']} lines)"


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n - 1] + "…"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", nargs="?", type=Path, default=ROOT / "_build" / "html",
                        help="the built book (default: _build/html)")
    parser.add_argument("--out", type=Path, help="keep the screenshots in this folder")
    parser.add_argument("--tall", action="store_true", help="screenshot whole pages")
    parser.add_argument("--dark", action="store_true", help="use the theme's dark mode")
    parser.add_argument("--require", action="store_true",
                        help="fail when Chromium is missing (default when CI=true)")
    args = parser.parse_args(argv)
    browser = find_browser()
    if browser is None:
        required = args.require or os.environ.get("CI", "").lower() == "true"
        print("!!! BROWSER CHECKS SKIPPED: no Chromium on this machine. Install it with "
              "`apt-get install chromium` (Debian/Ubuntu) and run `make test` again.",
              file=sys.stderr)
        return 1 if required else 0
    pages = [args.html / f"{doc}.html" for doc in toc_pages(ROOT / "_toc.yml")]
    if not pages[0].is_file():
        print(f"no built book at {args.html}: run `make book` first", file=sys.stderr)
        return 1
    out = args.out or Path(tempfile.mkdtemp(prefix="browser-check-"))
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for page in pages:
        name = f"{page.parent.name}_{page.stem}"
        png = out / f"{name}{'_dark' if args.dark else ''}.png"
        try:
            dom, log = open_page(browser, page, png, tall=args.tall, dark=args.dark)
            problems = page_problems(page.read_text(), dom, log, ink(png, height=SCREEN_ROWS))
        except (OSError, RuntimeError, subprocess.SubprocessError) as err:
            problems = [f"could not open it: {err}"]
        failed += bool(problems)
        print(f"{'ok  ' if not problems else 'FAIL'} {page.relative_to(args.html)}"
              + "".join(f"\n     - {p}" for p in problems))
    if args.out is None:
        shutil.rmtree(out, ignore_errors=True)
    print(f"{len(pages)} pages opened in {Path(browser).name}, offline: "
          f"{'ok' if not failed else f'{failed} with problems'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
