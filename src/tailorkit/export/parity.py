"""The check every export ends with: the same test examples through the trained run (torch)
and through the artefact in its own runtime; the largest logit difference and the task metric
on both sides go to export.json, and a difference past the tolerance fails the export."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from tailorkit.errors import TailorError
from tailorkit.evaluate.metrics import classification_metrics, regression_metrics
from tailorkit.export.samples import Samples
from tailorkit.models.handle import ModelHandle

EXPORT_FILE = "export.json"
Runner = Callable[[dict[str, torch.Tensor]], np.ndarray]  # one collated batch (no labels) -> logits


def torch_runner(handle: ModelHandle) -> Runner:
    @torch.inference_mode()
    def run(batch: dict[str, torch.Tensor]) -> np.ndarray:
        return handle.forward(batch).float().cpu().numpy()

    return run


class _Side:
    """One side's running metric: predictions (classes, scalar) or token loss (language models)."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []
        self.loss, self.tokens = 0.0, 0

    def add(self, logits: np.ndarray, labels: torch.Tensor, lm: bool) -> None:
        if not lm:
            self.rows.append(logits)
            return
        shifted = torch.from_numpy(logits[:, :-1]).float()
        target = labels[:, 1:]
        keep = target != -100
        if keep.any():
            loss = torch.nn.functional.cross_entropy(shifted[keep], target[keep], reduction="sum")
            self.loss += float(loss)
            self.tokens += int(keep.sum())

    def metric(self, output: str, targets: np.ndarray | None, labels: list[str]) -> tuple[str, float]:
        if output == "next_token":
            return "perplexity", math.exp(self.loss / max(self.tokens, 1))
        logits = np.concatenate(self.rows)
        if output == "classes":
            return "accuracy", classification_metrics(targets, logits.argmax(-1), labels)["accuracy"]
        return "mse", regression_metrics(targets, logits[:, 0])["mse"]


def check_parity(handle: ModelHandle, labels: list[str], samples: Samples, artefact: Runner, *,
                 tolerance: float, batch_size: int = 16) -> dict:
    """Compare the run's logits with the artefact's, batch by batch (padding excluded); the
    record for export.json."""
    reference = torch_runner(handle)
    lm = handle.output == "next_token"
    sides = {"run": _Side(), "export": _Side()}
    diff, agree = 0.0, 0
    for start in range(0, len(samples), batch_size):
        batch = samples.data.collate(list(range(start, min(start + batch_size, len(samples)))))
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        ours, theirs = reference(inputs), np.asarray(artefact(inputs), dtype=np.float32)
        gap = np.abs(ours - theirs)
        if lm:  # padded positions hold whatever the model computes for padding: not compared
            gap = gap[inputs["attention_mask"].numpy().astype(bool)]
        diff = max(diff, float(gap.max()))
        agree += int((ours.argmax(-1) == theirs.argmax(-1)).sum()) if handle.output == "classes" else 0
        sides["run"].add(ours, batch["labels"], lm)
        sides["export"].add(theirs, batch["labels"], lm)
    name, before = sides["run"].metric(handle.output, samples.targets, labels)
    _, after = sides["export"].metric(handle.output, samples.targets, labels)
    return {"examples": len(samples), "test_rows": samples.total, "tolerance": tolerance,
            "max_abs_logit_diff": diff, "metric": name, "run": before, "export": after,
            "same_prediction": agree / len(samples) if handle.output == "classes" else None,
            "passed": diff <= tolerance}


def write_record(out: Path, record: dict) -> None:
    """export.json beside the artefact; then fail loudly when parity did not hold."""
    (out / EXPORT_FILE).write_text(json.dumps(record, indent=2) + "\n")
    p = record["parity"]
    if p.get("tokenizer_agreement", 1.0) < 1.0:
        differ = 1 - p["tokenizer_agreement"]
        raise TailorError(f"export parity failed: the file's tokenizer splits {differ:.0%} of the test "
                          f"texts differently from the run's; see {out / EXPORT_FILE}")
    if not p["passed"]:
        raise TailorError(f"export parity failed: largest logit difference {p['max_abs_logit_diff']:.3g} "
                          f"> --tolerance {p['tolerance']:g} on {p['examples']} test examples "
                          f"({p['metric']} run {p['run']:.4f}, export {p['export']:.4f}); "
                          f"the artefact is kept for inspection, see {out / EXPORT_FILE}")
