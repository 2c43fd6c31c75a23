"""The recording plan: every run named once, its command reproduces its config."""
import pytest

from cnnlab import record
from cnnlab.__main__ import _config, build_parser
from cnnlab.record import EXPERIMENTS, experiment_runs, plan


def test_full_runs_are_the_reports_recipe_and_named_as_the_cli_names_them():
    full = [p for p in plan() if p.folder == "runs"]
    names = {p.filename() for p in full}
    assert {"lenet-cpu-seed42.json", "lenet-cpu-seed43.json", "lenet-cpu-seed44.json",
            "alexnet-cpu-seed42.json", "resnet18-cpu-seed42.json",
            "mobilenet_v1-cpu-seed42.json", "googlenet-cpu-seed42.json"} == names
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
    for name, exp in EXPERIMENTS.items():
        arms = experiment_runs(name)
        assert set(arms) == set(exp["arms"])
        configs = []
        for runs in arms.values():
            assert sorted(p.config.seed for p in runs) == [42, 43, 44]
            configs.append(runs[0].config)
        # Arms share everything but the model options and dropout.
        strip = [{**vars(c), "options": None, "dropout": None} for c in configs]
        assert all(s == strip[0] for s in strip)
        assert len({(str(c.options), c.dropout) for c in configs}) == len(configs)


def test_a_dirty_checkout_is_refused(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(record, "git_commit", lambda: "abc+dirty")
    monkeypatch.setattr(record, "CACHE", tmp_path)
    assert record.main(["run"]) == 2
    err = capsys.readouterr().err
    assert "uncommitted changes" in err and err.count("\n") == 1


def test_recorded_runs_are_skipped(monkeypatch, tmp_path):
    monkeypatch.setattr(record, "git_commit", lambda: "abc")
    for p in plan():
        path = p.path("cpu", tmp_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    monkeypatch.setattr("cnnlab.train.fit", lambda *a, **k: pytest.fail("trained"))
    assert record.run_missing(root=tmp_path, checkpoints=tmp_path / "ck") == 0


def test_a_missing_run_is_trained_recorded_with_its_command_and_its_checkpoint_removed(
        monkeypatch, tmp_path):
    from cnnlab.record import Planned
    from cnnlab.results import RunResult
    from cnnlab.train import TrainConfig

    tiny = Planned(TrainConfig(model="lenet", epochs=1, max_steps=3, eval_every=3,
                               val_images=50, test_images=50, device="cpu"), "runs")
    monkeypatch.setattr(record, "plan", lambda: [tiny])
    monkeypatch.setattr(record, "git_commit", lambda: "abc")
    assert record.run_missing(root=tmp_path, checkpoints=tmp_path / "ck") == 1
    result = RunResult.load(tiny.path("cpu", tmp_path))
    assert result.provenance["command"] == tiny.command()
    assert len(result.train_loss) == tiny.config.max_steps  # one loss per step
    assert not list((tmp_path / "ck").glob("*.pt"))
    assert record.run_missing(root=tmp_path, checkpoints=tmp_path / "ck") == 0
