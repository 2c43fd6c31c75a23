"""What the book says about recorded runs is computed from them, and says no more."""
import pytest

from cnnlab import experiments
from cnnlab.plan import experiment_runs
from cnnlab.findings import curves_figure, run_summary, Spread
from cnnlab.experiments import Arm, experiment_arms, experiment_table, verdict
from fake_runs import cpu_run as _cpu_run, fake_run


def arm(name, accs, planned=3):
    return Arm(name, tuple(fake_run(seed=42 + i, acc=a / 100) for i, a in enumerate(accs)),
               planned, "python -m cnnlab train resnet18")


def test_spread_is_mean_and_sample_std():
    s = Spread((98.0, 99.0, 100.0))
    assert (s.mean, s.std) == (99.0, 1.0)  # sample std: sqrt(2 / 2)
    assert s.text() == "99.00 ± 1.00 (3 seeds)"
    assert Spread((97.5,)).text() == "97.50"


def test_verdict_calls_arms_apart_only_beyond_twice_the_spread():
    apart = verdict([arm("A", [99.0, 99.1, 99.2]), arm("B", [98.0, 98.1, 98.2])])
    # Means 99.10 and 98.10 (each arm's three seeds), a gap of 1.00 point
    # against a spread (sample std) of 0.10 in each arm.
    # Two arms: "higher" and "lower"; three or more: "highest" and "lowest".
    assert "A scored higher (99.10%)" in apart and "B lower (98.10%)" in apart
    assert "gap of 1.00 points" in apart and "the arms differ" in apart
    # Means 98.83 and 98.77, a gap of 0.07 against spreads of 0.76 and 0.32.
    close = verdict([arm("A", [99.0, 98.0, 99.5]), arm("B", [98.9, 98.4, 99.0])])
    assert "cannot tell the arms apart" in close
    # The ranking follows the numbers, whatever the order of the arms.
    flipped = verdict([arm("B", [98.0, 98.1, 98.2]), arm("A", [99.0, 99.1, 99.2])])
    assert "A scored higher" in flipped
    three = verdict([arm("B", [98.0, 98.1, 98.2]), arm("A", [99.0, 99.1, 99.2]),
                     arm("C", [98.5, 98.6, 98.7])])
    assert "A scored highest (99.10%)" in three and "B lowest (98.10%)" in three


def test_a_gap_between_one_and_two_spreads_is_not_called_a_difference():
    # Means 97.20 and 96.90: a gap of 0.30 against spreads (sample std) of 0.20
    # and 0.10, so 1.5 times the larger one: more than one spread, not two.
    a, b = arm("A", [97.0, 97.2, 97.4]), arm("B", [96.9, 96.8, 97.0])
    gap, spread = a.spread.mean - b.spread.mean, max(a.spread.std, b.spread.std)
    assert spread < gap < 2 * spread
    assert experiments.compare(a, b) == 0 and experiments.compare(b, a) == 0
    assert "cannot tell the arms apart" in verdict([a, b])
    # Beyond twice the spread (0.75 against 0.20), they are told apart.
    c = arm("C", [97.45, 97.65, 97.85])  # mean 97.65, spread 0.20
    assert experiments.compare(c, b) == 1 and experiments.compare(b, c) == -1


def test_no_verdict_before_every_seed_is_recorded():
    text = verdict([arm("A", [99.0, 99.1, 99.2]), arm("B", [98.0], planned=3)])
    assert "no conclusion yet" in text and "B" in text


def test_experiment_arms_read_the_planned_files(tmp_path):
    planned = experiment_runs("dropout")
    p = planned["dropout 0.4"][1]  # seed 43
    p.path("cpu", tmp_path).parent.mkdir(parents=True)
    config = {k: v for k, v in vars(p.config).items() if k not in ("model", "seed")}
    fake_run("googlenet", seed=43, acc=0.97, **config).save(p.path("cpu", tmp_path))
    arms = {a.name: a for a in experiment_arms("dropout", root=tmp_path)}
    assert [r.config["seed"] for r in arms["dropout 0.4"].runs] == [43]
    assert arms["dropout 0.2"].runs == ()
    table = experiment_table(list(arms.values()))
    assert "| dropout 0.4 | 97.00 (1 of 3 seeds) | 97.00 |" in table  # the one run's 0.97
    assert "not recorded yet (0 of 3)" in table
    assert "--dropout 0.2" in table


