"""Atomic, verified, resumable checkpoints.

A checkpoint is a folder written beside the live one and swapped in by renames, so a crash at
any moment leaves the old or the new checkpoint whole. It holds what training changes (the
parameters that train or have trained, and all buffers), the optimiser and scheduler, the RNG
states and the loop position; the frozen rest is rebuilt from the base model on resume.

Checkpoints are device-independent: tensors are written from CPU copies and read onto the CPU
(`map_location`), and loading puts them where the live parameters are, so a run started on a GPU
resumes on a CPU and the reverse. On several processes rank 0 writes it, holding every process's
RNG states; with fp16 the gradient scaler's state is saved too.

Its manifest (each file's size and SHA-256) is written last, so a folder with a manifest that
matches its files is complete and undamaged. The previous checkpoint stays beside the live one
(checkpoint.old/): a resume that finds the newest damaged (a disk error, a truncated copy)
warns and continues from the previous one.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sys
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from tailorkit.errors import TailorError

LIVE, NEW, OLD = "checkpoint", "checkpoint.tmp", "checkpoint.old"
MANIFEST = "manifest.json"


def _fsync_files(path: Path) -> None:
    for file in path.iterdir():
        with file.open("rb") as f:
            os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    """Make the renames inside `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_manifest(folder: Path) -> None:
    files = {f.name: {"bytes": f.stat().st_size, "sha256": _sha256(f)}
             for f in sorted(folder.iterdir()) if f.name != MANIFEST}
    with (folder / MANIFEST).open("w") as f:
        json.dump(files, f)
        f.flush()
        os.fsync(f.fileno())


def damage(folder: Path) -> str | None:
    """Why the checkpoint in `folder` cannot be trusted; None if its files match its manifest.
    A checkpoint from before manifests existed is trusted as it is."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return None if (folder / "state.json").is_file() else "incomplete (no manifest)"
    try:
        files = json.loads(manifest.read_text())
    except ValueError:
        return "its manifest is damaged"
    for name, expected in files.items():
        file = folder / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != expected["bytes"]:
            return f"{name} has {file.stat().st_size} bytes, not {expected['bytes']}"
        if _sha256(file) != expected["sha256"]:
            return f"{name} does not match its checksum"
    return None


def changed_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Parameters that train now or have trained (they have optimiser state), plus buffers."""
    with_state = {id(p) for p in optimizer.state}
    out = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad or id(p) in with_state}
    persistent = model.state_dict().keys()  # non-persistent buffers are rebuilt, not saved
    out.update({n: b.detach() for n, b in model.named_buffers() if n in persistent})
    return {n: t.contiguous().clone() for n, t in out.items()}


def _cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {n: t.cpu() for n, t in tensors.items()}


def save_checkpoint(run_dir: Path, model, optimizer, scheduler, loop_state: dict,
                    rng_state: dict | list[dict], best_state: dict[str, torch.Tensor] | None,
                    scaler: torch.amp.GradScaler | None = None) -> None:
    """`rng_state`: capture_rng() of this process, or of every process in rank order. A write
    that fails (a full disk) leaves the previous checkpoint as it was and says so."""
    tmp = run_dir / NEW
    try:
        _write_new(tmp, model, optimizer, scheduler, loop_state, rng_state, best_state, scaler)
    except (OSError, RuntimeError, SafetensorError) as err:  # torch.save: "basic_ios::clear: iostream ..."
        shutil.rmtree(tmp, ignore_errors=True)
        free = shutil.disk_usage(run_dir).free / 2**20
        why = str(err).strip() or type(err).__name__
        kept = "no checkpoint was kept yet"
        if (run_dir / LIVE).is_dir():
            kept = (f"the last checkpoint ({run_dir / LIVE}) is as it was; free space, then continue "
                    f"with tailor train --resume {run_dir}")
        raise TailorError(f"{run_dir}: could not write a checkpoint ({why}; {free:,.0f} MB free on that "
                          f"disk); {kept}") from None
    live, old = run_dir / LIVE, run_dir / OLD
    if live.exists():
        shutil.rmtree(old, ignore_errors=True)
        live.rename(old)  # the previous checkpoint stays, to fall back on
    tmp.rename(live)
    _fsync_dir(run_dir)


def _write_new(tmp: Path, model, optimizer, scheduler, loop_state: dict, rng_state: dict | list[dict],
               best_state: dict[str, torch.Tensor] | None, scaler: torch.amp.GradScaler | None) -> None:
    ranks = rng_state if isinstance(rng_state, list) else [rng_state]
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(_cpu(changed_state(model, optimizer)), str(tmp / "model.safetensors"))
    if best_state is not None:
        save_file(_cpu(best_state), str(tmp / "best.safetensors"))
    blob = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "torch_rng": ranks[0]["torch"]}
    if "cuda" in ranks[0]:
        blob["cuda_rng"] = ranks[0]["cuda"]
    if len(ranks) > 1:
        blob["ranks_rng"] = [{k: v for k, v in r.items() if k != "python"} for r in ranks]
    if scaler is not None and scaler.is_enabled():
        blob["scaler"] = scaler.state_dict()
    torch.save(blob, tmp / "optimizer.pt")
    extra = {"python_rng_ranks": [r["python"] for r in ranks]} if len(ranks) > 1 else {}
    (tmp / "state.json").write_text(json.dumps({**loop_state, "python_rng": ranks[0]["python"], **extra}))
    _fsync_files(tmp)
    _write_manifest(tmp)  # last: a folder with a matching manifest is whole


def remove_checkpoints(run_dir: Path) -> None:
    """Once the final model is saved it supersedes them."""
    for name in (LIVE, NEW, OLD):
        shutil.rmtree(run_dir / name, ignore_errors=True)


def candidates(run_dir: Path) -> list[Path]:
    """Checkpoints to resume from, newest first. A finished checkpoint.tmp is the newest (a
    crash came before its rename); an unfinished one is not a checkpoint."""
    found = [run_dir / name for name in (LIVE, OLD) if (run_dir / name).is_dir()]
    new = run_dir / NEW
    return ([new] if (new / MANIFEST).is_file() else []) + found


def find_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint folder there is (not yet verified)."""
    return next(iter(candidates(run_dir)), None)


def load_checkpoint(run_dir: Path, model, optimizer, scheduler, scaler: torch.amp.GradScaler | None = None,
                    rank: int = 0) -> tuple[dict, dict | None]:
    """Restore the newest undamaged checkpoint in place; returns the loop state and the best
    weights (if kept). A damaged one is skipped with a warning. `rank` picks this process's RNG
    states from a multi-process checkpoint (a process the checkpoint does not know keeps its own)."""
    problems = []
    for path in candidates(run_dir):
        reason = damage(path)
        if reason is None:
            try:
                return _restore(path, model, optimizer, scheduler, scaler, rank)
            except Exception as err:  # a damaged pre-manifest checkpoint: a library's reader error
                reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        problems.append(f"{path.name}: {reason}")
        print(f"warning: {path} is damaged ({reason}); trying the previous checkpoint", file=sys.stderr)
    raise TailorError(f"{run_dir}: no usable checkpoint ({'; '.join(problems) or 'none written'}); "
                      "start the run again (tailor train RECIPE --overwrite)")


def _restore(path: Path, model, optimizer, scheduler, scaler, rank: int) -> tuple[dict, dict | None]:
    tensors = load_file(str(path / "model.safetensors"))
    unknown = set(tensors) - set(model.state_dict())
    if unknown:
        raise RuntimeError(f"{path}: checkpoint has tensors the model lacks: {sorted(unknown)[:3]}")
    model.load_state_dict(tensors, strict=False)  # copies onto the parameters' device
    # On the CPU whatever device wrote it; the optimiser moves its state to its parameters.
    blob = torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu")
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    if scaler is not None and "scaler" in blob:
        scaler.load_state_dict(blob["scaler"])
    state = json.loads((path / "state.json").read_text())
    python_rng = state.pop("python_rng")
    ranks_python = state.pop("python_rng_ranks", None)
    ranks = blob.get("ranks_rng")
    if ranks is not None and rank < len(ranks):
        _set_rng({**ranks[rank], "python": ranks_python[rank]})
    elif rank == 0:
        _set_rng({"torch": blob["torch_rng"], "python": python_rng,
                  **({"cuda": blob["cuda_rng"]} if "cuda_rng" in blob else {})})
    best = path / "best.safetensors"
    return state, (load_file(str(best)) if best.exists() else None)


def capture_rng() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # dropout on the GPU draws here
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    if "cuda" in state and torch.cuda.is_available():  # a CPU resume of a GPU run draws anew
        torch.cuda.set_rng_state(state["cuda"])


def _as_tuple(value):
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list) else value
