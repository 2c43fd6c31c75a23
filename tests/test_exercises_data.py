"""The chapter 1 (data) checkers reject plausible wrong answers with a specific
message, and accept right answers written differently.

(tests/test_exercise_registry.py runs every checker on the notebooks'
solution, stub and a None answer.)
"""

from exercise_cells import rejected
import torch

from cnnlab.data import MEAN, STD
from cnnlab.exercises.data import check_batches, check_normalise, check_split

NOTEBOOK = "01_data.ipynb"


# --- normalise: plausible wrong answers -------------------------------------

def normalise_without_scaling(images):
    return ((images.float() - MEAN) / STD).unsqueeze(1)  # forgot / 255


def normalise_with_batch_statistics(images):
    x = images.float() / 255
    return ((x - x.mean()) / x.std()).unsqueeze(1)  # the batch's, not the dataset's


def normalise_without_channel_axis(images):
    return (images.float() / 255 - MEAN) / STD


def test_normalise_rejects_a_missing_division_by_255(capsys):
    out = rejected(check_normalise, normalise_without_scaling, capsys=capsys)
    # A white pixel: (255 / 255 - MEAN) / STD = 2.8215 is right; without the
    # / 255 it becomes (255 - MEAN) / STD = 827.2 (in float32, as the answer
    # computes it; both printed to 4 decimals).
    white = (255 / 255 - MEAN) / STD
    unscaled = ((torch.tensor(255.0) - MEAN) / STD).item()
    assert f"a white pixel (255) should become {white:.4f}, yours became {unscaled:.4f}" in out
    assert "(x / 255 - MEAN) / STD" in out


def test_normalise_rejects_the_batch_statistics(capsys):
    out = rejected(check_normalise, normalise_with_batch_statistics, capsys=capsys)
    assert "values differ from cnnlab.data.preprocess" in out
    assert "the same for every batch" in out


def test_normalise_rejects_a_missing_channel_axis(capsys):
    out = rejected(check_normalise, normalise_without_channel_axis, capsys=capsys)
    assert "expected (5, 1, 28, 28), got (5, 28, 28)" in out  # the checker's 5 images
    assert ".unsqueeze(1)" in out


def normalise_with_rounded_statistics(images):
    return ((images.float() / 255 - 0.13) / 0.31).unsqueeze(1)  # "about 0.13 and 0.31"


def test_normalise_rejects_statistics_rounded_to_two_decimals(capsys):
    # Off by (1 - 0.13) / 0.31 - (1 - MEAN) / STD = -0.015 for a white pixel and
    # 0.0047 for a black one: small, yet every later layer sees other numbers.
    assert abs((1 - 0.13) / 0.31 - (1 - MEAN) / STD) > 0.01
    out = rejected(check_normalise, normalise_with_rounded_statistics, capsys=capsys)
    assert "values differ from cnnlab.data.preprocess" in out


# --- split: plausible wrong answers -----------------------------------------

def split_from_the_global_rng(n, n_val, seed):
    torch.manual_seed(seed)
    perm = torch.randperm(n)
    return perm[: n - n_val], perm[n - n_val:]


def split_validation_first(n, n_val, seed):
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_val:], perm[:n_val]


def split_from_two_permutations(n, n_val, seed):
    g = torch.Generator().manual_seed(seed)
    train = torch.randperm(n, generator=g)[: n - n_val]
    return train, torch.randperm(n, generator=g)[:n_val]  # a second permutation


def test_split_rejects_the_global_rng_and_undoes_its_change(capsys):
    torch.manual_seed(0)
    state = torch.get_rng_state()
    out = rejected(check_split, split_from_the_global_rng, capsys=capsys)
    assert "changed PyTorch's global random state" in out
    assert "'Why a generator of its own'" in out
    assert torch.equal(torch.get_rng_state(), state)


def test_split_rejects_validation_taken_first(capsys):
    out = rejected(check_split, split_validation_first, capsys=capsys)
    # MNIST's 60,000 training images, 12,000 of them held out for validation.
    assert "split(60000, 12000, seed=42) is a valid split but not the course's" in out
    assert "FIRST n_val" in out


def test_split_rejects_overlapping_halves(capsys):
    out = rejected(check_split, split_from_two_permutations, capsys=capsys)
    assert "are in both train and validation" in out


# --- batches: plausible wrong answers ---------------------------------------

def batches_in_stored_order(images, labels, batch_size, generator):
    for start in range(0, len(labels), batch_size):
        yield images[start:start + batch_size], labels[start:start + batch_size]


