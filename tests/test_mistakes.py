"""What the networks get wrong: computed from stored predictions, checked by hand."""
from types import SimpleNamespace

import numpy as np

from cnnlab.mistakes import (Predictions, confusion_figure, confusion_matrix,
                             majority_vote, misread_figure, overlap,
                             recorded_predictions)
from cnnlab.data import load_mnist


def preds(model, classes, val_accuracy=0.9):
    """A network's test predictions; its record keeps only what the vote
    reads from it, the last epoch's validation accuracy."""
    record = SimpleNamespace(epoch_val_accuracy=[0.5, val_accuracy])
    return Predictions(model, 42, np.array(classes, dtype=np.uint8), record)


def test_confusion_matrix_counts_each_image_once_where_it_belongs():
    labels = np.array([0, 0, 1, 7, 7, 7])
    predicted = np.array([0, 6, 1, 7, 1, 1])
    m = confusion_matrix(predicted, labels)
    assert m.sum() == len(labels) and np.trace(m) == 3  # 0, 1 and one 7 right
    assert m[0, 6] == 1 and m[7, 1] == 2 and m[7, 7] == 1  # row: true, column: predicted


def test_majority_vote_breaks_ties_with_the_best_voter_on_validation():
    labels = np.array([1, 2, 3, 4])
    a = preds("a", [1, 2, 3, 0], val_accuracy=0.99)  # the best on validation
    b = preds("b", [1, 2, 0, 0], val_accuracy=0.98)
    c = preds("c", [1, 9, 0, 4], val_accuracy=0.97)
    d = preds("d", [5, 9, 3, 4], val_accuracy=0.96)
    vote = majority_vote([d, c, b, a], labels)  # the order given does not matter
    # image 0: 1,1,1,5 -> 1; image 1: 2,2,9,9 tie -> a's 2; image 2: 3,0,0,3 tie
    # -> a's 3; image 3: 0,0,4,4 tie -> a's 0 (the tie goes to a, right or not).
    assert vote.tolist() == [1, 2, 3, 0]
    # The test labels play no part in the tie-break: make d the best on
    # validation (while a is still the most accurate on test) and d's
    # answers win every tie.
    d = preds("d", [5, 9, 3, 4], val_accuracy=0.995)
    assert majority_vote([a, b, c, d], labels).tolist() == [1, 9, 3, 4]


def test_overlap_is_what_every_network_gets_wrong():
    labels = np.array([0, 1, 2, 3, 4])
    a, b, c = preds("a", [9, 1, 9, 3, 4]), preds("b", [9, 9, 9, 3, 4]), preds("c", [9, 1, 2, 9, 4])
    o = overlap([a, b, c], labels)
    assert o.wrong["a"].tolist() == [0, 2] and o.wrong["b"].tolist() == [0, 1, 2]
    assert o.by_all.tolist() == [0]  # only image 0 fools all three
    # vote: image 0 -> 9 (wrong), 1 -> 1, 2 -> 9 (a and b), 3 -> 3, 4 -> 4
    assert o.vote_wrong.tolist() == [0, 2]
    table = o.table(len(labels))
    assert "| b (seed 42) | 3 | 40.00 |" in table and "| all 3 wrong on the same digit | 1 |" in table
    # two networks are "both", not "all 2"
    two = overlap([a, b], labels).table(len(labels))
    assert "| both wrong on the same digit | 2 |" in two and "all 2" not in two


def test_a_recorded_networks_predictions_give_its_recorded_accuracy():
    p = recorded_predictions("lenet")
    labels = load_mnist().test.labels.numpy()
    assert p is not None and len(p.classes) == len(labels)
    assert (p.classes == labels).mean() == p.record.test_accuracy
    assert len(p.wrong(labels)) == round((1 - p.record.test_accuracy) * len(labels))


def test_figures_show_the_mistakes():
    p = recorded_predictions("lenet")
    data = load_mnist().test
    labels, images = data.labels.numpy(), data.images.numpy()
    fig = confusion_figure(p, labels)
    wrong = len(p.wrong(labels))
    assert f"{wrong} of 10,000 test digits wrong" in fig.axes[0].get_title()
    grid = misread_figure(p, images, labels, n=12)
    titles = [ax.get_title() for ax in grid.axes if ax.get_title()]
    first = p.wrong(labels)[0]
    assert len(titles) == 12 and titles[0] == f"{labels[first]} → {p.classes[first]}"


