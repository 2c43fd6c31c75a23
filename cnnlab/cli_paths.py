"""Before a command writes anything: where its files go, and whether they may.

A result goes to ``--out`` (a .json file, or a folder where it is named by
``results.result_filename``). Before a run loads anything, the paths are
checked: writable, not colliding, a result replaced only by a rerun of the
same run (or with ``--replace``), a checkpoint resumed rather than
overwritten, and room on each disk for what will be written there. Every
refusal is a ``PathError``: one line that says what to do instead.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import asdict
from pathlib import Path

from .data import N_TRAIN
from .files import PathError, check_room, check_writable, clash, nearest_folder
from .results import RunResult, result_filename
from .train import TrainConfig

DEFAULT_OUT = Path("results")  # where results go when --out names no file


def result_path(out: Path | None, config: TrainConfig, device: str) -> Path:
    """``--out`` itself if it names a .json file, else a file named for the run
    (``results.result_filename``) in the folder ``--out`` (default: DEFAULT_OUT)."""
    if out is not None and out.suffix.lower() == ".json":  # Result.JSON too
        return out
    if out is not None and out.suffix and not out.is_dir():  # never make new.txt a folder
        raise PathError(f"--out {out}: a result file's name ends in .json, and {out} is "
                        f"not a folder; give a name ending in .json, or a folder")
    return (out or DEFAULT_OUT) / result_filename(config, device)


# What makes two results the same run, so that one may replace the other:
# the model and everything that shapes its training and its scores (not the
# device or the speed switches, which change only how fast it ran).
SAME_RUN_FIELDS = ("epochs", "batch_size", "lr", "weight_decay", "seed", "dropout",
                   "options", "eval_every", "eval_subset", "max_steps", "val_images",
                   "test_images")


def run_words(model: str, config: dict) -> str:
    """A run in a few words: 'lenet, seed 42, 5 epochs' (and a step budget)."""
    budget = f", {config.get('max_steps')} steps" if config.get("max_steps") else ""
    return f"{model}, seed {config.get('seed')}, {config.get('epochs')} epochs{budget}"


def check_replaceable(out: Path, config: TrainConfig, replace: bool) -> None:
    """A file already at ``out`` is replaced only by a rerun of the same run
    (``SAME_RUN_FIELDS``), or with ``--replace``; anything that is not a
    cnnlab result is someone's data, and is never replaced."""
    if not out.is_file():
        return
    try:
        old = RunResult.load(out)
    except (ValueError, OSError) as err:
        why = str(err).removeprefix(f"{out}: ")
        raise PathError(f"--out {out}: {why}; the result would replace it. Choose "
                        f"another name, or move that file first.") from None
    new = asdict(config)
    differ = [name for name in SAME_RUN_FIELDS if old.config.get(name) != new[name]]
    if old.model != config.model:
        differ.insert(0, "model")
    if differ and not replace:
        raise PathError(f"--out {out} holds another run ({run_words(old.model, old.config)}"
                        f"; its {', '.join(differ)} differ from this run's: "
                        f"{run_words(config.model, new)}). Pass --replace to replace it, "
                        f"or choose another --out.")


