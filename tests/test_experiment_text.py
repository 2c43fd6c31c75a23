"""What cnnlab.experiment_text writes on the pages: the design of an
experiment, the load, the seeds' ranges, one arm against the others, and
28 px against 56 px. Small fake arms; every expected number is worked out
beside it.
"""
import math
from dataclasses import asdict

import pytest

from cnnlab.experiment_text import (_shared_settings, builder_options, experiment_design,
                                    find_arm, input_size_comparison, load_note,
                                    range_overlaps, seed_differences, verdict_against)
from cnnlab.experiments import verdict
from cnnlab.plan import experiment_runs
from cnnlab.train import TrainConfig
from fake_runs import experiment_arm as arm, experiment_run as run, rendered


def test_find_arm_takes_a_prefix_and_names_the_arms_when_it_fails():
    arms = [arm("option A (zero_pad)", [97.0]), arm("option B (projection)", [98.0])]
    assert find_arm(arms, "option B") is arms[1]
    with pytest.raises(ValueError, match="0 arms start with 'option C'.*“option A"):
        find_arm(arms, "option C")
    with pytest.raises(ValueError, match="2 arms start with 'option'"):
        find_arm(arms, "option")


def test_builder_options_are_one_code_span_with_straight_quotes():
    planned = experiment_runs("input_size")["28 px (upsample 1)"][0]
    assert builder_options(planned) == '`shortcut="projection", upsample=1`'
    dropout = experiment_runs("dropout")["dropout 0.4"][0]
    assert builder_options(dropout) == "`dropout=0.4`"
    plain = experiment_runs("dropout")["dropout 0.2"][0]
    bare = type(plain)(TrainConfig(model="resnet18"), "experiments")
    assert builder_options(bare) == "none (the defaults)"


def test_experiment_design_tables_the_arms_and_states_what_every_run_shares(tmp_path):
    planned = experiment_runs("input_size")["28 px (upsample 1)"][1]  # seed 43
    planned.path("cpu", tmp_path).parent.mkdir(parents=True)
    config = {k: v for k, v in asdict(planned.config).items() if k not in ("model", "seed")}
    r = run(43, 0.97)
    r.config.update(config)
    r.save(planned.path("cpu", tmp_path))
    text = experiment_design("input_size", root=tmp_path)
    tokens = rendered(text)
    cells = [t for t in tokens if t.type == "inline" and t.level == 4]  # table cells
    rows = [t.content for t in cells]
    assert rows[4:] == ["28 px (upsample 1)", '`shortcut="projection", upsample=1`',
                        "42, 43, 44, 45, 46", "43",
                        "56 px (upsample 2)", '`shortcut="projection"`',
                        "42, 43, 44, 45, 46", "none yet"]
    # The options render as code; outside code there is no quote mark for MyST to curl.
    assert [c.type for c in cells[5].children] == ["code_inline"]
    assert all('"' not in part for part in text.split("`")[::2])
    notes = text.split("\n\n")[1]
    # 48,000 training images in batches of 128: 375 steps, the last one full.
    assert f"1 epoch ({math.ceil(48_000 / 128)} steps of batch 128)" in notes
    assert "dropout 0.5 (the model's default)" in notes  # resnet18's builder default
    assert ("validated every 25 steps on the first 1,000 validation images and on all "
            "12,000 at the end of each epoch; tested on all 10,000 test images") in notes
    assert "the 10 planned runs share every setting" in notes  # 2 arms x 5 seeds
    # The 56 px arm is option B's five runs, three of which degradation reads too.
    assert ("The runs of “56 px (upsample 2)” are the records of “option B (projection)” "
            "in experiment `shortcut` (all 5 of its seeds) and of “residual (option B)” in "
            "experiment `degradation` (seeds 42, 43, 44)") in notes
    assert "The runs of “28 px (upsample 1)”" not in notes  # its own records only


def test_the_shared_settings_name_what_else_differs_instead_of_claiming_it_equal():
    configs = [asdict(TrainConfig(model="resnet18", seed=s, lr=lr))
               for s, lr in ((42, 1e-3), (43, 1e-2))]
    text = _shared_settings(configs)
    assert "differ in more than their builder options and seed: `lr` differ" in text
    assert "Every run" not in text
    same = _shared_settings([asdict(TrainConfig(model="lenet", epochs=2, seed=s))
                             for s in (42, 43)])
    assert "2 epochs (375 steps of batch 128 each)" in same
    assert "dropout" not in same  # LeNet has no dropout layer