def test_run_summary_says_when_nothing_is_recorded(tmp_path):
    assert "No full run of `alexnet` is recorded yet" in run_summary("alexnet", tmp_path)


def test_run_summary_puts_the_report_beside_the_record(tmp_path):
    for seed, acc in ((42, 0.97), (43, 0.98)):
        r = fake_run("lenet", seed, acc, steps=(125, 250), epochs=5)
        r.train_loss = r.train_loss * 5  # fake runs are 1 epoch: make them 5 of 50 steps
        r.save(tmp_path / f"lenet-cpu-seed{seed}.json")
    text = run_summary("lenet", tmp_path)
    # mean(97, 98) = 97.50, sample std sqrt(0.5) = 0.71; the report's LeNet row
    # (cnnlab/report.py): 97.44% in 40.02 s.
    assert "| cnnlab, recorded | 97.50 ± 0.71 (2 seeds) | 42, 43 |" in text
    # the table says what "±" is; with one seed there is none, and no word of it
    assert text.startswith("| | test accuracy (%), mean ± sample SD over seeds | seeds |\n")
    (tmp_path / "lenet-cpu-seed43.json").unlink()
    one = run_summary("lenet", tmp_path)
    assert one.startswith("| | test accuracy (%) | seeds |\n|---|---|---|\n"
                          "| cnnlab, recorded | 97.00 | 42 |\n")
    assert "| the report | 97.44 | one run |" in text and "report's 40 s came from another" in text
    # The times: one sentence, a range per machine (never averaged across
    # machines), and a link to the per-seed details that opens in Jupyter too.
    assert "Each of the 2 seeds trained in " in text
    assert ("[Training time, from the records]"
            "(07_comparison.ipynb#training-time-from-the-records)") in text
    assert "| seed | machine |" not in text  # the per-seed table lives in chapter 7


def test_timing_sentence_gives_each_machine_its_seeds_and_names_shared_runs():
    from cnnlab.findings import timing_sentence

    def run(seed, seconds, machine, cpu_seconds):
        r = fake_run("lenet", seed, 0.97, device="cpu")
        r.train_seconds, r.cpu_seconds = seconds, cpu_seconds
        r.provenance |= {"device_name": machine, "cpu_threads": 2}
        return r

    quiet = [run(42, 24.0, "AMD EPYC", 48.0), run(43, 25.4, "AMD EPYC", 50.0)]
    text = timing_sentence(quiet, 40.0)
    assert text.startswith("Each of the 2 seeds trained in 24 and 25 s on an AMD EPYC "
                           "(2 threads), each with its cores to itself.")
    assert "The report's 40 s came from another machine" in text
    # a second machine: its own seeds and time, not averaged into the first's
    both = quiet + [run(44, 90.0, "Intel Xeon", 180.0)]
    assert timing_sentence(both).startswith(
        "Seeds 42 and 43 trained in 24 and 25 s on an AMD EPYC (2 threads); seed 44 in "
        "90 s on an Intel Xeon (2 threads), each with its cores to itself.")
    # two runs on one machine: each time next to its seed, in seed order
    swapped = [run(43, 40.0, "AMD EPYC", 80.0), run(44, 23.0, "AMD EPYC", 46.0)]
    assert timing_sentence([run(42, 90.0, "Intel Xeon", 180.0)] + swapped).startswith(
        "Seed 42 trained in 90 s on an Intel Xeon (2 threads); seeds 43 and 44 in 40 and "
        "23 s on an AMD EPYC")
    # a run that got half its threads' time is named; the others are not
    loaded = quiet + [run(44, 60.0, "AMD EPYC", 60.0)]
    text = timing_sentence(loaded)
    assert ("Other work shared the CPU during seed 44, so that time is longer than the "
            "machine needs.") in text
    assert "cores to itself" not in text
    one = timing_sentence(quiet[:1])
    assert one.startswith("The run trained in 24 s on an AMD EPYC (2 threads), with its "
                          "cores to itself.") and "report" not in one
    # no share and no load recorded: said, never guessed
    for r in quiet:
        r.cpu_seconds = None
        r.provenance.pop("load_average", None)
    assert "Whether other work shared the CPU is not recorded." in timing_sentence(quiet)


