"""Command line: ``python -m cnnlab {train,compare,summary,shapes} ...``.

Every mistake gives one line on stderr, never a traceback (``CNNLAB_DEBUG=1``
shows it), and is found before training wherever it can be:

* exit 2: the input was refused (a flag, a path, a checkpoint, a result
  file, the data), saying what was expected;
* exit 1: the run failed (the loss diverged, out of memory, a size the
  model cannot take, torch.compile);
* exit 128 + N: stopped by signal N (Ctrl-C 130, SIGHUP 129, SIGTERM 143),
  after saving the checkpoint if ``--checkpoint`` was given.
"""
from __future__ import annotations

import argparse
import inspect
import math
import os
import signal
import sys
from pathlib import Path
from typing import Callable

from .data import N_TRAIN
from .cli_paths import DEFAULT_OUT, check_compare_paths, check_train_paths, result_path
from .models import DEFAULT_DROPOUT, MODELS, check_model_name, list_models
from .models.resnet import SHORTCUTS
from .results import RunResult
from .stop import stop_signals_as_ctrl_c, stopped_line
from .train import MAX_SEED, NUMBER_RULES, TrainConfig, number_problem

# Bounds that catch typos (--epochs 50000) before hours are spent on them.
MAX_EPOCHS = 1_000    # 200 times the report's 5 epochs
MAX_UPSAMPLE = 8      # 28 px -> 224 px, ImageNet's size; more only exhausts memory
MAX_THREADS = 1_024   # more than any machine this course meets has cores
MAX_SIZE = 512        # px for `shapes`: MNIST is 28, the largest net sees 224


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` to ``high`` (None: no limit)."""
    expected = (f"an integer from {low:,} to {high:,}" if high is not None
                else "a positive integer" if low == 1 else f"an integer >= {low}")

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value
    return parse


def _number(field: str) -> Callable[[str], float]:
    """An argparse type: a number that TrainConfig's rule for ``field`` accepts."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan  # refused by every rule, and named as typed below
        if number_problem(field, value):
            raise argparse.ArgumentTypeError(
                f"expected {NUMBER_RULES[field][0]}, got {text!r}")
        return value
    return parse


def _model_name(text: str) -> str:
    try:
        return check_model_name(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(err.args[0]) from None


def _builder_default(model: str, option: str) -> object:
    """A model builder's own default for ``option`` (kept in one place: the builder)."""
    return inspect.signature(MODELS[model]).parameters[option].default


def _add_training_args(p: argparse.ArgumentParser) -> None:
    # Every default is TrainConfig's or a builder's: one place for each.
    d = TrainConfig
    p.add_argument("--epochs", type=_int_in(1, MAX_EPOCHS), default=d.epochs,
                   help=f"default: {d.epochs} (the report)")
    p.add_argument("--batch-size", type=_int_in(1, N_TRAIN), default=d.batch_size,
                   help=f"default: {d.batch_size}")
    p.add_argument("--lr", type=_number("lr"), default=d.lr,
                   help=f"AdamW learning rate (default: {d.lr:g})")
    p.add_argument("--seed", type=_int_in(0, MAX_SEED), default=d.seed,
                   help=f"default: {d.seed}")
    p.add_argument("--max-steps", type=_int_in(1), default=d.max_steps,
                   help="stop after this many steps (a short budget)")
    p.add_argument("--eval-every", type=_int_in(1), default=d.eval_every,
                   help=f"validate every this many steps (default: {d.eval_every})")
    p.add_argument("--eval-subset", type=_int_in(1), default=d.eval_subset,
                   help=f"between epoch ends, validate on the first N validation "
                        f"images only (default: {d.eval_subset}; epoch ends use all "
                        f"12,000)")
    p.add_argument("--eval-all", action="store_true",
                   help="validate on all 12,000 images every time")
    dropouts = ", ".join(f"{m} {'none' if v is None else v}"
                         for m, v in DEFAULT_DROPOUT.items())
    p.add_argument("--dropout", type=_number("dropout"), default=d.dropout,
                   help=f"dropout before the classifier (default: the report's, "
                        f"{dropouts})")
    p.add_argument("--shortcut", choices=SHORTCUTS, default=None,
                   help=f"resnet18: the shortcut where a block changes shape (default: "
                        f"{_builder_default('resnet18', 'shortcut')}; reuse_conv1 is "
                        f"the report's block)")
    p.add_argument("--upsample", type=_int_in(1, MAX_UPSAMPLE), default=None,
                   help=f"input upsampling factor (default "
                        f"{_builder_default('resnet18', 'upsample')}: 28 px -> 56 px; "
                        f"1 keeps 28 px)")
    p.add_argument("--batch-norm", action="store_true", default=None,
                   help="googlenet: batch norm after every conv and no LRN, as torchvision's "
                        "copy has it (default: the paper's net, without BN)")
    p.add_argument("--device", default=d.device,
                   help="cpu, cuda, cuda:N or mps (default: the best there is)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--channels-last", action="store_true", default=d.channels_last,
                   help="channels-last (NHWC) memory layout, for training and evaluation "
                        "(default: on CUDA only; on a CPU it speeds up some models and "
                        "changes the rounding)")
    p.add_argument("--threads", type=_int_in(1, MAX_THREADS), default=d.threads,
                   help="CPU threads for this run (default: torch's, one per core; a "
                        "model as small as lenet can run faster on fewer)")
    p.add_argument("--eval-batch", type=_int_in(1, N_TRAIN), default=d.eval_batch_size,
                   help=f"images per batch when validating and testing (default: "
                        f"{d.eval_batch_size})")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--replace", action="store_true",
                   help="let a result replace one of another run (another model, seed, "
                        "recipe or budget) at its --out path; a rerun of the same run "
                        "replaces its own result without it")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m cnnlab",
                     description="Five classic CNNs on MNIST.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="train one model, save its RunResult JSON")
    p.set_defaults(run=_cmd_train)
    p.add_argument("model", type=_model_name, help=", ".join(list_models()))
    _add_training_args(p)
    p.add_argument("--checkpoint", type=_path, default=None,
                   help="save the run's state here every epoch, at the end and when "
                        "stopped (Ctrl-C, SIGTERM, SIGHUP)")
    p.add_argument("--resume", action="store_true",
                   help="continue from --checkpoint if it exists")
    p.add_argument("--out", type=_path, default=None,
                   help="result file (.json), or a folder for a file named for the run, "
                        f"e.g. lenet-cpu-seed42.json (default: {DEFAULT_OUT}/)")

    p = sub.add_parser("compare", help="train several models; table and plots")
    p.set_defaults(run=_cmd_compare)
    p.add_argument("models", nargs="*", type=_model_name, help="default: all six")
    _add_training_args(p)
    p.add_argument("--seeds", type=_int_in(0, MAX_SEED), nargs="+", default=None,
                   help="train each model once per seed (default: --seed only)")
    p.add_argument("--out", type=_path, default=DEFAULT_OUT,
                   help=f"output folder (default: {DEFAULT_OUT}/)")

    p = sub.add_parser("summary", help="torchinfo summary of a model")
    p.set_defaults(run=_cmd_summary)
    p.add_argument("model", type=_model_name)

    p = sub.add_parser("shapes", help="layer-by-layer output shapes")
    p.set_defaults(run=_cmd_shapes)
    p.add_argument("model", type=_model_name)
    p.add_argument("--size", type=_int_in(1, MAX_SIZE), default=28,
                   help="input size in pixels")

    from . import recorder
    p = sub.add_parser("record", help="record the planned runs (results/): status, run, oom")
    recorder.add_arguments(p, parser_class=_Parser)
    return parser


def _check_repeats(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The same model or seed twice would train twice into one result file."""
    for flag, values in (("models", getattr(args, "models", None)),
                         ("--seeds", getattr(args, "seeds", None))):
        repeated = sorted({v for v in values or [] if values.count(v) > 1}, key=str)
        if repeated:
            parser.error(f"argument {flag}: {', '.join(map(str, repeated))} given twice; "
                         f"each trains once into its own result file, so give each once")


# The builder options the command line sets, by flag.
OPTION_FLAGS = {"shortcut": "--shortcut", "upsample": "--upsample",
                "batch_norm": "--batch-norm"}


def _takes(model: str) -> set[str]:
    return set(inspect.signature(MODELS[model]).parameters)


def _config(args: argparse.Namespace, model: str, seed: int | None = None) -> TrainConfig:
    """The TrainConfig of one run: ``model`` with ``seed`` (default: --seed)."""
    options = {name: getattr(args, name) for name in OPTION_FLAGS
               if getattr(args, name) is not None}
    # Said in flags: TrainConfig's own message names builder arguments,
    # some of which (activation, say) have no flag.
    for name, flag in [(n, OPTION_FLAGS[n]) for n in options] + (
            [("dropout", "--dropout")] if args.dropout is not None else []):
        if name not in _takes(model) or DEFAULT_DROPOUT.get(model, 0) is None:
            users = [m for m in MODELS if name in _takes(m)
                     and (name != "dropout" or DEFAULT_DROPOUT[m] is not None)]
            raise ValueError(f"{flag} does not apply to {model}; it applies to "
                             f"{', '.join(users)}")
    return TrainConfig(model=model, epochs=args.epochs, batch_size=args.batch_size,
                       lr=args.lr, seed=args.seed if seed is None else seed,
                       dropout=args.dropout, options=options,
                       eval_every=args.eval_every,
                       eval_subset=None if args.eval_all else args.eval_subset,
                       max_steps=args.max_steps, device=args.device,
                       compile=args.compile, channels_last=args.channels_last,
                       threads=args.threads, eval_batch_size=args.eval_batch)


def _path(text: str) -> Path:
    """A path flag's value; an empty one (an unset shell variable, say) is refused
    rather than read as the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty value")
    return Path(text)


def _train(args: argparse.Namespace, config: TrainConfig, out: Path) -> RunResult:
    from .train import fit

    result = fit(config, progress=False if args.quiet else None,
                 checkpoint=getattr(args, "checkpoint", None),
                 resume=getattr(args, "resume", False))
    result.save(out)
    print(f"{config.model}: test accuracy {100 * result.test_accuracy:.2f}%, "
          f"{result.train_seconds:.1f} s training -> {out}")
    return result


def _device(args: argparse.Namespace) -> str:
    from .train import resolve_device
    return str(resolve_device(args.device))  # fails before anything loads


def _cmd_train(args: argparse.Namespace) -> None:
    """python -m cnnlab train MODEL: one run, its result saved as JSON."""
    config = _config(args, args.model)
    out = result_path(args.out, config, _device(args))
    check_train_paths(args, out, config)
    _train(args, config, out)


def _cmd_compare(args: argparse.Namespace) -> None:
    """python -m cnnlab compare: several runs, a Markdown table and two plots."""
    from .plots import bar_figure, comparison_figure, save_figure
    from .results import atomic_write_text, markdown_table, seed_summary_table

    device = _device(args)
    configs = [_config(args, m, seed) for m in args.models or list_models()
               for seed in args.seeds or [args.seed]]  # a bad option fails here
    runs = [(c, result_path(args.out, c, device)) for c in configs]
    check_compare_paths(args, runs)
    results = [_train(args, config, out) for config, out in runs]
    table = markdown_table(results)
    if args.seeds and len(args.seeds) > 1:
        table += "\n\n" + seed_summary_table(results)
    atomic_write_text(args.out / "comparison.md", table + "\n")
    save_figure(comparison_figure(results), args.out / "comparison_curves.png")
    save_figure(bar_figure(results), args.out / "comparison_bars.png")
    print(table)


def _cmd_summary(args: argparse.Namespace) -> None:
    """python -m cnnlab summary MODEL: torchinfo's table."""
    from torchinfo import summary

    from .models import get_model
    print(summary(get_model(args.model), input_size=(1, 1, 28, 28),
                  col_names=("output_size", "num_params", "mult_adds"), verbose=0))


def _cmd_shapes(args: argparse.Namespace) -> None:
    """python -m cnnlab shapes MODEL: the output shape of every layer."""
    from .models import get_model
    from .shapes import format_shapes, trace_shapes
    try:
        rows = trace_shapes(get_model(args.model), args.size)
    except RuntimeError as err:  # a map shrinks to nothing, or a layer's size is fixed
        raise ValueError(f"argument --size: {args.model} cannot take {args.size} x "
                         f"{args.size} images ({_error_line(err)}); its inputs are "
                         f"MNIST's 28 x 28, so try --size 28") from None
    print(format_shapes(rows))


def _error_line(err: BaseException) -> str:
    """One line for an error: an OSError's file and reason, else its meaningful line."""
    from .device import one_line

    if isinstance(err, OSError) and err.strerror:
        return f"{err.filename}: {err.strerror}" if err.filename else err.strerror
    return one_line(err)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_repeats(parser, args)
    stopped = getattr(args, "stopped", None) or (
        lambda err: stopped_line(err, getattr(args, "checkpoint", None)))
    return run_with_one_line_errors(parser.prog, lambda: args.run(args), stopped)


def run_with_one_line_errors(prog: str, action: Callable[[], int | None],
                             stopped: Callable[[KeyboardInterrupt], str]) -> int:
    """Run ``action`` and turn whatever it raises into one line on stderr and
    the exit code (module docstring); ``stopped`` words a stop by a signal.
    The recorder's CLI (``python -m cnnlab record``) goes through here too."""
    debug = bool(os.environ.get("CNNLAB_DEBUG"))
    try:
        with stop_signals_as_ctrl_c():
            return action() or 0
    except KeyboardInterrupt as err:
        if debug:
            raise
        # A further Ctrl-C would interrupt the line itself (a traceback instead).
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            print(f"{prog}: {stopped(err)}", file=sys.stderr)
        finally:
            signal.signal(signal.SIGINT, previous)  # main may be called in a process
        return 128 + getattr(err, "signum", signal.SIGINT)  # that goes on (_exit: not)
    except (ValueError, OSError) as err:  # refused input: a flag, path, file, the data
        if debug:
            raise
        print(f"{prog}: error: {_error_line(err)}", file=sys.stderr)
        raise SystemExit(2) from None  # as argparse exits for a bad flag
    except RuntimeError as err:  # divergence, out of memory, compile, a size too small
        if debug:
            raise
        print(f"{prog}: error: {_error_line(err)}", file=sys.stderr)
        return 1
    except Exception as err:  # a bug in cnnlab: still one line, and how to see more
        if debug:
            raise
        print(f"{prog}: internal error: {type(err).__name__}: {_error_line(err)} "
              f"(CNNLAB_DEBUG=1 shows the traceback; please report it)", file=sys.stderr)
        return 1


def _exit(code: int) -> None:
    """Exit with ``code``. After a stop by a signal, the one line is printed:
    further Ctrl-Cs are ignored, so that none can interrupt the interpreter's
    clean-up (torch's exit hooks) and print a traceback after it."""
    if code >= 128:
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):  # no SIGHUP on Windows
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), signal.SIG_IGN)
    sys.exit(code)


if __name__ == "__main__":
    _exit(main())
