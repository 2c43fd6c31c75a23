"""The data cache: verified once, then checked cheaply, rebuilt when wrong.

``prepare_mnist`` decompresses the vendored files once, verifies their MD5s
and writes a stamp (MD5s, sizes, CRC-32s). Later runs compare the files with
the stamp and must neither decompress nor hash with MD5 again; a file or a
stamp that does not match is verified the slow way and rebuilt, never
trusted. A cache that cannot be written is reported in one line naming
CNNLAB_DATA, not as a corrupted vendored file.
"""
import errno
import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from cnnlab import files, mnist_files
from cnnlab.data import load_mnist
from cnnlab.mnist_files import (FILES, STAMP_NAME, DataCacheError, DataIntegrityError,
                                prepare_mnist)

IMAGES, LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A cache prepared once from the vendored files (decompressed, verified)."""
    return prepare_mnist(tmp_path_factory.mktemp("built") / "root")


@pytest.fixture
def root(built: Path, tmp_path: Path) -> Path:
    """A copy of the prepared cache that a test may damage."""
    copy = tmp_path / "root"
    shutil.copytree(built, copy)
    return copy


@pytest.fixture
def spy(monkeypatch) -> dict:
    """Count the slow work: MD5 hashing and decompressing a vendored file."""
    calls = {"md5": 0, "decompressed": []}
    real_md5, real_decompress = mnist_files.hashlib.md5, mnist_files._decompress_verified

    def md5(*args):
        calls["md5"] += 1
        return real_md5(*args)

    def decompress(src, spec):
        calls["decompressed"].append(spec.name)
        return real_decompress(src, spec)

    monkeypatch.setattr(mnist_files, "hashlib", SimpleNamespace(md5=md5))
    monkeypatch.setattr(mnist_files, "_decompress_verified", decompress)
    return calls


def raw(root: Path, name: str) -> Path:
    return root / "MNIST" / "raw" / name


def stamp_path(root: Path) -> Path:
    return root / "MNIST" / STAMP_NAME


def leftovers(root: Path) -> list[Path]:
    return list((root / "MNIST").rglob(".*.tmp"))


def test_first_run_writes_the_stamp_of_the_published_md5s(built):
    stamp = json.loads(stamp_path(built).read_text())
    named = {n: f["md5"] for n, f in stamp["files"].items()}
    assert named == {s.name: s.md5 for s in FILES}
    for spec in FILES:
        assert stamp["files"][spec.name]["size"] == raw(built, spec.name).stat().st_size


def test_a_stamped_cache_is_neither_decompressed_nor_hashed_again(root, spy):
    before = {s.name: raw(root, s.name).stat().st_mtime_ns for s in FILES}
    assert prepare_mnist(root) == root
    assert spy == {"md5": 0, "decompressed": []}
    assert {s.name: raw(root, s.name).stat().st_mtime_ns for s in FILES} == before


def test_truncated_file_is_rebuilt(root, built, spy):
    path = raw(root, LABELS)
    path.write_bytes(path.read_bytes()[:-100])  # a partial write
    prepare_mnist(root)
    assert spy["decompressed"] == [LABELS]  # only the damaged file
    assert path.read_bytes() == raw(built, LABELS).read_bytes()


def test_corrupted_file_of_the_right_size_is_rebuilt(root, built, spy):
    """One flipped byte, size and modification time unchanged: only the
    content check can see it."""
    path = raw(root, IMAGES)
    stat = path.stat()
    with open(path, "r+b") as f:  # a pixel midway: the file is 16 + 60,000 x 784 bytes
        f.seek(20_000_000)
        byte = f.read(1)
        f.seek(20_000_000)
        f.write(bytes([byte[0] ^ 0x01]))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    prepare_mnist(root)
    assert spy["decompressed"] == [IMAGES]
    assert path.read_bytes() == raw(built, IMAGES).read_bytes()


def _other_md5s(stamp: dict) -> None:
    stamp["files"][LABELS]["md5"] = "0" * 32  # keyed by other checksums


def _wrong_crc(stamp: dict) -> None:
    stamp["files"][LABELS]["crc32"] ^= 1


def _missing_file(stamp: dict) -> None:
    del stamp["files"][LABELS]


def _other_format(stamp: dict) -> None:
    stamp["format"] = "something-else/9"


@pytest.mark.parametrize("damage", [_other_md5s, _wrong_crc, _missing_file, _other_format],
                         ids=lambda f: f.__name__.strip("_"))
def test_wrong_stamp_means_a_full_check(root, built, spy, damage):
    stamp = json.loads(stamp_path(root).read_text())
    damage(stamp)
    stamp_path(root).write_text(json.dumps(stamp))
    prepare_mnist(root)
    assert spy["md5"] == len(FILES)  # every file verified by MD5 again
    assert spy["decompressed"] == []  # they were all good: none rebuilt
    assert stamp_path(root).read_bytes() == stamp_path(built).read_bytes()


@pytest.mark.parametrize("text", ["", "{", "[]", '{"format": 1}', "\x00" * 50])
def test_unreadable_stamp_is_rewritten(root, built, spy, text):
    stamp_path(root).write_text(text)
    prepare_mnist(root)
    assert spy["md5"] == len(FILES)
    assert stamp_path(root).read_bytes() == stamp_path(built).read_bytes()


def test_a_lying_stamp_cannot_vouch_for_a_damaged_file(root, built, spy):
    """A stamp keyed by other MD5s is ignored even if its CRC fits the file."""
    path = raw(root, LABELS)
    damaged = bytearray(path.read_bytes())
    damaged[500] ^= 0xFF  # a label: any byte past the 8-byte header
    path.write_bytes(damaged)
    stamp = json.loads(stamp_path(root).read_text())
    stamp["files"][LABELS]["crc32"] = mnist_files.zlib.crc32(damaged)
    stamp["files"][LABELS]["md5"] = "f" * 32
    stamp_path(root).write_text(json.dumps(stamp))
    prepare_mnist(root)
    assert spy["decompressed"] == [LABELS]
    assert path.read_bytes() == raw(built, LABELS).read_bytes()


def test_results_identical_with_and_without_cache(tmp_path, spy):
    """A fresh cache (built now) and a stamped one (read back) give the same
    tensors, and both equal what torchvision's own MNIST reads (the oracle)."""
    from torchvision.datasets import MNIST

    root = tmp_path / "root"
    fresh = load_mnist(root)
    assert len(spy["decompressed"]) == len(FILES)
    mnist_files.load_tensors.cache_clear()
    spy["decompressed"].clear()
    cached = load_mnist(root)
    assert spy["decompressed"] == []
    for name in ("train", "val", "test"):
        a, b = getattr(fresh, name), getattr(cached, name)
        assert a.images.dtype == b.images.dtype == torch.uint8
        assert a.labels.dtype == b.labels.dtype == torch.int64
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    tv_train, tv_test = MNIST(str(root), train=True), MNIST(str(root), train=False)
    ours = mnist_files.load_tensors(str(root))
    for mine, theirs in zip(ours, (tv_train.data, tv_train.targets,
                                   tv_test.data, tv_test.targets)):
        assert mine.dtype == theirs.dtype and torch.equal(mine, theirs)


