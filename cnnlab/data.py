"""MNIST split once, batched on the device, checked against the model.

The data flow, top to bottom (the files themselves, verified and cached,
are ``cnnlab.mnist_files``'s):

1. ``load_mnist`` reads the verified files (``prepare_mnist``,
   ``load_tensors``) and ``split_indices`` draws the fixed 48,000 / 12,000
   train / validation split from its own ``torch.Generator`` (seed 42), so
   no other random call can move it. The 10,000 test images stay apart.
2. ``DeviceBatches`` keeps a whole split on the training device and slices
   batches from a seeded permutation; ``preprocess`` scales and normalises
   there. ``classic_loaders`` offers the usual Dataset/DataLoader view.
3. ``check_data`` checks all three splits against a model before step 1
   (``DataError``, ``PixelDtypeError``, ``ShapeMismatchError``), so a wrong
   dtype or shape is named before training, not deep inside it.
"""
from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from torch import Tensor, nn

from .mnist_files import load_tensors, prepare_mnist

log = logging.getLogger("cnnlab")

# Pixel statistics of the 60,000 training images scaled to [0, 1].
MEAN = 0.1306604762738429
STD = 0.3081078038564622

# The fixed split: 48,000 train / 12,000 validation of the 60,000 training
# images, drawn from a generator seeded with SPLIT_SEED.
N_TRAIN, N_VAL, N_TEST = 48_000, 12_000, 10_000
SPLIT_SEED = 42


@dataclass
class Split:
    """Images (uint8, N x 28 x 28) and labels (int64, N) of one split."""

    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> "Split":
        """The same split on ``device`` (a no-op if it is already there)."""
        return Split(self.images.to(device), self.labels.to(device))

    def head(self, n: int | None) -> "Split":
        """The first ``n`` examples (all of them for None)."""
        return self if n is None else Split(self.images[:n], self.labels[:n])


@dataclass
class MnistSplits:
    """The fixed train / validation / test splits."""

    train: Split
    val: Split
    test: Split

    def to(self, device: torch.device | str) -> "MnistSplits":
        return MnistSplits(self.train.to(device), self.val.to(device),
                           self.test.to(device))


def split_indices(n: int = N_TRAIN + N_VAL, n_val: int = N_VAL,
                  seed: int = SPLIT_SEED) -> tuple[Tensor, Tensor]:
    """Train and validation indices into the 60,000 training images.

    A dedicated CPU generator makes the split independent of the global
    RNG and identical on every machine and every call.
    """
    generator = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=generator)
    return perm[: n - n_val], perm[n - n_val:]


def split_fingerprint() -> str:
    """SHA-256 of the train then validation indices (as int64 bytes)."""
    train, val = split_indices()
    return hashlib.sha256(torch.cat([train, val]).numpy().tobytes()).hexdigest()


def load_mnist(root: str | Path | None = None) -> MnistSplits:
    """The three splits as uint8 tensors on the CPU (read once per process)."""
    root = prepare_mnist(root)
    images, labels, test_images, test_labels = load_tensors(str(root))
    train_idx, val_idx = split_indices()
    return MnistSplits(
        train=Split(images[train_idx], labels[train_idx]),
        val=Split(images[val_idx], labels[val_idx]),
        test=Split(test_images, test_labels),
    )


def preprocess(images: Tensor) -> Tensor:
    """uint8 images -> normalised float (N, C, H, W), on their own device.

    A (N, H, W) batch gains a channel axis; other shapes pass through so
    that the model's shape check can name what is wrong with them.
    """
    x = images.float().div_(255.0).sub_(MEAN).div_(STD)
    return x.unsqueeze(1) if x.ndim == 3 else x


class DeviceBatches:
    """Batches sliced from a split that lives whole on its device.

    Each pass (epoch) draws a new permutation from a generator seeded once
    with ``seed``, so the order of every epoch is fixed by the seed alone.
    There is no per-sample Python work: one gather per batch.
    """

    def __init__(self, split: Split, batch_size: int, shuffle: bool = False,
                 seed: int = 0) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        self.split, self.batch_size, self.shuffle = split, batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(len(self.split) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self.epoch()

    def epoch(self, skip: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """One pass, drawing this epoch's order; ``skip`` batches are left out
        at the start (to resume an epoch from a checkpoint)."""
        n, device = len(self.split), self.split.images.device
        order = None
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(device)
        for start in range(skip * self.batch_size, n, self.batch_size):
            if order is None:
                images = self.split.images[start:start + self.batch_size]
                labels = self.split.labels[start:start + self.batch_size]
            else:
                idx = order[start:start + self.batch_size]
                images, labels = self.split.images[idx], self.split.labels[idx]
            yield preprocess(images), labels


def classic_datasets(root: str | Path | None = None):
    """The classic view: torchvision MNIST with ``ToTensor`` + ``Normalize``.

    Returns (train, val, test) datasets over the same fixed split. Each
    sample goes through PIL and ``ToTensor`` one at a time, as in most
    tutorials (and in the report).
    """
    from torch.utils.data import Subset
    from torchvision import datasets, transforms

    root = str(prepare_mnist(root))
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])
    full = datasets.MNIST(root, train=True, download=False, transform=tf)
    test = datasets.MNIST(root, train=False, download=False, transform=tf)
    train_idx, val_idx = split_indices()
    return Subset(full, train_idx.tolist()), Subset(full, val_idx.tolist()), test


