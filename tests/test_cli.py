"""The command line: one-line errors with exit code 2, and the read-only commands."""
import json
import subprocess
import sys

import pytest

from cnnlab.__main__ import main


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnlab", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, words", [
    (["train", "vgg16"], "unknown model 'vgg16'; choose one of: lenet"),
    (["train", "lenet", "--epochs", "0"], "--epochs: expected an integer from 1 to"),
    (["train", "lenet", "--batch-size", "-5"], "--batch-size: expected an integer from 1"),
    (["train", "lenet", "--lr", "abc"], "--lr: expected a finite positive number"),
    (["train", "lenet", "--device", "tpu"], "unknown device 'tpu'"),
    (["shapes", "lenet", "--size", "0"], "--size: expected an integer from 1 to"),
    (["fly"], "invalid choice"),
])
def test_bad_arguments_give_one_line_and_exit_2(args, words, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_shapes_flags_collapsed_maps():
    proc = run("shapes", "resnet18", "--size", "14")
    assert proc.returncode == 0, proc.stderr
    assert "1x1 map" in proc.stdout and "layer4.1.conv2" in proc.stdout


def test_shapes_reports_a_size_the_model_cannot_take(capsys):
    with pytest.raises(SystemExit) as exit_:  # refused input: one line, exit code 2
        main(["shapes", "lenet", "--size", "32"])
    assert exit_.value.code == 2
    assert "1x400 and 256x120" in capsys.readouterr().err  # bug 1: 16*5*5 != 16*4*4


def test_summary_counts_parameters(capsys):
    assert main(["summary", "lenet"]) == 0
    # LeNet: 156 + 2,416 + 30,840 + 10,164 + 850 (derived in test_models.py)
    assert "Total params: 44,426" in capsys.readouterr().out


def test_train_writes_a_result(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["train", "lenet", "--device", "cpu", "--max-steps", "3",
                 "--quiet", "--out", str(out)]) == 0
    assert out.exists() and "test accuracy" in capsys.readouterr().out


def test_compare_writes_table_and_plots(tmp_path, capsys):
    assert main(["compare", "lenet", "--seeds", "1", "2", "--device", "cpu",
                 "--max-steps", "2", "--quiet", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "comparison.md").read_text()
    runs, summary = table.split("\n\n")
    assert runs.count("| lenet |") == 2              # one row per seed
    assert "| lenet | 1,2 |" in summary              # and a row over the seeds
    assert {p.name for p in tmp_path.glob("*.json")} == {"lenet-2steps-cpu-seed1.json",
                                                         "lenet-2steps-cpu-seed2.json"}
    # A floor: an empty or truncated PNG is well under 1 kB, a drawn plot well over.
    assert (tmp_path / "comparison_curves.png").stat().st_size > 1000
    assert (tmp_path / "comparison_bars.png").stat().st_size > 1000


@pytest.mark.parametrize("flag, field", [("--lr", "lr"), ("--dropout", "dropout")])
def test_number_flags_are_checked_by_trainconfigs_own_rule(flag, field, monkeypatch, capsys):
    # One rule for each field: change TrainConfig's, and the flag follows it.
    from cnnlab import train
    monkeypatch.setitem(train.NUMBER_RULES, field, ("a number below 0.25", lambda v: v < 0.25))
    with pytest.raises(SystemExit) as exit_:
        main(["train", "googlenet", flag, "0.3", "--max-steps", "1", "--out", "/nonexistent/x"])
    assert exit_.value.code == 2
    assert f"{flag}: expected a number below 0.25, got '0.3'" in capsys.readouterr().err
    with pytest.raises(ValueError, match=f"{field} must be a number below 0.25, got 0.3"):
        train.TrainConfig(model="googlenet", **{field: 0.3})


def test_speed_flags_reach_the_runs_config(tmp_path):
    """--channels-last, --threads and --eval-batch go into the result's config, which
    is how a record says that its rounding came from them."""
    out = tmp_path / "lenet.json"
    assert main(["train", "lenet", "--max-steps", "2", "--quiet", "--channels-last",
                 "--threads", "1", "--eval-batch", "500", "--out", str(out)]) == 0
    config = json.loads(out.read_text())["config"]
    assert (config["channels_last"], config["threads"], config["eval_batch_size"]) == (
        True, 1, 500)
    out2 = tmp_path / "plain.json"
    assert main(["train", "lenet", "--max-steps", "2", "--quiet", "--out", str(out2)]) == 0
    config = json.loads(out2.read_text())["config"]
    assert (config["channels_last"], config["threads"], config["eval_batch_size"]) == (
        False, None, 1000)  # on the CPU: the plain recipe the records were made with
