"""Chapter 7's ranking says only what the seeds separate (cnnlab.ranking)."""
from fake_runs import fake_run


def test_first_epoch_ranking_calls_an_order_only_where_seeds_separate_it():
    from cnnlab.ranking import first_epoch_ranking

    def runs(model, accs):
        out = []
        for i, a in enumerate(accs):
            r = fake_run(model, 42 + i, a / 100)
            r.epoch_val_accuracy = [a / 100]
            out.append(r)
        return out

    # The report: resnet18 in the fastest tier, lenet in the slowest.
    against = first_epoch_ranking({"lenet": runs("lenet", [98.0, 98.1, 98.2]),
                                   "resnet18": runs("resnet18", [90.0, 90.2, 90.4])})
    assert "beyond the spread of our seeds: `lenet` ahead of `resnet18`" in against
    # Means 98.10 ± 0.10 and 90.20 ± 0.20 (all 3 of the plan's seeds each).
    assert against.startswith("Validation accuracy (%) after the first epoch, mean over "
                              "seeds: `lenet` 98.10 ± 0.10 (3 seeds), `resnet18`")
    agree = first_epoch_ranking({"lenet": runs("lenet", [90.0, 90.2, 90.4]),
                                 "resnet18": runs("resnet18", [98.0, 98.1, 98.2])})
    assert "The seeds put `resnet18` ahead of `lenet`, as the report's reading" in agree
    # A single seed is placed against no other network, however far apart.
    one_seed = first_epoch_ranking({"lenet": runs("lenet", [98.0, 98.1, 98.2]),
                                    "resnet18": runs("resnet18", [90.0])})
    assert "ahead" not in one_seed and "`resnet18` 90.00 (1 of 3 seeds)" in one_seed
    assert ("`resnet18` (1 of 3 seeds) has seeds still to record, so whether it agrees"
            in one_seed)
    assert "No two networks have all their planned seeds yet" in one_seed
    # Nor are 2 of the plan's 3 seeds, as in the experiments (experiments.compare):
    # means 98.05 ± 0.07 and 90.10 ± 0.14 are far apart, but a seed is missing.
    two_of_three = first_epoch_ranking({"lenet": runs("lenet", [98.0, 98.1]),
                                        "resnet18": runs("resnet18", [90.0, 90.2])})
    assert "ahead" not in two_of_three
    assert ("`lenet` (2 of 3 seeds) and `resnet18` (2 of 3 seeds) have seeds still to "
            "record, so whether they agree" in two_of_three)
    # Gaps within twice the spread are said to be, not ranked.
    close = first_epoch_ranking({"lenet": runs("lenet", [90.0, 92.0, 91.0]),
                                 "resnet18": runs("resnet18", [91.0, 93.0, 92.0])})
    assert "cannot separate `resnet18` and `lenet`" in close and "ahead" not in close
    # Two networks of one tier (alexnet, resnet18) apart: the report did not order them.
    tier = first_epoch_ranking({"alexnet": runs("alexnet", [98.0, 98.1, 98.2]),
                                "resnet18": runs("resnet18", [90.0, 90.2, 90.4])})
    assert "`alexnet` ahead of `resnet18`, which the report placed together" in tier


def test_all_seeds_in_asks_for_every_planned_seed():
    from cnnlab.ranking import all_seeds_in

    # The plan (cnnlab/plan.py FULL_RUNS) has seeds 42, 43 and 44 of each network.
    assert all_seeds_in("lenet", 3) and not all_seeds_in("lenet", 2)
    # Outside the plan (alexnet_large), two seeds at least: one has no spread.
    assert all_seeds_in("alexnet_large", 2) and not all_seeds_in("alexnet_large", 1)


