"""Recorded runs: the full-recipe runs and the controlled experiments.

The plan lives here, so the book can read it: which runs exist, which arm
of which experiment a run belongs to, and the one command that reruns it.

    python -m cnnlab.record status          what is recorded, what is missing
    python -m cnnlab.record run             run what is missing, in plan order
    python -m cnnlab.record run --background   the same, detached; log in .cache/
    python -m cnnlab.record oom             bug 3: AlexNet-large under a 2 GiB cap

Each run keeps a checkpoint in ``.cache/checkpoints`` at every epoch end
(and on Ctrl-C, SIGTERM or SIGHUP), so a stopped recording resumes where it
stopped and loses at most the epoch in progress. Runs already recorded are
skipped. Records must come from a clean commit: their provenance names it.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .results import RESULTS_DIR, git_commit
from .train import TrainConfig

REPO = RESULTS_DIR.parent
CACHE = REPO / ".cache"
SEEDS = (42, 43, 44)


@dataclass(frozen=True)
class Planned:
    """One run of the plan: its config and where its record goes."""

    config: TrainConfig
    folder: str                 # under results/: "runs" or "experiments"
    experiment: str = "full"    # the experiment it belongs to
    arms: tuple[str, ...] = field(default=("full recipe",))  # its arm in each

    def filename(self, device: str = "cpu") -> str:
        """``MODEL[-OPTION_VALUE...]-[Nep-]DEVICE-seedS.json``."""
        c = self.config
        parts = [c.model]
        parts += [f"{k}_{v}" for k, v in sorted(c.options.items())]
        if c.dropout is not None:
            parts.append(f"dropout_{c.dropout:g}")
        if self.folder != "runs":
            parts.append(f"{c.epochs}ep")
        return "-".join(parts + [device, f"seed{c.seed}"]) + ".json"

    def path(self, device: str = "cpu", root: Path = RESULTS_DIR) -> Path:
        return root / self.folder / self.filename(device)

    def command(self) -> str:
        """The command line that reruns this run."""
        c, d = self.config, TrainConfig(model=self.config.model)
        words = ["python -m cnnlab train", c.model]
        for name in ("epochs", "seed", "eval_every", "eval_subset"):
            if getattr(c, name) != getattr(d, name):
                words.append(f"--{name.replace('_', '-')} {getattr(c, name)}")
        if c.dropout is not None:
            words.append(f"--dropout {c.dropout:g}")
        words += [f"--{k} {v}" for k, v in sorted(c.options.items())]
        return " ".join(words)


# Controlled experiments: 1 epoch per run (what the CPU affords), 3 seeds
# per arm, validated every 25 steps on 1,000 images and on all 12,000 at
# the end: 15 points per curve.
EXPERIMENT_BUDGET = dict(epochs=1, eval_every=25, eval_subset=1_000)

EXPERIMENTS: dict[str, dict] = {
    "shortcut": {
        "title": "ResNet-18: the shortcut where a block changes shape",
        "arms": {
            "report's block (reuse_conv1)": ("resnet18", {"shortcut": "reuse_conv1"}, None),
            "option A (zero_pad)": ("resnet18", {"shortcut": "zero_pad"}, None),
            "option B (projection)": ("resnet18", {"shortcut": "projection"}, None),
        },
    },
    "input_size": {
        "title": "ResNet-18 at 28 px (bug 4) against 56 px",
        "arms": {
            "28 px (upsample 1)": ("resnet18", {"shortcut": "projection", "upsample": 1}, None),
            "56 px (upsample 2)": ("resnet18", {"shortcut": "projection"}, None),
        },
    },
    "dropout": {
        "title": "GoogLeNet: dropout 0.4 (the paper) against 0.2 (the report)",
        "arms": {
            "dropout 0.4": ("googlenet", {}, 0.4),
            "dropout 0.2": ("googlenet", {}, 0.2),
        },
    },
    "degradation": {
        "title": "ResNet-18 against the same 18 layers without shortcuts (plain-18)",
        "arms": {
            "plain (no shortcuts)": ("resnet18", {"shortcut": "none"}, None),
            "residual (option B)": ("resnet18", {"shortcut": "projection"}, None),
        },
    },
}

FULL_RUNS = [("lenet", s) for s in SEEDS] + [
    (m, 42) for m in ("mobilenet_v1", "resnet18", "googlenet", "alexnet")]


def plan() -> list[Planned]:
    """Every recorded run, in the order they are run: full runs first.

    An arm shared by two experiments (ResNet-18 option B at 56 px) is one
    run, listed once with both of its arms.
    """
    runs = [Planned(TrainConfig(model=m, seed=s), "runs") for m, s in FULL_RUNS]
    shared: dict[str, Planned] = {}
    for name, exp in EXPERIMENTS.items():
        for arm, (model, options, dropout) in exp["arms"].items():
            for seed in SEEDS:
                config = TrainConfig(model=model, seed=seed, options=options,
                                     dropout=dropout, **EXPERIMENT_BUDGET)
                p = Planned(config, "experiments", name, (arm,))
                key = p.filename()
                if key in shared:  # the same config in another experiment
                    old = shared[key]
                    p = Planned(config, "experiments", old.experiment + "+" + name,
                                old.arms + (arm,))
                shared[key] = p
    return runs + list(shared.values())


def experiment_runs(name: str) -> dict[str, list[Planned]]:
    """The planned runs of experiment ``name``, by arm."""
    arms: dict[str, list[Planned]] = {arm: [] for arm in EXPERIMENTS[name]["arms"]}
    for p in plan():
        for arm in p.arms:
            if name in p.experiment.split("+") and arm in arms:
                arms[arm].append(p)
    return arms


# Bug 3, out of memory, without a GPU: AlexNet-large trained for one step in
# a child process capped at 2 GiB, the MX250's common size (the report does
# not give its card's), and at half of it,
# each case beside what the estimate predicted before the run.
OOM_MODEL = "alexnet_large"
OOM_CASES = [(128, 2 * 2**30), (512, 2 * 2**30), (128, 2**30)]  # (batch, cap)
OOM_FILE = "experiments/oom-alexnet_large-cpu.json"


def record_oom(root: Path = RESULTS_DIR) -> Path:
    """Run the capped cases and record each with its prior estimate."""
    import json

    import torch

    from .memory import estimate_training_memory, train_under_memory_cap
    from .models import get_model
    from .results import atomic_write_text, provenance

    with torch.device("meta"):  # shapes only: the estimate costs no memory
        model = get_model(OOM_MODEL)
    cases = []
    for batch, cap in OOM_CASES:
        estimate = estimate_training_memory(model, batch)
        print(f"{OOM_MODEL}, batch {batch}, cap {cap / 2**30:g} GiB: estimate "
              f"{estimate.total / 2**30:.2f} GiB ...", flush=True)
        outcome = train_under_memory_cap(OOM_MODEL, batch, cap)
        print(f"  {outcome['outcome']}: {outcome['error'] or ''}", flush=True)
        cases.append({"cap_bytes": cap, "estimate": vars(estimate)
                      | {"total": estimate.total}, **outcome})
    out = root / OOM_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps({
        "model": OOM_MODEL, "cases": cases,
        "how": "one training step (AdamW, float32) in a child process whose address "
               "space is capped with setrlimit(RLIMIT_AS) at what it held after loading "
               "torch and the data, plus cap_bytes",
        "command": "python -m cnnlab.record oom",
        "provenance": provenance(torch.device("cpu")),
    }, indent=1))
    return out


def _device() -> str:
    from .train import resolve_device
    return resolve_device().type


def status(root: Path = RESULTS_DIR) -> list[tuple[Planned, bool]]:
    """Each planned run and whether its record exists."""
    device = _device()
    return [(p, p.path(device, root).exists()) for p in plan()]


def _dirty_refusal() -> str | None:
    """The one-line refusal when the checkout has uncommitted changes, else None."""
    commit = git_commit() or ""
    if not commit.endswith("+dirty"):
        return None
    return (f"cnnlab.record: the checkout has uncommitted changes ({commit}); records "
            f"must name a clean commit. Commit or stash them, then run again.")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_on_signal(signum, frame) -> None:
    # SIGTERM/SIGHUP become Ctrl-C, so fit() saves its checkpoint first.
    raise KeyboardInterrupt


def run_missing(root: Path = RESULTS_DIR, checkpoints: Path = CACHE / "checkpoints",
                allow_dirty: bool = False) -> int:
    """Train every planned run that has no record yet; return how many ran."""
    from .train import fit

    device = _device()
    ran = 0
    for p in plan():
        out = p.path(device, root)
        if out.exists():
            continue
        refusal = _dirty_refusal()
        if refusal and not allow_dirty:
            raise SystemExit(refusal)
        ckpt = checkpoints / (out.stem + ".pt")
        print(f"{time.strftime('%H:%M:%S')} {out.relative_to(root)}: start"
              f"{' (resuming)' if ckpt.exists() else ''}; rerun alone with: "
              f"{p.command()}", flush=True)
        result = fit(p.config, progress=False, checkpoint=ckpt, resume=True)
        result.provenance["command"] = p.command()
        result.provenance["experiment"] = p.experiment
        result.provenance["arms"] = list(p.arms)
        result.save(out)
        ckpt.unlink(missing_ok=True)
        ran += 1
        print(f"{time.strftime('%H:%M:%S')} {out.relative_to(root)}: test accuracy "
              f"{100 * result.test_accuracy:.2f}%, {result.train_seconds:.0f} s of "
              f"training", flush=True)
    return ran


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cnnlab.record",
                                     description="Record the planned runs.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="what is recorded, what is missing")
    sub.add_parser("oom", help="bug 3: train AlexNet-large under a 2 GiB memory cap")
    p = sub.add_parser("run", help="run what is missing")
    p.add_argument("--background", action="store_true",
                   help="detach; the log goes to .cache/record.log")
    p.add_argument("--allow-dirty", action="store_true",
                   help="record from a checkout with uncommitted changes")
    args = parser.parse_args(argv)

    if args.command == "status":
        rows = status()
        for p, done in rows:
            print(f"{'done   ' if done else 'missing'} {p.folder}/{p.filename(_device())}"
                  f"  [{p.experiment}: {', '.join(p.arms)}]")
        print(f"{sum(d for _, d in rows)} of {len(rows)} recorded")
        return 0

    refusal = _dirty_refusal()
    if refusal and not getattr(args, "allow_dirty", False):
        print(refusal, file=sys.stderr)
        return 2
    if args.command == "oom":
        print(f"recorded in {record_oom()}")
        return 0

    pidfile = CACHE / "record.pid"
    if pidfile.exists():
        try:
            pid = int(pidfile.read_text())
        except ValueError:
            pid = 0
        if pid and pid != os.getpid() and _pid_alive(pid):
            print(f"cnnlab.record: a recording is already running (pid {pid}); "
                  f"follow it with: tail -f {CACHE / 'record.log'}", file=sys.stderr)
            return 2
    CACHE.mkdir(exist_ok=True)
    if args.background:
        log = CACHE / "record.log"
        cmd = [sys.executable, "-m", "cnnlab.record", "run"]
        cmd += ["--allow-dirty"] if args.allow_dirty else []
        with open(log, "a") as f:
            child = subprocess.Popen(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        print(f"recording in the background (pid {child.pid}); follow it with: "
              f"tail -f {log}; see what is left with: python -m cnnlab.record status")
        return 0

    import logging
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    pidfile.write_text(str(os.getpid()))
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop_on_signal)
    try:
        ran = run_missing(allow_dirty=args.allow_dirty)
    except KeyboardInterrupt:
        print(f"{time.strftime('%H:%M:%S')} stopped; the checkpoint keeps the run in "
              f"progress, and the next 'run' resumes it", flush=True)
        return 130
    finally:
        pidfile.unlink(missing_ok=True)
    print(f"{time.strftime('%H:%M:%S')} done: {ran} run(s) recorded; nothing missing",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