def bytes_written(config: TrainConfig) -> tuple[int, int]:
    """About how many bytes the result and one checkpoint of ``config`` take:
    the result's per-step losses, and the checkpoint's weights with AdamW's
    two moments (float32), each with a margin."""
    import torch

    from .models import count_parameters, get_model

    with torch.device("meta"):  # shapes only: nothing is allocated
        parameters = count_parameters(get_model(config.model, **config.model_kwargs()))
    steps = config.epochs * -(-N_TRAIN // config.batch_size)
    steps = min(steps, config.max_steps or steps)
    result = 2**16 + 32 * steps  # ~25 bytes of JSON per loss, predictions 13 KB
    checkpoint = 3 * 4 * parameters + 2**20 + 16 * steps
    return result, checkpoint


def check_room_for_runs(outs: list[Path], config_of: list[TrainConfig],
                checkpoint: Path | None) -> None:
    """Before training: each disk has room for what the runs write on it. A
    checkpoint needs room for two copies (the next save is written whole
    before it replaces the last), less the one already there."""
    need: dict[int, tuple[Path, str, int]] = {}  # per disk: a path, its flag, bytes

    def add(path: Path, flag: str, n: int) -> None:
        disk = os.stat(nearest_folder(path)).st_dev
        _, _, before = need.get(disk, (path, flag, 0))
        need[disk] = (path, flag, before + n)

    for out, config in zip(outs, config_of):
        add(out, "--out", bytes_written(config)[0])
    if checkpoint is not None:  # train: one run
        one = bytes_written(config_of[0])[1]
        there = checkpoint.stat().st_size if checkpoint.is_file() else 0
        add(checkpoint, "--checkpoint", max(2 * one - there, one))
    for path, flag, n in need.values():
        check_room(path, n, flag)


def check_train_paths(args: argparse.Namespace, out: Path, config: TrainConfig) -> None:
    """Before anything loads: --out and --checkpoint can be written, are not the
    same file, and a checkpoint already there is resumed, not overwritten."""
    if args.resume and args.checkpoint is None:
        raise PathError("--resume needs --checkpoint PATH (the checkpoint to continue)")
    given = args.out  # a folder or a .json file; another existing file is neither
    if (given is not None and given.suffix.lower() != ".json" and given.exists()
            and not given.is_dir()):
        check_writable(given, "--out")  # says so if it is a device
        raise PathError(f"--out {given}: not a folder, and not a .json file that a "
                        f"result could replace; give a folder or a name ending in .json")
    check_writable(out, "--out")
    check_replaceable(out, config, args.replace)
    if args.checkpoint is not None:
        check_writable(args.checkpoint, "--checkpoint")
    check_room_for_runs([out], [config], args.checkpoint)
    if args.checkpoint is None:
        return
    if clash(out, args.checkpoint):
        raise PathError(f"--out {args.out} and --checkpoint {args.checkpoint} collide (the "
                        f"result would go to {out}); give them different names.")
    if args.checkpoint.exists() and not args.resume:
        raise PathError(f"--checkpoint {args.checkpoint}: a file is already there. If "
                        f"it is this run's checkpoint, add --resume to continue it; "
                        f"otherwise choose another path to start afresh.")


def check_compare_paths(args: argparse.Namespace, runs: list[tuple[TrainConfig, Path]]
                         ) -> None:
    """compare writes several files, so --out must be a folder that takes them."""
    folder = args.out
    if folder.suffix.lower() == ".json" or (folder.exists() and not folder.is_dir()):
        raise PathError(f"--out {folder}: compare writes one result per run, a table "
                        f"and two plots, so --out is a folder, e.g. results/")
    outs = [out for _, out in runs]
    for path in outs + [folder / name for name in COMPARE_FILES]:
        check_writable(path, "--out")
    for config, path in runs:
        check_replaceable(path, config, args.replace)
    check_room_for_runs(outs, [config for config, _ in runs], None)
    for name in COMPARE_FILES:  # the table and plots of an earlier compare, or none
        path = folder / name
        if path.is_file() and not written_by_compare(path):
            raise PathError(f"--out {folder}: {path} is already there and was not "
                            f"written by compare, which would replace it. Choose "
                            f"another --out folder, or move that file first.")


COMPARE_FILES = ("comparison.md", "comparison_curves.png", "comparison_bars.png")


def written_by_compare(path: Path) -> bool:
    """Whether ``path`` is a table or plot that compare wrote (see COMPARE_FILES)."""
    from .plots import PNG_SOFTWARE

    with open(path, "rb") as f:
        head = f.read(4096)
    if path.suffix == ".md":
        return head.startswith(b"| model |")  # markdown_table's header
    return b"Software\x00" + PNG_SOFTWARE.encode() in head  # save_figure's PNG text
