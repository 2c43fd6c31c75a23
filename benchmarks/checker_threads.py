"""How many torch threads should a training check use? One or two, timed.

The exercise checkers that train (``slow_start``: two 300-step LeNets;
``lenet_98_5``: 750 steps) run tiny nets, where each operation is too small
to split between threads: a second thread mostly waits at every operation,
and on a CPU that other work shares it waits much longer. This times the
slow_start exercise's run (``fit`` on the exercise's config) with one thread
and with two, in alternating rounds so that a change in the machine's load
hits both alike, and prints the median of each.

    python benchmarks/checker_threads.py [--rounds 3]

Measured in this project (2-core AMD EPYC VM, never idle while measured):
with a background training run on the other core, one thread took 7 s per
run and two threads 48 s; with more work sharing the CPU (load average
about 5), 12.8 s against 147.6 s (``--rounds 1``). The issue that asked for
this (issue 24) saw 4.9 s against 22.5 s. The
checkers therefore train on one thread (``cnnlab.exercises._harness.one_thread``;
a check's child process starts with one thread in any case).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from cnnlab.train import TrainConfig, fit


def one_run(threads: int) -> float:
    """Seconds for the slow_start exercise's sigmoid run on ``threads`` threads."""
    config = TrainConfig(model="lenet", options={"activation": "sigmoid"}, max_steps=300,
                         eval_every=300, val_images=1_000, test_images=1_000, device="cpu")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        start = time.perf_counter()
        fit(config, progress=False)
        return time.perf_counter() - start
    finally:
        torch.set_num_threads(before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    one_run(1)  # warm-up: data loading, first allocations
    times: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.rounds):
        for threads in times:
            times[threads].append(one_run(threads))
    for threads, seconds in times.items():
        print(f"{threads} thread{'s' if threads > 1 else ''}: median "
              f"{statistics.median(seconds):.1f} s per 300-step run "
              f"({', '.join(f'{s:.1f}' for s in seconds)})")


if __name__ == "__main__":
    main()
