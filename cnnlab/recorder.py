"""The recorder: it trains the runs of the plan (``cnnlab.plan``) that have no record yet.

    python -m cnnlab record status          what is recorded, what is missing
    python -m cnnlab record run             run what is missing, in plan order
    python -m cnnlab record run --background   the same, detached; log in .cache/
    python -m cnnlab record oom             bug 3: alexnet_large under a 2 GiB cap

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
from pathlib import Path

from .files import atomic_write_text, pid_alive
from .plan import OOM_CASES, OOM_FILE, OOM_MODEL, Planned, load_planned, plan
from .provenance import git_commit
from .results import RESULTS_DIR, ResultFormatError, RunResult

REPO = RESULTS_DIR.parent
CACHE = REPO / ".cache"


def record_oom(root: Path = RESULTS_DIR) -> Path:
    """Run the capped cases and record each with its prior estimate."""
    import json

    import torch

    from .memory import estimate_training_memory, train_under_memory_cap
    from .models import get_model
    from .provenance import provenance
    from .results import atomic_write_text

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
        "how": "two training steps (AdamW, float32) in a child process whose address "
               "space is capped with setrlimit(RLIMIT_AS) at what it held after loading "
               "torch and the data, plus cap_bytes",
        "command": "python -m cnnlab record oom",
        "provenance": provenance(torch.device("cpu")),
    }, indent=1))
    return out


def _device() -> str:
    from .train import resolve_device
    return resolve_device().type


def record_state(p: Planned, device: str = "cpu", root: Path = RESULTS_DIR) -> str:
    """'done', 'missing', or why the record at ``p``'s path does not count
    (unreadable, another run's, or made before records kept predictions)."""
    r, state, detail = load_planned(p, device, root)
    if state == "unreadable":
        return f"unreadable: {detail}"
    if state == "mismatch":
        return f"another run's record: {detail}"
    if r is None:
        return "missing"
    if p.needs_predictions and r.test_predictions is None:
        return "to re-record: it keeps no predictions"
    return "done"


def status(root: Path = RESULTS_DIR) -> list[tuple[Planned, str]]:
    """Each planned run and the state of its record (see ``record_state``)."""
    device = _device()
    return [(p, record_state(p, device, root)) for p in plan()]


def _dirty_refusal(commit: str | None = None) -> str | None:
    """The one-line refusal when the checkout has uncommitted changes, else None."""
    commit = (commit if commit is not None else git_commit()) or ""
    if not commit.endswith("+dirty"):
        return None
    return (f"python -m cnnlab record: the checkout has uncommitted changes ({commit}); records "
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
    (ProvenanceChanged) and the checkpoint keeps the finished run. A run
    stopped and resumed at another commit names the first in ``git_commit``
    and the later ones, in order, in ``resumed_at_commits`` (kept beside
    the checkpoint in ``<checkpoint>.commits`` meanwhile).
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
        commits = _segment_commits(ckpt, commit)
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
        result.provenance["git_commit"] = commits[0]  # the code training started from
        if len(commits) > 1:
            result.provenance["resumed_at_commits"] = commits[1:]
        result.provenance["command"] = p.command()
        result.provenance["experiment"] = p.experiment
        result.provenance["arms"] = list(p.arms)
        result.weights_sha256 = save_weights(model, weights_path(out))
        result.save(out)
        ckpt.unlink(missing_ok=True)
        _commits_file(ckpt).unlink(missing_ok=True)
        ran += 1
        print(f"{time.strftime('%H:%M:%S')} {out.relative_to(root)}: test accuracy "
              f"{100 * result.test_accuracy:.2f}%, {result.train_seconds:.0f} s of "
              f"training", flush=True)
    return ran


def _commits_file(ckpt: Path) -> Path:
    return ckpt.with_name(ckpt.name + ".commits")


def _segment_commits(ckpt: Path, commit: str) -> list[str]:
    """The commits this run has trained at so far, ``commit`` last: what the
    ``.commits`` file beside its checkpoint lists (nothing when there is no
    checkpoint to resume: a fresh start), plus ``commit`` if it is new."""
    log = _commits_file(ckpt)
    earlier = log.read_text().split() if ckpt.exists() and log.exists() else []
    commits = earlier + ([commit] if commit not in earlier[-1:] else [])
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(log, "\n".join(commits) + "\n")
    return commits


def add_arguments(p: argparse.ArgumentParser, parser_class: type) -> None:
    """The ``record`` subcommand's own subcommands (``python -m cnnlab record ...``)."""
    sub = p.add_subparsers(dest="action", required=True, parser_class=parser_class)
    sub.add_parser("status", help="each planned run: done, missing, or why its file "
                                  "does not count")
    sub.add_parser("oom", help="bug 3: train alexnet_large under a 2 GiB memory cap")
    run = sub.add_parser("run", help="train what is missing, in plan order")
    run.add_argument("--background", action="store_true",
                     help="detach; the log goes to .cache/record.log")
    run.add_argument("--allow-dirty", action="store_true",
                     help="record from a checkout with uncommitted changes")
    p.set_defaults(run=command, stopped=stopped_line)


def stopped_line(err: KeyboardInterrupt) -> str:
    """The line for a stopped recording: the run in progress resumes next time."""
    from .stop import TrainingInterrupted
    from .stop import stopped_line as plain_line

    if isinstance(err, TrainingInterrupted):
        return f"{err}; the next 'record run' resumes it"
    return plain_line(err)


def command(args: argparse.Namespace) -> int:
    """Do the ``record`` action in ``args``; errors go to the CLI's one-line path."""
    if args.action == "status":
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
    if args.action == "oom":
        print(f"recorded in {record_oom()}")
        return 0

    pidfile = CACHE / "record.pid"
    if pidfile.exists():
        try:
            pid = int(pidfile.read_text())
        except ValueError:
            pid = 0
        if pid and pid != os.getpid() and pid_alive(pid):
            print(f"python -m cnnlab record: a recording is already running (pid {pid}); "
                  f"follow it with: tail -f {CACHE / 'record.log'}", file=sys.stderr)
            return 2
    CACHE.mkdir(exist_ok=True)
    if args.background:
        log = CACHE / "record.log"
        cmd = [sys.executable, "-m", "cnnlab", "record", "run"]
        cmd += ["--allow-dirty"] if args.allow_dirty else []
        with open(log, "a") as f:
            child = subprocess.Popen(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        print(f"recording in the background (pid {child.pid}); follow it with: "
              f"tail -f {log}; see what is left with: python -m cnnlab record status")
        return 0

    import logging
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    pidfile.write_text(str(os.getpid()))
    try:
        ran = run_missing(allow_dirty=args.allow_dirty)
    except ProvenanceChanged as err:
        print(f"{time.strftime('%H:%M:%S')} python -m cnnlab record: {err}", flush=True)
        return 2
    finally:
        pidfile.unlink(missing_ok=True)
    print(f"{time.strftime('%H:%M:%S')} done: {ran} run(s) recorded; nothing missing",
          flush=True)
    return 0