def test_load_note_gives_the_range_of_load_and_of_cpu_share():
    a = arm("A", [97.0, 98.0], share=0.5)     # cpu_seconds / (train_seconds x 2)
    b = arm("B", [97.5], share=0.98)
    for r, load in zip(a.runs + b.runs, (2.1, 7.04, 4.0)):
        r.provenance["load_average"] = [load, 1.0, 1.0]
    assert load_note([a, b]) == (
        "When these 3 runs ended, the 1-minute load average was 2.1 to 7.0, and they "
        "got 50 to 98 % of their threads' time (PyTorch on 2 threads) "
        "(`provenance.load_average` and `cpu_seconds` in each record).")
    # Runs from two machines: each machine's loads apart, never one range.
    b.runs[0].provenance["device_name"] = "Intel(R) Xeon(R) Processor"
    two = load_note([a, b])
    assert two.startswith("When these 2 runs on the ? ended, the 1-minute load average "
                          "was 2.1 to 7.0, and they got 50 % of their threads' time")
    assert ("; when this run on the Intel Xeon ended, the 1-minute load average was "
            "4.0, and it got 98 % of its threads' time" in two)
    for r in a.runs + b.runs:
        del r.provenance["load_average"]
    assert load_note([a]).startswith("These 2 runs got 50 % of their threads' time")
    for r in a.runs:
        r.cpu_seconds = None
    assert load_note([a]) == "The 2 runs recorded neither the load nor their CPU time."
    assert load_note([arm("C", [])]) == ""


def test_seed_differences_pair_only_the_seeds_both_arms_have():
    arms = [arm("report's block", [97.54, 97.56, 95.94]), arm("option A", [97.26, 97.07])]
    assert seed_differences(arms, "report's", "option A").splitlines() == [
        "seed 42: report's block - option A = +0.28 points",  # 97.54 - 97.26
        "seed 43: report's block - option A = +0.49 points"]  # 97.56 - 97.07; 44 unpaired
    arms[1] = arm("option A", [])
    assert seed_differences(arms, "report's", "option A") == (
        "No seed is recorded in both “report's block” and “option A” yet.")


def test_range_overlaps_counts_the_orderings_of_a_clean_split():
    lines = range_overlaps([arm("R", [97.54, 97.56, 95.94]), arm("A", [97.26, 97.07, 98.06]),
                            arm("B", [97.94, 97.97, 97.63]), arm("N", [])]).splitlines()
    assert lines[0] == "* “N”: no seed recorded yet."
    assert lines[1] == "* “R”, 95.94 to 97.56, and “A”, 97.07 to 98.06: the ranges overlap."
    # B's worst (97.63) is above R's best (97.56): 3 + 3 results, C(6, 3) = 20 ways.
    assert lines[2].startswith("* Every recorded seed of “B” (97.63 at worst) scored "
                               "higher than every one of “R” (97.56 at best).")
    assert "each of the 20 ways" in lines[2] and "2 of them give a split" in lines[2]
    assert lines[3].endswith("the ranges overlap.") and len(lines) == 4
    # 2 + 3 results: C(5, 2) = 10 ways, whichever arm is the higher one.
    assert "each of the 10 ways" in range_overlaps([arm("L", [96.0, 96.5]),
                                                    arm("H", [97.0, 97.5, 98.0])])
    # Ranges that only touch overlap; one result a side says nothing.
    assert "overlap" in range_overlaps([arm("L", [96.0, 97.0]), arm("H", [97.0, 98.0])])
    assert "it says nothing" in range_overlaps([arm("L", [96.0]), arm("H", [97.0])])


def test_verdict_against_waits_for_every_seed():
    arms = [arm("report's", [97.0, 97.1, 97.2]), arm("option A", [97.0, 97.1], planned=3),
            arm("option B", [], planned=3)]
    text = verdict_against(arms, "report's")
    assert text == ("Not every planned seed is recorded yet (missing in: “option A” and "
                    "“option B”), so this page does not yet rank “report's” against "
                    "“option A” and “option B”.")


@pytest.mark.parametrize("a, b, words", [
    # Spreads of 0.10 (sample std of x, x + 0.1, x + 0.2): a gap of 1 point is
    # over twice that, a gap of 0.05 is not.
    ([98.0, 98.1, 98.2], [97.0, 97.1, 97.2], "“report's” scored higher than “option A” "
     "by more than twice the larger standard deviation and higher than “option B”"),
    ([96.0, 96.1, 96.2], [97.0, 97.1, 97.2], "“report's” scored lower than “option A” by "
     "more than twice the larger standard deviation and lower than “option B”"),
    ([97.05, 97.15, 97.25], [97.0, 97.1, 97.2], "the seeds cannot tell “report's” from "
     "either of the others"),
    ([98.0, 98.1, 98.2], [98.05, 98.15, 98.25], "“report's” scored higher than “option A” "
     "by more than twice the larger standard deviation and within twice the larger "
     "standard deviation of “option B”"),
])
def test_verdict_against_says_which_way_each_pair_goes(a, b, words):
    arms = [arm("report's", a), arm("option A", [97.0, 97.1, 97.2]), arm("option B", b)]
    text = verdict_against(arms, "report's")
    assert words in text
    paragraphs = text.split("\n\n")
    assert [p.split("**")[1] for p in paragraphs[:2]] == ["Against option A.",
                                                         "Against option B."]
    assert paragraphs[0].endswith(verdict(arms[:2]))  # the pair's own verdict


