"""Is a faster CPU recording recipe worth it? Steps per second of each model,
plain against channels_last and against torch.compile, side by side.

For each model and each setting, the report's training step (batch 128,
AdamW 1e-3, float32, the real MNIST batches) is timed in rounds that
alternate between the settings, so a change in the machine's load hits
every setting alike. ``torch.compile``'s one-off compile time is timed on
its own and charged against it over a full run (5 epochs of 375 steps):
it pays off only if ``compile_seconds < steps x (plain - compiled)``.

Only the speed is measured here. A setting is kept for the recorded runs
only where it is faster *and* its accuracy is equal: three one-epoch seeds
with it against the same three without it, each within the other's seed
spread. Those runs are recorded like the experiments (``cnnlab.plan``).

    python benchmarks/cpu_recipe.py                       # every model, ~15 min
    python benchmarks/cpu_recipe.py --models lenet --steps 20 --rounds 2
    python benchmarks/cpu_recipe.py --json results/benchmarks/cpu_recipe.json

Run it on an idle machine (stop the recorder first: SIGTERM saves it); the
script prints the load average before and after so a reader can tell.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

# A fresh compile cache for every run: a cache left by an earlier run would
# make torch.compile look almost free (it did: LeNet's and AlexNet's 3.5 s
# in results/benchmarks/cpu_recipe.json came from a warm cache).
os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="cnnlab-inductor-")

import torch  # noqa: E402  (after the cache is chosen)
import torch.nn.functional as F

from cnnlab.data import DeviceBatches, load_mnist, preprocess
from cnnlab.models import get_model
from cnnlab.provenance import provenance
from cnnlab.results import atomic_write_text
from cnnlab.train import set_seed

MODELS = ("lenet", "alexnet", "resnet18", "mobilenet_v1", "googlenet")
SETTINGS = ("plain", "channels_last", "compile")
FULL_RUN_STEPS = 5 * 375  # the report's recipe: 5 epochs of 375 batches


class Trainer:
    """One model under one setting: its own weights, optimiser and batches."""

    def __init__(self, name: str, setting: str) -> None:
        set_seed(42)
        self.model = get_model(name)
        self.channels_last = setting == "channels_last"
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.step_model = torch.compile(self.model) if setting == "compile" else self.model
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.batches = iter(DeviceBatches(load_mnist().train, 128, shuffle=True, seed=42))
        self.compile_seconds = self.step() if setting == "compile" else 0.0

    def step(self) -> float:
        """One training step; its wall time in seconds."""
        x, y = next(self.batches)
        x = preprocess(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(self.step_model(x), y).backward()
        self.optimizer.step()
        return time.perf_counter() - start


def measure(name: str, steps: int, rounds: int) -> dict:
    """Median seconds per step of each setting, timed in alternating rounds."""
    trainers = {}
    for setting in SETTINGS:
        try:
            trainers[setting] = Trainer(name, setting)
        except Exception as err:  # no compiler here, say: record it, go on
            trainers[setting] = f"{type(err).__name__}: {err}".splitlines()[0]
    times: dict[str, list[float]] = {s: [] for s in SETTINGS}
    for _ in range(rounds):
        for setting, trainer in trainers.items():
            if isinstance(trainer, Trainer):
                trainer.step()  # a warm-up step per round: caches, allocator
                times[setting] += [trainer.step() for _ in range(steps)]
    out = {"model": name}
    plain = statistics.median(times["plain"])
    for setting, trainer in trainers.items():
        if not isinstance(trainer, Trainer):
            out[setting] = {"error": trainer}
            continue
        per_step = statistics.median(times[setting])
        entry = {"seconds_per_step": per_step, "steps_timed": len(times[setting]),
                 "speedup": plain / per_step}
        if setting == "compile":
            entry["compile_seconds"] = trainer.compile_seconds
            saved = FULL_RUN_STEPS * (plain - per_step)
            entry["full_run_speedup"] = ((FULL_RUN_STEPS * plain)
                                         / (FULL_RUN_STEPS * per_step + trainer.compile_seconds))
            entry["pays_off"] = saved > trainer.compile_seconds
        out[setting] = entry
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--json", type=Path, help="write the results here (after each model)")
    args = parser.parse_args()

    report = {"how": f"median seconds per training step (batch 128, AdamW, float32), "
                     f"{args.rounds} alternating rounds of {args.steps} steps per setting; "
                     f"compile time charged over {FULL_RUN_STEPS} steps",
              "compile_cache": "fresh (TORCHINDUCTOR_CACHE_DIR set to an empty folder)",
              "load_average_before": list(os.getloadavg()),
              "provenance": provenance(torch.device("cpu")), "models": []}
    for name in args.models:
        row = measure(name, args.steps, args.rounds)
        report["models"].append(row)
        cells = [f"{s}: {row[s]['speedup']:.2f}x" if "speedup" in row[s]
                 else f"{s}: failed" for s in SETTINGS[1:]]
        print(f"{name:13} plain {row['plain']['seconds_per_step'] * 1000:8.1f} ms/step   "
              + "   ".join(cells), flush=True)
        if args.json:  # written after each model: a stopped run keeps what it measured
            report["load_average_after"] = list(os.getloadavg())
            atomic_write_text(args.json, json.dumps(report, indent=1))
    print(f"load average before: {report['load_average_before'][0]:.1f}, after: "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