def _assert_one_clear_line(err: pytest.ExceptionInfo, cause: str) -> str:
    message = str(err.value)
    assert "\n" not in message
    assert "Set CNNLAB_DATA to a writable folder" in message  # how to fix it
    assert cause in message
    assert not isinstance(err.value, DataIntegrityError)
    for wrong in ("corrupted", "truncated", "checksum", "git checkout"):
        assert wrong not in message  # the vendored files are fine
    return message


def test_a_cache_folder_that_cannot_be_made_names_cnnlab_data(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("CNNLAB_DATA", str(blocker / "data"))
    with pytest.raises(DataCacheError) as err:
        load_mnist()
    message = _assert_one_clear_line(err, "Not a directory")
    assert f"CNNLAB_DATA={blocker / 'data'}" in message


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC, errno.EACCES],
                         ids=errno.errorcode.get)
def test_a_failed_cache_write_names_cnnlab_data_and_the_cause(tmp_path, monkeypatch, code):
    def fail(src, dst):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(mnist_files.os, "replace", fail)
    with pytest.raises(DataCacheError) as err:
        prepare_mnist(tmp_path / "root")
    _assert_one_clear_line(err, os.strerror(code))
    assert not leftovers(tmp_path / "root")  # the temporary file is gone


def test_a_full_disk_mid_write_leaves_no_partial_file(tmp_path, monkeypatch):
    real_open = open

    class FullDisk:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, b):
            self.f.write(b[:1000])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fake_open(path, mode="r", *args, **kw):
        f = real_open(path, mode, *args, **kw)
        return FullDisk(f) if "w" in mode else f

    monkeypatch.setattr(mnist_files, "open", fake_open, raising=False)
    root = tmp_path / "root"
    with pytest.raises(DataCacheError) as err:
        prepare_mnist(root)
    _assert_one_clear_line(err, "No space left on device")
    assert not leftovers(root)
    assert not [p for p in (root / "MNIST" / "raw").iterdir()]  # nothing half-written
    monkeypatch.undo()
    prepare_mnist(root)  # with room again, it builds
    assert prepare_mnist(root) == root


