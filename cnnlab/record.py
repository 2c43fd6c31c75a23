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
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .files import pid_alive
from .results import RESULTS_DIR, ResultFormatError, RunResult, git_commit
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
    # A record made before records kept predictions counts as missing, and
    # is made again (only where that is cheap: LeNet's full runs).
    needs_predictions: bool = False

    def filename(self, device: str = "cpu") -> str:
        """``MODEL[-OPTION_VALUE...]-[Nep-]DEVICE-seedS.json``."""
        c = self.config
        parts = [c.model]
        parts += [k if v is True else f"{k}_{v}" for k, v in sorted(c.options.items())]
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
        for k, v in sorted(c.options.items()):
            flag = "--" + k.replace("_", "-")
            words.append(flag if v is True else f"{flag} {v}")  # a switch takes no value
        return " ".join(words)


# Controlled experiments: 1 epoch per run (what the CPU affords), 3 seeds
# per arm (5 where three could not separate the arms), validated every 25
# steps on 1,000 images and on all 12,000 at the end: 15 points per curve.
EXPERIMENT_BUDGET = dict(epochs=1, eval_every=25, eval_subset=1_000)
FIVE_SEEDS = (42, 43, 44, 45, 46)

EXPERIMENTS: dict[str, dict] = {
    "batch_norm": {
        "title": "GoogLeNet's slow start: the paper's net against BN after every conv",
        # Both at the report's dropout 0.2, so the arm without BN is the
        # dropout experiment's 0.2 arm, recorded once.
        "arms": {
            "without BN (the paper)": ("googlenet", {}, 0.2),
            "with BN (torchvision's variant)": ("googlenet", {"batch_norm": True}, 0.2),
        },
    },
    "shortcut": {
        "title": "ResNet-18: the shortcut where a block changes shape",
        "seeds": FIVE_SEEDS,
        "arms": {
            "report's block (reuse_conv1)": ("resnet18", {"shortcut": "reuse_conv1"}, None),
            "option A (zero_pad)": ("resnet18", {"shortcut": "zero_pad"}, None),
            "option B (projection)": ("resnet18", {"shortcut": "projection"}, None),
        },
    },
    "input_size": {
        "title": "ResNet-18 at 28 px (bug 4) against 56 px",
        "seeds": FIVE_SEEDS,
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

# Three seeds of the full recipe for every network.
FULL_RUNS = [(m, s) for m in ("lenet", "resnet18", "googlenet", "mobilenet_v1", "alexnet")
             for s in SEEDS]
# The order of what is missing: LeNet (seconds a run, and re-recorded to
# keep its predictions); the two networks whose one seed missed the report
# by most; the experiments (an hour or so per arm); then the two slowest
# networks (over an hour a run), which the comparison may show with one seed.
RUN_LAST = ("mobilenet_v1", "alexnet")


def plan() -> list[Planned]:
    """Every recorded run, in the order they are run (see RUN_LAST).

    An arm shared by two experiments (ResNet-18 option B at 56 px) is one
    run, listed once with both of its arms.
    """
    full = [Planned(TrainConfig(model=m, seed=s), "runs", needs_predictions=m == "lenet")
            for m, s in FULL_RUNS]
    first = [p for p in full if p.config.model not in RUN_LAST]
    last = [p for p in full if p.config.model in RUN_LAST]
    shared: dict[str, Planned] = {}
    for name, exp in EXPERIMENTS.items():
        for arm, (model, options, dropout) in exp["arms"].items():
            for seed in exp.get("seeds", SEEDS):
                config = TrainConfig(model=model, seed=seed, options=options,
                                     dropout=dropout, **EXPERIMENT_BUDGET)
                p = Planned(config, "experiments", name, (arm,))
                key = p.filename()
                if key in shared:  # the same config in another experiment
                    old = shared[key]
                    p = Planned(config, "experiments", old.experiment + "+" + name,
                                old.arms + (arm,))
                shared[key] = p
    return first + list(shared.values()) + last


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


def record_state(p: Planned, device: str = "cpu", root: Path = RESULTS_DIR) -> str:
    """'done', 'missing', or why the record at ``p``'s path does not count
    (unreadable, another run's, or made before records kept predictions)."""
    path = p.path(device, root)
    if not path.exists() and not path.is_symlink():
        return "missing"
    try:
        r = RunResult.load(path)
    except (ResultFormatError, OSError) as err:
        return f"unreadable: {err}"
    mismatch = config_mismatch(r, p)
    if mismatch:
        return f"another run's record: {mismatch}"
    if p.needs_predictions and r.test_predictions is None:
        return "to re-record: it keeps no predictions"
    return "done"


def config_mismatch(r: RunResult, p: Planned) -> str | None:
    """How the record ``r`` differs from the planned run ``p``, or None."""
    planned = asdict(p.config)
    for name in ("model", "seed", "epochs", "batch_size", "lr", "weight_decay",
                 "dropout", "options", "eval_every", "eval_subset", "max_steps",
                 "val_images", "test_images"):
        want = planned[name]
        got = r.model if name == "model" else r.config.get(name)
        if got != want:
            return f"{name} is {got!r}, the plan says {want!r}"
    return None


def status(root: Path = RESULTS_DIR) -> list[tuple[Planned, str]]:
    """Each planned run and the state of its record (see ``record_state``)."""
    device = _device()
    return [(p, record_state(p, device, root)) for p in plan()]


def _dirty_refusal(commit: str | None = None) -> str | None:
    """The one-line refusal when the checkout has uncommitted changes, else None."""
    commit = (commit if commit is not None else git_commit()) or ""
    if not commit.endswith("+dirty"):
        return None
    return (f"cnnlab.record: the checkout has uncommitted changes ({commit}); records "
            f"must name a clean commit. Commit or stash them, then run again.")


class ProvenanceChanged(RuntimeError):
    """HEAD moved, or the tree became dirty, while a run trained."""


def save_weights(model, path: Path) -> str:
    """Write ``model``'s weights to ``path`` atomically; return their SHA-256."""
    import hashlib
    import io

    import torch

    from .files import atomic_write

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    with atomic_write(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())
    return hashlib.sha256(buffer.getbuffer()).hexdigest()


def weights_path(record_path: Path) -> Path:
    """Where the recorder keeps the final weights of the record at
    ``record_path``: ``results/weights/``, beside ``runs/`` and
    ``experiments/``. Not in git (AlexNet's are 170 MB); the record holds
    their checksum."""
    record_path = Path(record_path)
    return record_path.parent.parent / "weights" / (record_path.stem + ".pt")


def load_weights(r: RunResult, record_path: Path, model) -> None:
    """Load the weights the recorder kept for the record ``r`` (saved at
    ``record_path``) into ``model``, after checking their checksum."""
    import hashlib

    import torch

    path = weights_path(record_path)
    if r.weights_sha256 is None:
        raise ResultFormatError(f"{record_path}: the record names no weights")
    if not path.is_file():
        raise ResultFormatError(f"{path}: not here: weights stay on the machine that "
                                f"recorded the run (they are not in git)")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != r.weights_sha256:
        raise ResultFormatError(f"{path}: its checksum is not the one {record_path} "
                                f"names; these weights belong to another run")
    import io
    model.load_state_dict(torch.load(io.BytesIO(data), map_location="cpu",
                                     weights_only=True))


def run_missing(root: Path = RESULTS_DIR, checkpoints: Path = CACHE / "checkpoints",
                allow_dirty: bool = False) -> int:
    """Train every planned run that has no record yet; return how many ran.

    Each record names the commit read when its training started; if HEAD
    moves or the tree becomes dirty before it ends, the record is not saved
    (ProvenanceChanged) and the checkpoint keeps the finished run.
    """
    from .checkpoint import CheckpointError
    from .train import train

    device = _device()
    ran = 0
    for p in plan():
        out = p.path(device, root)
        state = record_state(p, device, root)
        if state == "done":
            continue
        if state.startswith(("unreadable", "another run's")):
            raise ProvenanceChanged(f"{out} is in the way ({state}); move it aside, "
                                    f"then run again")
        commit = git_commit()
        refusal = _dirty_refusal(commit)
        if refusal and not allow_dirty:
            raise SystemExit(refusal)
        ckpt = checkpoints / (out.stem + ".pt")
        print(f"{time.strftime('%H:%M:%S')} {out.relative_to(root)}: start"
              f"{' (resuming)' if ckpt.exists() else ''} at commit {commit}; rerun "
              f"alone with: {p.command()}", flush=True)
        try:
            model, result = train(p.config, progress=False, checkpoint=ckpt, resume=True)
        except CheckpointError as err:  # the recorder's own file: say how to clear it
            raise CheckpointError(f"{err} (The recorder keeps this checkpoint for "
                                  f"{out.name}; delete {ckpt} to train that run "
                                  f"afresh.)") from None
        now = git_commit()
        if now != commit and not allow_dirty:
            raise ProvenanceChanged(
                f"not saved: the checkout changed while {out.name} trained (commit "
                f"{commit} at the start, {now} now), so no record could name the code "
                f"that made it. Its checkpoint {ckpt} is kept: check out {commit} "
                f"cleanly and run again to save it")
        result.provenance["git_commit"] = commit  # the code training started from
        result.provenance["command"] = p.command()
        result.provenance["experiment"] = p.experiment
        result.provenance["arms"] = list(p.arms)
        result.weights_sha256 = save_weights(model, weights_path(out))
        result.save(out)
        ckpt.unlink(missing_ok=True)
        ran += 1
        print(f"{time.strftime('%H:%M:%S')} {out.relative_to(root)}: test accuracy "
              f"{100 * result.test_accuracy:.2f}%, {result.train_seconds:.0f} s of "
              f"training", flush=True)
    return ran


def main(argv: list[str] | None = None) -> int:
    from .__main__ import _Parser, run_with_one_line_errors

    parser = _Parser(prog="python -m cnnlab.record", description="Record the planned runs.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("status", help="what is recorded, what is missing")
    sub.add_parser("oom", help="bug 3: train AlexNet-large under a 2 GiB memory cap")
    p = sub.add_parser("run", help="run what is missing")
    p.add_argument("--background", action="store_true",
                   help="detach; the log goes to .cache/record.log")
    p.add_argument("--allow-dirty", action="store_true",
                   help="record from a checkout with uncommitted changes")
    args = parser.parse_args(argv)
    # The main CLI's one-line errors: SIGTERM and SIGHUP stop a run as
    # Ctrl-C does (its checkpoint saved; `record oom`'s child ended).
    return run_with_one_line_errors(parser.prog, lambda: _command(args), _stopped_line)


def _stopped_line(err: KeyboardInterrupt) -> str:
    from .stop import TrainingInterrupted, stopped_line

    if isinstance(err, TrainingInterrupted):
        return f"{err}; the next 'run' resumes it"
    return stopped_line(err)


def _command(args: argparse.Namespace) -> int:
    if args.command == "status":
        device = _device()  # a bad CNNLAB_DEVICE: one line, before anything prints
        rows = status()
        for p, state in rows:
            word = state if state in ("done", "missing") else "redo"
            why = "" if word == state else f"  ({state})"
            print(f"{word:7} {p.folder}/{p.filename(device)}"
                  f"  [{p.experiment}: {', '.join(p.arms)}]{why}")
        print(f"{sum(s == 'done' for _, s in rows)} of {len(rows)} recorded")
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
        if pid and pid != os.getpid() and pid_alive(pid):
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
    try:
        ran = run_missing(allow_dirty=args.allow_dirty)
    except ProvenanceChanged as err:
        print(f"{time.strftime('%H:%M:%S')} cnnlab.record: {err}", flush=True)
        return 2
    finally:
        pidfile.unlink(missing_ok=True)
    print(f"{time.strftime('%H:%M:%S')} done: {ran} run(s) recorded; nothing missing",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
