"""Checkpoints: written atomically, loaded with weights_only=True, found by step number.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (nothing that
needs pickle's code execution), so `torch.load(..., weights_only=True)` reads it. It holds
everything an exact resume needs: model, optimizer, schedule, step, RNG states and the
data position of every rank.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from pipeline.io import atomic_path

FORMAT = "opencorpus-gpt/1"
_NAME = re.compile(r"^step-(\d{8})\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint is unreadable or does not belong to this run; the message names the file."""


def checkpoint_dir(run_dir) -> Path:
    return Path(run_dir) / "checkpoints"


def checkpoint_path(run_dir, step: int) -> Path:
    return checkpoint_dir(run_dir) / f"step-{step:08d}.pt"


def list_checkpoints(run_dir) -> list[tuple[int, Path]]:
    """(step, path) of complete checkpoints, oldest first (temporary files never match)."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def latest_checkpoint(run_dir) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def save_checkpoint(state: dict, run_dir, step: int, keep: int = 2) -> Path:
    """Write `state` as step-NNNNNNNN.pt via a temporary file and an atomic rename; prune old ones."""
    path = checkpoint_path(run_dir, step)
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **state}, tmp)
    if keep > 0:
        for _, old in list_checkpoints(run_dir)[:-keep]:
            old.unlink(missing_ok=True)
    return path


def load_checkpoint(path) -> dict:
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, bad pickle, disallowed global, ...
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not loadable with weights_only=True ({type(e).__name__}: {e}); "
            f"delete it to resume from an earlier one, or start a new run folder"
        ) from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not an {FORMAT} checkpoint")
    for key in ("model", "model_config", "step"):
        if key not in state:
            raise CheckpointError(f"checkpoint {path} lacks {key!r}")
    return state
