"""How long each book chapter takes to run, measured by running it.

Executes every notebook in book/ with a fresh kernel (as a reader's
"Restart & Run All" would), times each one, and writes the times with
their provenance to results/chapter_times/<device>.json. Then rewrites the
table between the CHAPTER-TIMES markers in book/intro.md from every
recorded file, so the landing page quotes only measured times.

    python benchmarks/chapter_times.py             # time, record, update intro.md
    python benchmarks/chapter_times.py --inplace   # also save the executed notebooks
    python benchmarks/chapter_times.py --intro-only  # rebuild the table from the JSONs

Run it on an otherwise idle machine: a busy CPU slows 2-thread torch
several times over.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import nbformat
import torch
from nbclient import NotebookClient

from cnnlab.budget import budget_name
from cnnlab.provenance import device_name, git_commit, short_commit
from cnnlab.results import atomic_write_text

ROOT = Path(__file__).resolve().parent.parent
TIMES_DIR = ROOT / "results" / "chapter_times"
INTRO = ROOT / "book" / "intro.md"
START = "<!-- CHAPTER-TIMES:START (written by benchmarks/chapter_times.py) -->"
END = "<!-- CHAPTER-TIMES:END -->"


def chapter_title(nb: nbformat.NotebookNode, fallback: str) -> str:
    """The notebook's first '# ' heading, or ``fallback``."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


def run_notebook(path: Path, inplace: bool, timeout: int) -> tuple[str, float]:
    """Execute one notebook in its own folder; its title and the wall seconds it took."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    if inplace:
        text = nbformat.writes(nb)
        atomic_write_text(path, text if text.endswith("\n") else text + "\n")
    return chapter_title(nb, path.stem), seconds


def warm_file_cache() -> float:
    """Import what every chapter imports once, untimed; return the seconds it took.

    The first import of torch after its files left the OS file cache reads
    gigabytes from disk (20 s and more here, against 2.5 s warm). Charging
    that to whichever chapter runs first would make its time a lottery, so
    every chapter is timed with a warm cache, and the cold import is
    recorded separately.
    """
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, torchvision, matplotlib.pyplot, "
                    "ipywidgets, torchinfo, cnnlab.train"], check=True)
    return time.perf_counter() - start


def record(notebooks: list[Path], inplace: bool, timeout: int) -> dict:
    """Time every notebook; the result, with where and how it was measured."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    commit = git_commit()  # before --inplace rewrites the notebooks' outputs
    first_import = warm_file_cache()
    print(f"{'(imports, untimed warm-up)':28} {first_import:7.1f} s", flush=True)
    times = {}
    for path in notebooks:
        title, seconds = run_notebook(path, inplace, timeout)
        times[path.stem] = {"title": title, "seconds": round(seconds, 1)}
        print(f"{path.name:28} {seconds:7.1f} s", flush=True)
    return {
        "device": device.type,
        "device_name": device_name(device),
        "cpu_threads": torch.get_num_threads(),
        "budget": budget_name(),
        "warm_up_import_seconds": round(first_import, 1),
        "torch": torch.__version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": commit,
        "chapters": times,
    }


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds // 60:.0f} min {seconds % 60:02.0f} s"


def _provenance_note(r: dict) -> str:
    note = (f"Measured {r['date'][:10]} on {r['device_name']} ({r['cpu_threads']} CPU "
            f"threads), torch {r['torch']}, commit {short_commit(r['git_commit'])}, "
            "with torch's files already in the OS file cache.")
    if "warm_up_import_seconds" in r:
        note += (" Reading torch from disk when it is not cached is left out: the "
                 f"untimed import before the chapters took {r['warm_up_import_seconds']:.0f} s "
                 "in this run, and after a cold start it can take much longer.")
    return note


def times_table(records: list[dict]) -> str:
    """A Markdown table: one row per chapter, one column per recorded device."""
    if not records:
        return "No chapter has been timed yet: run `make chapter-times`."
    chapters: dict[str, str] = {}
    for rec in records:
        for stem, entry in rec["chapters"].items():
            chapters.setdefault(stem, entry["title"])
    header = ["chapter"] + [f"{r['device_name']} ({r['budget']} budget)" for r in records]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "--:|" * len(records)]
    for stem in sorted(chapters):
        cells = [_duration(r["chapters"][stem]["seconds"]) if stem in r["chapters"]
                 else "not timed" for r in records]
        lines.append(f"| {{doc}}`{stem}` | " + " | ".join(cells) + " |")
    totals = [_duration(sum(c["seconds"] for c in r["chapters"].values())) for r in records]
    lines.append("| **all chapters** | " + " | ".join(f"**{t}**" for t in totals) + " |")
    notes = [_provenance_note(r) for r in records]
    if not any(r["device"] == "cuda" for r in records):
        notes.append("No chapter has been timed on a GPU yet, so there is no GPU "
                     "column; `make chapter-times` on a CUDA machine adds one.")
    return "\n".join(lines) + "\n\n" + "\n\n".join(notes)


def load_records(folder: Path = TIMES_DIR) -> list[dict]:
    """Every recorded timing, CPU first."""
    records = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    return sorted(records, key=lambda r: r["device"] != "cpu")


def replace_between_markers(text: str, body: str) -> str:
    """``text`` with what lies between START and END replaced by ``body``."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ValueError(f"expected one '{START}' line followed by one '{END}' line; "
                         "put both back where the table belongs")
    head, rest = text.split(START)
    _, tail = rest.split(END)
    return f"{head}{START}\n{body}\n{END}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inplace", action="store_true",
                        help="save the executed notebooks (refresh their outputs)")
    parser.add_argument("--intro-only", action="store_true",
                        help="only rebuild the table in book/intro.md from results/")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args()
    if not args.intro_only:
        rec = record(sorted((ROOT / "book").glob("*.ipynb")), args.inplace, args.timeout)
        TIMES_DIR.mkdir(parents=True, exist_ok=True)
        out = TIMES_DIR / f"{rec['device']}.json"
        atomic_write_text(out, json.dumps(rec, indent=1) + "\n")
        print(f"wrote {out.relative_to(ROOT)}")
    try:
        text = replace_between_markers(INTRO.read_text(), times_table(load_records()))
    except ValueError as err:
        print(f"error: {INTRO.relative_to(ROOT)}: {err}", file=sys.stderr)
        return 2
    atomic_write_text(INTRO, text)
    print(f"updated the table in {INTRO.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
