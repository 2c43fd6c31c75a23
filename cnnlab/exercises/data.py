"""Checkers for the data exercises (chapter 1).

* ``check_normalise``: the learner's ``normalise(images)`` against the
  package's ``preprocess`` on several batches.
* ``check_split``: the learner's ``split(n, n_val, seed)`` against the
  package's ``split_indices``, and the global random state left untouched.
* ``check_batches``: the learner's ``batches(images, labels, batch_size,
  generator)`` checked for what a training epoch needs: every example once,
  full batches then one short one, a random order that the generator alone
  decides and that changes from epoch to epoch.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import Tensor

from . import checker, expect, expect_equal
from ._harness import allclose, equal, plain_tensor
from ..data import MEAN, STD, preprocess, split_indices

CHAPTER = "chapter 1 (Data)"
NOTEBOOK = "01_data.ipynb"


# --- Exercise 1: normalise -------------------------------------------------

# How far an answer may be from preprocess(). The page prints MEAN and STD to
# four decimals (0.1307, 0.3081), and an answer typed with those is a right
# answer: a rounding of up to 5e-5 in each moves (x/255 - mu)/sigma by at most
# 5e-5/sigma + 5e-5 * 2.83/sigma ~ 6e-4 (2.83 is the largest |output|, a white
# pixel). Every real mistake (no /255, 0.5 for both, the batch's own
# statistics, the std left out) is off by more than 0.01.
NORMALISE_ATOL = 1e-3

def _normalise_cases() -> list[tuple[str, Tensor]]:
    """uint8 batches: random ones of two sizes, and all-black and all-white ones.

    The uniform batches have a standard deviation of 0, which catches an
    answer that normalises with the batch's own statistics (0 / 0 = NaN).
    """
    g = torch.Generator().manual_seed(0)
    return [
        ("a random (5, 28, 28) batch",
         torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8, generator=g)),
        ("a random (3, 32, 32) batch",
         torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=g)),
        ("an all-black (2, 28, 28) batch", torch.zeros(2, 28, 28, dtype=torch.uint8)),
        ("an all-white (1, 28, 28) batch", torch.full((1, 28, 28), 255, dtype=torch.uint8)),
    ]


def _pixel_hint(normalise: Callable[[Tensor], Tensor]) -> str:
    """What the answer makes of a black and a white pixel, next to the right values."""
    parts = []
    for value, colour in ((0, "black"), (255, "white")):
        pixel = torch.full((1, 28, 28), value, dtype=torch.uint8)
        want = preprocess(pixel.clone()).flatten()[0].item()
        try:
            got = f"{torch.as_tensor(normalise(pixel.clone())).flatten()[0].item():.4f}"
        except Exception as err:  # the diagnosis must not hide the real failure
            got = f"an error ({type(err).__name__})"
        parts.append(f"a {colour} pixel ({value}) should become {want:.4f}, "
                     f"yours became {got}")
    return "; ".join(parts)


@checker("normalise", answers="normalise")
def check_normalise(normalise: Callable[[Tensor], Tensor]) -> None:
    """Check ``normalise(images_uint8) -> (N, 1, H, W) float tensor``."""
    for what, images in _normalise_cases():
        original = images.clone()
        expected = preprocess(images.clone())
        got = normalise(images)
        expect(isinstance(got, Tensor),
               f"for {what}, normalise returned a {type(got).__name__}, not a tensor.")
        got = plain_tensor(got)
        expect(equal(images, original),
               f"normalise changed the uint8 batch it was given ({what}); work on a "
               f"float copy (images.float() makes one).")
        expect_equal(f"dtype for {what}", torch.float32, got.dtype,
                     "convert the uint8 pixels with .float() before any arithmetic.")
        expect_equal(f"shape for {what} of shape {tuple(images.shape)}",
                     tuple(expected.shape), tuple(got.shape),
                     "the model wants (N, 1, H, W): add the channel axis with "
                     ".unsqueeze(1).")
        if not allclose(got, expected, atol=NORMALISE_ATOL, rtol=0):
            worst = (got - expected).abs().nan_to_num(float("inf")).max().item()
            expect(False,
                   f"values differ from cnnlab.data.preprocess for {what} (largest "
                   f"difference {worst:.4g}): {_pixel_hint(normalise)}. The formula is "
                   f"(x / 255 - MEAN) / STD with the dataset's MEAN = {MEAN:.4f} and "
                   f"STD = {STD:.4f}, the same for every batch; see {CHAPTER}, "
                   f"'Two ways to feed batches'.")


# --- Exercise 2: split -----------------------------------------------------

# (n, n_val, seed): the course's own split, then smaller ones, so that an
# answer with 60,000 / 12,000 / 42 typed in does not pass.
SPLIT_CASES = [(60_000, 12_000, 42), (100, 20, 0), (10, 3, 7)]


def _as_index_list(value: object, what: str) -> list[int]:
    if isinstance(value, Tensor):
        value = plain_tensor(value)
    expect(isinstance(value, Tensor) and value.ndim == 1
           and not value.is_floating_point(),
           f"{what} must be a 1-D tensor of integer indices, got "
           f"{type(value).__name__}"
           + (f" of shape {tuple(value.shape)}, dtype {value.dtype}"
              if isinstance(value, Tensor) else "") + ".")
    return value.tolist()


# Not quiet: the check compares the global random state before and after the
# answer, and quiet_torch would seed it first (to a state an answer that seeds
# the global RNG with 0 would leave unchanged).
@checker("split", answers="split", quiet=False)
def check_split(split: Callable[[int, int, int], tuple[Tensor, Tensor]]) -> None:
    """Check ``split(n, n_val, seed) -> (train_idx, val_idx)`` against ``split_indices``."""
    for n, n_val, seed in SPLIT_CASES:
        call = f"split({n}, {n_val}, seed={seed})"
        state = torch.get_rng_state()
        try:
            result = split(n, n_val, seed)
            changed = not equal(state, torch.get_rng_state())
        finally:
            torch.set_rng_state(state)  # whatever the answer did, undo it
        expect(isinstance(result, tuple) and len(result) == 2,
               f"{call} should return a pair (train_idx, val_idx), got "
               f"{type(result).__name__}.")
        train = _as_index_list(result[0], f"{call}'s train_idx")
        val = _as_index_list(result[1], f"{call}'s val_idx")
        expect_equal(f"{call}: (len(train_idx), len(val_idx))",
                     (n - n_val, n_val), (len(train), len(val)),
                     "the last n_val indices of the permutation are validation, "
                     "the first n - n_val training.")
        shared = set(train) & set(val)
        expect(not shared,
               f"{call}: {len(shared)} indices are in both train and validation "
               f"(e.g. {sorted(shared)[:3]}); cut ONE permutation in two.")
        expect(set(train) | set(val) == set(range(n)),
               f"{call}: train and validation together must cover 0..{n - 1} exactly "
               f"once; cut one torch.randperm({n}) in two.")
        expect(not changed,
               f"{call} changed PyTorch's global random state: it drew from the "
               f"global generator (torch.manual_seed / torch.randperm without "
               f"generator=). Then any other random call, or the experiment's seed, "
               f"moves the split. Use a torch.Generator of your own, seeded with "
               f"`seed`; see {CHAPTER}, 'Why a generator of its own'.")
        # The oracle: the package's split, the one every recorded run used.
        want_train, want_val = split_indices(n, n_val, seed)
        want_train, want_val = want_train.tolist(), want_val.tolist()
        if not (train == want_train and val == want_val):
            slip = _split_slip(train, val, want_train, want_val, n, n_val, seed)
            expect(False, f"{call} is a valid split but not the course's: {slip} "
                          f"See {CHAPTER}, 'The fixed split'.")


def _split_slip(train: list[int], val: list[int], want_train: list[int],
                want_val: list[int], n: int, n_val: int, seed: int) -> str:
    """Name the slip behind a valid split that is not the course's, else show both."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    if val == perm[:n_val]:
        return ("your validation indices are the FIRST n_val of the permutation; the "
                "course takes the last n_val (train = perm[:n - n_val], val = "
                "perm[n - n_val:]).")
    if sorted(train) == sorted(want_train) and sorted(val) == sorted(want_val):
        wrong = [(name, got, want) for name, got, want in (("train_idx", train, want_train),
                                                             ("val_idx", val, want_val))
                 if got != want]
        names = " and ".join(name for name, _, _ in wrong)
        how = ("sorted" if all(got == sorted(want) for _, got, want in wrong)
               else "in another order")
        verb = "holds" if len(wrong) == 1 else "hold"
        return (f"{names} {verb} the right indices, but {how}; keep the permutation's "
                f"order (perm[:n - n_val] as it comes): that order is the shuffle every "
                f"recorded run used.")
    return (f"train_idx should start {want_train[:5]}, yours starts {train[:5]}; val_idx "
            f"should start {want_val[:5]}, yours starts {val[:5]}. Draw perm = "
            f"torch.randperm(n, generator=g) once, with g = "
            f"torch.Generator().manual_seed(seed), then train = perm[:n - n_val], val = "
            f"perm[n - n_val:].")