def test_overlap_text_says_what_the_vote_does_and_who_is_missing():
    from cnnlab.mistakes import overlap_text

    labels = np.array([0, 1, 2, 3, 4])
    a, b, c = preds("a", [9, 1, 9, 3, 4]), preds("b", [9, 9, 9, 3, 4]), preds("c", [9, 1, 2, 9, 4])
    text = overlap_text(overlap([a, b, c], labels), ["d"], len(labels))
    # a and c each get 2 wrong (a is first); the vote gets 2 wrong too: a tie.
    assert "The majority vote gets as many wrong as the best single network, a (2 against 2" in text
    # One record per network is one draw, and the sentence says so.
    assert "That compares one record per network" in text and "single draw" in text
    assert "1 test digits fool every network here" in text and "predictions: d." in text
    assert "| a (seed 42) | 2 |" in text  # each network's row names its record's seed
    # Two networks: the vote is the one better on validation, by construction,
    # and says so, whichever is better on test (c: 2 wrong, b: 3).
    c_best = preds("c", [9, 1, 2, 9, 4], val_accuracy=0.95)
    two = overlap_text(overlap([b, c_best], labels), [], len(labels))
    assert "With two networks the vote cannot gain anything" in two
    assert "the vote is c (2 test digits wrong)" in two
    b_best = preds("b", [9, 9, 9, 3, 4], val_accuracy=0.99)
    assert "the vote is b (3 test digits wrong)" in overlap_text(
        overlap([b_best, c_best], labels), [], len(labels))
    one = overlap_text(overlap([a], labels), ["b", "c"], len(labels))
    assert one.startswith("Fewer than two networks") and "Missing: b, c." in one


def test_most_confused_lists_every_tie_and_ignores_the_diagonal():
    from cnnlab.mistakes import most_confused

    counts = np.zeros((10, 10), dtype=np.int64)
    np.fill_diagonal(counts, 900)
    counts[2, 7] = counts[3, 5] = counts[3, 7] = 9  # a three-way tie at the top
    counts[7, 2] = 4
    assert most_confused(counts) == [(2, 7, 9), (3, 5, 9), (3, 7, 9)]
    assert most_confused(np.diag(np.full(10, 5))) == []  # no mistake at all


def _records(tmp_path, seeds_kept, seeds_without=()):
    """LeNet's real records copied to tmp_path; those of ``seeds_without``
    stripped of their predictions, as records made before they were kept."""
    import json

    from cnnlab.results import RESULTS_DIR

    for seed in (*seeds_kept, *seeds_without):
        record = json.loads((RESULTS_DIR / "runs" / f"lenet-cpu-seed{seed}.json").read_text())
        assert record.get("test_predictions")  # the copy needs something to strip
        if seed in seeds_without:
            record.pop("test_predictions")
        (tmp_path / f"lenet-cpu-seed{seed}.json").write_text(json.dumps(record))
    return tmp_path


def test_without_predictions_the_section_is_one_note_that_says_what_will_come(tmp_path):
    from cnnlab.mistakes import (mistakes_text, recorded_confusion_figure,
                                 recorded_misread_figure)

    folder = _records(tmp_path, (), (42,))
    text = mistakes_text("lenet", "LeNet-5", folder=folder)
    assert text.startswith("No recorded run of LeNet-5 keeps its test predictions yet")
    assert "Its recorded run (seed 42) was made before records kept them" in text
    assert ("(seeds 43 and 44) will keep them, and this section will then show their "
            "mistakes.") in text
    assert "make" not in text  # a reader's page, not the maintainers' (setup.md has it)
    # No reading guidance above a matrix that is not there, and one paragraph.
    assert "darkest" not in text and "\n" not in text
    assert recorded_confusion_figure("lenet", folder=folder) is None
    assert recorded_misread_figure("lenet", folder=folder) is None
    empty = tmp_path / "empty"
    empty.mkdir()
    assert mistakes_text("lenet", "LeNet-5", folder=empty).startswith(
        "No full run of LeNet-5 is recorded yet")


def test_with_predictions_the_text_reads_the_figures_from_the_record(tmp_path):
    from cnnlab.mistakes import (confusion_matrix, mistakes_text, most_confused,
                                 recorded_confusion_figure, recorded_misread_figure)

    folder = _records(tmp_path, (43,), (42,))  # as GoogLeNet's: seed 42 has none
    text = mistakes_text("lenet", "LeNet-5", folder=folder)
    assert ("Of LeNet-5's recorded full runs (seeds 42 and 43), only seed 43's record "
            "keeps them (older records do not)") in text
    p = recorded_predictions("lenet", folder)
    labels = load_mnist().test.labels.numpy()
    assert p.seed == 43 and f"misreads {len(p.wrong(labels)):,} of the 10,000" in text
    assert "Look for the darkest cells" in text  # the guidance comes with the figure
    for t, q, n in most_confused(confusion_matrix(p.classes, labels)):
        assert f"a {t} read as a {q}" in text and f"{n} test digits" in text
    assert "(seed 43)" in recorded_confusion_figure("lenet", folder=folder).axes[0].get_title()
    grid = recorded_misread_figure("lenet", n=5, folder=folder)
    assert len([ax for ax in grid.axes if ax.get_title()]) == 5
    (tmp_path / "one").mkdir()
    one = mistakes_text("lenet", "LeNet-5", folder=_records(tmp_path / "one", (44,)))
    assert "LeNet-5's one recorded full run, seed 44, keeps them" in one
