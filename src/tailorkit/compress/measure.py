"""What a compression step bought: file size, parameters, latency at several batch sizes."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from tailorkit.compress.quantize import quantized_layers
from tailorkit.data.batching import eval_batches
from tailorkit.models.handle import ModelHandle


def weights_mb(folder: Path) -> float:
    """The weight files of a model folder (config and tokenizer files excluded)."""
    files = [f for f in folder.iterdir() if f.suffix in (".safetensors", ".bin", ".skops")]
    return round(sum(f.stat().st_size for f in files) / 2**20, 3)


def parameter_counts(handle: ModelHandle) -> dict:
    """Floating-point parameters, and how many are not zero (int8 layers count by their weights)."""
    total = nonzero = 0
    int8 = set(quantized_layers(handle.model).values())
    for module in handle.model.modules():
        tensors = [module.weight().int_repr()] if module in int8 else []
        tensors += [p for p in module.parameters(recurse=False)]
        for t in tensors:
            total += t.numel()
            nonzero += int((t != 0).sum())
    return {"total": total, "nonzero": nonzero}


@torch.inference_mode()
def latency_ms(handle: ModelHandle, data, batch_sizes: list[int], examples: int, repeats: int = 3) -> dict:
    """Milliseconds per batch at each batch size: the median of `repeats` passes over the same
    first `examples` examples of `data`, after one warm-up batch."""
    model = handle.model
    was_training = model.training
    model.eval()
    n = min(examples, len(data))
    out = {}
    for size in batch_sizes:
        batches = [data.collate(b) for b in eval_batches(data.lengths[:n], size)]
        handle.forward(batches[0])
        passes = []
        for _ in range(repeats):
            started = time.perf_counter()
            for batch in batches:
                handle.forward(batch)
            passes.append((time.perf_counter() - started) / len(batches))
        out[str(size)] = round(1000 * statistics.median(passes), 3)
    model.train(was_training)
    return out
