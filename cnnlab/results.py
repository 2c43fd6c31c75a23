"""RunResult: what one training run produced, with where and how it ran.

Saved as JSON under ``results/``; written atomically (a temporary file in
the same folder, then ``os.replace``), so a run killed mid-write leaves the
previous file whole.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

FORMAT_VERSION = 1


class ResultFormatError(ValueError):
    """A results file this version of cnnlab cannot read."""


@dataclass
class RunResult:
    """History, scores, cost and provenance of one training run."""

    model: str
    parameters: int
    config: dict[str, Any]
    steps_per_epoch: int
    train_loss: list[float]          # one per batch
    val_step: list[int]              # steps at which validation ran
    val_accuracy: list[float]        # at those steps (fraction, 0-1)
    val_loss: list[float]
    epoch_val_accuracy: list[float]  # at each epoch end
    epoch_val_loss: list[float]
    test_accuracy: float             # measured once, after training
    test_loss: float
    train_seconds: float             # training steps only, no evaluation
    images_per_second: float
    peak_memory_bytes: int | None
    peak_memory_kind: str            # what the number measures (device/host)
    provenance: dict[str, Any] = field(default_factory=dict)
    # The first step alone: it holds torch.compile's and cudnn's one-off
    # set-up, so a compiled run's cost can be read with and without it.
    first_step_seconds: float | None = None
    # How many validation images each point of val_accuracy used: all of
    # them at epoch ends, a fixed subset between (TrainConfig.eval_subset).
    val_images: list[int] = field(default_factory=list)
    # CPU time of the whole process during training (all threads): on a
    # machine that other work shares, well below train_seconds x threads.
    cpu_seconds: float | None = None
    format_version: int = FORMAT_VERSION

    @property
    def epochs_run(self) -> float:
        """Epochs completed (fractional when a step budget cut the run)."""
        return len(self.train_loss) / self.steps_per_epoch

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        """Write JSON atomically; the folder is created if needed."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_dict(), indent=1)
        atomic_write_text(path, text)
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> "RunResult":
        version = data.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ResultFormatError(
                f"{source}: results format version {version!r}, but this cnnlab "
                f"reads up to version {FORMAT_VERSION}. Fix: update cnnlab "
                f"(git pull; make venv) or re-run the training to rewrite it.")
        names = {f.name for f in fields(cls)}
        optional = {"provenance", "format_version", "first_step_seconds", "val_images",
                    "cpu_seconds"}
        missing = names - set(data) - optional
        if missing:
            raise ResultFormatError(f"{source}: not a cnnlab result, missing "
                                    f"{', '.join(sorted(missing))}")
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def load(cls, path: str | Path) -> "RunResult":
        """Read a result written by ``save``."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ResultFormatError(f"{path}: not valid JSON ({err})") from err
        return cls.from_dict(data, source=str(path))


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old or the new file, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def git_commit() -> str | None:
    """The commit of the cnnlab checkout, with '+dirty' if files changed."""
    repo = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, text=True,
                                capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=repo, text=True, capture_output=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")


def device_name(device: torch.device) -> str:
    """A human name for the device: the GPU's model, or the CPU's."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    try:  # Linux names the CPU model here; platform.processor() often doesn't
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def provenance(device: torch.device) -> dict[str, Any]:
    """Where and with what a run happened."""
    from .data import split_fingerprint

    return {
        "device": str(device),
        "device_name": device_name(device),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "load_average": list(os.getloadavg()),  # 1, 5, 15 min, at the end
        "split_sha256": split_fingerprint(),
    }


def cpu_share(r: RunResult) -> float | None:
    """The share of its threads' time a CPU run got while training (0-1).

    Near 1 when the run had its cores to itself; lower when other work
    shared them, and its time and images/s are then slower than the CPU
    can do. None on a GPU or when not recorded.
    """
    threads = r.provenance.get("cpu_threads")
    if r.cpu_seconds is None or r.config.get("device") != "cpu" or not threads:
        return None
    return r.cpu_seconds / (r.train_seconds * threads)


def markdown_table(results: list[RunResult]) -> str:
    """A Markdown table of the scores, costs and devices of some runs."""
    head = ("| model | test acc. (%) | train time (s) | epochs | images/s "
            "| parameters | peak memory (MB) | device |")
    lines = [head, "|" + "---|" * 8]
    for r in results:
        mem = "" if r.peak_memory_bytes is None else f"{r.peak_memory_bytes / 2**20:,.0f}"
        dev = r.provenance.get("device_name", r.config.get("device", "?"))
        lines.append(f"| {r.model} | {100 * r.test_accuracy:.2f} | {r.train_seconds:,.1f} "
                     f"| {r.epochs_run:g} | {r.images_per_second:,.0f} | {r.parameters:,} "
                     f"| {mem} | {dev} |")
    return "\n".join(lines)


def seed_summary_table(results: list[RunResult]) -> str:
    """Per model over its seeds: test accuracy mean, standard deviation and range."""
    import statistics

    lines = ["| model | seeds | test acc. mean (%) | std (points) | min-max (%) "
             "| train time mean (s) |", "|" + "---|" * 6]
    by_model: dict[str, list[RunResult]] = {}
    for r in results:
        by_model.setdefault(r.model, []).append(r)
    for model, runs in by_model.items():
        acc = [100 * r.test_accuracy for r in runs]
        std = statistics.stdev(acc) if len(acc) > 1 else float("nan")
        seeds = ",".join(str(r.config.get("seed")) for r in runs)
        lines.append(f"| {model} | {seeds} | {statistics.mean(acc):.2f} | {std:.2f} "
                     f"| {min(acc):.2f}-{max(acc):.2f} "
                     f"| {statistics.mean(r.train_seconds for r in runs):,.1f} |")
    return "\n".join(lines)


RESULTS_DIR = Path(__file__).resolve().parent.parent / "results"


def load_runs(folder: str | Path | None = None) -> list[RunResult]:
    """Every RunResult JSON under ``folder`` (default: the repository's results/runs)."""
    folder = Path(folder) if folder is not None else RESULTS_DIR / "runs"
    return [RunResult.load(p) for p in sorted(folder.glob("*.json"))]


def is_full_run(r: RunResult) -> bool:
    """True for the report's whole recipe: 5 epochs, every image evaluated."""
    c = r.config
    return (r.epochs_run == 5 and c.get("max_steps") is None
            and c.get("val_images") is None and c.get("test_images") is None)


def recorded_runs(model: str, folder: str | Path | None = None) -> list[RunResult]:
    """The recorded full runs of ``model``, GPU runs first."""
    runs = [r for r in load_runs(folder) if r.model == model and is_full_run(r)]
    return sorted(runs, key=lambda r: r.provenance.get("device", "cpu") == "cpu")


def short_commit(commit: str | None) -> str:
    """A commit as people read it: 12 hex digits, keeping a '+dirty' mark."""
    if not commit:
        return "unknown commit"
    sha, dirty, _ = commit.partition("+dirty")
    return sha[:12] + ("+dirty" if dirty else "")


def provenance_line(r: RunResult) -> str:
    """Where and when a result came from, in one line."""
    p = r.provenance
    commit = short_commit(p.get("git_commit"))
    return (f"{r.model}: recorded {p.get('date', '?')[:10]} on {p.get('device_name', '?')} "
            f"({p.get('device', '?')}), torch {p.get('torch', '?')}, seed "
            f"{r.config.get('seed')}, commit {commit}")
