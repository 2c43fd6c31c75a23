"""The vendored MNIST files: verified, decompressed into a cache, read as tensors.

1. The four byte-exact MNIST files ship inside the package (``cnnlab/mnist``,
   gzip-compressed). ``prepare_mnist`` decompresses each into torchvision's
   layout (``<root>/MNIST/raw/``), verifying the MD5 of the decompressed
   bytes before the file takes its place. A stamp beside that folder names
   the MD5s it checked and each file's size and CRC-32, so later runs
   check the cache in milliseconds instead of decompressing and hashing
   again; a file that no longer matches its stamp is verified (and if need
   be rebuilt) the slow way, never trusted.
2. ``load_tensors`` reads the files into uint8 tensors as
   ``torchvision.datasets.MNIST(root, download=False)`` would (a test holds
   them equal), without importing torchvision.

``cnnlab.data`` takes it from there: the fixed split, the batches, the checks.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import logging
import math
import os
import stat
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor

from .files import atomic_write

log = logging.getLogger("cnnlab")

VENDORED_DIR = Path(__file__).resolve().parent / "mnist"


@dataclass(frozen=True)
class MnistFile:
    """One MNIST file: its name in torchvision's raw folder and its checksum."""

    name: str
    md5: str   # of the decompressed bytes (the widely published values)
    size: int  # decompressed bytes


FILES = (
    MnistFile("train-images-idx3-ubyte", "6bbc9ace898e44ae57da46a324031adb", 47_040_016),
    MnistFile("train-labels-idx1-ubyte", "a25bea736e30d166cdddb491f175f624", 60_008),
    MnistFile("t10k-images-idx3-ubyte", "2646ac647ad5339dbf082846283269ea", 7_840_016),
    MnistFile("t10k-labels-idx1-ubyte", "27ae3e4e09519cfbb04c329615203637", 10_008),
)

# Beside the raw folder: which MD5s were verified, and the size and CRC-32
# of each file then. CRC-32 reads the 55 MB in ~20 ms, MD5 about 8 times slower.
STAMP_NAME = "cnnlab-verified.json"
STAMP_FORMAT = "cnnlab-mnist-stamp/1"


class DataIntegrityError(ValueError):
    """A data file is missing, truncated or does not match its checksum.

    A ValueError: the data is input that is refused (the CLI exits with 2),
    not a run that failed."""


class DataCacheError(OSError):
    """The decompressed data cannot be written where ``CNNLAB_DATA`` points."""


def default_root() -> Path:
    """Where the decompressed files go: $CNNLAB_DATA, else a git-ignored .cache."""
    env = os.environ.get("CNNLAB_DATA")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parent.parent / ".cache" / "data"


def _cache_error(where: Path, err: OSError) -> DataCacheError:
    """One line: what could not be written, why, and how to fix it."""
    cause = err.strerror or str(err) or type(err).__name__
    env = os.environ.get("CNNLAB_DATA")
    now = f"CNNLAB_DATA={env}" if env else "CNNLAB_DATA is unset, so the default is used"
    return DataCacheError(
        f"cannot write the MNIST data cache at {where}: {cause} ({now}). "
        f"Set CNNLAB_DATA to a writable folder with about 110 MB free, e.g. "
        f"CNNLAB_DATA=~/.cache/cnnlab-data")


def _regular(path: Path) -> bool:
    """Whether ``path`` is a regular file (after links). A FIFO in its place
    would make open() wait forever for a writer; a device could be endless."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _read_stamp(root: Path) -> dict[str, int] | None:
    """The CRC-32 of each file from the stamp, if the stamp is whole and names
    exactly the MD5s and sizes in FILES; else None."""
    path = root / "MNIST" / STAMP_NAME
    if not _regular(path):
        return None
    try:
        with open(path, "rb") as f:
            stamp = json.loads(f.read(64 * 1024))  # a stamp is 1 KB
        files = stamp["files"]
        if (stamp["format"] != STAMP_FORMAT
                or {n: (f["md5"], f["size"]) for n, f in files.items()}
                != {s.name: (s.md5, s.size) for s in FILES}):
            return None
        return {name: int(f["crc32"]) for name, f in files.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _write_stamp(root: Path, crcs: dict[str, int]) -> None:
    stamp = {"format": STAMP_FORMAT,
             "files": {s.name: {"md5": s.md5, "size": s.size, "crc32": crcs[s.name]}
                       for s in FILES}}
    _write_bytes(root / "MNIST" / STAMP_NAME, json.dumps(stamp, indent=1).encode())


def _write_bytes(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (and sweep what killed writers left)."""
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def _read_whole(path: Path, spec: MnistFile) -> bytearray | None:
    """The bytes of ``path`` if it is a regular file of exactly ``spec.size`` bytes."""
    if not _regular(path):
        return None
    try:
        with open(path, "rb") as f:
            buf = bytearray(spec.size)
            if f.readinto(buf) != spec.size or f.read(1):
                return None
            return buf
    except OSError:
        return None


def _matches_stamp(root: Path, crcs: dict[str, int] | None) -> bool:
    """True if every file has its stamped size and CRC-32 (the cheap check)."""
    if crcs is None:
        return False
    raw = root / "MNIST" / "raw"
    for spec in FILES:
        buf = _read_whole(raw / spec.name, spec)
        if buf is None or zlib.crc32(buf) != crcs[spec.name]:
            return False
    return True


