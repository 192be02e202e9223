"""`export_run`: refuse what the format cannot hold, write the artefact into a new folder,
then run the test sample through both and record the parity in export.json."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from tailorkit.errors import TailorError
from tailorkit.export.gguf import (
    DEFAULT_TOLERANCE,
    GGUF_TYPES,
    GgufType,
    export_gguf,
    gguf_runner,
    tokenizer_agreement,
)
from tailorkit.export.hf import export_hf
from tailorkit.export.onnx import export_onnx, onnx_runner
from tailorkit.export.parity import EXPORT_FILE, check_parity, write_record
from tailorkit.export.preflight import has_adapter, peft_type, preflight
from tailorkit.export.samples import test_samples
from tailorkit.methods import model_owner
from tailorkit.models.handle import ModelHandle
from tailorkit.pipeline.load import load_run, run_recipe
from tailorkit.pipeline.run_dir import LABELS, model_folder, modes_as_umask


def export_run(run_dir: str | Path, fmt: str, out: str | Path, *, tolerance: float | None = None,
               samples: int | None = 64, dequantize: bool = False, trust_remote_code: bool = False,
               gguf_type: GgufType | None = None) -> dict:
    """Export `run_dir` as `fmt` into the new folder `out`; returns the export.json record.
    `tolerance` defaults to 1e-3, or for GGUF to its type's (DEFAULT_TOLERANCE); `gguf_type`
    (f32, f16, q8_0; default f16, as llama.cpp's converter) is for --format gguf only.
    Raises TailorError (after writing export.json) when parity fails."""
    run_dir, out = Path(run_dir), Path(out)
    if gguf_type is not None and fmt != "gguf":
        raise TailorError(f"--gguf-type {gguf_type} is for --format gguf, not {fmt}")
    if fmt == "gguf":
        gguf_type = gguf_type or "f16"
        if gguf_type not in GGUF_TYPES:
            raise TailorError(f"--gguf-type {gguf_type}: choose one of {', '.join(GGUF_TYPES)}")
    if tolerance is None:
        tolerance = DEFAULT_TOLERANCE[gguf_type] if fmt == "gguf" else 1e-3
    recipe = run_recipe(run_dir)
    preflight(run_dir, recipe, fmt, dequantize)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TailorError(f"--out {out} exists and is not an empty folder; choose a new folder")
    if samples is not None and samples < 1:
        raise TailorError(f"--samples {samples}: give 1 or more test examples")
    if tolerance < 0:
        raise TailorError(f"--tolerance {tolerance}: give a difference of 0 or more")
    created = not out.exists()
    try:
        return _export(run_dir, recipe, fmt, out, tolerance, samples, trust_remote_code, gguf_type)
    except BaseException:
        if not (out / EXPORT_FILE).exists():  # it failed before parity: leave no partial artefact
            _clear(out, created)
        raise


def _export(run_dir: Path, recipe, fmt: str, out: Path, tolerance: float, samples: int | None,
            trust_remote_code: bool, gguf_type: GgufType | None) -> dict:
    _, handle, labels, _ = load_run(run_dir, trust_remote_code=trust_remote_code)
    data = test_samples(recipe, handle, labels, samples)
    started = time.perf_counter()
    if fmt == "hf":
        artefact = export_hf(run_dir, recipe, has_adapter(run_dir), out, trust_remote_code)
    elif fmt == "gguf":
        out.mkdir(parents=True, exist_ok=True)
        path = export_gguf(_merged(run_dir, trust_remote_code), out, run_dir.name, gguf_type)
        artefact = gguf_runner(path)
    else:
        out.mkdir(parents=True, exist_ok=True)
        batch = data.data.collate(list(range(min(2, len(data)))))
        example = {k: v for k, v in batch.items() if k != "labels"}
        # an adapter is folded into its base first (PEFT's wrapper does not trace faithfully: a
        # traced LoRA run was 0.014 off); tailorkit's own adapters (bottleneck) trace as they run
        traced = _merged(run_dir, trust_remote_code) if peft_type(run_dir) else handle
        export_onnx(traced, example, out)
        if handle.tokenizer is not None:
            handle.tokenizer.save_pretrained(out)
        if labels:
            (out / LABELS).write_text(json.dumps(labels))
        shutil.copy(run_dir / "recipe.yaml", out / "recipe.yaml")  # the preprocessing it expects
        artefact = onnx_runner(out / "model.onnx")
    seconds = time.perf_counter() - started
    # a language model's logits are batch x length x vocabulary floats (8 x 128 x 49k: 200 MB)
    batch_size = min(recipe.train.eval_batch_size, 8 if handle.output == "next_token" else 64)
    parity = check_parity(handle, labels, data, artefact, tolerance=tolerance, batch_size=batch_size)
    if fmt == "gguf":  # the file carries its tokenizer too: it must split text as the run does
        texts = [handle.tokenizer.decode(ids, skip_special_tokens=False) for ids in data.data.input_ids]
        agreement = tokenizer_agreement(out / "model.gguf", handle.tokenizer, texts)
        parity |= {"tokenizer_agreement": agreement, "passed": parity["passed"] and agreement == 1.0}
    record = {"run": str(run_dir), "format": fmt, "out": str(out)}
    if fmt == "gguf":
        record["gguf_type"] = gguf_type
    record |= {"export_seconds": round(seconds, 2), "size_mb": round(_size(out) / 2**20, 2),
               "source_model_mb": round(_size(model_folder(run_dir)) / 2**20, 2), "parity": parity}
    write_record(out, record)
    modes_as_umask(out)
    return record


def _merged(run_dir: Path, trust_remote_code: bool) -> ModelHandle:
    """The run's model as one plain model: its adapter (if any) folded into the dequantised base."""
    _, handle, _, methods = load_run(run_dir, dequantize=True, trust_remote_code=trust_remote_code)
    owner = model_owner(methods)
    if owner is not None:
        owner.merge(handle)
    return handle


def _clear(out: Path, created: bool) -> None:
    """Remove what a failed export wrote: `out` itself if the export made it, else its contents
    (it was an empty folder)."""
    if not out.is_dir():
        return
    if created:
        shutil.rmtree(out)
        return
    for entry in out.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