def test_curves_mark_subset_points_hollow():
    fig = curves_figure([fake_run()])
    _, ax_acc = fig.axes
    filled = [l for l in ax_acc.lines if l.get_marker() == "o" and l.get_mfc() != "white"]
    hollow = [l for l in ax_acc.lines if l.get_marker() == "o" and l.get_mfc() == "white"]
    # fake_run: step 25 saw a 1,000-image subset (hollow), step 50 all 12,000 (filled).
    assert list(filled[0].get_xdata()) == [50] and list(hollow[0].get_xdata()) == [25]


def test_compare_follows_the_verdicts_rule_both_ways():
    from cnnlab.experiments import compare

    hi, lo = arm("A", [99.0, 99.1, 99.2]), arm("B", [98.0, 98.1, 98.2])
    assert (compare(hi, lo), compare(lo, hi)) == (1, -1)
    assert compare(arm("A", [99.0, 98.0, 99.5]), arm("B", [98.9, 98.4, 99.0])) == 0
    assert compare(hi, arm("B", [98.0], planned=3)) is None


def test_run_summary_for_a_gpu_only_model_does_not_promise_the_cpu_plan(tmp_path):
    text = run_summary("alexnet_large", tmp_path)
    assert "gpu_session.sh" in text and "record-cpu" not in text


def test_shared_note_reads_the_cpu_share():
    from cnnlab.findings import shared_note
    from cnnlab.results import cpu_share

    def run(cpu_seconds):
        r = fake_run(device="cpu")
        r.provenance["cpu_threads"] = 2
        r.cpu_seconds = cpu_seconds  # train_seconds is 10
        return r

    assert cpu_share(run(19.0)) == pytest.approx(0.95)  # 19 s of CPU / (10 s x 2 threads)
    assert "had their cores to themselves" in shared_note([run(19.0)])
    shared = shared_note([run(19.0), run(6.0)])  # 6 / (10 x 2) = 30%
    assert "got 30% of its threads' time" in shared
    assert "The others had their cores to themselves: resnet18 (seed 42)." in shared
    assert "not recorded for resnet18 (seed 42)" in shared_note([run(None)])
    busy = run(None)
    busy.provenance["load_average"] = [2.2, 3.3, 3.8]
    assert "load average over 15 minutes was 3.8 on 2 threads" in shared_note([busy])
    # Every busy run is named, not only the first one found.
    shared = shared_note([run(6.0), busy, run(None)])
    assert "30%" in shared and "3.8 on 2 threads" in shared and "not recorded" in shared
    gpu = fake_run(device="cuda")
    assert cpu_share(gpu) is None and shared_note([gpu]) == ""


def test_cpu_seconds_are_recorded_beside_the_wall_clock(small):
    from cnnlab.train import TrainConfig, fit

    r = fit(TrainConfig(model="lenet", max_steps=20, eval_every=10, device="cpu"),
            small, progress=False)
    assert 0 < r.cpu_seconds
    assert r.provenance["load_average"] and len(r.provenance["load_average"]) == 3


def test_a_three_arm_verdict_names_only_the_two_arms_it_compared():
    arms = [arm("A", [99.0, 99.1, 99.2]), arm("M", [98.5, 98.6, 98.7]),
            arm("B", [98.0, 98.1, 98.2])]
    assert "these two arms differ" in verdict(arms)
    close = [arm("A", [99.0, 98.0, 99.5]), arm("M", [98.9, 98.4, 99.0]),
             arm("B", [98.8, 98.5, 99.1])]
    assert "cannot tell these two arms apart" in verdict(close)


def test_partial_spread_says_how_many_seeds_of_the_plan():
    # mean 97.10, sample std 0.2 / sqrt(2) = 0.14; then 97.20 ± 0.20 for three.
    assert Spread((97.0, 97.2)).text(planned=3) == "97.10 ± 0.14 (2 of 3 seeds)"
    assert Spread((97.0,)).text(planned=3) == "97.00 (1 of 3 seeds)"
    assert Spread((97.0, 97.2, 97.4)).text(planned=3) == "97.20 ± 0.20 (3 seeds)"


