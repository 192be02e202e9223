"""Instruction tuning and continued pre-training of causal LMs, with sample generations
before and after training."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tailorkit.config.metrics import LANGUAGE_MODEL_METRICS
from tailorkit.config.recipe import Recipe
from tailorkit.data.chat import prepare_chat_data
from tailorkit.data.quality import DATA_DIR, DataQuality, quality_info
from tailorkit.data.templates import resolve_template
from tailorkit.evaluate.evaluator import evaluate_split
from tailorkit.generate import sample_answers
from tailorkit.models.handle import ModelHandle, load_causal_lm
from tailorkit.sources import resolve_model
from tailorkit.tasks.base import CLEAN_LABEL_FIELDS, Task, register
from tailorkit.train.loop import seed_everything
from tailorkit.train.losses import TaskLoss
from tailorkit.train.setup import Setup

GENERATIONS = "generations.jsonl"
BEFORE = "generations_before.json"  # written at the start, so a resumed run keeps them


@register
class CausalLM(Task):
    name = "causal_lm"
    aliases = ("sft",)
    summary = "causal LM: instruction tuning (alpaca, sharegpt, messages, prompt/completion) or plain text"
    output = "next_token"
    metrics = LANGUAGE_MODEL_METRICS
    headline = ["loss", "perplexity"]
    auto_class = "AutoModelForCausalLM"
    # Length-grouped batches ended an SFT epoch 5-10% higher in loss (docs/causal-lm.md).
    length_grouping = False
    not_text_predictions = "generates text: use tailor generate or tailor chat"
    reads = frozenset({"model.max_length", "data.format", "data.template", "data.chat", "generation",
                       "data.clean"})
    ignores = {f"data.clean.{name}": "instruction data has no labels" for name in CLEAN_LABEL_FIELDS}
    refuses = {"data.augment": "word edits of an instruction change what the response answers, and of a "
                               "response the target itself; clean the data instead (docs/data.md)"}

    def build_base(self, recipe: Recipe, labels: list[str]) -> ModelHandle:
        seed_everything(recipe.seed)
        return load_causal_lm(resolve_model(recipe.model.name), recipe.model.trust_remote_code)

    def prepare(self, recipe: Recipe, run_dir: Path, augment: bool = True) -> Setup:
        handle = self.build_base(recipe, [])
        tokenizer = handle.tokenizer
        if recipe.data.template is not None:  # saved with the model, so inference formats alike
            tokenizer.chat_template = resolve_template(tokenizer, recipe.data.template)
        quality = DataQuality(recipe.data, run_dir / DATA_DIR)
        data = prepare_chat_data(recipe.data, tokenizer, recipe.model.max_length,
                                 quality if quality.enabled else None)
        if data.quality is not None and recipe.train.progress:
            print("\n".join(data.quality.lines()), file=sys.stderr)
        g = recipe.generation
        prompts = data.conversations["validation"][: g.samples]
        before = run_dir / BEFORE
        if prompts and not before.exists():  # the base model's answers, for the before/after table
            answers = sample_answers(handle, prompts, g.max_new_tokens, g.temperature, g.top_p, recipe.seed)
            before.write_text(json.dumps(answers))
        seed_everything(recipe.seed)  # methods start from the same RNG state with or without samples
        return Setup(handle, data.splits, [], TaskLoss(self.output, recipe.train, None), recipe.train,
                     prompts=prompts, info={"format": data.format, "truncated": data.truncated,
                                            **quality_info(data.quality)})

    def write_test_outputs(self, setup: Setup, recipe: Recipe, run_dir: Path) -> dict:
        """Test loss and perplexity; generations.jsonl holds each prompt's answer before and after."""
        t = recipe.train
        metrics = evaluate_split(setup.handle, setup.splits["test"], [], setup.loss_fn, t.eval_batch_size,
                                 t.precision, lm_head_chunk=t.lm_head_chunk)
        if setup.prompts:
            _write_generations(setup, recipe, run_dir)
        return metrics

    def load_model(self, recipe: Recipe, directory: Path, labels: list[str]) -> tuple[ModelHandle, list[str]]:
        return load_causal_lm(directory, recipe.model.trust_remote_code), []


def _write_generations(setup: Setup, recipe: Recipe, run_dir: Path) -> None:
    g = recipe.generation
    after = sample_answers(setup.handle, setup.prompts, g.max_new_tokens, g.temperature, g.top_p, recipe.seed)
    before_file = run_dir / BEFORE
    before = json.loads(before_file.read_text()) if before_file.exists() else [{}] * len(after)
    with (run_dir / GENERATIONS).open("w") as out:
        for prompt, old, new in zip(setup.prompts, before, after, strict=True):
            reference = prompt[-1]["content"] if prompt[-1]["role"] == "assistant" else None
            out.write(json.dumps({"prompt": prompt[:-1] if reference else prompt, "reference": reference,
                                  "before": old, "after": new}) + "\n")
    before_file.unlink(missing_ok=True)