def test_the_ranking_names_only_what_the_seeds_separate():
    from cnnlab.ranking import accuracy_ranking

    recorded = {"lenet": [fake_run("lenet", 42 + i, a / 100) for i, a in
                          enumerate((97.0, 97.1, 97.2))],     # 97.10 ± 0.10
                "resnet18": [fake_run("resnet18", 42 + i, a / 100) for i, a in
                             enumerate((98.95, 99.0, 99.05))],  # 99.00 ± 0.05
                "alexnet": [fake_run("alexnet", 42, 0.995)],   # one seed, highest
                "googlenet": [fake_run("googlenet", 42, 0.90)]}  # one seed, lowest
    text = accuracy_ranking(recorded)
    assert "the seeds put `resnet18` ahead of `lenet` (99.00 ± 0.05 against 97.10" in text
    # However far apart, a network with seeds still to record is never ranked.
    assert ("`alexnet` (1 of 3 seeds) and `googlenet` (1 of 3 seeds) have seeds still "
            "to record" in text)
    assert "`alexnet` ahead" not in text and "ahead of `googlenet`" not in text
    # LeNet's seeds set the scale: 97.00 to 97.20, the widest range recorded.
    assert "seeds alone move `lenet` from 97.00% to 97.20%" in text
    # Runs from two machines (or commits) are not called the seeds' effect alone.
    other = fake_run("lenet", 44, 0.972)
    other.provenance = other.provenance | {"device_name": "another CPU"}
    mixed = accuracy_ranking({"lenet": recorded["lenet"][:2] + [other]})
    assert "seeds alone" not in mixed
    assert ("the runs of `lenet` (seeds 42, 43 and 44) span 97.00% to 97.20%. They were "
            "recorded on 2 machines, so that spread holds more" in mixed)
    # Every other network whose seeds mix machines or commits is named too.
    newer = fake_run("resnet18", 44, 0.9905)
    newer.provenance = newer.provenance | {"git_commit": "1" * 40}
    both = accuracy_ranking({"lenet": recorded["lenet"][:2] + [other],
                             "resnet18": recorded["resnet18"][:2] + [newer]})
    assert ("The seeds of `resnet18` also come from more than one machine or commit "
            "(the records table names each), so its spread holds more" in both)
    assert "The seeds of" not in text  # one machine, one commit: nothing to add
    # Two networks whose seeds overlap are said to be inseparable, not ranked.
    close = accuracy_ranking({"lenet": recorded["lenet"],
                              "resnet18": [fake_run("resnet18", 42 + i, a / 100)
                                           for i, a in enumerate((97.0, 97.3, 97.1))]})
    assert "separate no two networks yet" in close and "cannot separate `resnet18` and" in close


def test_the_ranking_waits_for_every_planned_seed_as_the_experiments_do():
    from cnnlab.experiments import Arm, compare
    from cnnlab.ranking import accuracy_ranking

    # 2 of the plan's 3 seeds each: 98.95 ± 0.07 against 97.05 ± 0.07 is a gap
    # of 1.90 points, far over twice the spread, yet nothing is ranked ...
    resnet = [fake_run("resnet18", 42 + i, a / 100) for i, a in enumerate((98.9, 99.0))]
    lenet = [fake_run("lenet", 42 + i, a / 100) for i, a in enumerate((97.0, 97.1))]
    text = accuracy_ranking({"resnet18": resnet, "lenet": lenet})
    assert "ahead" not in text
    assert text.startswith("By test accuracy, fewer than two networks have all their "
                           "planned seeds yet, so the page ranks none of them.")
    assert ("`resnet18` (2 of 3 seeds) and `lenet` (2 of 3 seeds) have seeds still to "
            "record" in text)
    # ... exactly as an experiment calls nothing between two arms missing a seed.
    arms = [Arm(n, tuple(runs), 3, "cmd") for n, runs in (("a", resnet), ("b", lenet))]
    assert compare(*arms) is None
    # The third seed in, the same gap is called.
    resnet.append(fake_run("resnet18", 44, 0.991))
    lenet.append(fake_run("lenet", 44, 0.972))
    full = accuracy_ranking({"resnet18": resnet, "lenet": lenet})
    assert "the seeds put `resnet18` ahead of `lenet`" in full and "still to" not in full
    # One network waiting alone: the sentence agrees with it.
    one = accuracy_ranking({"resnet18": resnet, "lenet": lenet,
                            "googlenet": [fake_run("googlenet", 42, 0.98),
                                          fake_run("googlenet", 43, 0.981)]})
    assert ("`googlenet` (2 of 3 seeds) has seeds still to record. Like an experiment's "
            "arm, a network is ranked only once all its planned seeds are in, so the page "
            "does not place it above" in one)


