"""Screenshot the built book's pages with headless Chromium and check none is blank.

Run after `make book` (needs Debian's chromium: `apt-get install chromium`):

    .venv/bin/python tests/screenshot_pages.py [_build/html] [--out .cache/shots]

For each page it saves a whole-page PNG and fails (exit 1) if a page is
missing, Chromium fails, or its first screen is nearly all one colour.
Look at the PNGs too: this only proves the pages are not blank.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from check_built_book import ink

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--window-size=1280,16000"]  # tall: the whole page


def screenshot(page: Path, png: Path) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(["chromium", *FLAGS, f"--user-data-dir={profile}",
                        f"--screenshot={png.resolve()}", page.resolve().as_uri()],
                       check=True, capture_output=True, timeout=120)


def first_screen_ink(png: Path) -> float:
    """Share of non-white pixels (text, figures, tables) in the first screen.

    The PNG holds the whole page, for looking at; the share is taken over
    the top 2,400 rows only, so a short page is not diluted by the empty
    window below it. (Blank figures further down are caught by
    tests/check_built_book.py, which `make test` runs.)
    """
    return ink(png, height=2400)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", nargs="?", type=Path, default=Path("_build/html"))
    parser.add_argument("--out", type=Path, default=Path(".cache/shots"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    pages = [page for folder in ("book", "exercises", "solutions")
             for page in sorted((args.html / folder).glob("*.html"))]
    if not pages:
        print(f"no pages under {args.html}: run `make book` first", file=sys.stderr)
        return 1
    failed = 0
    for page in pages:
        png = args.out / f"{page.parent.name}_{page.stem}.png"
        try:
            screenshot(page, png)
            share = first_screen_ink(png)
        except (subprocess.SubprocessError, OSError) as err:
            print(f"FAIL {page}: {err}")
            failed += 1
            continue
        verdict = "ok  " if share > 0.01 else "BLANK"
        failed += verdict != "ok  "
        print(f"{verdict} {png}  ({100 * share:.1f}% of the page is ink)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
