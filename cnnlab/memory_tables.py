"""The book's memory tables (chapter 8): the estimate per model, the largest
batch a card leaves room for, the recorded out-of-memory experiment, and,
on a GPU, measured peaks beside the estimate.

The numbers come from ``cnnlab.memory`` (the estimate, the capped run, a
run's peak); this module only lays them out.
"""
from __future__ import annotations

import torch

from .memory import (FITTED, REPORT_CARD_BYTES, MemoryEstimate, on_meta,
                     torchinfo_estimate_bytes)
from .oom import free_cached_memory

MiB = 2**20


def mib(n: float) -> str:
    """Bytes as MiB with one decimal: '1,423.4'."""
    return f"{n / MiB:,.1f}"


def autocast_total(e: MemoryEstimate) -> int:
    """``e`` under 16-bit autocast (bfloat16 or float16), as an estimate: every
    saved activation at half its float32 size, while the weights, their
    gradients and AdamW's state stay float32. An optimistic figure: a few
    operations (the loss, softmax) keep float32."""
    return e.total - e.activations_bytes // 2


def estimate_table(estimates: dict[str, MemoryEstimate], batch: int):
    """Markdown: each model's estimate by part, beside torchinfo's "Estimated
    Total Size" for the same batch (models built on the meta device)."""
    from .notebook import markdown_table

    rows = []
    for name, e in estimates.items():
        theirs = torchinfo_estimate_bytes(on_meta(name), batch)
        rows.append([name, mib(e.parameters_bytes), mib(e.optimizer_state_bytes),
                     mib(e.activations_bytes), f"**{mib(e.total)}**", mib(theirs),
                     f"{e.total / theirs:.2f}"])
    return markdown_table(["model", "weights = grads", "AdamW", "activations", "total",
                           "torchinfo", "ratio"], rows)


