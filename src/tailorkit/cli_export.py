"""`tailor export RUN_DIR --format hf|onnx|gguf --out DIR`: write a run as a standalone artefact,
then check it against the run on the test split (export.json records the parity).
`tailor serve RUN_DIR [RUN_DIR ...]`: finished runs behind an HTTP API (tailorkit.serve)."""

from __future__ import annotations

import argparse

import torch
from pydantic import ValidationError

from tailorkit.config.base import format_validation_error
from tailorkit.errors import TailorError
from tailorkit.export.gguf import DEFAULT_TOLERANCE, GGUF_TYPES
from tailorkit.export.preflight import FORMATS
from tailorkit.export.run import export_run
from tailorkit.runtime import default_threads
from tailorkit.serve.models import load_served
from tailorkit.serve.server import run
from tailorkit.serve.settings import ServeSettings


def add_export_commands(sub: argparse._SubParsersAction) -> None:
    add_export_command(sub)
    add_serve_command(sub)


def add_export_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a finished run (merged HF folder, ONNX, GGUF) with a parity "
                                      "check")
    p.add_argument("run_dir")
    p.add_argument("--format", required=True, choices=FORMATS,
                   help="hf: plain transformers folder (adapter merged); onnx: ONNX graph, dynamic "
                        "batch and sequence axes, checked in onnxruntime; gguf: llama.cpp file of a "
                        "Llama-architecture causal LM")
    p.add_argument("--out", required=True, help="new (or empty) folder for the artefact")
    p.add_argument("--tolerance", type=float, default=None,
                   help="largest allowed absolute logit difference, run vs artefact (default 1e-3; for "
                        "gguf by type: " + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_TOLERANCE.items())
                        + ")")
    p.add_argument("--gguf-type", choices=GGUF_TYPES, default=None,
                   help="gguf only: the matrices' type; norms and other 1-D tensors stay f32, as "
                        "llama.cpp's converter keeps them (default f16)")
    p.add_argument("--samples", type=int, default=64,
                   help="test examples in the parity check; 0: the whole test split (default %(default)s)")
    p.add_argument("--dequantize", action="store_true",
                   help="allow merging a 4-bit (QLoRA) base: the result holds its dequantised fp32 weights")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow a run whose recipe sets model.trust_remote_code")


def cmd_export(args) -> None:
    if args.samples < 0:
        raise TailorError(f"--samples {args.samples}: give a number of test examples, or 0 for the whole "
                          "test split")
    record = export_run(args.run_dir, args.format, args.out, tolerance=args.tolerance,
                        samples=args.samples or None, dequantize=args.dequantize,
                        trust_remote_code=args.trust_remote_code, gguf_type=args.gguf_type)
    p = record["parity"]
    kind = f" {record['gguf_type']}" if "gguf_type" in record else ""
    print(f"exported {args.run_dir} as {args.format}{kind} to {args.out} ({record['size_mb']} MB)")
    print(f"parity on {p['examples']} test examples: max |logit diff| {p['max_abs_logit_diff']:.3g} "
          f"(tolerance {p['tolerance']:g}); {p['metric']} run {p['run']:.4f}, export {p['export']:.4f}")


def add_serve_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve finished runs over HTTP (predict, OpenAI-style chat)")
    p.add_argument("run_dir", nargs="+", help="run folders; each is served under its folder name "
                                              "(adapter runs on one base share it)")
    for name, info in ServeSettings.model_fields.items():
        kind = int if info.default is None else type(info.default)  # threads: int | None
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=info.default,
                       dest=name, help=f"{info.description} (default %(default)s)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow runs whose recipe sets model.trust_remote_code")


def cmd_serve(args) -> None:
    try:
        settings = ServeSettings(**{k: getattr(args, k) for k in ServeSettings.model_fields})
    except ValidationError as err:
        raise TailorError(f"serve: {format_validation_error(err)}") from None
    torch.set_num_threads(settings.threads or default_threads())
    models = load_served(args.run_dir, trust_remote_code=args.trust_remote_code)
    print(f"serving {', '.join(models)} on http://{settings.host}:{settings.port} "
          f"({torch.get_num_threads()} threads)", flush=True)
    from tailorkit.serve.app import create_app  # FastAPI loads only when serving (DEFERRED)

    run(create_app(models, settings), settings.host, settings.port)


EXPORT_COMMANDS = {"export": cmd_export, "serve": cmd_serve}
