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
  scripts from running).

Needs Debian's chromium (`apt-get install chromium`; `.ci/run` installs it).
Without it the checks are skipped with one loud line, and the exit status is
0, unless --require is given (CI gives it) or CI=true is set.

To look at the pages yourself: `--out DIR` keeps the screenshots, `--tall`
takes whole pages, `--dark` opens them in the theme's dark mode.
"""
from __future__ import annotations

import argparse
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


def find_browser() -> str | None:
    """The Chromium executable on PATH, or None."""
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def open_page(browser: str, page: Path, png: Path, tall: bool = False,
              dark: bool = False) -> tuple[str, str]:
    """Load ``page`` offline; save a screenshot to ``png``; return (DOM, console log)."""
    size = f"--window-size=1280,{16000 if tall else SCREEN_ROWS}"
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [browser, *FLAGS, *OFFLINE, *(DARK if dark else []), size,
             f"--user-data-dir={profile}", f"--screenshot={png.resolve()}", "--dump-dom",
             page.resolve().as_uri()],
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
    return problems


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
