"""Checkpoints: everything a run needs to continue bit for bit.

A checkpoint holds the model and optimiser state, the step reached, the
history so far, the data order's generator state and the random states of
Python, NumPy and torch (CPU and CUDA). It is written atomically (a
temporary file in the same folder, then ``os.replace``) and read with
``torch.load(weights_only=True)``, which refuses arbitrary pickled code.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

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


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save({"format": FORMAT, "version": VERSION} | state, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path, config: dict[str, Any]) -> dict[str, Any]:
    """Read a checkpoint and check that it belongs to a run like ``config``.

    Raises CheckpointError, naming the file and what is wrong, for a
    truncated or foreign file, another model, or a different recipe.
    """
    path = Path(path)
    fresh = "Delete it (or pass another --checkpoint path) to start afresh."
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any failure to unpickle means an unusable file
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: cannot be read as a checkpoint, it is truncated "
                              f"or not a cnnlab checkpoint ({first}). {fresh}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a cnnlab checkpoint. {fresh}")
    if state.get("version", 0) > VERSION:
        raise CheckpointError(f"{path}: checkpoint version {state['version']} is newer "
                              f"than this cnnlab reads ({VERSION}); update cnnlab.")
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
