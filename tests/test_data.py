"""Data: vendored files verified, bad files refused, the fixed split."""
import gzip
import hashlib
import shutil
from pathlib import Path

import pytest
import torch

from cnnlab import data, mnist_files
from cnnlab.data import DeviceBatches, Split, preprocess, split_fingerprint, split_indices
from cnnlab.mnist_files import FILES, DataIntegrityError, prepare_mnist

# Published facts about MNIST (../shared/mnist/README.md), not our outputs.
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
PUBLISHED_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


def test_checksum_table_is_the_published_one():
    assert {f.name: f.md5 for f in FILES} == PUBLISHED_MD5


@pytest.mark.parametrize("spec", FILES, ids=lambda f: f.name)
def test_vendored_file_decompresses_to_published_md5(spec):
    with gzip.open(mnist_files.VENDORED_DIR / f"{spec.name}.gz", "rb") as f:
        raw = f.read()
    assert len(raw) == spec.size
    assert hashlib.md5(raw).hexdigest() == spec.md5


def test_class_counts_and_pixel_statistics(mnist):
    labels = torch.cat([mnist.train.labels, mnist.val.labels])
    assert torch.bincount(labels).tolist() == TRAIN_COUNTS
    assert torch.bincount(mnist.test.labels).tolist() == TEST_COUNTS
    # The package's MEAN and STD are these 60,000 images' statistics,
    # recomputed here from the pixels (in [0, 1]).
    pixels = torch.cat([mnist.train.images, mnist.val.images]).double() / 255
    # Tolerances: a float64 sum over 47,040,000 pixels; .std() divides by N - 1,
    # STD by N (the two differ by about 3e-9).
    assert pixels.mean().item() == pytest.approx(data.MEAN, abs=1e-9)
    assert pixels.std().item() == pytest.approx(data.STD, abs=1e-6)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A copy of the vendored .gz files that a test may damage."""
    src = tmp_path / "src"
    shutil.copytree(mnist_files.VENDORED_DIR, src)
    return src


SMALL = "train-labels-idx1-ubyte"


def _corrupt(path: Path) -> None:
    """Rewrite a valid gzip whose content has one byte changed."""
    with gzip.open(path, "rb") as f:
        raw = bytearray(f.read())
    raw[100] ^= 0xFF  # any byte past the 8-byte header
    with gzip.open(path, "wb") as f:
        f.write(bytes(raw))


def test_prepare_writes_torchvision_layout(tmp_path, source):
    root = prepare_mnist(tmp_path / "root", source=source)
    for spec in FILES:
        assert (root / "MNIST" / "raw" / spec.name).stat().st_size == spec.size


def test_corrupted_file_is_refused_and_good_cache_kept(tmp_path, source):
    root = prepare_mnist(tmp_path / "root", source=source)
    cached = root / "MNIST" / "raw" / SMALL
    good = cached.read_bytes()
    _corrupt(source / f"{SMALL}.gz")
    cached.write_bytes(good[:-1])  # damage the cache so it must be rebuilt
    with pytest.raises(DataIntegrityError) as err:
        prepare_mnist(root, source=source)
    message = str(err.value)
    assert SMALL in message and "a25bea736e30d166cdddb491f175f624" in message
    assert "git checkout" in message  # says how to fix it
    assert cached.read_bytes() == good[:-1]  # nothing replaced it
    assert not list(cached.parent.glob(".*.tmp"))


def test_corrupted_data_on_the_command_line_is_one_line_with_exit_2(
        tmp_path, source, monkeypatch, capsys):
    """A damaged data file is refused input, like a bad flag: exit code 2."""
    import cnnlab.train
    from cnnlab.__main__ import main

    _corrupt(source / f"{SMALL}.gz")
    damaged = lambda: data.load_mnist(prepare_mnist(tmp_path / "root",  # noqa: E731
                                                         source=source))
    monkeypatch.setattr(cnnlab.train, "load_mnist", damaged)
    try:
        code = main(["train", "lenet", "--max-steps", "1", "--device", "cpu", "--quiet",
                     "--out", str(tmp_path / "r.json")])
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"{SMALL}.gz" in err and "checksum" in err.lower()
    assert not (tmp_path / "r.json").exists()


def test_bad_source_never_overwrites_good_cache(tmp_path, source):
    root = prepare_mnist(tmp_path / "root", source=source)
    cached = root / "MNIST" / "raw" / SMALL
    good = cached.read_bytes()
    _corrupt(source / f"{SMALL}.gz")
    prepare_mnist(root, source=source)  # the good cache is kept, source unread
    assert cached.read_bytes() == good


def test_truncated_gzip_is_refused(tmp_path, source):
    gz = source / f"{SMALL}.gz"
    gz.write_bytes(gz.read_bytes()[:1000])  # the first 1,000 of its 28,878 bytes
    with pytest.raises(DataIntegrityError, match="truncated or corrupted"):
        prepare_mnist(tmp_path / "root", source=source)


def test_missing_file_is_named(tmp_path, source):
    (source / f"{SMALL}.gz").unlink()
    with pytest.raises(DataIntegrityError, match=f"{SMALL}.gz: missing"):
        prepare_mnist(tmp_path / "root", source=source)


def test_split_sizes_disjoint_and_covering():
    train, val = split_indices()
    # The design's split: 12,000 of MNIST's 60,000 training images validate.
    assert (len(train), len(val)) == (60_000 - 12_000, 12_000)
    assert len(set(train.tolist()) | set(val.tolist())) == 60_000
    assert set(train.tolist()).isdisjoint(val.tolist())


def test_split_ignores_global_rng():
    torch.manual_seed(0)
    a = split_indices()
    torch.manual_seed(1)
    torch.rand(1000)
    b = split_indices()
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_split_fingerprint_is_the_recorded_one():
    """The split is part of every recorded result: it must never move.

    This hash was recorded when the split was first drawn (randperm of
    60,000 with a CPU generator seeded 42). If it changes, a torch upgrade
    changed randperm, and results before and after are not comparable.
    """
    assert split_fingerprint() == "7cd1a1e010482b25004c00bf2e3caae398061dfa812ba311e56e8b6b9b4cdc7a"


def test_device_batches_cover_split_once_per_epoch():
    split = Split(torch.zeros(1000, 2, 2, dtype=torch.uint8), torch.arange(1000))
    batches = DeviceBatches(split, 128, shuffle=True, seed=3)
    assert len(batches) == 8  # ceil(1000 / 128): 7 full batches and one of 104
    seen = torch.cat([y for _, y in batches])
    assert sorted(seen.tolist()) == list(range(1000))
    again = torch.cat([y for _, y in batches])
    assert not torch.equal(seen, again)  # a new order each epoch
    replay = DeviceBatches(split, 128, shuffle=True, seed=3)
    assert torch.equal(torch.cat([y for _, y in replay]), seen)  # seed fixes it


def test_preprocess_normalises_on_device(mnist):
    x = preprocess(mnist.train.images[:4096])
    assert x.shape == (4096, 1, 28, 28) and x.dtype == torch.float32
    # A tolerance: 4,096 images are not all 60,000 (measured: mean 5e-5, std 0.9997).
    assert abs(x.mean().item()) < 0.05 and abs(x.std().item() - 1) < 0.05


def test_classic_view_uses_the_same_split(mnist):
    train, val, test = data.classic_datasets()
    # As split_indices: MNIST's 60,000 train images split 48,000 / 12,000; 10,000 test.
    assert (len(train), len(val), len(test)) == (60_000 - 12_000, 12_000, 10_000)
    x, y = val[5]
    assert x.shape == (1, 28, 28) and y == mnist.val.labels[5].item()
    assert torch.allclose(x, preprocess(mnist.val.images[5:6])[0], atol=1e-6)


def test_classic_loaders_shuffle_training_only_and_the_seed_fixes_it(mnist):
    from torch.utils.data import RandomSampler, SequentialSampler

    train, val, test = data.classic_loaders(batch_size=8, seed=3)
    assert isinstance(train.sampler, RandomSampler)
    assert isinstance(val.sampler, SequentialSampler) and isinstance(test.sampler, SequentialSampler)
    assert train.batch_size == 8
    _, y = next(iter(train))
    _, again = next(iter(data.classic_loaders(batch_size=8, seed=3)[0]))
    assert torch.equal(y, again)  # the seed alone fixes the order
    _, first = next(iter(val))
    assert torch.equal(first, mnist.val.labels[:len(first)])  # in the split's order
