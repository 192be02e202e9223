"""Where a run computes (`train.device`) and in which precision (`train.precision`).

One place turns the recipe's words into a `torch.device`, an autocast context and a gradient
scaler, so the loop, the evaluator, the feature and frozen-prefix caches and inference agree; it
sits beside errors.py, below every package, because all of them ask it. Checkpoints
never hold a device: they are written from CPU copies and read with `map_location="cpu"`, and
`load_state_dict` puts each tensor where the live parameter is.
"""

from __future__ import annotations

import contextlib
import os

import torch

from tailorkit.errors import TailorError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def available() -> str:
    """The best device here, in `auto`'s order: CUDA, then Apple MPS, then CPU."""
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    return "mps" if mps is not None and mps.is_available() else "cpu"


def resolve(spec: str = "auto", fallback: bool = False) -> torch.device:
    """`train.device` as a torch.device. Under torchrun, plain `cuda` (and `auto` on a GPU
    machine) means this process's GPU, cuda:LOCAL_RANK. A device that is not here is an error
    naming the field; with `fallback` (reading a finished run back on another machine) it is
    `auto`'s choice instead."""
    name = available() if spec == "auto" else spec
    kind, _, index = name.partition(":")
    problem = None
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            built = "a build without CUDA" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
            problem = f"asks for {spec}, but torch {torch.__version__} ({built}) sees no CUDA device"
        elif index and int(index) >= count:
            problem = f"asks for {spec}, but there are {count} CUDA device(s): cuda:0..cuda:{count - 1}"
        elif not index:
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % count)
    elif kind == "mps" and available() != "mps":
        problem = "asks for mps, but Apple's Metal (MPS) backend is not available here"
    if problem is None:
        return torch.device(name)
    if fallback:
        return resolve("auto")
    raise TailorError(f"train.device: {problem}; use train.device: auto (picks {available()} here) "
                      "or cpu")


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse a dtype the device cannot autocast to, before any model loads."""
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise TailorError(f"train.precision: bf16 is not supported on {torch.cuda.get_device_name(device)}; "
                          "use fp16 (with a gradient scaler) or fp32")


def autocast(device: torch.device | str, precision: str | bool):
    """The autocast context of `precision` on `device`; fp32 (or False) is a no-op.
    `True` stands for bf16 (callers that still pass the old bf16 flag)."""
    precision = {True: "bf16", False: "fp32"}.get(precision, precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    kind = torch.device(device).type
    return torch.autocast(kind, dtype=DTYPES[precision])


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """fp16 gradients underflow without loss scaling; bf16 and fp32 need none (the scaler is
    then disabled and every call on it is a no-op)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def to_device(batch: dict, device: torch.device) -> dict:
    """A collated batch's tensors on `device` (a no-op where they already are)."""
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()}


def model_device(model: torch.nn.Module) -> torch.device:
    """Where the model's parameters are (CPU for a model without parameters)."""
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def peak_memory_mb(device: torch.device) -> dict:
    """Peak accelerator memory of this process, for summary.json: on CUDA the peak allocated
    by tensors (torch's caching allocator may hold more from the driver: `reserved`)."""
    if device.type == "cuda":
        return {"device": str(device),
                "peak_allocated_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1),
                "peak_reserved_mb": round(torch.cuda.max_memory_reserved(device) / 2**20, 1)}
    if device.type == "mps" and hasattr(torch, "mps"):
        return {"device": "mps", "allocated_mb": round(torch.mps.driver_allocated_memory() / 2**20, 1)}
    return {"device": str(device)}
