"""Atomic, resumable checkpoints.

A checkpoint is a folder written beside the live one and swapped in by
renames, so a crash at any moment leaves either the old or the new checkpoint
whole. It holds what training changes (the parameters that train or have
trained, and all buffers), the optimiser and scheduler, the RNG states and the
loop position; the frozen rest is rebuilt from the base model on resume.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

LIVE, NEW, OLD = "checkpoint", "checkpoint.tmp", "checkpoint.old"


def _fsync_dir(path: Path) -> None:
    for file in path.iterdir():
        with file.open("rb") as f:
            os.fsync(f.fileno())


def changed_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Parameters that train now or have trained (they have optimiser state), plus buffers."""
    with_state = {id(p) for p in optimizer.state}
    out = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad or id(p) in with_state}
    persistent = model.state_dict().keys()  # non-persistent buffers are rebuilt, not saved
    out.update({n: b.detach() for n, b in model.named_buffers() if n in persistent})
    return {n: t.contiguous().clone() for n, t in out.items()}


def save_checkpoint(run_dir: Path, model, optimizer, scheduler, loop_state: dict,
                    rng_state: dict, best_state: dict[str, torch.Tensor] | None) -> None:
    tmp = run_dir / NEW
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(changed_state(model, optimizer), str(tmp / "model.safetensors"))
    if best_state is not None:
        save_file(best_state, str(tmp / "best.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "torch_rng": rng_state["torch"]}, tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({**loop_state, "python_rng": rng_state["python"]}))
    _fsync_dir(tmp)
    live, old = run_dir / LIVE, run_dir / OLD
    if live.exists():
        shutil.rmtree(old, ignore_errors=True)
        live.rename(old)
    tmp.rename(live)
    shutil.rmtree(old, ignore_errors=True)


def find_checkpoint(run_dir: Path) -> Path | None:
    for name in (LIVE, OLD):  # OLD survives only a crash between the two renames
        if (run_dir / name / "state.json").is_file():
            return run_dir / name
    return None


def load_checkpoint(path: Path, model, optimizer, scheduler) -> tuple[dict, dict | None]:
    """Restore in place; returns the loop state and the best weights (if kept)."""
    tensors = load_file(str(path / "model.safetensors"))
    unknown = set(tensors) - set(model.state_dict())
    if unknown:
        raise RuntimeError(f"{path}: checkpoint has tensors the model lacks: {sorted(unknown)[:3]}")
    model.load_state_dict(tensors, strict=False)
    blob = torch.load(path / "optimizer.pt", weights_only=True)
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    torch.set_rng_state(blob["torch_rng"])
    state = json.loads((path / "state.json").read_text())
    random.setstate(_as_tuple(state.pop("python_rng")))
    best = path / "best.safetensors"
    return state, (load_file(str(best)) if best.exists() else None)


def capture_rng() -> dict:
    return {"torch": torch.get_rng_state(), "python": random.getstate()}


def _as_tuple(value):
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list) else value