def test_a_read_only_stamped_cache_is_used_as_is(root, monkeypatch):
    def read_only(*args, **kw):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(mnist_files, "_write_bytes", read_only)
    assert len(load_mnist(root).train) == 60_000 - 12_000  # the split's training part


def test_a_read_only_unstamped_cache_works_with_one_warning(root, monkeypatch, caplog, spy):
    stamp_path(root).unlink()

    def read_only(*args, **kw):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(mnist_files, "_write_bytes", read_only)
    assert prepare_mnist(root) == root  # verified by MD5, used without the stamp
    assert spy["md5"] == len(FILES) and spy["decompressed"] == []
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "CNNLAB_DATA" in warnings[0]


def test_bad_vendored_file_is_still_an_integrity_error(tmp_path):
    """The other side of the line: a damaged source is not a cache problem."""
    source = tmp_path / "src"
    shutil.copytree(mnist_files.VENDORED_DIR, source)
    gz = source / f"{LABELS}.gz"
    gz.write_bytes(gz.read_bytes()[:500])  # the first 500 of its 28,878 bytes
    with pytest.raises(DataIntegrityError, match="truncated or corrupted"):
        prepare_mnist(tmp_path / "root", source=source)


def test_a_write_killed_midway_is_swept_and_redone(root, built):
    """A run killed while writing a file leaves its temporary file and no
    stamp-matching file; the next run sweeps the one and rebuilds the other."""
    path = raw(root, LABELS)
    ours = files.temp_path(path).name
    stale = path.with_name(ours.replace(f".{os.getpid()}.", ".999999999."))  # a dead pid
    stale.write_bytes(path.read_bytes()[:1000])
    path.unlink()
    prepare_mnist(root)
    assert not stale.exists()
    assert path.read_bytes() == raw(built, LABELS).read_bytes()


def test_the_cli_reports_an_unwritable_cache_in_one_line(tmp_path, monkeypatch, capsys):
    from cnnlab.__main__ import main

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("CNNLAB_DATA", str(blocker / "data"))
    monkeypatch.delenv("CNNLAB_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(["train", "lenet", "--max-steps", "1", "--out", str(tmp_path / "r.json")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "Set CNNLAB_DATA to a writable folder" in err and "Not a directory" in err
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("which", ["a data file", "the stamp"])
def test_a_pipe_in_the_cache_is_never_opened_and_is_replaced(root, built, which):
    """A FIFO in a file's place: open() would wait forever for a writer."""
    path = raw(root, LABELS) if which == "a data file" else stamp_path(root)
    path.unlink()
    os.mkfifo(path)
    prepare_mnist(root)  # returns: the pipe is read as "not a good file"
    assert path.is_file()
    if which == "a data file":
        assert path.read_bytes() == raw(built, LABELS).read_bytes()


def test_a_gzip_bomb_is_stopped_one_byte_past_the_real_size(tmp_path, monkeypatch):
    """A vendored file replaced by one that decompresses to far more than the
    real file is refused, having decompressed no more than the real size."""
    import gzip

    source = tmp_path / "src"
    shutil.copytree(mnist_files.VENDORED_DIR, source)
    spec = next(s for s in FILES if s.name == LABELS)  # 60,008 bytes decompressed
    bomb = source / f"{LABELS}.gz"
    with gzip.open(bomb, "wb") as f:  # 100 MB of zeros, 100 KB on disk
        for _ in range(100):
            f.write(bytes(2**20))
    asked = []
    real_open = gzip.open

    class Counting:
        def __init__(self, *args, **kwargs):
            self.f = real_open(*args, **kwargs)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def read(self, size=-1):
            asked.append(size)
            return self.f.read(size)

    monkeypatch.setattr(mnist_files.gzip, "open", Counting)
    with pytest.raises(DataIntegrityError, match="decompresses to more than the 60008"):
        mnist_files._decompress_verified(bomb, spec)
    assert asked == [spec.size + 1]  # one bounded read, never read() of it all
