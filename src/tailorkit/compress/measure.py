"""What a compression step bought: file size, parameters, latency at several batch sizes."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

from tailorkit.compress.quantize import quantized_layers
from tailorkit.compress.quantize_weights import WeightOnlyLinear
from tailorkit.data.batching import eval_batches
from tailorkit.models.handle import ModelHandle


def weights_mb(folder: Path) -> float:
    """The weight files of a model folder (config and tokenizer files excluded)."""
    files = [f for f in folder.iterdir() if f.suffix in (".safetensors", ".bin", ".skops")]
    return round(sum(f.stat().st_size for f in files) / 2**20, 3)


def source_weights_mb(model_dir: Path, handle: ModelHandle) -> float:
    """The size of the model a compression starts from: the source run's weight files where they
    hold the whole model (a full fine-tuning run); where they hold only an adapter (a LoRA run),
    the merged model `handle`, saved as a plain model folder the same way, so a compressed step
    is set beside the model it came from and not beside the adapter file."""
    if not (model_dir / "adapter_config.json").is_file():
        return weights_mb(model_dir)
    with tempfile.TemporaryDirectory() as scratch:
        handle.save(Path(scratch))
        return weights_mb(Path(scratch))


def parameter_counts(handle: ModelHandle) -> dict:
    """Floating-point parameters, and how many are not zero (int8 and int4 layers count by their
    weights)."""
    total = nonzero = 0
    int8 = set(quantized_layers(handle.model).values())
    seen: set[int] = set()  # a tied weight (a causal LM's embeddings and output layer) counts once
    for module in handle.model.modules():
        tensors = [module.weight().int_repr(), module.bias()] if module in int8 else []
        if isinstance(module, WeightOnlyLinear):
            tensors = [module.dequantized()]
        own = [p for p in module.parameters(recurse=False) if id(p) not in seen]
        seen |= {id(p) for p in own}
        tensors = [t for t in tensors + own if t is not None]
        for t in tensors:
            total += t.numel()
            nonzero += int((t != 0).sum())
    return {"total": total, "nonzero": nonzero}


@torch.inference_mode()
def latency_ms(handles: list[ModelHandle], data, batch_sizes: list[int], examples: int,
               repeats: int = 5) -> list[dict]:
    """Milliseconds per batch of each model at each batch size, over the same first `examples`
    examples of `data`: medians of `repeats` passes, the models taking turns within every
    repeat, so a busy moment of the machine slows them alike and their ratio holds."""
    n = min(examples, len(data))
    out: list[dict] = [{} for _ in handles]
    for handle in handles:
        handle.model.eval()
    for size in batch_sizes:
        batches = [data.collate(b) for b in eval_batches(data.lengths[:n], size)]
        passes: list[list[float]] = [[] for _ in handles]
        for handle in handles:
            handle.forward(batches[0])  # warm-up
        for _ in range(repeats):
            for handle, times in zip(handles, passes, strict=True):
                started = time.perf_counter()
                for batch in batches:
                    handle.forward(batch)
                times.append((time.perf_counter() - started) / len(batches))
        for result, times in zip(out, passes, strict=True):
            result[str(size)] = round(1000 * statistics.median(times), 3)
    return out