SMALL, LARGE = [98.12, 96.20, 98.06], [97.94, 97.97, 97.63]  # the recorded seeds


def test_input_size_comparison_with_seeds_missing_says_they_cannot_separate_yet():
    arms = [arm("28 px (upsample 1)", SMALL, planned=5, seconds=84.0),
            arm("56 px (upsample 2)", LARGE, planned=5, seconds=239.0)]
    text = input_size_comparison(arms, 97.5, 99.30)
    table = text.split("\n\n")[0].splitlines()
    assert table[2] == "| the report's | 97.5 | 99.30 |"
    assert table[3] == ("| recorded here (option B, 1 epoch) | 97.46 ± 1.09 (3 of 5 seeds) "
                        "| 97.85 ± 0.19 (3 of 5 seeds) |")
    # 97.85 - 97.46 = +0.39 against 1.09: within twice the spread.
    assert ("With 3 of 5 seeds recorded at 28 px and 3 of 5 at 56 px, 56 px minus 28 px "
            "is +0.39 points, against a seed-to-seed standard deviation of up to 1.09 "
            "points. So far the seeds cannot separate the two sizes") in text
    assert "report's gap of 1.8 points" in text  # 99.30 - 97.5
    # 98.12 and 98.06 are above 97.97, the best 56 px seed.
    assert ("Of the 3 recorded seeds of “28 px (upsample 1)”, the arm with the lower "
            "mean, 2 scored above every seed of “56 px (upsample 2)”.") in text
    assert "calls no difference until every planned seed is recorded" in text
    assert "a 56 px run took 2.8 times as long as a 28 px run (239 s against 84 s" in text


@pytest.mark.parametrize("small, large, planned, words", [
    (SMALL, LARGE, 3, "Here the seeds cannot tell 28 px from 56 px apart"),
    ([97.0, 97.1, 97.2], [98.0, 98.1, 98.2], 3, "Here too 56 px scored higher: 56 px "
     "minus 28 px is +1.00 points"),
    ([98.0, 98.1, 98.2], [97.0, 97.1, 97.2], 3, "Here 28 px scored higher: 56 px minus "
     "28 px is -1.00 points"),
    ([97.0, 97.1, 97.2], [98.0, 98.1, 98.2], 5, "So far the gap is more than twice that "
     "spread, in the direction the report found"),
    ([98.0, 98.1, 98.2], [97.0, 97.1, 97.2], 5, "So far the gap is more than twice that "
     "spread, against the direction the report found"),
    ([97.0], [98.0, 98.1], 3, "An arm with a single seed has no spread"),
    ([], LARGE, 5, "One of the two sizes has no recorded run yet"),
])
def test_input_size_comparison_in_every_direction(small, large, planned, words):
    arms = [arm("28 px (upsample 1)", small, planned), arm("56 px (upsample 2)", large, planned)]
    text = input_size_comparison(arms, 97.5, 99.30)
    assert words in text
    if len(small) == planned and len(large) == planned:
        assert "every planned seed" not in text
    if not small:
        assert "| not recorded yet (0 of 5) |" in text


def test_input_size_time_leaves_out_runs_that_shared_the_cpu():
    arms = [arm("28 px (upsample 1)", SMALL, seconds=84.0, share=0.5),
            arm("56 px (upsample 2)", LARGE, seconds=239.0)]
    assert "times as long" not in input_size_comparison(arms)


def test_input_size_times_compare_only_within_a_machine():
    """Seeds 42-44 ran on one machine and 45-46 on another: a ratio of means
    over both would mix the machines, so each machine gets its own ratio."""
    small = arm("28 px (upsample 1)", [97.0, 97.1, 97.2, 97.3], planned=4, seconds=84.0)
    large = arm("56 px (upsample 2)", [98.0, 98.1, 98.2, 98.3], planned=4, seconds=239.0)
    for a, later in ((small, 257.0), (large, 507.0)):
        for r in a.runs[:2]:
            r.provenance["device_name"] = "Intel(R) Xeon(R) Processor"
        for r in a.runs[2:]:
            r.provenance["device_name"], r.train_seconds = "AMD EPYC", later
            r.cpu_seconds = 2 * later
    text = input_size_comparison([small, large], 97.5, 99.30)
    assert ("2.8 times as long as a 28 px run on the Intel Xeon (239 s against 84 s on "
            "average) and 2.0 times as long as a 28 px run on the AMD EPYC (507 s against "
            "257 s on average)") in text
    assert "373" not in text  # 239, 239, 507, 507: a mean over both machines