@pytest.mark.parametrize("accs, words", [
    # The report's LeNet: 97.44% (cnnlab/report.py).
    ((97.0, 98.0), "lies inside the range of our 2 seeds (42, 43: 97.00 to 98.00%)"),
    ((97.5, 98.0), "lies 0.06 points below the worst of our 2 seeds"),   # 97.50 - 97.44
    ((96.0, 97.0), "lies 0.44 points above the best of our 2 seeds"),    # 97.44 - 97.00
    ((97.0,), "is 0.44 points above our one seed (42: 97.00%); one seed cannot say"),
])
def test_report_position_says_where_the_reports_number_falls(accs, words):
    from cnnlab.findings import report_position

    runs = [fake_run("lenet", 42 + i, a / 100) for i, a in enumerate(accs)]
    assert words in report_position("lenet", runs)
    assert report_position("vgg", runs) == ""  # no report row, no sentence


def test_seed_spread_text_gives_the_range_the_seed_alone_moved():
    from cnnlab.findings import seed_spread_text

    runs = [fake_run("lenet", 42 + i, a / 100) for i, a in enumerate((97.41, 96.89, 97.56))]
    text = seed_spread_text("lenet", runs)
    # 97.56 - 96.89 = 0.67, from the lowest to the highest whatever the order.
    assert "moved LeNet-5's test accuracy by 0.67 points (96.89 to 97.56% over 3 seeds)" in text
    assert "3 seeds give only a rough lower bound" in text
    assert "needs more of them" in seed_spread_text("lenet", runs[:1])
    assert "No full run of LeNet-5 is recorded yet" in seed_spread_text("lenet", [])


def test_experiment_time_leaves_out_a_seed_that_shared_the_cpu():
    runs = [fake_run(seed=42 + i, acc=0.98, device="cpu") for i in range(3)]
    for r, seconds, cpu in zip(runs, (200.0, 240.0, 640.0), (396.0, 470.0, 640.0)):
        r.train_seconds, r.cpu_seconds = seconds, cpu
        r.provenance |= {"cpu_threads": 2, "device_name": "AMD EPYC"}
    # CPU shares: 396 / (200 x 2) = 0.99, 470 / 480 = 0.98, 640 / 1280 = 0.5.
    table = experiment_table([Arm("A", tuple(runs), 3, "cmd")])
    # (200 + 240) / 2, on the machine the runs name
    assert "| 220 (2 of 3 seeds; 1 that shared the CPU left out) on AMD EPYC |" in table


# ------------------------------------------------------------ the comparison


def test_separated_needs_two_seeds_each_and_a_gap_over_twice_the_spread():
    from cnnlab.findings import separated

    a = Spread((99.0, 99.1, 99.2))               # mean 99.10, sd 0.10
    assert separated(a, Spread((98.0,))) is None  # one seed: no spread of its own
    # Mean 98.95, sd 0.05: a gap of 0.15 is 1.5 times the larger sd, not 2.
    assert separated(a, Spread((98.9, 98.95, 99.0))) == 0
    # Mean 98.80: a gap of 0.30 is 3 times the larger sd.
    b = Spread((98.75, 98.8, 98.85))
    assert (separated(a, b), separated(b, a)) == (1, -1)


def test_model_cost_counts_what_a_hand_count_gives():
    import torch
    from torch import nn

    from cnnlab.costs import model_cost

    with torch.device("meta"):
        net = nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.Flatten(),
                            nn.Linear(4 * 26 * 26, 10, bias=False))
    cost = model_cost(net)
    # The conv: 4 maps of 26x26, each point 3x3 mult-adds; the linear: 2,704 x 10.
    assert cost.mult_adds == 4 * 26 * 26 * 9 + 4 * 26 * 26 * 10
    assert cost.parameters == 4 * 9 + 4 * 26 * 26 * 10 and cost.input_px == 28
    # The image the first convolution sees (DESIGN.md): LeNet 28 px, AlexNet
    # upsampled x2 to 56 px, the paper-size AlexNet x8 to 224 px.
    from cnnlab.costs import build_as_recorded

    assert [model_cost(build_as_recorded(m)).input_px
            for m in ("lenet", "alexnet", "alexnet_large")] == [28, 56, 224]


