"""Command line: ``python -m cnnlab {train,compare,summary,shapes} ...``.

Bad arguments give a one-line error and exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .models import check_model_name, list_models
from .models.resnet import SHORTCUTS


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text}")
    return value


def _model_name(text: str) -> str:
    try:
        return check_model_name(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(err.args[0])


def _add_training_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=_positive_int, default=5, help="default: 5 (the report)")
    p.add_argument("--batch-size", type=_positive_int, default=128, help="default: 128")
    p.add_argument("--lr", type=_positive_float, default=1e-3, help="AdamW learning rate")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--max-steps", type=_positive_int, default=None,
                   help="stop after this many steps (a short budget)")
    from .train import TrainConfig  # its defaults are the CLI's (one place)

    p.add_argument("--eval-every", type=_positive_int, default=TrainConfig.eval_every,
                   help=f"validate every this many steps (default: "
                        f"{TrainConfig.eval_every})")
    p.add_argument("--eval-subset", type=_positive_int, default=TrainConfig.eval_subset,
                   help=f"between epoch ends, validate on the first N validation "
                        f"images only (default: {TrainConfig.eval_subset}; epoch ends "
                        f"use all 12,000)")
    p.add_argument("--eval-all", action="store_true",
                   help="validate on all 12,000 images every time")
    p.add_argument("--dropout", type=_fraction, default=None,
                   help="dropout before the classifier (default: the report's value "
                        "for the model)")
    p.add_argument("--shortcut", choices=SHORTCUTS,
                   default=None, help="resnet18: the shortcut where a block changes "
                   "shape (default: projection; reuse_conv1 is the report's block; "
                   "none drops every shortcut, the plain net)")
    p.add_argument("--upsample", type=_positive_int, default=None,
                   help="input upsampling factor (default 2: 28 px -> 56 px; "
                        "1 keeps 28 px)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: best)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m cnnlab",
                     description="Five classic CNNs on MNIST.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="train one model, save its RunResult JSON")
    p.add_argument("model", type=_model_name, help=", ".join(list_models()))
    _add_training_args(p)
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="save the run's state here every epoch and on Ctrl-C")
    p.add_argument("--resume", action="store_true",
                   help="continue from --checkpoint if it exists")
    p.add_argument("--out", type=Path, default=None,
                   help="result file, or a folder for MODEL-DEVICE-seedSEED.json "
                        "(default: results/)")

    p = sub.add_parser("compare", help="train several models; table and plots")
    p.add_argument("models", nargs="*", type=_model_name, help="default: all six")
    _add_training_args(p)
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="train each model once per seed (default: --seed only)")
    p.add_argument("--out", type=Path, default=Path("results"), help="output folder")

    p = sub.add_parser("summary", help="torchinfo summary of a model")
    p.add_argument("model", type=_model_name)

    p = sub.add_parser("shapes", help="layer-by-layer output shapes")
    p.add_argument("model", type=_model_name)
    p.add_argument("--size", type=_positive_int, default=28, help="input size in pixels")
    return parser


def _config(args: argparse.Namespace, model: str, seed: int | None = None):
    from .train import TrainConfig

    options = {name: getattr(args, name) for name in ("shortcut", "upsample")
               if getattr(args, name) is not None}
    return TrainConfig(model=model, epochs=args.epochs, batch_size=args.batch_size,
                       lr=args.lr, seed=args.seed if seed is None else seed,
                       dropout=args.dropout, options=options,
                       eval_every=args.eval_every,
                       eval_subset=None if args.eval_all else args.eval_subset,
                       max_steps=args.max_steps,
                       device=args.device, compile=args.compile)


def _train(args: argparse.Namespace, model: str, out: Path | None,
           seed: int | None = None):
    from .train import fit

    seed = args.seed if seed is None else seed
    checkpoint = getattr(args, "checkpoint", None)
    if getattr(args, "resume", False) and checkpoint is None:
        raise ValueError("--resume needs --checkpoint PATH")
    result = fit(_config(args, model, seed), progress=False if args.quiet else None,
                 checkpoint=checkpoint, resume=getattr(args, "resume", False))
    if out is None or out.suffix != ".json":  # a folder: name the file
        device = result.config["device"].replace(":", "")
        out = (out or Path("results")) / f"{model}-{device}-seed{seed}.json"
    result.save(out)
    print(f"{model}: test accuracy {100 * result.test_accuracy:.2f}%, "
          f"{result.train_seconds:.1f} s training -> {out}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command in ("train", "compare"):
            from .train import resolve_device
            resolve_device(args.device)  # fail before loading anything
        if args.command == "train":
            _train(args, args.model, args.out)
        elif args.command == "compare":
            from .plots import bar_figure, comparison_figure, save_figure
            from .results import atomic_write_text, markdown_table, seed_summary_table

            models = args.models or list_models()
            for m in models:  # a bad option fails here, before any training
                _config(args, m)
            results = [_train(args, m, args.out, seed)
                       for m in models for seed in (args.seeds or [args.seed])]
            table = markdown_table(results)
            if args.seeds and len(args.seeds) > 1:
                table += "\n\n" + seed_summary_table(results)
            atomic_write_text(args.out / "comparison.md", table + "\n")
            save_figure(comparison_figure(results), args.out / "comparison_curves.png")
            save_figure(bar_figure(results), args.out / "comparison_bars.png")
            print(table)
        elif args.command == "summary":
            from torchinfo import summary

            from .models import get_model
            print(summary(get_model(args.model), input_size=(1, 1, 28, 28),
                          col_names=("output_size", "num_params", "mult_adds"),
                          verbose=0))
        elif args.command == "shapes":
            from .models import get_model
            from .shapes import format_shapes, trace_shapes
            print(format_shapes(trace_shapes(get_model(args.model), args.size)))
    except ValueError as err:  # bad values found after parsing (device, ...)
        parser.error(str(err))
    except KeyboardInterrupt:
        where = getattr(args, "checkpoint", None)
        saved = f"; the checkpoint in {where} keeps the run (add --resume)" if where else ""
        print(f"{parser.prog}: interrupted{saved}", file=sys.stderr)
        return 130
    except RuntimeError as err:  # divergence, out of memory, a size the model cannot take
        print(f"{parser.prog}: error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
