"""What cnnlab.experiments writes on the pages: the results table with the
commits its runs were recorded at and each arm's command under it, and one
note in its place until every arm has a run.

(The arms, the verdict and the training-time rule are tested in
test_findings.py; the design and the sentences around an experiment in
test_experiment_text.py.)
"""
from cnnlab.experiments import Arm, experiment_table, results_or_note, verdict
from fake_runs import experiment_run as run, rendered

COMMAND = "python -m cnnlab train resnet18 --epochs 1 --eval-every 25 --eval-subset 1000"


ARMS = [Arm("option A (zero_pad)", (run(42, 0.97), run(43, 0.98)), 3,
            f"{COMMAND} --shortcut zero_pad"),
        Arm("option B (projection)", (), 3, f"{COMMAND} --shortcut projection")]


def test_the_table_has_five_columns_on_every_row_and_no_command():
    table = experiment_table(ARMS).split("\n\n")[0].splitlines()
    assert table[0] == "| arm | test accuracy (%) | each seed | training time (s) | commit |"
    assert len(table) == 2 + len(ARMS)
    assert all(row.count("|") == 6 for row in table)  # 5 cells
    assert "`" not in "\n".join(table) and "python" not in "\n".join(table)
    # The recorded arm: mean of 97 and 98, each seed; the other: its count.
    assert table[2].startswith("| option A (zero_pad) | 97.50 ± 0.71 (2 of 3 seeds) | 97.00, 98.00 |")
    assert table[2].endswith("| unknown |")  # these fake records name no commit
    assert table[3] == "| option B (projection) | not recorded yet (0 of 3) | | | |"


def test_the_table_names_the_commits_each_arms_runs_were_recorded_at():
    """The shortcut experiment's case: one seed of an arm recorded at an older
    commit. The page must show it, 7 hex digits per commit, with its seeds."""
    old = "5f1818f7849718f04f4acf59e73b1ba53a7c6b00"
    new = "777d49224437b3e3a99716a6955791758e763e95"
    report = (run(42, 0.97), run(43, 0.98), run(44, 0.96))
    option_a = (run(42, 0.97), run(43, 0.97), run(44, 0.98))
    for r, commit in zip(report + option_a, (old, new, new, new, new, new + "+dirty")):
        r.provenance["git_commit"] = commit
    arms = [Arm("report's block", report, 3, "cmd"), Arm("option A", option_a, 3, "cmd")]
    text = experiment_table(arms)
    table = text.split("\n\n")[0].splitlines()
    assert all(row.count("|") == 6 for row in table)  # the "; " keeps one cell
    assert table[2].endswith("| 5f1818f (seed 42); 777d492 (seeds 43, 44) |")
    assert table[3].endswith("| 777d492 (seeds 42, 43); 777d492+dirty (seed 44) |")
    assert ("These runs were recorded at 3 different commits of the code (the last "
            "column)") in text
    # One commit for every run: the cell names it, and no line is added under the table.
    for r in report + option_a:
        r.provenance["git_commit"] = new
    text = experiment_table(arms)
    assert text.split("\n\n")[0].splitlines()[2].endswith("| 777d492 |")
    assert "different commits" not in text
    # A run stopped and resumed at later commits names each, and each counts.
    report[2].provenance["resumed_at_commits"] = [old, "b30c8b7" + "0" * 33]
    text = experiment_table(arms)
    assert text.split("\n\n")[0].splitlines()[2].endswith(
        "| 777d492 (seeds 42, 43); 777d492, resumed at 5f1818f and b30c8b7 (seed 44) |")
    assert "These runs were recorded at 3 different commits" in text
    del report[2].provenance["resumed_at_commits"]
    # A commit from a record is text on the page, not table markup.
    report[0].provenance["git_commit"] = "a|bcdefgh"
    row = experiment_table(arms[:1]).split("\n\n")[0].splitlines()[2]
    assert "a\\|bcdef (seed 42)" in row and row.replace("\\|", "").count("|") == 6