def test_the_verdicts_say_how_many_seeds_back_each_network():
    from cnnlab.ranking import report_verdicts

    # The report: lenet 97.44, resnet18 99.30, googlenet 98.80 (cnnlab/report.py).
    text = report_verdicts({
        "lenet": [fake_run("lenet", 42 + i, a / 100) for i, a in enumerate((97.0, 97.5, 97.8))],
        "resnet18": [fake_run("resnet18", 42 + i, a / 100) for i, a in enumerate((98.5, 99.2))],
        "googlenet": [fake_run("googlenet", 42, 0.9785)]})
    lines = {line.split("**")[1]: line for line in text.splitlines()}
    assert "(3 seeds)" in lines["`lenet`"] and "inside the range" in lines["`lenet`"]
    assert "to record" not in lines["`lenet`"]  # all three planned seeds are in
    # 99.30 - 99.20 = 0.10 above the best of two; a third seed is still planned.
    assert "0.10 points above the best of our 2 seeds" in lines["`resnet18`"]
    assert "1 more seed to record" in lines["`resnet18`"]
    assert "one seed cannot say" in lines["`googlenet`"]
    assert "no full run recorded yet" in lines["`alexnet`"]


def test_the_accuracy_table_lists_each_rows_seeds():
    from cnnlab.ranking import accuracy_table

    table = accuracy_table({"lenet": [fake_run("lenet", 42 + i, a / 100)
                                      for i, a in enumerate((97.0, 98.0))],
                            "alexnet": [fake_run("alexnet", 42, 0.992)]})
    # mean(97, 98) = 97.50, sample sd sqrt(0.5) = 0.71; the report's LeNet 97.44.
    assert "| `lenet` | 2 of 3 (42, 43) | 97.50 ± 0.71 | 97.00, 98.00 | 97.44 |" in table
    assert "| `alexnet` | 1 of 3 (42) | 99.20 | 99.20 | 99.13 |" in table  # no ± for one
    assert "| `googlenet` | none yet |" in table
    assert "| `alexnet_large` | none (not in the CPU plan) | | | no row |" in table


def test_off_the_front_names_each_beaten_network_and_what_the_seed_rule_says():
    from cnnlab.ranking import off_the_front

    def runs(model, accs):
        return [fake_run(model, 42 + i, a / 100) for i, a in enumerate(accs)]

    recorded = {"lenet": runs("lenet", (98.0, 98.2, 98.1)),         # 98.10 ± 0.10
                "googlenet": runs("googlenet", (97.0, 97.1, 96.9)),  # 97.00 ± 0.10
                "alexnet": runs("alexnet", (98.0, 98.3, 98.6)),      # 98.30 ± 0.30
                "resnet18": runs("resnet18", (99.0,))}               # 1 of 3 seeds
    rows = [("lenet", 98.1, 1.0), ("googlenet", 97.0, 5.0), ("alexnet", 98.3, 9.0),
            ("resnet18", 99.0, 9.0)]
    lines = off_the_front(rows, recorded).splitlines()
    # googlenet is beaten by lenet (cheaper, and a gap of 1.10 against 2 x
    # 0.10), not by alexnet (more accurate but dearer); alexnet by resnet18
    # (equal cost, more accurate), whose seeds are not all in. lenet and
    # resnet18 are on the front.
    assert lines == [
        "googlenet (97.00 %, 3 of 3 seeds) is beaten by lenet (98.10 %, 3 of 3 seeds): "
        "the gap is more than twice the larger standard deviation",
        "alexnet (98.30 %, 3 of 3 seeds) is beaten by resnet18 (99.00 %, 1 of 3 seeds): "
        "seeds still to record, so the two cannot be ranked yet"]
    # A gap within twice the spread is said to be within it.
    recorded["lenet"] = runs("lenet", (97.0, 97.6, 96.5))  # 97.03 ± 0.55
    rows[0] = ("lenet", 97.03, 1.0)
    assert ("googlenet (97.00 %, 3 of 3 seeds) is beaten by lenet (97.03 %, 3 of 3 seeds): "
            "the gap is within twice the larger standard deviation"
            in off_the_front(rows, recorded))
    # Rows equal on both counts do not beat each other; nothing is beaten.
    same = {"lenet": recorded["lenet"], "googlenet": recorded["lenet"]}
    assert off_the_front([("lenet", 97.03, 1.0), ("googlenet", 97.03, 1.0)], same) == (
        "No network beats another on both counts.")