def batches_dropping_the_last(images, labels, batch_size, generator):
    order = torch.randperm(len(labels), generator=generator)
    for start in range(0, len(labels) - batch_size + 1, batch_size):
        idx = order[start:start + batch_size]
        yield images[idx], labels[idx]


def batches_from_the_global_rng(images, labels, batch_size, generator):
    order = torch.randperm(len(labels))  # ignores the generator
    for start in range(0, len(labels), batch_size):
        idx = order[start:start + batch_size]
        yield images[idx], labels[idx]


def batches_reseeding_each_epoch(images, labels, batch_size, generator):
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    for start in range(0, len(labels), batch_size):
        idx = order[start:start + batch_size]
        yield images[idx], labels[idx]


def batches_shuffling_apart(images, labels, batch_size, generator):
    order_x = torch.randperm(len(labels), generator=generator)
    order_y = torch.randperm(len(labels), generator=generator)
    for start in range(0, len(labels), batch_size):
        yield (images[order_x[start:start + batch_size]],
               labels[order_y[start:start + batch_size]])


def test_batches_rejects_the_stored_order(capsys):
    out = rejected(check_batches, batches_in_stored_order, capsys=capsys)
    assert "came out in their stored order" in out


def test_batches_rejects_dropping_the_short_batch(capsys):
    out = rejected(check_batches, batches_dropping_the_last, capsys=capsys)
    # The checker's first case, 1000 examples in batches of 128: 7 full batches
    # (896) and a short one of 1000 - 7 * 128 = 104.
    assert f"batch sizes: expected {[128] * 7 + [1000 - 7 * 128]}" in out
    assert "the last, shorter batch is missing" in out


def test_batches_rejects_the_global_rng(capsys):
    out = rejected(check_batches, batches_from_the_global_rng, capsys=capsys)
    assert "a generator seeded the same way gave a different order" in out


def test_batches_rejects_the_same_order_every_epoch(capsys):
    out = rejected(check_batches, batches_reseeding_each_epoch, capsys=capsys)
    assert "the second epoch came out in the same order as the first" in out


def test_batches_rejects_images_and_labels_shuffled_apart(capsys):
    out = rejected(check_batches, batches_shuffling_apart, capsys=capsys)
    assert "the images and labels come from different examples" in out


# --- batches: an order that is not a shuffle (issue 24) ---------------------

def batches_shuffling_whole_batches(images, labels, batch_size, generator):
    starts = list(range(0, len(labels), batch_size))
    for i in torch.randperm(len(starts), generator=generator).tolist():
        yield (images[starts[i]:starts[i] + batch_size],
               labels[starts[i]:starts[i] + batch_size])


def batches_from_a_random_start(images, labels, batch_size, generator):
    n = len(labels)
    start = int(torch.randint(n, (1,), generator=generator))
    order = (torch.arange(n) + start) % n  # "a random rotation"
    for i in range(0, n, batch_size):
        idx = order[i:i + batch_size]
        yield images[idx], labels[idx]


def test_batches_rejects_shuffling_whole_batches(capsys):
    out = rejected(check_batches, batches_shuffling_whole_batches, capsys=capsys)
    assert "the order is not shuffled: you shuffled the order of the batches" in out


def test_batches_rejects_a_random_rotation_of_the_stored_order(capsys):
    out = rejected(check_batches, batches_from_a_random_start, capsys=capsys)
    assert "(a rotation): example i + 1 still follows example i" in out


def batches_by_argsort(images, labels, batch_size, generator):
    """A right answer written differently: random keys sorted, a list returned."""
    order = torch.rand(len(labels), generator=generator).argsort()
    return [(images[order[i:i + batch_size]], labels[order[i:i + batch_size]])
            for i in range(0, len(labels), batch_size)]


def batches_by_index_select(images, labels, batch_size, generator):
    order = torch.randperm(len(labels), generator=generator)
    for chunk in order.split(batch_size):
        yield images.index_select(0, chunk), labels.index_select(0, chunk)


def test_batches_written_differently_pass(capsys):
    assert check_batches(batches_by_argsort)
    assert check_batches(batches_by_index_select)
    assert capsys.readouterr().out == "✓ batches: passed\n" * 2


# --- split: a hint for the sorted split (issue 24) ---------------------------

def split_sorted(n, n_val, seed):
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[:n - n_val].sort().values, perm[n - n_val:]  # "tidier in order"


def test_split_sorted_is_told_the_order_is_the_shuffle(capsys):
    out = rejected(check_split, split_sorted, capsys=capsys)
    assert "train_idx holds the right indices, but sorted; keep the permutation's order" in out
