"""What the book says about recorded runs is computed from them, and says no more."""
import pytest

from cnnlab import findings
from cnnlab.plan import experiment_runs
from cnnlab.findings import (Arm, Spread, curves_figure, experiment_arms,
                            experiment_table, run_summary, verdict)
from cnnlab.results import RunResult


def fake_run(model="resnet18", seed=42, acc=0.98, steps=(25, 50), images=(1000, 12000),
             **config) -> RunResult:
    return RunResult(
        model=model, parameters=1, config={"seed": seed, **config}, steps_per_epoch=50,
        train_loss=[2.3, 1.0] * 25, val_step=list(steps),
        val_accuracy=[0.5, acc], val_loss=[1.0, 0.1], epoch_val_accuracy=[acc],
        epoch_val_loss=[0.1], test_accuracy=acc, test_loss=0.1, train_seconds=10.0,
        images_per_second=100.0, peak_memory_bytes=None, peak_memory_kind="none",
        provenance={"device": "cpu", "device_name": "a CPU", "date": "2026-11-29",
                    "git_commit": "0" * 40}, val_images=list(images))


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
    assert "A scored highest (99.10%)" in apart and "B lowest (98.10%)" in apart
    assert "gap of 1.00 points" in apart and "the arms differ" in apart
    # Means 98.83 and 98.77, a gap of 0.07 against spreads of 0.76 and 0.32.
    close = verdict([arm("A", [99.0, 98.0, 99.5]), arm("B", [98.9, 98.4, 99.0])])
    assert "cannot tell the arms apart" in close
    # The ranking follows the numbers, whatever the order of the arms.
    flipped = verdict([arm("B", [98.0, 98.1, 98.2]), arm("A", [99.0, 99.1, 99.2])])
    assert "A scored highest" in flipped


def test_a_gap_between_one_and_two_spreads_is_not_called_a_difference():
    # Means 97.20 and 96.90: a gap of 0.30 against spreads (sample std) of 0.20
    # and 0.10, so 1.5 times the larger one: more than one spread, not two.
    a, b = arm("A", [97.0, 97.2, 97.4]), arm("B", [96.9, 96.8, 97.0])
    gap, spread = a.spread.mean - b.spread.mean, max(a.spread.std, b.spread.std)
    assert spread < gap < 2 * spread
    assert findings.compare(a, b) == 0 and findings.compare(b, a) == 0
    assert "cannot tell the arms apart" in verdict([a, b])
    # Beyond twice the spread (0.75 against 0.20), they are told apart.
    c = arm("C", [97.45, 97.65, 97.85])  # mean 97.65, spread 0.20
    assert findings.compare(c, b) == 1 and findings.compare(b, c) == -1


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
    assert "| cnnlab, recorded | 97.50 ± 0.71 (2 seeds) |" in text
    assert "| the report | 97.44 | (see below) |" in text and "40 s, is not comparable" in text
    assert text.count("Provenance: lenet") == 2


def test_curves_mark_subset_points_hollow():
    fig = curves_figure([fake_run()])
    _, ax_acc = fig.axes
    filled = [l for l in ax_acc.lines if l.get_marker() == "o" and l.get_mfc() != "white"]
    hollow = [l for l in ax_acc.lines if l.get_marker() == "o" and l.get_mfc() == "white"]
    # fake_run: step 25 saw a 1,000-image subset (hollow), step 50 all 12,000 (filled).
    assert list(filled[0].get_xdata()) == [50] and list(hollow[0].get_xdata()) == [25]


def test_compare_follows_the_verdicts_rule_both_ways():
    from cnnlab.findings import compare

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


def test_experiment_time_leaves_out_a_seed_that_shared_the_cpu():
    runs = [fake_run(seed=42 + i, acc=0.98, device="cpu") for i in range(3)]
    for r, seconds, cpu in zip(runs, (200.0, 240.0, 640.0), (396.0, 470.0, 640.0)):
        r.train_seconds, r.cpu_seconds = seconds, cpu
        r.provenance["cpu_threads"] = 2
    # CPU shares: 396 / (200 x 2) = 0.99, 470 / 480 = 0.98, 640 / 1280 = 0.5.
    table = experiment_table([Arm("A", tuple(runs), 3, "cmd")])
    assert "| 220 (2 of 3 seeds; 1 that shared the CPU left out) |" in table  # (200+240)/2


def test_first_epoch_ranking_calls_an_order_only_where_seeds_separate_it():
    from cnnlab.findings import first_epoch_ranking

    def runs(model, accs):
        out = []
        for i, a in enumerate(accs):
            r = fake_run(model, 42 + i, a / 100)
            r.epoch_val_accuracy = [a / 100]
            out.append(r)
        return out

    # The report: resnet18 in the fastest tier, lenet in the slowest.
    apart = first_epoch_ranking({"lenet": runs("lenet", [98.0, 98.1]),
                                 "resnet18": runs("resnet18", [90.0, 90.2])})
    assert "beyond the spread of our seeds: `lenet` ahead of `resnet18`" in apart
    one_seed = first_epoch_ranking({"lenet": runs("lenet", [98.0, 98.1]),
                                    "resnet18": runs("resnet18", [90.0])})
    assert "seeds cannot separate those" in one_seed and "beyond the spread" not in one_seed
    agree = first_epoch_ranking({"lenet": runs("lenet", [90.0]),
                                 "resnet18": runs("resnet18", [98.0])})
    assert agree.endswith("this agrees with the report's order.")