def classic_loaders(batch_size: int = 128, seed: int = 42, num_workers: int = 0,
                    root: str | Path | None = None):
    """DataLoaders over ``classic_datasets``: shuffled train, ordered val/test."""
    from torch.utils.data import DataLoader

    train, val, test = classic_datasets(root)
    generator = torch.Generator().manual_seed(seed)
    return (DataLoader(train, batch_size, shuffle=True, generator=generator,
                       num_workers=num_workers),
            DataLoader(val, 1000, num_workers=num_workers),
            DataLoader(test, 1000, num_workers=num_workers))


# ---------------------------------------------------------------- checks

class ShapeMismatchError(ValueError):
    """The data's shape does not fit the model."""


class PixelDtypeError(ValueError):
    """The images are not uint8 pixels (0-255), which the training loop expects."""


def check_input_shape(model: nn.Module, batch: Tensor, name: str = "model") -> None:
    """Raise ShapeMismatchError unless ``batch`` is (N, *model.input_shape)."""
    expected = tuple(getattr(model, "input_shape", ()))
    actual = tuple(batch.shape[1:])
    if not expected or actual == expected:
        return
    want = "(N, " + ", ".join(map(str, expected)) + ")"
    got = "(N, " + ", ".join(map(str, actual)) + ")"
    c, h, w = expected
    if len(actual) == 1 and actual[0] == c * h * w:
        hint = f"the images are flattened; reshape them with x.view(-1, {c}, {h}, {w})"
    elif len(actual) == 3 and actual[0] != c:
        hint = (f"the images have {actual[0]} channels; convert them, or build the "
                f"model with in_channels={actual[0]}")
    else:
        hint = f"resize or crop the images to {h}x{w}"
    raise ShapeMismatchError(f"{name} expects images of shape {want} "
                             f"(channels, height, width), got {got}: {hint}")


def check_images(images: Tensor, name: str = "model") -> None:
    """Raise PixelDtypeError unless ``images`` are uint8 pixels (0-255)."""
    if images.dtype != torch.uint8:
        raise PixelDtypeError(
            f"{name} trains on uint8 images with pixels 0-255 (as MNIST ships them), got "
            f"dtype {images.dtype}: scaling happens on the device. If your images are "
            f"floats in [0, 1], pass (images * 255).round().to(torch.uint8).")


class DataError(ValueError):
    """Training data that cannot be used: empty, mismatched, or labels out of range."""


# MNIST's ten digits: every model is built with ten outputs (TrainConfig
# leaves num_classes at the builders' default).
NUM_CLASSES = 10


def check_data(data: MnistSplits, model: nn.Module, name: str = "model") -> None:
    """Check all three splits before step 1, naming the split at fault.

    Each must be non-empty, with one label per image, uint8 images of the
    shape ``model`` takes, and int64 labels 0-9. Raises DataError,
    PixelDtypeError or ShapeMismatchError.
    """
    for split_name, split in (("train", data.train), ("validation", data.val),
                              ("test", data.test)):
        where = f"the {split_name} split"
        images, labels = split.images, split.labels
        if not (isinstance(images, Tensor) and isinstance(labels, Tensor)):
            raise DataError(f"{where}: images and labels must be torch tensors, got "
                            f"{type(images).__name__} and {type(labels).__name__}")
        if images.ndim == 0 or len(images) == 0:
            raise DataError(f"{where} is empty; it needs at least one image")
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataError(f"{where} has {len(images)} images but labels of shape "
                            f"{tuple(labels.shape)}; give one label per image")
        try:
            check_images(images, name)
            check_input_shape(model, preprocess(images[:1]), name)
        except ValueError as err:  # the same error, with the split named
            raise type(err)(f"{where}: {err}") from None
        if labels.dtype != torch.int64:
            raise DataError(f"{where}: labels must be int64 class numbers, got "
                            f"{labels.dtype}; convert them with labels.long()")
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= NUM_CLASSES:
            raise DataError(f"{where}: labels must be 0-{NUM_CLASSES - 1}, found "
                            f"{low if low < 0 else high}")
