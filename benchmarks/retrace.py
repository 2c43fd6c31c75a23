"""Does today's code, on this machine, retrace a recorded run's first steps?

An experiment's seeds are sometimes recorded at different commits or on
different machines. This retrains a record's config for its first STEPS steps
(twice, to see whether this machine repeats itself) and prints how far the
training losses are from the record's:

    python benchmarks/retrace.py results/experiments/X.json [Y.json ...] [--steps 30]
        [--json results/benchmarks/retrace-<commit>.json]

Equal first losses mean the same initial weights and the same first batch.
Two runs here that agree bit for bit, and a record that drifts from them,
put the drift on the change of machine or of code, and this cannot say which.

``--json`` keeps what it measured, with the provenance of this run, in a
file the book can cite (results/benchmarks/retrace-*.json).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import torch

from cnnlab.files import atomic_write_text
from cnnlab.provenance import provenance
from cnnlab.results import RunResult
from cnnlab.train import TrainConfig, train


def measure(path: str, steps: int) -> dict:
    """Retrain the record's config twice for ``steps`` steps: what matched."""
    record = RunResult.load(path)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in record.config.items() if k in fields})
    config = dataclasses.replace(config, max_steps=steps, test_images=1000)
    first = train(config, progress=False)[1].train_loss[:steps]
    again = train(config, progress=False)[1].train_loss[:steps]
    old = record.train_loss[:steps]
    p = record.provenance
    return {"record": path, "recorded_at": p.get("git_commit"),
            "recorded_on": p.get("device_name"), "steps": steps,
            "first_loss_record": old[0], "first_loss_here": first[0],
            "largest_gap": max(abs(a - b) for a, b in zip(old, first)),
            "identical_twice_here": first == again}


def line(m: dict) -> str:
    """One line: the record, its commit and machine, and the loss gaps."""
    return (f"{m['record']}: recorded at {str(m['recorded_at'])[:7]} on "
            f"{m['recorded_on']}; first loss {m['first_loss_record']:.6f} (record) "
            f"against {m['first_loss_here']:.6f} (here); largest gap over {m['steps']} "
            f"steps {m['largest_gap']:.4f}; trained twice here: "
            f"{'identical' if m['identical_twice_here'] else 'different'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", nargs="+")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--json", help="also write the measurements, with provenance, here")
    args = parser.parse_args()
    measured = []
    for path in args.records:
        measured.append(measure(path, args.steps))
        print(line(measured[-1]), flush=True)
    if args.json:
        record = {"command": "python benchmarks/retrace.py " + " ".join(sys.argv[1:]),
                  "provenance": provenance(torch.device("cpu")), "retraces": measured}
        atomic_write_text(args.json, json.dumps(record, indent=1) + "\n")
        print(f"written to {args.json}")


if __name__ == "__main__":
    main()
