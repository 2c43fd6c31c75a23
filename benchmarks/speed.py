"""cnnlab's trainer against the classic DataLoader loop, in one process.

For each model, the report's recipe (AdamW 1e-3, batch 128, seed 42) run
(a) the classic way: torchvision MNIST + ToTensor + DataLoader, and a
    ``loss.item()`` per step, as in most tutorials and in the report;
(b) with ``cnnlab.train.fit`` (the split on the device, sliced batches,
    and on CUDA bf16 autocast, channels_last, fused AdamW);
then, with ``--ablate``, (b) again with one optimisation switched off (or
``torch.compile`` switched on) at a time, so each one's effect is measured
in the same process on the same device.

Prints a table: time, images/s, test accuracy, the speed-up over (a), the
achieved FLOP/s (FLOPs of one training step counted with
``torch.utils.flop_counter``) and its share of the device's peak where the
peak is known. Images/s and the speed-up are at steady state: the first
step, with its one-off costs (torch.compile, cudnn's autotuning), is shown
apart ("first step s").

With ``--json`` the rows are written after each model, so a run cut short
keeps every model it finished; a variant that fails is a row with its
error, and the others go on.

    python benchmarks/speed.py                          # LeNet, 5 epochs
    python benchmarks/speed.py --models all --max-steps 300 --ablate
    python benchmarks/speed.py --models all --json results/benchmarks/gpu.json
"""
from __future__ import annotations

import argparse
import functools
import json
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.data import classic_loaders
from cnnlab.models import get_model, list_models
from cnnlab.provenance import provenance
from cnnlab.results import atomic_write_text
from cnnlab.bench import sync
from cnnlab.device import one_line, resolve_device, set_seed
from cnnlab.train import TrainConfig, fit

# Dense bf16 tensor-core peaks from the vendors' data sheets (FLOP/s).
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12, "T4": 65e12}


def device_peak(name: str) -> float | None:
    """The bf16 peak of a known GPU, else None (CPUs: not claimed)."""
    return next((peak for key, peak in PEAK_BF16.items() if key in name), None)


def train_step_flops(model_name: str, batch: int = 128) -> int:
    """FLOPs of one forward + backward pass at ``batch`` (counted, not estimated)."""
    model = get_model(model_name)
    x, y = torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    return counter.get_total_flops()


def classic_fit(config: TrainConfig) -> dict:
    """The classic loop: training seconds, images seen, test accuracy."""
    device = resolve_device(config.device)
    set_seed(config.seed)
    model = get_model(config.model, **config.model_kwargs()).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    train, _, test = classic_loaders(config.batch_size, seed=config.seed)
    limit = config.max_steps or config.epochs * len(train)
    steps, images, running, first = 0, 0, 0.0, None
    sync(device)
    start = time.perf_counter()
    model.train()
    while steps < limit:
        for x, y in train:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            running += loss.item()  # the usual running loss: a sync per step
            steps, images = steps + 1, images + len(y)
            if first is None:  # as cnnlab does: the first step apart
                first = (time.perf_counter() - start, len(y))
            if steps == limit:
                break
    seconds = time.perf_counter() - start
    steady = (images - first[1]) / (seconds - first[0]) if steps > 1 else images / seconds
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in test:
            correct += (model(x.to(device)).argmax(1).cpu() == y).sum().item()
    return {"seconds": seconds, "images_per_s": steady,
            "test_accuracy": correct / len(test.dataset), "first_step_s": first[0]}


def variants(config: TrainConfig, device: torch.device, ablate: bool) -> dict:
    """The cnnlab configurations to time: the default, then one change each."""
    runs = {"cnnlab": config}
    if ablate:
        if device.type == "cuda":
            runs["no autocast"] = replace(config, amp=False)
            runs["no channels_last"] = replace(config, channels_last=False)
        else:  # the CUDA defaults, tried on the CPU
            runs["+autocast"] = replace(config, amp=True)
            runs["+channels_last"] = replace(config, channels_last=True)
        runs["+compile"] = replace(config, compile=True)
    return runs


def attempt(model: str, variant: str, run) -> dict:
    """One timed variant: its row, or a row with the error (the others go on)."""
    try:
        row = {"model": model, "variant": variant, "error": None, **run()}
        print(f"{model} / {variant}: {row['images_per_s']:,.0f} images/s, first step "
              f"{row['first_step_s']:.2f} s", flush=True)
        return row
    except Exception as err:  # noqa: BLE001 - recorded, not raised: the session goes on
        print(f"{model} / {variant} failed: {type(err).__name__}: {one_line(err)}",
              flush=True)
        return {"model": model, "variant": variant,
                "error": f"{type(err).__name__}: {one_line(err)}"}


