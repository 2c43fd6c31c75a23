"""`python -m cnnlab train lenet` against the report's loop, end to end.

The same work on both sides: the report's recipe for LeNet (5 epochs of the
48,000 training images, batch 128, AdamW 1e-3, seed 42, validation at each
epoch end, one test pass). Each side runs as its own process and is timed
from before the process starts to after it exits:

* the report's loop: ``benchmarks/report_loop.py`` (torchvision MNIST,
  ToTensor + Normalize, DataLoader, a ``loss.item()`` per step, validation
  on all 12,000 images at each epoch end, a summary printed once);
* the same loop written as fast as plain PyTorch allows
  (``report_loop.py --tensors``: the files decoded once into tensors,
  batches sliced from a shuffled index, evaluation in batches of 1,000), a
  harder baseline that shows how much of the gap is the data pipeline;
* cnnlab: the default CLI run, ``python -m cnnlab train lenet``, exactly as
  a user types it (plus ``--out`` into a temporary folder, so that the
  repository's results/ are left alone), with whatever validation schedule
  it has by default;
* cnnlab again through ``benchmarks/cnnlab_phases.py``, which runs the same
  CLI with clocks on its phases (its total shows what the clocks cost);
* and, for each ``--variant LABEL=FLAGS``, the CLI with those flags added
  (``--threads``, ``--channels-last``, ``--eval-batch``: settings that change
  the rounding, so the default run, which the records were made with, keeps
  none of them).

The four alternate in order, ``--repeats`` times; the ratio is of the
medians. Where the time goes (medians, seconds): start-up + exit of the
interpreter, imports, data (reading the files, building the datasets or
splits), model (build + summary), training (for the report's loop this
includes its DataLoader's per-sample work, which happens inside the loop),
validation, test, and the rest.

    python benchmarks/end_to_end.py                       # 3 x each, about 5 min on 2 cores
    python benchmarks/end_to_end.py --max-steps 50 --repeats 1   # a smoke run
    python benchmarks/end_to_end.py --json results/benchmarks/end_to_end-cpu.json
    python benchmarks/end_to_end.py --variant "one thread=--threads 1" \
        --variant "one thread, channels-last=--threads 1 --channels-last"

Measure on an otherwise idle machine: another process on the cores slows
both sides, but not by the same factor. The load average is printed.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PHASES = ("startup+exit", "import", "data", "model", "train", "val", "test", "other")
SIDES = ("report loop", "tensor loop", "cnnlab", "cnnlab (clocked)")


def run(argv: list[str], label: str) -> dict:
    """Run one process; its wall time, and the phases it printed (if any)."""
    start = time.time()
    tick = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - tick
    end = time.time()
    if proc.returncode != 0:
        sys.exit(f"{label} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    row = {"wall": wall}
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    if last.startswith("PHASES "):
        info = json.loads(last[len("PHASES "):])
        phases = info.pop("phases")
        phases["startup+exit"] = (info["started"] - start) + (end - info["finished"])
        phases["other"] = wall - sum(phases.values())
        row |= {"phases": phases} | info
    elif "--out" in argv:  # the plain CLI: its accuracy from the result it saved
        result = json.loads(Path(argv[argv.index("--out") + 1]).read_text())
        row["test_accuracy"] = result["test_accuracy"]
    return row


def variants(args: argparse.Namespace) -> dict[str, list[str]]:
    """``--variant LABEL=FLAGS`` -> {"cnnlab, LABEL": [flags]}."""
    out = {}
    for text in args.variant:
        label, sep, flags = text.partition("=")
        if not sep or not label.strip() or not flags.strip():
            sys.exit(f"--variant {text!r}: expected LABEL=FLAGS, e.g. "
                     f"\"one thread=--threads 1\"")
        out[f"cnnlab, {label.strip()}"] = shlex.split(flags)
    return out


def commands(args: argparse.Namespace, out: Path) -> dict[str, list[str]]:
    from cnnlab.mnist_files import prepare_mnist

    root = prepare_mnist()  # both sides read the same verified files
    py = sys.executable
    epochs = ["--epochs", str(args.epochs)]
    if args.max_steps:
        epochs += ["--max-steps", str(args.max_steps)]
    cli = ["train", "lenet", *epochs, "--out", str(out / "lenet.json")]
    sides = {
        "report loop": [py, str(HERE / "report_loop.py"), "--root", str(root), *epochs],
        "tensor loop": [py, str(HERE / "report_loop.py"), "--root", str(root), *epochs,
                        "--tensors"],
        "cnnlab": [py, "-m", "cnnlab", *cli],
        "cnnlab (clocked)": [py, str(HERE / "cnnlab_phases.py"), *cli],
    }
    for i, (side, flags) in enumerate(variants(args).items()):
        sides[side] = [py, "-m", "cnnlab", "train", "lenet", *epochs, *flags,
                       "--out", str(out / f"variant{i}.json")]
    return sides


def median_phases(rows: list[dict]) -> dict[str, float | None]:
    """Median seconds per phase; None for a phase this side does not clock."""
    return {p: statistics.median(r["phases"][p] for r in rows)
            if p in rows[0]["phases"] else None for p in PHASES}


def report(runs: dict[str, list[dict]], args: argparse.Namespace, load: tuple) -> dict:
    walls = {side: [r["wall"] for r in rows] for side, rows in runs.items()}
    med = {side: statistics.median(w) for side, w in walls.items()}
    ratio = med["report loop"] / med["cnnlab"]
    base, fast, ours = runs["report loop"], runs["tensor loop"], runs["cnnlab (clocked)"]
    phase_b, phase_t, phase_c = median_phases(base), median_phases(fast), median_phases(ours)
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs; load average before {load[0]:.2f}, "
          f"after {os.getloadavg()[0]:.2f}")
    print(f"recipe: LeNet, {args.epochs} epoch(s), batch 128, AdamW 1e-3, seed 42; "
          f"{args.repeats} run(s) of each side, alternating; medians in seconds\n")
    print("| phase | report loop | tensor loop | cnnlab (clocked) |")
    print("|---|---|---|---|")
    def cell(seconds: float | None) -> str:
        return "(in other)" if seconds is None else f"{seconds:.2f}"

    for p in PHASES:
        print(f"| {p} | {cell(phase_b[p])} | {cell(phase_t[p])} | {cell(phase_c[p])} |")
    print(f"| **end to end** | **{med['report loop']:.2f}** | **{med['tensor loop']:.2f}** "
          f"| **{med['cnnlab (clocked)']:.2f}** |")
    print()
    for side in SIDES:
        accs = ", ".join(f"{100 * r['test_accuracy']:.2f}" for r in runs[side]
                         if "test_accuracy" in r)
        print(f"{side:17} wall {', '.join(f'{w:.2f}' for w in walls[side])} s"
              + (f"; test accuracy {accs} %" if accs else ""))
    print(f"validation: report loop {base[0]['val_passes']} passes, "
          f"{base[0]['val_images']:,} images; cnnlab {ours[0]['val_passes']} passes, "
          f"{ours[0]['val_images']:,} images (its default schedule)")
    acc = statistics.median(r["test_accuracy"] for r in ours)
    print(f"\npython -m cnnlab train lenet: {ratio:.2f}x faster end to end than the "
          f"report's loop ({med['report loop']:.2f} s / {med['cnnlab']:.2f} s, medians); "
          f"test accuracy {100 * acc:.2f} %"
          + (" (bar: 1.5x and 97.0 %: " + ("met" if ratio >= 1.5 and acc >= 0.97
                                          else "NOT met") + ")"
             if args.epochs == 5 and not args.max_steps
             else " (a short run: the bar is for 5 epochs)"))
    extra = {}
    for side in runs:
        if side in SIDES:
            continue
        accs = [r["test_accuracy"] for r in runs[side]]
        extra[side] = {"ratio": med["report loop"] / med[side], "median": med[side],
                       "test_accuracy": accs}
        print(f"{side}: {extra[side]['ratio']:.2f}x faster than the report's loop "
              f"({med['report loop']:.2f} s / {med[side]:.2f} s); test accuracy "
              f"{100 * statistics.median(accs):.2f} % (median)")
    fast_ratio = med["tensor loop"] / med["cnnlab"]
    print(f"against the tensor loop (no per-sample data work): {fast_ratio:.2f}x "
          f"({med['tensor loop']:.2f} s / {med['cnnlab']:.2f} s)")
    return {"ratio": ratio, "ratio_tensor_loop": fast_ratio, "medians": med, "walls": walls, "phases":
            {"report loop": phase_b, "tensor loop": phase_t, "cnnlab (clocked)": phase_c}, "runs": runs,
            "variants": {side: extra[side] | {"flags": " ".join(flags)}
                         for side, flags in variants(args).items()},
            "epochs": args.epochs, "repeats": args.repeats, "load_average_before": load}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=None,
                        help="a smoke test of this script: stop each run after N steps")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the numbers here")
    parser.add_argument("--variant", action="append", default=[], metavar="LABEL=FLAGS",
                        help="also time the CLI with these flags added, e.g. "
                             "\"one thread=--threads 1\" (repeatable)")
    args = parser.parse_args()
    variants(args)  # a malformed --variant stops here, before any run
    load = os.getloadavg()
    if load[0] > 0.5:
        print(f"warning: load average {load[0]:.2f}: other work is on the cores, and "
              f"the times below are not this machine's", file=sys.stderr)
    with tempfile.TemporaryDirectory() as out:
        argvs = commands(args, Path(out))
        sides = list(argvs)
        runs: dict[str, list[dict]] = {side: [] for side in sides}
        for i in range(args.repeats):
            order = sides if i % 2 == 0 else sides[::-1]
            for side in order:
                row = run(argvs[side], side)
                runs[side].append(row)
                print(f"run {i + 1}/{args.repeats} {side}: {row['wall']:.2f} s",
                      file=sys.stderr, flush=True)
    record = report(runs, args, load)
    if args.json:
        from cnnlab.provenance import provenance
        from cnnlab.results import atomic_write_text
        from cnnlab.train import resolve_device

        record["provenance"] = provenance(resolve_device())
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.json, json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