def test_each_arms_command_is_listed_under_the_table_in_order():
    tokens = rendered(experiment_table(ARMS))
    kinds = [t.type for t in tokens if t.type.endswith("_open") and t.level == 0]
    assert kinds == ["table_open", "paragraph_open", "bullet_list_open"]
    items = [t.content for t in tokens if t.type == "inline" and t.level == 3]
    assert items == [f"{a.name}: `{a.command}`" for a in ARMS]
    intro = next(t.content for t in tokens if t.type == "inline" and t.level == 1)
    assert intro == "To rerun an arm's first seed (add `--seed N` for another of its seeds):"


def test_results_or_note_is_one_note_until_every_arm_has_a_run():
    note = results_or_note(ARMS)  # option B has no run yet
    assert note.startswith("**Not recorded yet.**")
    assert "“option B (projection)” is recorded yet (0 of 3)" in note
    assert f"`{COMMAND} --shortcut projection`" in note
    assert "option A" not in note and "|" not in note  # no table, no verdict
    both = [ARMS[0], Arm("option B (projection)", (run(42, 0.96),), 3, "cmd")]
    shown = results_or_note(both)
    assert shown == experiment_table(both) + "\n\n" + verdict(both)


def test_times_from_two_machines_name_their_machine_and_say_they_do_not_compare():
    """The BN experiment's case: its arms ran on two processors, so a reader
    must not read the time column as the cost of BN."""
    xeon = tuple(run(s, 0.6) for s in (42, 43))
    epyc = tuple(run(s, 0.98) for s in (42, 43))
    for r in xeon:
        r.provenance["device_name"], r.train_seconds = "Intel(R) Xeon(R) Processor", 266.0
    for r in epyc:
        r.provenance["device_name"], r.train_seconds = "AMD EPYC 7B13", 375.0
    text = experiment_table([Arm("without BN", xeon, 2, "cmd"), Arm("with BN", epyc, 2, "cmd")])
    rows = text.split("\n\n")[0].splitlines()
    assert "| 266 on Intel Xeon |" in rows[2] and "| 375 on AMD EPYC 7B13 |" in rows[3]
    assert "ran on 2 different machines" in text
    assert "compares only with a time from the same machine" in text
    # One machine: the column still names it (a time means nothing without
    # its machine), and no note.
    for r in xeon:
        r.provenance["device_name"] = "AMD EPYC 7B13"
    one = experiment_table([Arm("without BN", xeon, 2, "cmd"), Arm("with BN", epyc, 2, "cmd")])
    assert "| 266 on AMD EPYC 7B13 |" in one and "different machines" not in one


def test_an_arm_keeps_its_colour_on_every_figure_and_colours_differ_within_a_model():
    from matplotlib.colors import to_hex

    from cnnlab.experiments import arm_colours, config_key, experiment_figure
    from cnnlab.plan import EXPERIMENTS, experiment_runs

    colours = arm_colours()
    by_model: dict[str, list[str]] = {}
    for name in EXPERIMENTS:
        for planned in experiment_runs(name).values():
            by_model.setdefault(planned[0].config.model, []).append(config_key(planned[0]))
    for model, keys in by_model.items():
        distinct = sorted(set(keys))
        assert len({colours[k] for k in distinct}) == len(distinct), model
    # Option B at 56 px is in three ResNet-18 experiments: one colour in each figure.
    option_b = "resnet18-shortcut_projection-1ep-cpu"
    for name, arm_name in (("shortcut", "option B (projection)"),
                           ("input_size", "56 px (upsample 2)"),
                           ("degradation", "residual (option B)")):
        arms = [Arm(n, (run(42, 0.97), run(43, 0.98)), 2, "cmd",
                    config_key(p[0])) for n, p in experiment_runs(name).items()]
        fig = experiment_figure(arms)
        label = next(l for l in fig.axes[0].get_lines()
                     if l.get_label().startswith(arm_name))
        assert to_hex(label.get_color()) == colours[option_b].lower(), name
