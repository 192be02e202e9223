"""Does int4 keep what fine-tuning changed? The fine-tuning update of a causal-LM run against the
rounding error of int4, layer by layer, and the test loss of the base model it started from.

    .venv/bin/python bench/int4_delta.py runs/smollm2-full-400 --threads 2

For each of a few linear layers: the size of the fine-tuning update |W_ft - W_base| / |W_base|,
what is left of it after int4 rounding of W_ft (|Q(W_ft) - W_base| / |W_base|), and the cosine
between the two updates (1: int4 kept the update's direction; 0: it replaced it with noise).
Then the run's test split scored by the base model (the run's architecture with the base
weights), beside the run's own test loss from its summary.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

from tailorkit.compress.quantize_weights import WeightOnlyLinear
from tailorkit.inference import load_run
from tailorkit.pipeline import setup_run
from tailorkit.sources import resolve_model
from tailorkit.tasks import TASKS

LAYERS = ["model.layers.0.mlp.down_proj.weight", "model.layers.10.self_attn.q_proj.weight",
          "model.layers.20.mlp.gate_proj.weight"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--groups", type=int, nargs="+", default=[32, 64])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    recipe, handle, labels, _ = load_run(args.run)
    base = load_file(str(resolve_model(recipe.model.name) / "model.safetensors"))
    tuned = load_file(str(Path(args.run) / "model" / "model.safetensors"))
    print("| layer | int4 group | update / weight | left after int4 / weight | cosine(update kept, update) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in LAYERS:
        w_base, w_tuned = base[name].float(), tuned[name].float()
        linear = torch.nn.Linear(w_tuned.shape[1], w_tuned.shape[0], bias=False)
        linear.weight.data = w_tuned
        update = w_tuned - w_base
        for group in args.groups:
            kept = WeightOnlyLinear.from_linear(linear, 4, group).dequantized() - w_base
            cosine = torch.nn.functional.cosine_similarity(kept.flatten(), update.flatten(), 0)
            print(f"| `{name.removesuffix('.weight')}` | {group} | {update.norm() / w_base.norm():.5f} | "
                  f"{kept.norm() / w_base.norm():.5f} | {cosine:.3f} |")
    handle.model.load_state_dict(base, strict=False)  # a tied LM head follows the embeddings
    with tempfile.TemporaryDirectory() as tmp:
        setup = setup_run(recipe, Path(tmp))
        setup.handle, setup.labels = handle, labels
        base_loss = TASKS[recipe.task].write_test_outputs(setup, recipe, Path(tmp))["loss"]
    run_loss = json.loads((Path(args.run) / "summary.json").read_text())["test"]["loss"]
    print(f"test loss: base model {base_loss:.4f}, the fine-tuned run {run_loss:.4f}")


if __name__ == "__main__":
    main()
