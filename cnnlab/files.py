"""Files written whole or not at all, and paths checked before a run starts.

Every file cnnlab writes (results, checkpoints, figures, the data cache)
goes through ``atomic_write``: the bytes go to a temporary file in the same
folder, which replaces the target in one step (``os.replace``) only once it
is complete and on disk. A reader, or a run killed at any moment, sees the
old file or the new one, never half of one.

    with atomic_write(path) as tmp:
        torch.save(state, tmp)          # or fig.savefig(tmp), tmp.write_text(...)

Only the standard library is used here, so this file imports in a blink.
"""
from __future__ import annotations

import itertools
import os
import re
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

# Two writers in one process (threads) get different temporary names.
_serial = itertools.count()
# The host is part of a temporary name: a folder shared between machines
# (a lab's network home) holds temporary files whose process ids mean
# nothing here, and those must never be swept.
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"


class PathError(ValueError):
    """A path a run cannot write its file to."""


def temp_path(path: Path) -> Path:
    """A fresh temporary name beside ``path``: ``.NAME.HOST.PID.N.tmp``."""
    return path.with_name(f".{path.name}.{_HOST}.{os.getpid()}.{next(_serial)}.tmp")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (on this host)."""
    if os.name == "nt":  # os.kill(pid, 0) would send Ctrl-C there: assume alive
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, and belongs to someone else
        return True
    return True


def sweep_stale(path: Path) -> list[Path]:
    """Remove the temporary files of ``path`` that a killed process left.

    Only files from this host whose process is gone are removed; a writer
    still at work keeps its file. Returns the files removed.
    """
    pattern = re.compile(rf"\.{re.escape(path.name)}\.{_HOST}\.(\d+)\.\d+\.tmp")
    removed = []
    for tmp in path.parent.glob(".*.tmp"):
        match = pattern.fullmatch(tmp.name)
        if match and not pid_alive(int(match[1])):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _fsync(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """``with atomic_write(path) as tmp:`` write the file at ``tmp``; when the
    block ends without an error, ``tmp`` replaces ``path`` in one step.

    On any error, Ctrl-C included, the temporary file is removed and
    ``path`` is left as it was. The folder is created if needed, and
    temporary files that killed writers left beside ``path`` are swept.
    An OSError (disk full, read-only folder) keeps its errno and reason
    but names ``path``, not the temporary file.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        sweep_stale(path)
        tmp = temp_path(path)
        try:
            yield tmp
            _fsync(tmp)  # the bytes reach the disk before the name points at them
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as err:
        raise OSError(err.errno, err.strerror or str(err), str(path)) from err


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see ``atomic_write``)."""
    with atomic_write(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def check_writable(path: str | Path, what: str = "output") -> Path:
    """Raise PathError unless a file can be written at ``path``.

    Run before training, so that a bad path costs seconds, not a run: the
    path must not be a folder or a device, and its folder (or the nearest
    one that exists, if it is to be created) must accept a new file.
    ``what`` names the path in the message, e.g. "--out".
    """
    path = Path(path)
    try:  # a folder on the way that cannot be entered (permissions) fails here
        path.exists()
    except OSError as err:
        raise PathError(f"{what} {path}: cannot be reached ({err.strerror or err}); "
                        f"give a path in a folder you can write to") from None
    if path.is_dir():
        raise PathError(f"{what} {path}: is a folder, not a file; give a file name")
    if path.exists() and not path.is_file():
        raise PathError(f"{what} {path}: is a device or special file; give the "
                        f"path of a regular file")
    folder = nearest_folder(path)
    if _read_only_mount(folder):
        raise PathError(f"{what} {path}: {folder} is on a read-only filesystem; give "
                        f"a path on a disk that can be written")
    if path.is_file() and not os.access(path, os.W_OK):  # replacing it would ignore that
        raise PathError(f"{what} {path}: the file is read-only; make it writable "
                        f"(chmod u+w) if it may be replaced, or give another path")
    if not folder.is_dir():
        raise PathError(f"{what} {path}: {folder} is a file, not a folder")
    try:  # the only sure test: root ignores permission bits, not a read-only disk
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise PathError(f"{what} {path}: cannot write in {folder} "
                        f"({err.strerror or err})") from None
    return path


def nearest_folder(path: Path) -> Path:
    """The folder ``path`` goes in, or its nearest parent that exists (the
    folders between are created later)."""
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    return folder


def _read_only_mount(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs (Windows): the write test decides
        return False


def check_room(path: str | Path, need: int, what: str = "output") -> None:
    """Raise PathError unless the disk that ``path`` goes on has ``need`` bytes
    free: checked before training, so a full disk costs seconds, not a run."""
    path = Path(path)
    folder = nearest_folder(path)
    free = shutil.disk_usage(folder).free
    if free < need:
        raise PathError(f"{what} {path}: {_size(free)} free on its disk, and this run "
                        f"writes about {_size(need)} there; free some space or give a "
                        f"path on another disk")


def _size(n: int) -> str:
    return f"{n / 2**20:,.1f} MB" if n >= 2**20 else f"{n / 2**10:,.0f} KB"


def clash(a: str | Path, b: str | Path) -> bool:
    """True if writing files at ``a`` and at ``b`` would collide: they name one
    file, or one would be a folder holding the other (links, ``..`` resolved)."""
    a, b = Path(a).resolve(), Path(b).resolve()
    return a == b or a in b.parents or b in a.parents
