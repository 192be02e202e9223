"""Pooled features, computed once per (model, data, preprocessing, pooling) and cached.

The key hashes everything the features depend on: the model's identity (its files' names,
sizes and modification times, or the seed of a from-scratch model), the encoded inputs
themselves (token ids after truncation, or the image bytes), the preprocessing (max_length, the
evaluation image transform), the pooling and bf16. Change any of them and the key changes; the
labels are not in it, since the features do not depend on them.

`memory` keeps tensors for the life of the process; `disk` writes one safetensors file per key
under `cache_dir()/features` (written to a temporary name, then renamed, so a crash never
leaves half a file under a real key).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from tailorkit.data.batching import eval_batches
from tailorkit.device import autocast, model_device, to_device
from tailorkit.sources import cache_dir

MEMORY_ENTRIES = 32  # splits kept in memory (least recently used go first)
_MEMORY: OrderedDict[str, torch.Tensor] = OrderedDict()


class EncodedFeatures:
    """A split of cached features for the training loop: fixed size, so every 'length' is 1."""

    def __init__(self, features: torch.Tensor, targets: np.ndarray) -> None:
        self.features, self.targets = features, targets
        self.lengths = np.ones(len(features), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.features)

    def collate(self, indices: list[int]) -> dict[str, torch.Tensor]:
        return {"features": self.features[indices], "labels": torch.as_tensor(self.targets[indices])}


def files_identity(path: Path) -> list:
    """(name, size, mtime) of a weights file, or of every file directly in a model folder."""
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    return [[p.name, (st := p.stat()).st_size, st.st_mtime_ns] for p in files]


def split_fingerprint(data) -> str:
    """What a split trains or scores on: its inputs (data_hash) and its targets, or for
    instruction data which tokens are supervised. A resume compares it with the run's."""
    h = hashlib.sha256(data_hash(data).encode())
    targets = getattr(data, "targets", None)
    if isinstance(targets, np.ndarray):
        h.update(targets.tobytes())
    for row in getattr(data, "labels", None) or []:
        h.update(np.asarray(row, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def data_hash(data) -> str:
    """A hash of the encoded inputs: token ids (and token types), or image pixels and shapes."""
    h = hashlib.sha256()
    if hasattr(data, "input_ids"):
        h.update(data.lengths.tobytes())
        for rows in (data.input_ids, getattr(data, "token_type_ids", None) or []):
            for row in rows:
                h.update(np.asarray(row, dtype=np.int64).tobytes())
    else:
        for image in data.images.images:
            h.update(str(image.shape).encode())
            h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()


def cache_key(identity: dict, data) -> str:
    payload = json.dumps({"version": 1, **identity, "data": data_hash(data)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:40]


@torch.inference_mode()
def extract(model, data, batch_size: int, bf16: bool, progress: str | None = None) -> torch.Tensor:
    """Features of every example, in the split's order (batches are length-sorted inside);
    `progress`: the label of a progress bar on stderr (None: no bar)."""
    model.eval()
    device = model_device(model)  # computed where the model is; kept in host memory
    out: torch.Tensor | None = None
    batches = tqdm(eval_batches(data.lengths, batch_size), desc=progress, disable=progress is None,
                   total=-(-len(data) // batch_size), unit="batch", dynamic_ncols=True)
    for indices in batches:
        batch = {k: v for k, v in to_device(data.collate(indices), device).items() if k != "labels"}
        with autocast(device, bf16):
            features = model.extract(**batch).float().cpu()
        if out is None:
            out = torch.empty((len(data), features.shape[-1]), dtype=torch.float32)
        out[indices] = features
    assert out is not None
    return out


def cached_features(model, data, key: str, where: str, batch_size: int, bf16: bool,
                    progress: str | None = None) -> tuple[torch.Tensor, bool]:
    """The features of `data` under `key` ("memory" or "disk" cache); True if found there."""
    if where == "memory" and key in _MEMORY:
        _MEMORY.move_to_end(key)
        return _MEMORY[key], True
    path = _disk_path(key)
    if where == "disk" and path.is_file():
        return load_file(str(path))["features"], True
    features = extract(model, data, batch_size, bf16, progress)
    if where == "memory":
        _MEMORY[key] = features
        while len(_MEMORY) > MEMORY_ENTRIES:
            _MEMORY.popitem(last=False)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.tmp-{os.getpid()}")
        save_file({"features": features}, str(tmp))
        tmp.replace(path)
    return features, False


def clear_memory_cache() -> None:
    _MEMORY.clear()


def _disk_path(key: str) -> Path:
    return cache_dir() / "features" / f"{key}.safetensors"
