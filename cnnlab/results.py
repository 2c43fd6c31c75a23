"""RunResult: what one training run produced, with where and how it ran.

Saved as JSON under ``results/``; written atomically
(``cnnlab.files.atomic_write``), so a run killed mid-write leaves the
previous file whole.
"""
from __future__ import annotations

import base64
import binascii
import json
import math
import os
import stat
import sys
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .files import atomic_write_text  # noqa: F401  (also imported from here)
from .provenance import short_commit

FORMAT_VERSION = 1
MNIST_TEST_IMAGES = 10_000


class ResultFormatError(ValueError):
    """A results file this version of cnnlab cannot read."""


def _type_words(hint: Any) -> str:
    if isinstance(hint, types.UnionType):
        return " or ".join(_type_words(h) for h in typing.get_args(hint))
    origin = typing.get_origin(hint) or hint
    if origin is list and typing.get_args(hint):  # "a list of numbers"
        return "a list of " + _type_words(typing.get_args(hint)[0]).split(" ", 1)[1] + "s"
    return {int: "an integer", float: "a number", bool: "True or False", str: "a string",
            list: "a list", dict: "a dict", type(None): "None"}.get(origin, str(hint))


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits the type hint ``hint`` (int, float, list[float],
    int | None, ...). A bool is not taken for a number; an int is a float."""
    if isinstance(hint, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    origin = typing.get_origin(hint) or hint
    if origin is Any:
        return True
    if origin in (int, float):
        wanted = (int,) if origin is int else (int, float)
        return isinstance(value, wanted) and not isinstance(value, bool)
    if not isinstance(value, origin):
        return False
    if origin is list and typing.get_args(hint):
        return all(_matches(v, typing.get_args(hint)[0]) for v in value)
    return True


def check_field_types(cls: type, values: dict[str, Any], source: str) -> None:
    """Raise ValueError naming the first field of ``values`` whose type does
    not fit the annotation of dataclass ``cls`` (unknown names are skipped)."""
    hints = typing.get_type_hints(cls)
    for name, value in values.items():
        if name in hints and not _matches(value, hints[name]):
            shown = repr(value) if len(repr(value)) < 40 else type(value).__name__
            raise ValueError(f"{source}{name} must be {_type_words(hints[name])}, "
                             f"got {shown}")


@dataclass
class RunResult:
    """History, scores, cost and provenance of one training run."""

    model: str
    parameters: int
    config: dict[str, Any]
    steps_per_epoch: int
    train_loss: list[float]          # one per batch
    val_step: list[int]              # steps at which validation ran
    val_accuracy: list[float]        # at those steps (fraction, 0-1)
    val_loss: list[float]
    epoch_val_accuracy: list[float]  # at each epoch end
    epoch_val_loss: list[float]
    test_accuracy: float             # measured once, after training
    test_loss: float
    train_seconds: float             # training steps only, no evaluation
    images_per_second: float         # at steady state: the first step left out
    peak_memory_bytes: int | None    # training's peak, before the test pass
    peak_memory_kind: str            # what the number measures (device/host)
    provenance: dict[str, Any] = field(default_factory=dict)
    # The first step alone: it holds torch.compile's and cudnn's one-off
    # set-up, so a compiled run's cost can be read with and without it.
    first_step_seconds: float | None = None
    # How many validation images each point of val_accuracy used: all of
    # them at epoch ends, a fixed subset between (TrainConfig.eval_subset).
    val_images: list[int] = field(default_factory=list)
    # CPU time of the whole process during training (all threads): on a
    # machine that other work shares, well below train_seconds x threads.
    cpu_seconds: float | None = None
    # The predicted class of each test image, in order: one byte per image,
    # base64 (13 KB for 10,000 images). ``predictions()`` decodes it.
    test_predictions: str | None = None
    # SHA-256 of the final weights the recorder kept (results/weights/, not
    # in git): the file is checked against it before it is used.
    weights_sha256: str | None = None
    format_version: int = FORMAT_VERSION

    @property
    def epochs_run(self) -> float:
        """Epochs completed (fractional when a step budget cut the run)."""
        return len(self.train_loss) / self.steps_per_epoch

    def predictions(self, expected: int | None = MNIST_TEST_IMAGES) -> np.ndarray:
        """The predicted class of each test image (uint8); ResultFormatError when
        the record keeps none, or not ``expected`` of them (None: any number)."""
        if self.test_predictions is None:
            raise ResultFormatError(f"{self.model} (seed {self.config.get('seed')}): this "
                                    f"record keeps no predictions (it was recorded before "
                                    f"records kept them); re-record it to get them")
        expected = self.config.get("test_images") or expected
        return decode_predictions(self.test_predictions, expected)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        """Write JSON atomically; the folder is created if needed."""
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> "RunResult":
        """Rebuild a result from ``to_dict``'s output; ResultFormatError, naming
        ``source``, for anything else."""
        if not isinstance(data, dict):
            raise ResultFormatError(f"{source}: not a cnnlab result (a JSON "
                                    f"{type(data).__name__}, not an object)")
        names = {f.name for f in fields(cls)}
        optional = {"provenance", "first_step_seconds", "val_images", "cpu_seconds",
                    "test_predictions", "weights_sha256"}
        missing = names - set(data) - optional
        if missing:
            names = sorted(missing)
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            raise ResultFormatError(f"{source}: not a cnnlab result, missing "
                                    f"{', '.join(names[:3])}{more}")
        version = data["format_version"]
        if isinstance(version, int) and version > FORMAT_VERSION:
            raise ResultFormatError(
                f"{source}: results format version {version!r}, but this cnnlab "
                f"reads up to version {FORMAT_VERSION}. Fix: update cnnlab "
                f"(git pull; make venv) or re-run the training to rewrite it.")
        try:
            check_field_types(cls, data, f"{source}: not a cnnlab result: ")
        except ValueError as err:
            raise ResultFormatError(str(err)) from None
        if version != FORMAT_VERSION:
            raise ResultFormatError(f"{source}: not a cnnlab result: format_version "
                                    f"must be {FORMAT_VERSION}, got {version!r}")
        result = cls(**{k: v for k, v in data.items() if k in names})
        problem = result.inconsistency()
        if problem:
            raise ResultFormatError(f"{source}: a damaged cnnlab result: {problem}")
        return result

    def inconsistency(self) -> str | None:
        """What makes this result impossible (a NaN or out-of-range accuracy,
        history lists of different lengths, ...), or None."""
        if not isinstance(self.config, dict) or not isinstance(self.config.get("seed"), int):
            return "config has no integer seed"
        if self.steps_per_epoch <= 0:
            return f"steps_per_epoch must be positive, got {self.steps_per_epoch}"
        if self.parameters <= 0:
            return f"parameters must be positive, got {self.parameters}"
        accuracies = [("test_accuracy", [self.test_accuracy]),
                      ("val_accuracy", self.val_accuracy),
                      ("epoch_val_accuracy", self.epoch_val_accuracy)]
        for name, values in accuracies:  # fractions: 97.5 would be a percentage
            bad = [v for v in values if not (math.isfinite(v) and 0 <= v <= 1)]
            if bad:
                return f"{name} must be a fraction in [0, 1], got {bad[0]!r}"
        for name in ("test_loss", "train_seconds", "images_per_second"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                return f"{name} must be a finite number >= 0, got {value!r}"
        if not self.train_loss:
            return "train_loss is empty: no step was recorded"
        if not all(math.isfinite(v) for v in self.train_loss):
            return "train_loss holds a NaN or infinite loss"
        lengths = {name: len(getattr(self, name))
                   for name in ("val_step", "val_accuracy", "val_loss")}
        if self.val_images:
            lengths["val_images"] = len(self.val_images)
        if len(set(lengths.values())) > 1:
            return "the validation lists differ in length (" + ", ".join(
                f"{k}: {v}" for k, v in lengths.items()) + ")"
        if len(self.epoch_val_accuracy) != len(self.epoch_val_loss):
            return (f"epoch_val_accuracy has {len(self.epoch_val_accuracy)} points but "
                    f"epoch_val_loss {len(self.epoch_val_loss)}")
        if any(s2 <= s1 for s1, s2 in zip(self.val_step, self.val_step[1:])) or \
                any(s < 1 or s > len(self.train_loss) for s in self.val_step):
            return "val_step must rise within the run's steps"
        if self.test_predictions is not None:
            try:
                predicted = decode_predictions(self.test_predictions)
            except ResultFormatError as err:
                return str(err)
            # n predictions score k/n: a field cut short, or another run's,
            # gives a count that no number of right answers matches.
            right = self.test_accuracy * len(predicted)
            if abs(right - round(right)) > 1e-6 * max(1, len(predicted)):
                return (f"test_predictions holds {len(predicted):,} classes, which "
                        f"cannot score test_accuracy {self.test_accuracy!r} (truncated, "
                        f"or another run's)")
        return None

    @classmethod
    def load(cls, path: str | Path) -> "RunResult":
        """Read a result written by ``save``; ResultFormatError or OSError,
        naming the file, when it cannot."""
        path = Path(path)
        data = parse_json_file(path, "a cnnlab result")
        return cls.from_dict(data, source=str(path))

# A record is about 100 KB (a losses list, 13 KB of predictions); a file many
# times that size is not one, and is never read whole into memory.
MAX_RESULT_BYTES = 16 * 2**20


def parse_json_file(path: Path, what: str, limit: int = MAX_RESULT_BYTES) -> Any:
    """The JSON in ``path``, read only if it is a regular file under ``limit``
    bytes; ResultFormatError, naming the file and ``what`` it should be, else.

    A FIFO or a link to /dev/zero would hang the reader or fill the memory;
    deeply nested brackets make Python's parser recurse until it fails.
    """
    info = os.stat(path)  # follows links: the target is what gets read
    if stat.S_ISDIR(info.st_mode):
        raise ResultFormatError(f"{path}: is a folder, not a result file")
    if not stat.S_ISREG(info.st_mode):
        raise ResultFormatError(f"{path}: not a regular file (a pipe, device or socket), "
                                f"so not {what}")
    if info.st_size > limit:
        raise ResultFormatError(f"{path}: {info.st_size:,} bytes, more than {what} can "
                                f"be ({limit:,} at most)")
    with open(path, "rb") as f:
        raw = f.read(limit + 1)
    try:
        return json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ResultFormatError(f"{path}: not {what}, not valid JSON ({err})") from None
    except RecursionError:
        raise ResultFormatError(f"{path}: not {what}, nested too deeply") from None


def encode_predictions(predicted: torch.Tensor) -> str:
    """Classes 0-9, one per test image, as base64 text of one byte each."""
    data = predicted.to(torch.uint8).cpu().numpy().tobytes()
    return base64.b64encode(data).decode("ascii")


def decode_predictions(text: str, expected: int | None = None) -> np.ndarray:
    """The classes ``encode_predictions`` stored; ResultFormatError unless they
    are classes 0-9, ``expected`` of them (None: any number)."""
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ResultFormatError("test_predictions is not base64 text") from None
    classes = np.frombuffer(data, dtype=np.uint8)
    if expected is not None and len(classes) != expected:
        raise ResultFormatError(f"test_predictions holds {len(classes):,} classes for "
                                f"{expected:,} test images (truncated or another run's)")
    if len(classes) and classes.max() > 9:
        raise ResultFormatError(f"test_predictions holds class {classes.max()}, not a "
                                f"digit 0-9")
    return classes


# A CPU run that got less than this share of its threads' time shared the CPU
# with other work: its time and images/s are slower than its machine can do.
QUIET_SHARE = 0.9


def cpu_share(r: RunResult) -> float | None:
    """The share of its threads' time a CPU run got while training (0-1).

    Near 1 when the run had its cores to itself; lower when other work
    shared them, and its time and images/s are then slower than the CPU
    can do. None on a GPU or when not recorded.
    """
    threads = r.provenance.get("cpu_threads")
    if r.cpu_seconds is None or r.config.get("device") != "cpu" or not threads:
        return None
    return r.cpu_seconds / (r.train_seconds * threads)


def markdown_table(results: list[RunResult]) -> str:
    """A Markdown table of the scores, costs and devices of some runs."""
    head = ("| model | test acc. (%) | train time (s) | epochs | images/s "
            "| parameters | peak memory (MB) | device |")
    lines = [head, "|" + "---|" * 8]
    for r in results:
        mem = "" if r.peak_memory_bytes is None else f"{r.peak_memory_bytes / 2**20:,.0f}"
        dev = r.provenance.get("device_name", r.config.get("device", "?"))
        lines.append(f"| {r.model} | {100 * r.test_accuracy:.2f} | {r.train_seconds:,.1f} "
                     f"| {r.epochs_run:g} | {r.images_per_second:,.0f} | {r.parameters:,} "
                     f"| {mem} | {dev} |")
    return "\n".join(lines)


def seed_summary_table(results: list[RunResult]) -> str:
    """Per model over its seeds: test accuracy mean, standard deviation and range."""
    import statistics

    lines = ["| model | seeds | test acc. mean (%) | std (points) | min-max (%) "
             "| train time mean (s) |", "|" + "---|" * 6]
    by_model: dict[str, list[RunResult]] = {}
    for r in results:
        by_model.setdefault(r.model, []).append(r)
    for model, runs in by_model.items():
        acc = [100 * r.test_accuracy for r in runs]
        std = statistics.stdev(acc) if len(acc) > 1 else float("nan")
        seeds = ",".join(str(r.config.get("seed")) for r in runs)
        lines.append(f"| {model} | {seeds} | {statistics.mean(acc):.2f} | {std:.2f} "
                     f"| {min(acc):.2f}-{max(acc):.2f} "
                     f"| {statistics.mean(r.train_seconds for r in runs):,.1f} |")
    return "\n".join(lines)


RESULTS_DIR = Path(__file__).resolve().parent.parent / "results"


def result_filename(config: Any, device: str) -> str:
    """The one naming rule for result files (the CLI's and the recorder's):
    ``MODEL[-OPTION_VALUE...][-dropout_D][-Nep][-Nsteps]-DEVICE-seedS.json``.

    Options, a dropout set by hand, an epoch count other than the recipe's
    and a step budget are in the name, so two different runs never share a
    file; the report's recipe is just ``lenet-cpu-seed42.json``.
    ``config`` is a ``TrainConfig``.
    """
    recipe = type(config).__dataclass_fields__["epochs"].default  # the report's 5
    parts = [config.model]
    parts += [k if v is True else f"{k}_{v}" for k, v in sorted(config.options.items())]
    if config.dropout is not None:
        parts.append(f"dropout_{config.dropout:g}")
    if config.epochs != recipe:
        parts.append(f"{config.epochs}ep")
    if config.max_steps is not None:
        parts.append(f"{config.max_steps}steps")
    return "-".join(parts + [device.replace(":", ""), f"seed{config.seed}"]) + ".json"


def skip_note(path: Path, why: str) -> None:
    """Say, in one line on stderr, that a page left out the file at ``path``."""
    print(f"note: left out {path}: {why}", file=sys.stderr)


def run_key(r: RunResult) -> str:
    """What makes two records the same run: model and whole config (seed,
    recipe, budget, device and speed switches)."""
    return json.dumps([r.model, r.config], sort_keys=True, default=str)


def load_runs(folder: str | Path | None = None) -> list[RunResult]:
    """Every RunResult JSON under ``folder`` (default: the repository's results/runs).

    A file that is not a readable cnnlab result is left out with a one-line
    note naming it, so one stray file never stops a page; a second copy of
    the same run (``run_key``) counts once, and is noted too.
    """
    folder = Path(folder) if folder is not None else RESULTS_DIR / "runs"
    runs: dict[str, tuple[Path, RunResult]] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            r = RunResult.load(path)
        except (ResultFormatError, OSError) as err:
            skip_note(path, str(err).removeprefix(f"{path}: "))
            continue
        key = run_key(r)
        if key in runs:
            skip_note(path, f"the same run as {runs[key][0].name}, counted once")
            continue
        runs[key] = path, r
    return [r for _, r in runs.values()]


def is_full_run(r: RunResult) -> bool:
    """True for the report's whole recipe: 5 epochs, every image evaluated."""
    c = r.config
    return (r.epochs_run == 5 and c.get("max_steps") is None
            and c.get("val_images") is None and c.get("test_images") is None)


def recorded_runs(model: str, folder: str | Path | None = None) -> list[RunResult]:
    """The recorded full runs of ``model``, GPU runs first."""
    runs = [r for r in load_runs(folder) if r.model == model and is_full_run(r)]
    return sorted(runs, key=lambda r: r.provenance.get("device", "cpu") == "cpu")


def plain(value: Any) -> str:
    """A record's field as text that Markdown shows as written: HTML and the
    characters that make links, code, emphasis or table cells are escaped, so
    a record never puts markup on a page."""
    text = str(value)
    for char, escaped in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;")):
        text = text.replace(char, escaped)
    for char in "\\`*[]|":
        text = text.replace(char, "\\" + char)
    return " ".join(text.split())  # no line break can end a table row


def provenance_line(r: RunResult) -> str:
    """Where and when a result came from, in one line of Markdown (fields escaped)."""
    p = r.provenance
    commit = short_commit(p.get("git_commit"))
    return plain(f"{r.model}: recorded {str(p.get('date', '?'))[:10]} on "
                 f"{p.get('device_name', '?')} ({p.get('device', '?')}), torch "
                 f"{p.get('torch', '?')}, seed {r.config.get('seed')}, commit {commit}")
