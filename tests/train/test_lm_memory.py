"""Causal-LM memory levers give the same training as the plain path: the chunked head loss
(evaluate/lm_head_loss.py) equals the full-logits loss and gradients, and activation
checkpointing (train/recompute.py) trains the same weights and resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from conftest import recipe_dict
from tailorkit import api
from tailorkit.errors import TailorError
from tailorkit.evaluate.lm_head_loss import ChunkedLMLoss
from tailorkit.recipe import recipe_from_dict
from tailorkit.train.recompute import chosen_blocks
from test_causal_lm import _recipe, qa_csv  # noqa: F401  (module fixture)


def _plain_loss(head: nn.Linear, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    logits = head(hidden)[:, :-1]
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1), ignore_index=-100)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("head_trains", [True, False])
def test_chunked_head_loss_equals_the_plain_loss_and_its_gradients(bias, head_trains):
    torch.manual_seed(0)
    head = nn.Linear(16, 50, bias=bias).requires_grad_(head_trains)
    hidden = torch.randn(3, 9, 16, requires_grad=True)
    labels = torch.randint(0, 50, (3, 9))
    labels[0, :4] = -100  # a prompt
    labels[2, 6:] = -100  # padding
    wanted = [hidden] + ([p for p in head.parameters()] if head_trains else [])
    plain = _plain_loss(head, hidden, labels)
    chunked = ChunkedLMLoss(head, chunk=4)(hidden, labels)  # 18 labelled rows: 5 chunks, one short
    assert chunked.item() == pytest.approx(plain.item(), rel=1e-6)
    for a, b in zip(torch.autograd.grad(plain * 3, wanted), torch.autograd.grad(chunked * 3, wanted),
                    strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)


def test_under_bf16_autocast_the_chunked_loss_is_the_plain_loss_within_bf16_rounding():
    torch.manual_seed(1)
    head, hidden = nn.Linear(32, 100), torch.randn(2, 12, 32)
    labels = torch.randint(0, 100, (2, 12))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain, chunked = _plain_loss(head, hidden, labels), ChunkedLMLoss(head, 5)(hidden, labels)
    assert chunked.dtype == torch.float32
    assert chunked.item() == pytest.approx(plain.float().item(), rel=2e-3)


def test_models_that_transform_logits_after_the_head_keep_the_plain_loss(tiny_llama):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    assert ChunkedLMLoss.for_model(model, 256) is not None
    assert ChunkedLMLoss.for_model(model, 0) is None  # turned off
    model.config.final_logit_softcapping = 30.0  # Gemma 2 caps logits after the head
    assert ChunkedLMLoss.for_model(model, 256) is None


def _weights(run: Path) -> dict[str, torch.Tensor]:
    folder = run / "model"
    name = "model.safetensors" if (folder / "model.safetensors").exists() else "adapter_model.safetensors"
    return load_file(str(folder / name))


def _max_difference(a: Path, b: Path) -> float:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    return max((wa[k] - wb[k]).abs().max().item() for k in wa)


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


@pytest.mark.parametrize("methods", [["full"], [{"lora": {"r": 4}}]], ids=["full", "lora"])
def test_a_causal_lm_trains_the_same_weights_with_the_chunked_loss(tiny_llama, qa_csv, tmp_path, methods):  # noqa: F811
    runs = {}
    for chunk in (0, 7):  # full: the tied embedding/head weight gets its gradient through the chunks
        recipe = _recipe(tiny_llama, qa_csv, tmp_path / f"chunk{chunk}", methods, max_steps=4,
                         lm_head_chunk=chunk)
        recipe["generation"]["samples"] = 0
        runs[chunk] = api.train(recipe_from_dict(recipe))
    assert _max_difference(runs[0], runs[7]) < 1e-5
    for split in ("validation", "test"):
        assert _summary(runs[7])[split]["loss"] == pytest.approx(_summary(runs[0])[split]["loss"], rel=1e-5)


def test_every_nth_block_is_chosen():
    assert chosen_blocks(6, True) == [0, 1, 2, 3, 4, 5]
    assert chosen_blocks(6, 2) == [0, 2, 4]
    assert chosen_blocks(6, False) == []


@pytest.mark.parametrize("setting", [True, 2])
def test_activation_checkpointing_trains_the_same_weights_with_dropout_on(tiny_model_dir, sentiment_csv,
                                                                          tmp_path, setting):
    # The tiny BERT has dropout 0.1: the replayed blocks must draw the masks of the first pass.
    runs = [api.train(recipe_from_dict(recipe_dict(tiny_model_dir, sentiment_csv, tmp_path / str(ac),
                                                   max_steps=3, activation_checkpointing=ac)))
            for ac in (False, setting)]
    assert _max_difference(*runs) < 1e-6
    with torch.no_grad():  # and the model came out unwrapped: its blocks run their own forward
        from transformers import AutoModelForSequenceClassification
        model = AutoModelForSequenceClassification.from_pretrained(runs[1] / "model")
        assert "forward" not in vars(model.bert.encoder.layer[0])


def test_a_checkpointed_causal_lm_run_resumes_exactly(tiny_llama, qa_csv, tmp_path,  # noqa: F811
                                                      resumed_matches_uninterrupted):
    recipe = _recipe(tiny_llama, qa_csv, tmp_path / "run", ["full"],
                     max_steps=4, checkpoint_steps=2, activation_checkpointing=True)
    recipe["generation"]["samples"] = 0
    assert resumed_matches_uninterrupted(recipe, crash_at_step=3) == 0.0


def test_activation_checkpointing_refuses_prefix_tuning(tiny_llama, qa_csv, tmp_path):  # noqa: F811
    recipe = _recipe(tiny_llama, qa_csv, tmp_path / "run", [{"prefix": {"virtual_tokens": 4}}], max_steps=1,
                     activation_checkpointing=True)
    with pytest.raises(TailorError, match="activation_checkpointing.*prefix tuning"):
        api.train(recipe_from_dict(recipe))


def test_activation_checkpointing_must_be_a_switch_or_a_positive_interval():
    from tailorkit.config.train import TrainConfig

    with pytest.raises(ValueError, match="every N-th block"):
        TrainConfig(activation_checkpointing=0)