def test_the_parameter_check_finds_only_resnet18s_shortcut():
    from cnnlab.costs import Cost, parameter_check

    # Our counts (DESIGN.md's table) against the report's: ResNet-18's option B
    # adds 11,175,370 - 11,001,546 = 173,824 weights; the report's own block none.
    ours = {"lenet": 44_426, "alexnet": 43_446_122, "resnet18": 11_175_370,
            "mobilenet_v1": 3_216_650, "googlenet": 5_977_530}
    table = parameter_check({n: Cost(p, 1, 28) for n, p in ours.items()})
    assert "| `resnet18` | 11,175,370 | 11,001,546 | +173,824 |" in table
    assert "| `resnet18`, the report's block | 11,001,546 | 11,001,546 | same |" in table
    assert table.count("| same |") == 5


def test_the_records_table_gives_each_run_its_machine_and_share_of_the_cores():
    from cnnlab.findings import records_table

    quiet = _cpu_run("lenet", 42, 97.5, seconds=24.0, cpu=47.5, peak=1000 * 2**20)
    busy = _cpu_run("resnet18", 43, 99.2, seconds=5000.0, cpu=5500.0,
                    name="Intel(R) Xeon(R) Processor", peak=2000 * 2**20,
                    kind="process_peak_rss")
    unknown = _cpu_run("mobilenet_v1", 42, 98.3, seconds=4000.0, peak=2000 * 2**20,
                       name="Intel(R) Xeon(R) Processor", kind="process_peak_rss")
    text = records_table({"lenet": [quiet], "resnet18": [busy], "mobilenet_v1": [unknown]})
    # Shares: 47.5 / (24 x 2) = 99%; 5,500 / (5,000 x 2) = 55%; none without CPU time.
    # Images/s: 240,000 images / 24 s = 10,000.
    assert "| `lenet` | 42 | AMD EPYC, 2 threads | 24 | 10,000 | 99% | 1,000 |" in text
    assert "| `resnet18` | 43 | Intel Xeon, 2 threads | 5,000 | 48 | 55% | 2,000* |" in text
    assert "| `mobilenet_v1` | 42 | Intel Xeon, 2 threads | 4,000 | 60 | — | 2,000* |" in text
    # The same lifetime peak twice is named as not each run's own.
    assert "`resnet18` (seed 43) and `mobilenet_v1` (seed 42) show the same peak" in text
    assert "got 55% of its threads' time" in text  # shared_note, for the busy run


def test_validation_note_counts_the_points_and_the_subsets_standard_error():
    from cnnlab.findings import validation_note

    r = fake_run(acc=0.96, steps=(25, 50, 75), images=(1000, 1000, 12000), eval_every=25)
    text = validation_note([r])
    # sqrt(0.96 x 0.04 / 1,000) = 0.0062: 0.6 points.
    assert "validated every 25 steps, 1 point on all 12,000 images (filled)" in text
    # Runs that share the scheme are counted, not each named.
    both = validation_note([r, fake_run(seed=43, acc=0.96, steps=(25, 50, 75),
                                        images=(1000, 1000, 12000), eval_every=25)])
    assert both.startswith("Both runs: validated every 25 steps")
    assert "2 on the first 1,000 (hollow)" in text and "about 0.6 points" in text


def test_provenance_table_keeps_record_fields_as_text():
    from cnnlab.findings import provenance_table

    r = _cpu_run("lenet", 42, 97.5, name="<b>x</b>")
    r.provenance |= {"git_commit": "a|b", "torch": "2.14.1", "date": "2026-12-06T06:21:31"}
    row = provenance_table([r]).splitlines()[-1]
    assert row == "| `lenet` | 42 | 2026-12-06 | &lt;b&gt;x&lt;/b&gt;, 2 threads | 2.14.1 | a\\|b |"


def test_curves_draw_a_models_seeds_in_its_colour_with_their_own_line_style():
    from matplotlib.colors import to_hex

    from cnnlab.plots import MODEL_COLOURS

    runs = [fake_run("lenet", 42), fake_run("lenet", 43), fake_run("googlenet", 42)]
    ax_loss, _ = curves_figure(runs).axes
    lines = ax_loss.get_lines()
    assert [to_hex(line.get_color()) for line in lines] == [
        MODEL_COLOURS["lenet"].lower()] * 2 + [MODEL_COLOURS["googlenet"].lower()]
    assert lines[0].get_linestyle() != lines[1].get_linestyle()


