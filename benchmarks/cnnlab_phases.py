"""``python -m cnnlab ARGS``, with clocks on its phases (for end_to_end.py).

Runs the CLI's own ``main`` in this process and times, without changing
what it does: the imports the run makes (those the CLI makes before it
trains, and the two it makes later: torch._dynamo, which torch.optim
imports at the first optimizer, and tqdm), ``load_mnist``
(data), the training steps (the RunResult's ``train_seconds``), each
``evaluate`` call (validation; the last one is the test pass). Prints them
as the last line, ``PHASES {json}``.

    python benchmarks/cnnlab_phases.py train lenet --out /tmp/r.json
"""
import time

STARTED = time.time()  # before any import: the caller subtracts its own clock
_tick = time.perf_counter()

import json  # noqa: E402
import sys  # noqa: E402

import cnnlab.__main__ as cli  # noqa: E402  (cnnlab, torch, the models)
import cnnlab.train as train_module  # noqa: E402  (the CLI imports it to parse)
# Imported later in the run anyway, so counted here: torch.optim's first
# optimizer imports torch._dynamo (torchvision imports it on the other side),
# and the progress bar imports tqdm.
import torch._dynamo  # noqa: E402, F401
import tqdm.auto  # noqa: E402, F401

phases = {"import": time.perf_counter() - _tick}
calls: list[tuple[float, int]] = []  # (seconds, images) per evaluate call
results = []


def timed(function, record):
    def wrapper(*args, **kwargs):
        tick = time.perf_counter()
        out = function(*args, **kwargs)
        record(time.perf_counter() - tick, args, out)
        return out
    return wrapper


train_module.load_mnist = timed(train_module.load_mnist,
                                lambda s, a, out: phases.__setitem__("data", s))
train_module.evaluate = timed(train_module.evaluate,
                              lambda s, a, out: calls.append((s, len(a[1]))))
train_module.fit = timed(train_module.fit, lambda s, a, out: results.append(out))

status = cli.main(sys.argv[1:])
if results:
    r = results[-1]
    phases |= {"train": r.train_seconds, "val": sum(s for s, _ in calls[:-1]),
               "test": calls[-1][0]}
    print("PHASES " + json.dumps({
        "started": STARTED, "finished": time.time(), "phases": phases,
        "test_accuracy": r.test_accuracy, "val_passes": len(calls) - 1,
        "val_images": sum(n for _, n in calls[:-1]), "device": r.config["device"],
    }))
sys.exit(status)
