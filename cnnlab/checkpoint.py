"""Checkpoints: everything a run needs to continue bit for bit.

A checkpoint holds the model and optimiser state, the step reached, the
history so far, the data order's generator state and the random states of
Python, NumPy and torch (CPU and CUDA). It is written atomically
(``cnnlab.files.atomic_write``) and read with
``torch.load(weights_only=True)``, which refuses arbitrary pickled code.

``save_run`` and ``restore_run`` are what the training loop calls;
``check_checkpoint_path`` and ``checkpoint_lock`` guard the path before a
run starts; ``restore_problem`` checks every field before anything is used.
"""
from __future__ import annotations

import io
import logging
import math
import random
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from .files import atomic_write, check_writable
from .results import check_field_types

log = logging.getLogger("cnnlab")

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

FORMAT = "cnnlab-checkpoint"
VERSION = 1

# The settings that shape the path to the checkpoint: a run that resumes
# must share them. ``epochs`` and ``max_steps`` may change (train longer);
# the device and speed switches may change too, at the price of bit-identity.
TRAJECTORY_FIELDS = ("model", "batch_size", "lr", "weight_decay", "seed", "dropout",
                     "options", "eval_every", "eval_subset", "val_images",
                     "test_images")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used for this run."""


def rng_states() -> dict[str, Any]:
    """The random states of Python, NumPy and torch, in weights_only-safe types."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what ``rng_states`` captured."""
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


# What a checkpoint must hold for a run to continue from it.
REQUIRED = ("config", "step", "micro_batch", "model_state", "optimizer_state",
            "train_loss", "history", "generator_state", "rng")


