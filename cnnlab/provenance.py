"""Where and with what a run happened: the device, the versions, the date, the
commit of the code, the load, the data split's checksum.

``provenance`` is what every record keeps; ``git_commit`` names the commit
(with '+dirty' when tracked files outside ``results/`` changed), and
``short_commit`` shortens it for a page without losing that mark.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch


# What git_commit() ignores: the records themselves change no code, and a
# recording that replaces a committed record must not call its own next run dirty.
NOT_CODE = ":(exclude)results"


def git_commit() -> str | None:
    """The commit of the cnnlab checkout, with '+dirty' if files changed
    (records under results/ are not code, and are not counted)."""
    repo = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, text=True,
                                capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no",
                                "--", ".", NOT_CODE],
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


def short_commit(commit: str | None) -> str:
    """A commit as people read it: 12 hex digits, keeping a '+dirty' mark."""
    if not commit:
        return "unknown commit"
    sha, dirty, _ = commit.partition("+dirty")
    return sha[:12] + ("+dirty" if dirty else "")