# --- Exercise 3: batches ---------------------------------------------------

# (n, batch_size, seed): a short last batch, an exact fit, a batch larger than
# the data, and an odd size; each with a seed of its own.
BATCH_CASES = [(1000, 128, 42), (1024, 256, 0), (5, 10, 7), (60, 7, 123)]


def _indexed_data(n: int) -> tuple[Tensor, Tensor]:
    """n 28x28 uint8 'images' whose first two pixels spell their index, and
    labels 0..n-1, so that every batch says which examples it holds."""
    images = torch.zeros(n, 28, 28, dtype=torch.uint8)
    index = torch.arange(n)
    images[:, 0, 0] = index % 256
    images[:, 0, 1] = index // 256
    return images, index.clone()


def _one_epoch(batches: Callable, images: Tensor, labels: Tensor, batch_size: int,
               generator: torch.Generator, call: str) -> tuple[list[int], list[int]]:
    """Run one epoch of the answer; return the batch sizes and the example order."""
    result = batches(images, labels, batch_size, generator)
    expect(isinstance(result, Iterable),
           f"{call} returned a {type(result).__name__}; it should yield (or return "
           f"a list of) (images, labels) pairs.")
    sizes, order = [], []
    for i, item in enumerate(result):
        # An epoch holds len(labels) examples: more means the loop never ends.
        expect(len(order) < len(labels) or len(labels) == 0,
               f"{call} yielded more than the {len(labels)} examples of one epoch "
               f"(it was still going at batch {i}): the loop must stop after the last "
               f"slice, e.g. for start in range(0, n, batch_size).")
        expect(isinstance(item, (tuple, list)) and len(item) == 2
               and all(isinstance(t, Tensor) for t in item),
               f"{call}: batch {i} is not an (images, labels) pair of tensors.")
        x, y = (plain_tensor(t) for t in item)
        expect(tuple(x.shape[1:]) == (28, 28) and len(x) == len(y),
               f"{call}: batch {i} has images of shape {tuple(x.shape)} and labels of "
               f"shape {tuple(y.shape)}; expected (B, 28, 28) and (B,), the raw slices "
               f"images[idx], labels[idx].")
        from_images = (x[:, 0, 0].long() + 256 * x[:, 0, 1].long()).tolist()
        pairs = [(a, b) for a, b in zip(from_images, y.tolist()) if a != b]
        if pairs:
            expect(False,
                   f"{call}: in batch {i} the images and labels come from different "
                   f"examples (the image of example {pairs[0][0]} with the label of "
                   f"example {pairs[0][1]}). Index both with the SAME idx.")
        sizes.append(len(y))
        order += y.tolist()
    return sizes, order