def cnnlab_fit(config: TrainConfig) -> dict:
    """A cnnlab run's timing and scores, as a row."""
    r = fit(config, progress=False)
    return {"seconds": r.train_seconds, "images_per_s": r.images_per_second,
            "test_accuracy": r.test_accuracy, "first_step_s": r.first_step_seconds,
            "amp_dtype": r.config.get("amp_dtype"),
            "peak_memory_bytes": r.peak_memory_bytes}


def measure(name: str, args: argparse.Namespace, device: torch.device) -> list[dict]:
    config = TrainConfig(model=name, epochs=args.epochs, max_steps=args.max_steps,
                         device=args.device)
    flops_per_image = train_step_flops(name) / 128
    peak = device_peak(provenance(device)["device_name"])
    rows = [attempt(name, "classic DataLoader", lambda: classic_fit(config))]
    for label, cfg in variants(config, device, args.ablate).items():
        rows.append(attempt(name, label, lambda cfg=cfg: cnnlab_fit(cfg)))
    base = rows[0].get("images_per_s")
    for row in rows:
        if row["error"] is None:
            row["speedup"] = None if base is None else row["images_per_s"] / base
            row["tflop_per_s"] = flops_per_image * row["images_per_s"] / 1e12
            row["peak_share"] = None if peak is None else row["tflop_per_s"] * 1e12 / peak
    return rows


def write_json(path: Path, prov: dict, args: argparse.Namespace, rows: list[dict],
               models: list[str]) -> None:
    """The rows so far, atomically: a run cut short keeps what it finished."""
    done = sorted({r["model"] for r in rows}, key=models.index)
    record = {"provenance": prov, "epochs": args.epochs, "max_steps": args.max_steps,
              "models_done": done, "models_left": [m for m in models if m not in done],
              "rows": rows}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")


def print_table(rows: list[dict]) -> None:
    print("| model | loop | train s | first step s | images/s | speed-up | test % "
          "| GFLOP/s | % of peak |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["error"] is not None:
            print(f"| {r['model']} | {r['variant']} | failed: {r['error']} "
                  f"| | | | | | |")
            continue
        first = "" if r["first_step_s"] is None else f"{r['first_step_s']:.2f}"
        share = "n/a" if r["peak_share"] is None else f"{100 * r['peak_share']:.1f}"
        speedup = "n/a" if r["speedup"] is None else f"{r['speedup']:.2f}x"
        print(f"| {r['model']} | {r['variant']} | {r['seconds']:.1f} | {first} "
              f"| {r['images_per_s']:,.0f} | {speedup} "
              f"| {100 * r['test_accuracy']:.2f} | {1000 * r['tflop_per_s']:,.1f} | {share} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lenet"],
                        help="model names, or 'all'")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--max-steps", type=int, default=None,
                        help="a quick look: stop each run after this many steps")
    parser.add_argument("--device", default=None)
    parser.add_argument("--ablate", action="store_true",
                        help="also time each optimisation switched off (compile on)")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    parser.add_argument("--compile-backend", default=None,
                        help="torch.compile's backend (default: inductor); aot_eager "
                             "for a quick dry run on a CPU")
    args = parser.parse_args()
    if args.compile_backend:
        torch.compile = functools.partial(torch.compile, backend=args.compile_backend)
    models = list_models() if args.models == ["all"] else args.models
    unknown = [m for m in models if m not in list_models()]
    if unknown:
        parser.error(f"unknown model {unknown[0]!r}; the models are: all, "
                     f"{', '.join(list_models())}")
    device = resolve_device(args.device)
    prov = provenance(device)

    rows: list[dict] = []
    for name in models:
        rows += measure(name, args, device)
        if args.json:  # after each model: a run cut short keeps what it finished
            write_json(args.json, prov, args, rows, models)
    print(f"device: {prov['device_name']} ({device}), torch {prov['torch']}, "
          f"{prov['cpu_threads']} CPU threads, commit {prov['git_commit']}")
    budget = f"{args.max_steps} steps" if args.max_steps else f"{args.epochs} epochs"
    print(f"recipe: batch 128, AdamW 1e-3, seed 42, {budget}; time = training steps "
          f"only; images/s and speed-up without the first step")
    print_table(rows)


if __name__ == "__main__":
    main()
