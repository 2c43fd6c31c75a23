"""The first thing to run on a lent GPU: every model, a few steps, every CUDA path.

For each model, a few training steps with the CUDA defaults (autocast,
channels_last, fused AdamW), then the same with ``torch.compile``, each
timed. On CUDA, ``torch.cuda.set_sync_debug_mode("warn")`` is on, and every
host sync it reports is counted by the line of Python that caused it: a
sync inside ``train_step`` would be a bug (validation and the test pass
read their results back, once per pass, by design). A compiled run also
records how many graphs it compiled: more than one means it compiled
again mid-run (a batch of another size, say).

Each (model, variant) is written to ``OUT/<model>-<variant>.json`` the
moment it finishes, failed or not, so a call cut short keeps everything it
finished; a failure is recorded and the rest go on. The compiled variants
start only while ``--budget`` seconds have not passed (compiling takes
tens of seconds per model); those left are recorded as skipped.

    python benchmarks/gpu_smoke.py --out /tmp/smoke                  # a GPU
    python benchmarks/gpu_smoke.py --out /tmp/smoke --device cpu --steps 3 \\
        --models lenet --compile-backend aot_eager                   # a dry run
"""
from __future__ import annotations

import argparse
import functools
import json
import time
import warnings
from collections import Counter
from dataclasses import replace
from pathlib import Path

import torch

from cnnlab.models import list_models
from cnnlab.results import atomic_write_text
from cnnlab.device import one_line, resolve_device
from cnnlab.train import TrainConfig, fit

# Cheap models first: a call cut short has proved the most models.
ORDER = ["lenet", "alexnet", "mobilenet_v1", "resnet18", "googlenet", "alexnet_large"]


def sync_sites(caught: list[warnings.WarningMessage]) -> dict[str, int]:
    """The host syncs CUDA's sync debug mode warned about, counted by the line
    of Python that caused each."""
    return dict(Counter(f"{Path(w.filename).name}:{w.lineno}" for w in caught
                        if "synchroniz" in str(w.message)))


def run_one(config: TrainConfig, on_cuda: bool) -> dict:
    """Train ``config``; its timing, memory, precision and host syncs (or its error)."""
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if on_cuda:
            torch.cuda.set_sync_debug_mode("warn")
        try:
            r = fit(config, progress=False)
            row = {"outcome": "ok", "error": None,
                   "first_step_s": r.first_step_seconds, "train_s": r.train_seconds,
                   "images_per_s": r.images_per_second,
                   "amp_dtype": r.config.get("amp_dtype"),
                   "channels_last": r.config.get("channels_last"),
                   "peak_memory_bytes": r.peak_memory_bytes,
                   "peak_memory_kind": r.peak_memory_kind,
                   "final_loss": r.train_loss[-1], "test_accuracy": r.test_accuracy}
            if config.compile:  # 1 expected; more: the run compiled again mid-way
                row["compiled_graphs"] = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        except Exception as err:  # noqa: BLE001 - recorded; the other models go on
            row = {"outcome": "failed", "error": f"{type(err).__name__}: {one_line(err)}"}
        finally:
            if on_cuda:
                torch.cuda.set_sync_debug_mode("default")
    row["wall_s"] = time.perf_counter() - start
    row["host_syncs"] = sync_sites(caught)
    return row


def save(out: Path, model: str, variant: str, row: dict) -> None:
    """One (model, variant)'s row, written at once (atomically)."""
    row = {"model": model, "variant": variant, **row}
    atomic_write_text(out / f"{model}-{variant}.json", json.dumps(row, indent=1) + "\n")
    detail = row["error"] or f"{row['images_per_s']:,.0f} images/s, first step " \
                             f"{row['first_step_s']:.2f} s"
    print(f"{model} / {variant}: {row['outcome']}, {row.get('wall_s', 0):.1f} s wall "
          f"({detail})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the JSON files")
    parser.add_argument("--models", nargs="+", default=ORDER, help="model names")
    parser.add_argument("--steps", type=int, default=30, help="training steps per run")
    parser.add_argument("--device", default=None, help="default: the best there is")
    parser.add_argument("--budget", type=float, default=75.0,
                        help="seconds after which no compiled run starts")
    parser.add_argument("--compile-backend", default=None,
                        help="torch.compile's backend (default: inductor); "
                             "aot_eager for a quick dry run on a CPU")
    args = parser.parse_args()
    unknown = [m for m in args.models if m not in list_models()]
    if unknown or args.steps <= 0:
        parser.error(f"unknown model {unknown[0]!r}; the models are: "
                     f"{', '.join(list_models())}" if unknown else "--steps must be >= 1")
    device = resolve_device(args.device)
    on_cuda = device.type == "cuda"
    if args.compile_backend:
        torch.compile = functools.partial(torch.compile, backend=args.compile_backend)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    configs = {m: TrainConfig(model=m, max_steps=args.steps, eval_every=10**6,
                              val_images=1000, test_images=1000, device=str(device),
                              amp=True, channels_last=True) for m in args.models}
    for model, config in configs.items():  # the eager CUDA paths, every model
        save(args.out, model, "eager", run_one(config, on_cuda))
    for model, config in configs.items():  # then torch.compile, while time remains
        if time.perf_counter() - start > args.budget:
            save(args.out, model, "compile",
                 {"outcome": "skipped", "error": f"not started: past the "
                                                  f"{args.budget:g} s budget"})
            continue
        torch._dynamo.reset()  # each model compiles from scratch, as in a new process
        torch._dynamo.utils.counters.clear()
        save(args.out, model, "compile", run_one(replace(config, compile=True), on_cuda))


if __name__ == "__main__":
    main()