@checker("batches", answers="batches")
def check_batches(batches: Callable) -> None:
    """Check ``batches(images, labels, batch_size, generator)`` over one and two epochs."""
    for n, batch_size, seed in BATCH_CASES:
        _check_batches_case(batches, n, batch_size, seed)


def _check_batches_case(batches: Callable, n: int, batch_size: int, seed: int) -> None:
    """One size: an epoch, a second epoch, and the same seed again."""
    images, labels = _indexed_data(n)
    call = f"batches(<{n} examples>, batch_size={batch_size})"
    generator = torch.Generator().manual_seed(seed)
    sizes, first = _one_epoch(batches, images, labels, batch_size, generator, call)
    full, rest = divmod(n, batch_size)
    expected_sizes = [batch_size] * full + ([rest] if rest else [])
    if sizes != expected_sizes and sorted(sizes) == sorted(expected_sizes) and n >= 60:
        _expect_shuffled(first, sizes, call)  # whole batches shuffled: the short one moves
    if sizes != expected_sizes:
        hint = ("the last, shorter batch is missing: range(0, n, batch_size) "
                "includes it" if sizes == [batch_size] * full
                else "slice idx[start:start + batch_size] for start in "
                     "range(0, n, batch_size)")
        expect_equal(f"{call}: batch sizes", expected_sizes, sizes, hint)
    missing = sorted(set(range(n)) - set(first))
    expect(len(first) == n and not missing,
           f"{call}: an epoch must hold every example exactly once; "
           f"{len(first)} came out, {len(missing)} never did"
           + (f" (e.g. {missing[:3]})" if missing else "")
           + ". Slice one permutation of all n indices.")
    if n >= 60:  # for tiny n an unshuffled order could happen by chance
        expect(first != list(range(n)),
               f"{call}: the examples came out in their stored order 0, 1, 2, ...: "
               f"shuffle with torch.randperm(n, generator=generator).")
        _expect_shuffled(first, sizes, call)
        _, second = _one_epoch(batches, images, labels, batch_size, generator, call)
        expect(second != first,
               f"{call}: the second epoch came out in the same order as the first. "
               f"Draw a new permutation from `generator` at every call (do not "
               f"reseed it): each epoch should see a new order.")
    # The same seed must give the same order whatever the global RNG says.
    torch_state = torch.get_rng_state()
    try:
        torch.manual_seed(12345)
        _, again = _one_epoch(batches, images, labels, batch_size,
                              torch.Generator().manual_seed(seed), call)
    finally:
        torch.set_rng_state(torch_state)
    expect(again == first,
           f"{call}: a generator seeded the same way gave a different order. "
           f"Draw the permutation from the `generator` argument "
           f"(torch.randperm(n, generator=generator)), not from the global RNG; "
           f"see {CHAPTER}, 'Why a generator of its own'.")