def test_experiment_arms_are_drawn_in_no_models_colour():
    from matplotlib.colors import to_hex

    from cnnlab.experiments import experiment_figure
    from cnnlab.plots import MODEL_COLOURS

    from cnnlab.plots import ARM_COLOURS

    fig = experiment_figure([arm("A", [99.0, 99.1]), arm("B", [98.0, 98.1])])
    colours = [to_hex(line.get_color()) for line in fig.axes[0].get_lines()]
    # Two lines per arm (the mean, and its large dots on the whole set).
    assert colours == [ARM_COLOURS[0].lower()] * 2 + [ARM_COLOURS[1].lower()] * 2
    assert not set(colours) & {c.lower() for c in MODEL_COLOURS.values()}


def test_the_cost_figure_draws_each_network_in_its_colour_beside_the_reports_square():
    from matplotlib.colors import to_hex

    from cnnlab.costs import Cost, cost_figure
    from cnnlab.plots import MODEL_COLOURS

    recorded = {"lenet": [fake_run("lenet", 42, 0.97), fake_run("lenet", 43, 0.98)]}
    fig = cost_figure(recorded, {"lenet": Cost(44_426, 300_000, 28),
                                 "googlenet": Cost(5_977_530, 80_000_000, 56)})
    ax = fig.axes[0]
    blue, orange = MODEL_COLOURS["lenet"].lower(), MODEL_COLOURS["googlenet"].lower()
    squares = [line for line in ax.get_lines() if line.get_marker() == "s"]
    # The report's run of each network: a hollow square in that network's colour.
    assert sorted(to_hex(s.get_markeredgecolor()) for s in squares) == sorted([blue, orange])
    assert all(s.get_markerfacecolor() == "none" for s in squares)
    dots = [line for line in ax.get_lines() if line.get_marker() == "."]
    assert list(dots[0].get_ydata()) == [97.0, 98.0] and to_hex(dots[0].get_color()) == blue


def test_early_validation_gives_one_runs_numbers_then_the_seeds_range(tmp_path):
    from cnnlab.findings import early_validation

    assert "No full run of `mobilenet_v1` is recorded yet" in early_validation(
        "mobilenet_v1", tmp_path)
    # fake_run validates at steps 125 and 250 on 2,000 then 12,000 images,
    # scoring 50% first and ``acc`` at the epoch's end.
    r = fake_run("mobilenet_v1", 42, 0.9699, steps=(125, 250), images=(2000, 12000),
                 epochs=5)
    r.train_loss = r.train_loss * 5  # as in run_summary's test: 5 epochs of 50 steps
    r.val_accuracy = [0.914, 0.9699]
    r.save(tmp_path / "mobilenet_v1-cpu-seed42.json")
    one = early_validation("mobilenet_v1", tmp_path)
    assert one == ("In eval mode, the recorded run (seed 42) scored 91.40% at step 125 "
                   "(the first validation point, on the first 2,000 validation images), "
                   "and 96.99% on all 12,000 after the first epoch.")
    r = fake_run("mobilenet_v1", 43, 0.975, steps=(125, 250), images=(2000, 12000), epochs=5)
    r.train_loss = r.train_loss * 5
    r.val_accuracy = [0.88, 0.975]
    r.save(tmp_path / "mobilenet_v1-cpu-seed43.json")
    two = early_validation("mobilenet_v1", tmp_path)
    assert "the 2 recorded runs (seeds 42 and 43) scored 88.00 to 91.40% at step 125" in two
    assert "and 96.99 to 97.50% on all 12,000 after the first epoch" in two


def test_span_text_collapses_only_what_prints_the_same():
    from cnnlab.findings import span_text

    assert span_text([2.14, 7.0]) == "2.1 to 7.0"
    assert span_text([24.2, 24.4], ",.0f", " s") == "24 s"  # both print 24
    assert span_text([1911.6, 12040.0], ",.0f", " s") == "1,912 to 12,040 s"
    assert span_text([91.4], ".2f", "%") == "91.40%"