@contextmanager
def checkpoint_lock(path: str | Path | None) -> Iterator[None]:
    """Hold ``path`` for one run: a second run given the same checkpoint while
    the first is training is refused (CheckpointError), instead of the two
    overwriting each other's saves.

    The lock is ``flock`` on a file beside the checkpoint (``PATH.lock``),
    which the system releases if the process dies, even by ``kill -9``; it is
    removed when the run ends. Without ``fcntl`` (Windows) nothing is held.
    """
    if path is None or fcntl is None:
        yield
        return
    lock = Path(f"{path}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CheckpointError(f"{path}: another run is using this checkpoint now "
                                  f"({lock} is held). Wait for it to end, or give this "
                                  f"run another --checkpoint path.") from None
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)  # while still held: no one else holds it


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically to ``path``.

    A failed write (a full disk, say) raises an OSError that names ``path``
    and the reason, and leaves the previous checkpoint whole.
    """
    # Serialised in memory first, then written by Python: a disk that fills
    # mid-write then raises the OSError that names the cause (No space left on
    # device). torch's own writer, to a path or a file, reports only
    # "enforce fail ... unexpected pos". The cost: one copy of the checkpoint
    # in memory for a moment.
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION} | state, buffer)
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        f.write(buffer.getbuffer())
    return Path(path)


def load_checkpoint(path: str | Path, config: dict[str, Any]) -> dict[str, Any]:
    """Read a checkpoint and check that it belongs to a run like ``config``.

    Raises CheckpointError, naming the file and what is wrong, for a
    truncated or foreign file, another model, or a different recipe.
    """
    path = Path(path)
    fresh = "Pass another --checkpoint path to start afresh."  # never "delete": whose?
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (PermissionError, IsADirectoryError, FileNotFoundError) as err:
        raise CheckpointError(f"{path}: cannot be read ({err.strerror or err}). "
                              f"{fresh}") from None
    except Exception:  # any failure to unpickle means an unusable file; torch's
        # own words (a bare number, a note on weights_only) would not help here
        raise CheckpointError(f"{path}: cannot be read as a checkpoint, it is truncated "
                              f"or not a cnnlab checkpoint. {fresh} (A truncated "
                              f"checkpoint of yours may be deleted.)") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a cnnlab checkpoint. {fresh}")
    version = state.get("version")
    if not isinstance(version, int):
        raise CheckpointError(f"{path}: not a cnnlab checkpoint (no version). {fresh}")
    if version > VERSION:
        raise CheckpointError(f"{path}: checkpoint version {version} is newer "
                              f"than this cnnlab reads ({VERSION}); update cnnlab.")
    missing = [key for key in REQUIRED if key not in state]
    if missing or not isinstance(state["config"], dict) or "model" not in state["config"]:
        raise CheckpointError(f"{path}: an incomplete cnnlab checkpoint (missing "
                              f"{', '.join(missing) or 'config.model'}). {fresh}")
    saved = state["config"]
    if saved["model"] != config["model"]:
        raise CheckpointError(f"{path}: the checkpoint is for model {saved['model']!r}, "
                              f"this run trains {config['model']!r}. {fresh}")
    differ = [f"{k}: checkpoint {saved.get(k)!r}, this run {config.get(k)!r}"
              for k in TRAJECTORY_FIELDS if saved.get(k) != config.get(k)]
    if differ:
        raise CheckpointError(f"{path}: the checkpoint was made with another recipe ("
                              + "; ".join(differ) + f"). Resume with the same settings, "
                              f"or {fresh[0].lower()}{fresh[1:]}")
    return state


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # True is not step 1


def restore_problem(state: dict[str, Any], total_steps: int, batch_size: int,
                    history_cls: type) -> str | None:
    """What makes a checkpoint unusable for a run of ``total_steps`` steps of
    batch ``batch_size`` (a field of the wrong type or out of range, a NaN
    loss or weight), naming the field; None when it can be restored.

    ``history_cls``: the dataclass the checkpoint's history must fit.
    """
    step, micro = state["step"], state["micro_batch"]
    if not _is_int(step) or step < 0:
        return f"step must be a whole number of steps done, got {step!r}"
    if step > total_steps:
        return None  # the caller says how to continue it (raise --epochs)
    if not _is_int(micro) or not 1 <= micro <= batch_size:
        return f"micro_batch must be an integer in 1..{batch_size}, got {micro!r}"
    losses = state["train_loss"]
    if not isinstance(losses, list) or len(losses) != step:
        n = len(losses) if isinstance(losses, list) else type(losses).__name__
        return f"train_loss must hold one loss per step done ({step}), got {n}"
    if not all(isinstance(v, float) and math.isfinite(v) for v in losses):
        return "train_loss holds a NaN, infinite or non-number loss"
    history = state["history"]
    if not isinstance(history, dict) or set(history) - {f.name for f in fields(history_cls)}:
        return "history is not a cnnlab history"
    try:
        check_field_types(history_cls, history, "history.")
    except ValueError as err:
        return str(err)
    scores = history.get("val_loss", []) + history.get("val_accuracy", [])
    if any(not math.isfinite(v) for v in scores):
        return "history holds a NaN or infinite validation score"
    if any(v > step for v in history.get("val_step", [])):
        return f"history has a validation point after step {step}, where it stopped"
    weights = state["model_state"]
    if not isinstance(weights, dict) or not all(torch.is_tensor(v) for v in weights.values()):
        return "model_state is not a set of weight tensors"
    for name, tensor in weights.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            return f"model_state.{name} holds NaN or infinite weights"
    return None


@contextmanager
def claim_checkpoint(path: str | Path | None, resume: bool) -> Iterator[None]:
    """Hold the checkpoint ``path`` for one run (``with`` block): it can be
    written, one already there is continued (``resume``), never overwritten,
    and no other run uses it meanwhile (``checkpoint_lock``). None: no
    checkpoint, nothing to hold."""
    if resume and path is None:
        raise ValueError("resume=True needs the checkpoint path to resume from")
    if path is None:
        yield
        return
    check_writable(path, "checkpoint")  # before the lock file beside it
    with checkpoint_lock(path):
        check_checkpoint_path(path, resume)
        yield


def check_checkpoint_path(path: str | Path, resume: bool) -> None:
    """Before anything runs: the checkpoint can be written, and a checkpoint
    already there is continued (resume), never overwritten."""
    check_writable(path, "checkpoint")
    if Path(path).exists() and not resume:
        raise CheckpointError(f"{path}: a file is already there. If it is this run's "
                              f"checkpoint, continue it with resume=True (--resume); "
                              f"otherwise choose another path to start afresh.")


def save_run(path: str | Path, config: dict[str, Any], model: torch.nn.Module,
             optimizer: torch.optim.Optimizer, step: int, micro_batch: int,
             losses: list[float], history: dict[str, Any], generator_state: torch.Tensor,
             last: bool = False) -> None:
    """Write everything ``restore_run`` needs to continue bit for bit.

    ``last``: the save of a finished run, which may fail (a full disk)
    without failing the run: its result is worth more than its checkpoint.
    Earlier saves fail the run, as they must.
    """
    try:
        save_checkpoint(path, {
            "config": config, "step": step, "micro_batch": micro_batch,
            "model_state": model.state_dict(), "optimizer_state": optimizer.state_dict(),
            "train_loss": losses, "history": history,
            "generator_state": generator_state, "rng": rng_states(),
        })
    except OSError as err:
        if not last:
            raise
        log.warning("the run finished, but its last checkpoint could not be written "
                    "(%s: %s); the previous one stays at %s, and the result is kept",
                    path, err.strerror or err, path)


@dataclass
class Restored:
    """What ``restore_run`` hands back to the loop."""

    step: int                     # steps done
    micro: int                    # micro-batch size reached
    losses: list[float]           # one per step done
    history: dict[str, Any]       # the History's fields
    generator_state: torch.Tensor  # the data order of the epoch in progress


def restore_run(path: str | Path, config: dict[str, Any], total_steps: int,
                batch_size: int, history_cls: type, model: torch.nn.Module,
                optimizer: torch.optim.Optimizer) -> Restored:
    """Load the checkpoint at ``path`` into ``model``, ``optimizer`` and the
    random generators, once every field is checked (``restore_problem``);
    CheckpointError, naming the file and the field, when it cannot be."""
    saved = load_checkpoint(path, config)
    step = saved["step"]
    problem = restore_problem(saved, total_steps, batch_size, history_cls)
    if problem:
        raise CheckpointError(f"{path}: the checkpoint cannot be restored: {problem}. "
                              f"Pass another --checkpoint path to start afresh.")
    if step > total_steps:
        raise CheckpointError(f"{path}: the checkpoint is at step {step}, beyond this "
                              f"run's {total_steps} steps; raise --epochs (or --max-steps) "
                              f"to continue it.")
    try:
        model.load_state_dict(saved["model_state"])
        optimizer.load_state_dict(saved["optimizer_state"])
        set_rng_states(saved["rng"])
    except (RuntimeError, KeyError, TypeError, ValueError, IndexError) as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        why = lines[0] if lines else type(err).__name__  # torch's first line says it
        raise CheckpointError(f"{path}: the checkpoint cannot be restored ({why}). Pass "
                              f"another --checkpoint path to start afresh.") from None
    return Restored(step, saved["micro_batch"], saved["train_loss"], saved["history"],
                    saved["generator_state"])
