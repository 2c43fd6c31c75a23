"""The plan of recorded runs: every run named once, its command reproduces its config."""
import pytest

from cnnlab.__main__ import _config, build_parser
from cnnlab.plan import EXPERIMENTS, experiment_runs, plan



def test_full_runs_are_the_reports_recipe_and_named_as_the_cli_names_them():
    full = [p for p in plan() if p.folder == "runs"]
    names = {p.filename() for p in full}
    # Three seeds of each of the five networks of the report.
    assert {f"{m}-cpu-seed{s}.json" for s in (42, 43, 44)
            for m in ("lenet", "alexnet", "resnet18", "mobilenet_v1", "googlenet")} == names
    # ResNet-18 and GoogLeNet, furthest from the report's number, come before
    # the two slowest networks.
    order = [p.config.model for p in full]
    assert order.index("googlenet") < order.index("mobilenet_v1") < order.index("alexnet")
    for p in full:
        c = p.config
        # The report's recipe: 5 epochs, batch 128, AdamW lr 1e-3, all the data.
        assert (c.epochs, c.batch_size, c.lr, c.max_steps, c.val_images,
                c.test_images) == (5, 128, 1e-3, None, None, None)


def test_every_run_has_its_own_file():
    names = [p.filename() for p in plan()]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("planned", plan(), ids=lambda p: p.filename())
def test_the_printed_command_rebuilds_the_same_config(planned):
    words = planned.command().split()
    assert words[:4] == ["python", "-m", "cnnlab", "train"]
    args = build_parser().parse_args(words[3:])
    assert _config(args, args.model) == planned.config


def test_each_experiment_has_three_seeds_per_arm_and_differs_in_one_setting():
    five = {"shortcut", "input_size"}  # three seeds could not separate their arms
    for name, exp in EXPERIMENTS.items():
        arms = experiment_runs(name)
        assert set(arms) == set(exp["arms"])
        configs = []
        for runs in arms.values():
            seeds = sorted(p.config.seed for p in runs)
            assert seeds == list(range(42, 47 if name in five else 45))
            configs.append(runs[0].config)
        # Arms share everything but the model options and dropout.
        strip = [{**vars(c), "options": None, "dropout": None} for c in configs]
        assert all(s == strip[0] for s in strip)
        assert len({(str(c.options), c.dropout) for c in configs}) == len(configs)


def test_the_bn_experiment_reuses_the_recorded_arm_without_bn():
    arms = experiment_runs("batch_norm")
    without, with_bn = arms.values()
    dropout_02 = experiment_runs("dropout")["dropout 0.2"]
    assert [p.filename() for p in without] == [p.filename() for p in dropout_02]
    assert all(p.config.options == {"batch_norm": True} for p in with_bn)
    assert with_bn[0].filename() == "googlenet-batch_norm-dropout_0.2-1ep-cpu-seed42.json"
    assert with_bn[0].command().endswith("--dropout 0.2 --batch-norm")


def test_the_dropout_rerun_on_bn_reuses_the_bn_arm_and_changes_only_the_rate():
    with_04, with_02 = experiment_runs("bn_dropout").values()
    bn_arm = experiment_runs("batch_norm")["with BN after every conv (no LRN)"]
    assert [p.filename() for p in with_02] == [p.filename() for p in bn_arm]
    assert all(p.config.options == {"batch_norm": True} and p.config.dropout == 0.4
               for p in with_04)
    assert with_04[0].filename() == "googlenet-batch_norm-dropout_0.4-1ep-cpu-seed42.json"
    # Run after everything the book already shows; before the two slowest networks.
    names = [p.filename() for p in plan()]
    assert names.index(with_04[-1].filename()) < names.index("mobilenet_v1-cpu-seed43.json")
