"""Does today's code, on this machine, retrace a recorded run's first steps?

An experiment's seeds are sometimes recorded at different commits or on
different machines. This retrains a record's config for its first STEPS steps
(twice, to see whether this machine repeats itself) and prints how far the
training losses are from the record's:

    python benchmarks/retrace.py results/experiments/X.json [Y.json ...] [--steps 30]

Equal first losses mean the same initial weights and the same first batch.
Two runs here that agree bit for bit, and a record that drifts from them,
put the drift on the change of machine or of code, and this cannot say which.

Measured in this project on 2026-12-07 at commit f8a985d (2-core AMD EPYC,
with the background recorder running), with the same training calls before
they became this script: for
``resnet18-shortcut_reuse_conv1-1ep-cpu-seed43`` and
``resnet18-shortcut_projection-1ep-cpu-seed42`` (recorded at 777d492 on an
Intel Xeon) the first loss matched the record to 1e-6 and the first 30
stayed within 0.037 and 0.040 of it; the same config trained twice here
gave identical losses.
"""
from __future__ import annotations

import argparse
import dataclasses

from cnnlab.results import RunResult
from cnnlab.train import TrainConfig, train


def retrace(path: str, steps: int) -> str:
    """One line: the record, its commit and machine, and the loss gaps."""
    record = RunResult.load(path)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in record.config.items() if k in fields})
    config = dataclasses.replace(config, max_steps=steps, test_images=1000)
    first = train(config, progress=False)[1].train_loss[:steps]
    again = train(config, progress=False)[1].train_loss[:steps]
    old = record.train_loss[:steps]
    gap = max(abs(a - b) for a, b in zip(old, first))
    p = record.provenance
    return (f"{path}: recorded at {str(p.get('git_commit'))[:7]} on {p.get('device_name')}; "
            f"first loss {old[0]:.6f} (record) against {first[0]:.6f} (here); largest gap "
            f"over {steps} steps {gap:.4f}; trained twice here: "
            f"{'identical' if first == again else 'different'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", nargs="+")
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    for path in args.records:
        print(retrace(path, args.steps), flush=True)


if __name__ == "__main__":
    main()