def _expect_shuffled(order: list[int], sizes: list[int], call: str) -> None:
    """Fail when the order keeps neighbours together: shuffled batches, a rotation.

    In a random order of n examples, example i + 1 follows example i about
    once in all; a shuffle of whole batches, or the stored order started at
    a random point, keeps that for all but a few pairs. A tenth of the pairs
    is far above chance (for n = 60 a random order gets there with a
    probability under 1e-4) and far below either slip.
    """
    n = len(order)
    followers = sum(b == a + 1 for a, b in zip(order, order[1:]))
    if followers <= n // 10:
        return
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    runs = all(order[s:s + k] == list(range(order[s], order[s] + k))
               for s, k in zip(starts, sizes))
    if order == [(order[0] + i) % n for i in range(n)]:
        hint = (f"the order is the stored one started at example {order[0]} (a rotation): "
                f"example i + 1 still follows example i, so every batch holds neighbours")
    elif runs:
        hint = ("you shuffled the order of the batches, but each batch still holds "
                "neighbouring examples in their stored order: shuffle the examples "
                "themselves, then slice that order into batches")
    else:
        hint = (f"in {followers} of {n - 1} places example i + 1 comes right after "
                f"example i; in a shuffled order that happens about once")
    expect(False, f"{call}: the order is not shuffled: {hint}. Draw "
                  f"torch.randperm(n, generator=generator) and slice it; see {CHAPTER}, "
                  f"'Two ways to feed batches'.")