def largest_batch(e: MemoryEstimate, batch: int, available: int) -> int:
    """The largest batch whose estimate fits in ``available`` bytes: the
    fixed part (weights, gradients, optimizer state) plus the activations per
    image, measured at ``batch``, times the batch. 0 if not even one fits."""
    fixed = e.total - e.activations_bytes
    per_image = e.activations_bytes / batch
    return max(0, int((available - fixed) // per_image))


def card_table(estimates: dict[str, MemoryEstimate], batch: int, available: int):
    """Markdown: whether each model's estimate at ``batch`` fits in the
    ``available`` bytes a card leaves for tensors, and the largest batch that does."""
    from .notebook import markdown_table

    rows = [[name, mib(e.total), "fits" if e.total <= available else "**does not fit**",
             mib(available - e.total), f"{largest_batch(e, batch, available):,}"]
            for name, e in estimates.items()]
    return markdown_table(["model", f"estimate at batch {batch} (MiB)", "fits?",
                           "room left (MiB)", "largest batch that fits (estimate)"], rows)


def measured_peak(name: str, batch: int, dtype: torch.dtype | None,
                  device: torch.device | str = "cuda") -> int:
    """Peak CUDA memory, in bytes beyond what was allocated before, of two
    training steps of ``name`` on a random batch of ``batch`` digits.

    ``dtype`` None: float32; else autocast to ``dtype`` through ``train_step``,
    with a GradScaler for float16, as ``cnnlab.train.fit`` trains. The second
    step holds the AdamW state that the first one creates.
    """
    from .models import get_model
    from .train import train_step

    device = torch.device(device)
    free_cached_memory(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(0)
    model = get_model(name).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3,
                                  fused=device.type == "cuda")
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    x = torch.randn(batch, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    for _ in range(2):
        train_step(model, optimizer, x, y, batch, dtype, scaler)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - before
    del model, optimizer, x, y
    free_cached_memory(device)
    return peak


def measured_table(estimates: dict[str, MemoryEstimate], batch: int,
                   device: torch.device | str = "cuda"):
    """Markdown: each model's estimate beside its measured peak (``measured_peak``),
    in float32 and under the autocast dtype the package picks for ``device``
    (``cnnlab.device.autocast_dtype``: bfloat16 or float16)."""
    from .device import autocast_dtype
    from .notebook import markdown_table

    device = torch.device(device)
    dtype = autocast_dtype(device, True)
    label = str(dtype).removeprefix("torch.")
    rows = [[name, mib(e.total), mib(measured_peak(name, batch, None, device)),
             mib(autocast_total(e)), mib(measured_peak(name, batch, dtype, device))]
            for name, e in estimates.items()]
    return markdown_table([f"model (batch {batch})", "estimate, float32",
                           "measured, float32", f"estimate, {label} autocast",
                           f"measured, {label} autocast"], rows)


def oom_record(path=None) -> dict | None:
    """The recorded out-of-memory experiment (``python -m cnnlab record oom``),
    or None while it is not recorded."""
    import json

    from .plan import OOM_FILE
    from .results import RESULTS_DIR

    path = path or RESULTS_DIR / OOM_FILE
    return json.loads(path.read_text()) if path.exists() else None


def _fitted(case: dict) -> bool:
    return case["outcome"] == FITTED


def _card_note(case: dict, available: int) -> str:
    """What a case under the report card's cap says about a real 2 GB card,
    which leaves ``available`` bytes for tensors."""
    total, batch = case["estimate"]["total"], case["batch_size"]
    if not _fitted(case):
        why = (f"its estimate, {mib(total)} MiB, is more than 2 GiB"
               if total > REPORT_CARD_BYTES else "a card leaves less room")
        return (f"Batch {batch} failed under the 2 GiB cap, with the whole 2 GiB for "
                f"its training; {why}, so it cannot fit a 2 GB card either.")
    room = (f"fits, with {mib(available - total)} MiB to spare" if total <= available
            else "does not fit")
    return (f"Batch {batch} trained two steps under the 2 GiB cap, which gave its "
            f"training the whole 2 GiB. A 2 GB card leaves less, so this alone does not "
            f"show that it fits the card; by the estimate ({mib(total)} MiB against the "
            f"{mib(available)} MiB the card leaves for tensors after the assumed CUDA "
            f"context) it {room}.")


def _reading(cases: list[dict]) -> str:
    """What the cases say about the estimate's precision: each outcome it
    got wrong, with how far the step's real need must lie from the estimate,
    and how near its cap the nearest outcome it got right lay."""
    text, right = [], []
    for case in cases:
        total, cap = case["estimate"]["total"], case["cap_bytes"]
        if (total <= cap) == _fitted(case):
            right.append(total / cap - 1)
            continue
        where = f"batch {case['batch_size']} under {cap / 2**30:g} GiB"
        if _fitted(case):
            text.append(f"Wrong for {where}: its estimate was {total / cap - 1:.0%} over "
                        f"the cap, yet it trained, so the two steps needed at least "
                        f"{1 - cap / total:.0%} less than the estimate.")
        else:
            text.append(f"Wrong for {where}: its estimate was {1 - total / cap:.0%} under "
                        f"the cap, yet it failed, so the two steps needed more than "
                        f"{cap / total - 1:.0%} beyond the estimate.")
    if right:
        nearest = min(right, key=abs)
        text.append(f"Of the outcomes it predicted, the nearest its cap had an estimate "
                    f"{abs(nearest):.0%} {'under' if nearest <= 0 else 'over'} it.")
    return " ".join(text)


def oom_markdown(record: dict | None, available: int) -> str:
    """Markdown: the recorded out-of-memory cases against the estimate made
    before each, how many outcomes it predicted, where the record comes
    from, and what the 2 GiB cases say about a 2 GB card that leaves
    ``available`` bytes for tensors."""
    from .notebook import markdown_table
    from .plan import OOM_FILE
    from .provenance import short_commit

    if record is None:
        return (f"No out-of-memory experiment is recorded yet (`results/{OOM_FILE}` "
                "is missing), so this page shows no outcome. "
                "`python -m cnnlab record oom` records it.")
    rows, errors, right = [], [], 0
    for case in record["cases"]:
        total, cap = case["estimate"]["total"], f"{case['cap_bytes'] / 2**30:g} GiB"
        predicted = total <= case["cap_bytes"]
        right += predicted == _fitted(case)
        rows.append([cap, case["batch_size"], f"{total / 2**30:.2f} GiB",
                     f"{total / case['cap_bytes'] - 1:+.0%}",
                     "fits" if predicted else "does not fit",
                     case["outcome"]])
        if case["error"]:
            errors.append(f"* batch {case['batch_size']} under {cap}: "
                          f"`{case['error'].splitlines()[0]}`")
    table = markdown_table(["cap", "batch", "estimate before the run",
                            "estimate against the cap", "predicted", "outcome"], rows).data
    p = record["provenance"]
    text = [table]
    if errors:
        text.append("The error of each failed step, as PyTorch raised it (first line):\n\n"
                    + "\n".join(errors))
    text += [f"`{record['model']}`, recorded {p['date'][:10]} on {p['device_name']} "
             f"({p['cpu_threads']} threads), torch {p['torch']}, commit "
             f"{short_commit(p['git_commit'])}; `python -m cnnlab record oom` reruns it.",
             f"**The estimate predicted {right} of the {len(rows)} outcomes.**",
             _reading(record["cases"])]
    text += [_card_note(case, available) for case in record["cases"]
             if case["cap_bytes"] == REPORT_CARD_BYTES]
    return "\n\n".join(text)