def _restore_hint(src: Path) -> str:
    return (f"Fix: restore the vendored file ({src}) from the repository, e.g. "
            f"`git checkout -- cnnlab/mnist/`, or reinstall cnnlab. "
            f"With internet access, prepare_mnist(download=True) fetches "
            f"MNIST through torchvision instead.")


def _decompress_verified(src: Path, spec: MnistFile) -> bytes:
    """The decompressed bytes of ``src``, but only if they check out."""
    if not _regular(src):
        what = "not a regular file" if src.exists() else "missing"
        raise DataIntegrityError(
            f"{src.name}: {what} in {src.parent}. Expected MD5 {spec.md5} "
            f"of the decompressed file. {_restore_hint(src)}")
    try:
        # Streamed with a limit: a file that decompresses to more than the
        # real one (a gzip bomb, say) is stopped one byte past its size.
        with gzip.open(src, "rb") as f:
            data = f.read(spec.size + 1)
    except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError
        raise DataIntegrityError(
            f"{src.name}: cannot be decompressed ({err}); the file is "
            f"truncated or corrupted. Expected MD5 {spec.md5} of "
            f"{spec.size} decompressed bytes. {_restore_hint(src)}") from err
    if len(data) > spec.size:
        raise DataIntegrityError(
            f"{src.name}: decompresses to more than the {spec.size} bytes of the real "
            f"file, so it is not MNIST (stopped reading there). {_restore_hint(src)}")
    actual = hashlib.md5(data).hexdigest()
    if actual != spec.md5 or len(data) != spec.size:
        raise DataIntegrityError(
            f"{src.name}: checksum mismatch. Expected MD5 {spec.md5} "
            f"({spec.size} bytes), got MD5 {actual} ({len(data)} bytes). "
            f"{_restore_hint(src)}")
    return data


def prepare_mnist(root: str | Path | None = None, download: bool = False,
                  source: Path = VENDORED_DIR) -> Path:
    """Put verified MNIST into ``<root>/MNIST/raw/`` and return ``root``.

    Files already in place and correct are kept: if they match the stamp
    (sizes and CRC-32s recorded when their MD5s were verified) nothing else
    is done; otherwise each is checked by MD5 and rebuilt from ``source``
    if it is wrong, and the stamp is rewritten. ``download=True`` uses
    torchvision's own download (it needs internet access) instead of the
    vendored copy.
    """
    root = Path(root) if root is not None else default_root()
    if download:
        from torchvision.datasets import MNIST

        for train in (True, False):
            MNIST(str(root), train=train, download=True)
        return root
    if _matches_stamp(root, _read_stamp(root)):
        return root
    raw = root / "MNIST" / "raw"
    try:
        raw.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _cache_error(raw, err) from err
    crcs = {}
    for spec in FILES:
        dest = raw / spec.name
        data = _read_whole(dest, spec)
        if data is None or hashlib.md5(data).hexdigest() != spec.md5:
            data = _decompress_verified(source / f"{spec.name}.gz", spec)
            try:
                _write_bytes(dest, data)
            except OSError as err:
                raise _cache_error(dest, err) from err
        crcs[spec.name] = zlib.crc32(data)
    try:
        _write_stamp(root, crcs)
    except OSError as err:  # the files are verified; only the shortcut is lost
        log.warning("%s", _cache_error(root / "MNIST" / STAMP_NAME, err))
    return root


def _parse_idx(buf: bytearray, path: Path) -> Tensor:
    """The uint8 array of an IDX file, shaped by its header (as torchvision's
    ``read_sn3_pascalvincent_tensor`` reads it): 0, 0, type 8 (uint8), the
    number of dimensions, then each size as a big-endian 32-bit integer."""
    ndim = buf[3] if len(buf) > 3 else 0
    if buf[:3] != b"\x00\x00\x08" or ndim not in (1, 3):
        raise DataIntegrityError(f"{path}: not an IDX file of uint8 "
                                 f"(header {bytes(buf[:4])!r})")
    offset = 4 + 4 * ndim
    shape = [int.from_bytes(buf[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    if math.prod(shape) != len(buf) - offset:
        raise DataIntegrityError(f"{path}: the header says {shape}, but "
                                 f"{len(buf) - offset} bytes of data follow")
    return torch.frombuffer(buf, dtype=torch.uint8, offset=offset).view(*shape)


@lru_cache(maxsize=2)
def load_tensors(root: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Train images, labels, test images, labels from ``<root>/MNIST/raw``
    (verified by ``prepare_mnist``): uint8 images and int64 labels, equal to
    ``torchvision.datasets.MNIST``'s ``data`` and ``targets``."""
    raw = Path(root) / "MNIST" / "raw"
    arrays = []
    for spec in FILES:
        buf = _read_whole(raw / spec.name, spec)
        if buf is None:
            raise DataIntegrityError(f"{raw / spec.name}: missing or resized after it "
                                     f"was verified; run again to rebuild it")
        arrays.append(_parse_idx(buf, raw / spec.name))
    images, labels, test_images, test_labels = arrays
    return images, labels.long(), test_images, test_labels.long()
