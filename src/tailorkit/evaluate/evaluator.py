"""Run a model over an encoded split and score it."""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext

import numpy as np
import pandas as pd
import torch

from tailorkit.data.batching import EncodedSplit, eval_batches
from tailorkit.device import autocast, to_device
from tailorkit.evaluate.lm_head_loss import ChunkedLMLoss
from tailorkit.evaluate.metrics import classification_metrics, regression_metrics
from tailorkit.evaluate.token_loss import token_loss_sum
from tailorkit.models.first_token import first_token_only
from tailorkit.models.handle import ModelHandle

# logits of (split, example indices, their batch); the trainer's can reuse cached frozen blocks
Forward = Callable[[object, list[int], dict], torch.Tensor]


@torch.inference_mode()
def predict_logits(handle: ModelHandle, data: EncodedSplit, batch_size: int,
                   precision: str | bool = "fp32", forward: Forward | None = None) -> np.ndarray:
    """Logits in the split's original order (batches are length-sorted internally), computed on
    the model's device under `precision`'s autocast (True: bf16, the old flag). A [CLS]-pooled
    classifier computes its last layer at position 0 only (models/first_token.py); a given
    `forward` runs the model its own way."""
    was_training = handle.model.training
    handle.model.eval()
    out: np.ndarray | None = None
    device = handle.device
    with first_token_only(handle.model, inference=True) if forward is None else nullcontext():
        for indices in eval_batches(data.lengths, batch_size):
            batch = to_device(data.collate(indices), device)
            with autocast(device, precision):
                logits = forward(data, indices, batch) if forward else handle.forward(batch)
            logits = logits.float().cpu().numpy()
            if out is None:
                out = np.empty((len(data), logits.shape[-1]), dtype=np.float32)
            out[indices] = logits
    handle.model.train(was_training)
    assert out is not None
    return out


def evaluate_split(handle: ModelHandle, data, labels: list[str], loss_fn, batch_size: int,
                   precision: str | bool = "fp32", forward: Forward | None = None,
                   lm_head_chunk: int = 0) -> dict:
    """The metrics of a split: for causal LMs a streaming token loss (all logits of a split
    would not fit in memory), otherwise the logits scored at once."""
    if handle.output in ("next_token", "masked_token"):
        return language_model_metrics(handle, data, batch_size, precision, lm_head_chunk)
    logits = predict_logits(handle, data, batch_size, precision, forward)
    return score(handle.output, logits, data.targets, labels, loss_fn)


LM_EVAL_ROWS = 8


@torch.inference_mode()
def language_model_metrics(handle: ModelHandle, data, batch_size: int,
                           precision: str | bool = "fp32", lm_head_chunk: int = 0) -> dict:
    """Token loss and perplexity, a few rows at a time. A causal LM with `lm_head_chunk` scores
    its labelled tokens a chunk at a time (evaluate/lm_head_loss.py); otherwise a batch's logits
    are rows x length x vocabulary floats (64 x 128 x 49k = 1.6 GB for SmolLM2). Even chunked,
    SmolLM2's evaluation at 64 rows x 128 peaked at 1,932 MB, above the 1,573 MB of the
    checkpointed LoRA training it validated (bench/lm_memory.py)."""
    was_training = handle.model.training
    handle.model.eval()
    total, tokens = 0.0, 0
    causal = handle.output == "next_token"
    chunked = ChunkedLMLoss.for_model(handle.model, lm_head_chunk) if causal else None
    rows = min(batch_size, LM_EVAL_ROWS)
    for indices in eval_batches(data.lengths, rows):
        batch = to_device(data.collate(indices), handle.device)
        with autocast(handle.device, precision):
            if chunked:
                loss_sum, count = chunked.sum_and_count(chunked.hidden_states(handle, batch), batch["labels"])
            else:
                logits = handle.forward(batch)
        if not chunked:
            loss_sum, count = token_loss_sum(logits, batch["labels"], shift=causal)
        total, tokens = total + float(loss_sum), tokens + int(count)
    handle.model.train(was_training)
    loss = total / max(tokens, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": tokens}


def score(output: str, logits: np.ndarray, targets: np.ndarray, labels: list[str],
          loss_fn) -> dict:
    loss = float(loss_fn(torch.from_numpy(logits), torch.from_numpy(targets)))
    if output == "classes":
        return {"loss": loss, **classification_metrics(targets, logits.argmax(-1), labels)}
    return {"loss": loss, **regression_metrics(targets, logits[:, 0])}


def prediction_frame(output: str, texts: list[str], logits: np.ndarray, labels: list[str],
                     targets: np.ndarray | None = None, pairs: list[str] | None = None) -> pd.DataFrame:
    """One row per example: its text (and, for a pair task, `text_pair`), then the predictions."""
    frame = pd.DataFrame({"text": texts})
    if pairs is not None:
        frame["text_pair"] = pairs
    if output == "classes":
        probs = torch.softmax(torch.from_numpy(logits), -1).numpy()
        if targets is not None:
            frame["label"] = [labels[t] for t in targets]
        frame["prediction"] = [labels[i] for i in probs.argmax(-1)]
        frame["confidence"] = probs.max(-1)
        for i, name in enumerate(labels):
            frame[f"p_{name}"] = probs[:, i]
    else:
        if targets is not None:
            frame["target"] = targets
        frame["prediction"] = logits[:, 0]
    return frame


def metric_line(metrics: dict, names) -> str:
    """`accuracy=0.9640  f1_macro=0.9648`: the named metrics that are there, for the console."""
    return "  ".join(f"{k}={metrics[k]:.4f}" for k in names if isinstance(metrics.get(k), float | int))


def scalar_metrics(metrics: dict) -> dict:
    """The numbers worth a line in metrics.jsonl (no matrices, no per-class tables)."""
    return {k: v for k, v in metrics.items() if isinstance(v, float | int)}
