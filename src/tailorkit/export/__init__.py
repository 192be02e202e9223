"""Exporting a finished run, each format checked against the run it came from.

preflight.py  refusals before anything is written (what a format cannot hold)
samples.py    the run's test split (a sample of it), encoded as the run encodes its inputs
parity.py     run and artefact side by side: largest logit difference, metric, export.json
hf.py         a merged plain Hugging Face folder (tailor merge), re-read by transformers
onnx.py       an ONNX graph with dynamic batch/sequence axes, checked in onnxruntime
gguf.py       a llama.cpp file of a Llama-architecture causal LM, read back by transformers
run.py        `export_run`: preflight -> write -> parity, the one entry point
"""
