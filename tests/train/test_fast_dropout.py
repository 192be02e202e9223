"""Dropout with 15-bit lanes of 64-bit draws (train/fast_dropout.py): the rate, the scale, the
gradient and the seed behave as torch's dropout; attention without dropout is transformers' eager
attention to the bit; models train through it inside lean_activations without drawing a Bernoulli number."""

from __future__ import annotations

from contextlib import nullcontext
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertForSequenceClassification, LlamaConfig, LlamaForCausalLM
from transformers.models.llama.modeling_llama import eager_attention_forward

from tailorkit.train.fast_dropout import FastDropout, attention, dropout, fast_dropout
from tailorkit.train.lean_activations import lean_activations


def test_rate_scale_and_gradient():
    x = torch.rand(1000, 1000) + 0.5  # no zeros of its own
    x.requires_grad_(True)
    y = dropout(x, 0.1)
    dropped = y == 0
    assert abs(dropped.float().mean().item() - 0.1) < 5 * (0.1 * 0.9 / x.numel()) ** 0.5
    rate = round(0.1 * 2**15) / 2**15  # the rate the lanes express
    assert torch.equal(y[~dropped], x[~dropped] * (1 / (1 - rate)))
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad, (~dropped).to(x.dtype) * (1 / (1 - rate)))


def test_the_seed_fixes_the_mask_and_bf16_keeps_its_dtype():
    x = torch.randn(64, 33, dtype=torch.bfloat16)
    torch.manual_seed(3)
    a = dropout(x, 0.3)
    torch.manual_seed(3)
    b = dropout(x, 0.3)
    assert a.dtype == torch.bfloat16 and torch.equal(a, b)
    assert not torch.equal(a, dropout(x, 0.3))  # the generator moved on


@pytest.mark.parametrize("p", [0.0, 1.0, 1e-6])
def test_rates_the_lanes_cannot_express_go_to_torch(p):
    x = torch.randn(100, 10)
    torch.manual_seed(0)
    ours = dropout(x, p)
    torch.manual_seed(0)
    assert torch.equal(ours, F.dropout(x, p, training=True))


def test_the_layers_switch_inside_the_context_and_back():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Sequential(nn.Dropout(0.2)),
                          nn.Dropout(0.1, inplace=True))
    with fast_dropout(model) as count:
        assert count == 3 and type(model[1]) is FastDropout and type(model[2][0]) is FastDropout
        x = torch.ones(8, 4)
        model.eval()
        assert torch.equal(model[1](x), x)  # evaluation: no dropout
    assert [type(m) for m in model.modules()].count(nn.Dropout) == 3


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("mask_kind", ["none", "bool", "additive", "causal"])
def test_attention_without_dropout_is_transformers_eager_attention_to_the_bit(precision, mask_kind):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8, requires_grad=True) for _ in range(3))
    mask = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    mask[0, ..., 3:] = False
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    additive = {"none": None, "bool": mask, "additive": mask, "causal": causal}[mask_kind]
    if additive is not None:  # transformers' eager masks: 0 where attended, the lowest float elsewhere
        additive = torch.zeros(additive.shape).masked_fill(~additive, torch.finfo(torch.float32).min)
    ours_mask = {"none": None, "bool": mask, "additive": additive, "causal": None}[mask_kind]
    layer = SimpleNamespace(num_key_value_groups=1, training=False)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        ref = eager_attention_forward(layer, q, k, v, additive, scaling=8**-0.5)[0].transpose(1, 2)
        ours = attention(q, k, v, ours_mask, 0.0, None, mask_kind == "causal")
    assert ours.dtype == ref.dtype and torch.equal(ours, ref)
    ours_grads = torch.autograd.grad(ours.float().sum(), (q, k, v))
    ref_grads = torch.autograd.grad(ref.float().sum(), (q, k, v))
    assert all(torch.equal(a, b) for a, b in zip(ours_grads, ref_grads, strict=True))


def test_attention_drops_probabilities_with_the_same_draw():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8) for _ in range(3))
    torch.manual_seed(7)
    kept = dropout(torch.ones(2, 3, 5, 5), 0.25)  # the mask and scale attention will draw
    torch.manual_seed(7)
    ours = attention(q, k, v, None, 0.25)
    probs = (q @ k.transpose(-2, -1) * 8**-0.5).softmax(-1)
    assert torch.equal(ours, (probs * kept) @ v)


def _bernoulli_and_random_calls(model, batch) -> tuple[int, int]:
    with torch.profiler.profile() as prof:
        model(**batch).loss.backward()
    names = [e.name for e in prof.events()]
    return names.count("aten::bernoulli_"), names.count("aten::random_")


def test_a_bert_trains_with_the_cheaper_draw_inside_lean_activations():
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, attn_implementation="sdpa")
    torch.manual_seed(0)
    model = BertForSequenceClassification(config).train()
    batch = {"input_ids": torch.randint(0, 50, (4, 9)), "labels": torch.tensor([0, 1, 0, 1])}
    assert _bernoulli_and_random_calls(model, batch)[0] > 0  # torch's dropout, outside
    with lean_activations(model):
        bernoulli, random = _bernoulli_and_random_calls(model, batch)
    # embeddings, two dropouts per layer, the classifier's, and attention's in each layer
    assert (bernoulli, random) == (0, 1 + 2 * 2 + 1 + 2)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_a_grouped_query_llama_with_attention_dropout_trains_through_the_math_path():
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, attention_dropout=0.2,
                         attn_implementation="sdpa")
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).train()
    ids = torch.randint(1, 64, (3, 12))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    with lean_activations(model):
        bernoulli, random = _bernoulli_and_random_calls(model, {"input_ids": ids, "attention_mask": mask,
                                                                "labels": ids})
    assert (bernoulli, random) == (0, 2)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_a_berts_mean_gradient_matches_torch_dropout_within_sampling_error():
    """Same expectation as torch's dropout: over many draws the mean gradient of every parameter
    agrees within a few standard errors (3 or more for at most 1% of them; 0.27% by chance)."""
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, attn_implementation="sdpa", hidden_dropout_prob=0.3,
                        attention_probs_dropout_prob=0.3)
    torch.manual_seed(0)
    model = BertForSequenceClassification(config).train()
    ids = torch.randint(0, 50, (4, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    batch = {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 0, 1])}

    def gradients(lean: bool, draws: int = 600) -> torch.Tensor:
        out = []
        for _ in range(draws):
            model.zero_grad()
            with lean_activations(model) if lean else nullcontext():
                loss = model(**batch).loss
            loss.backward()
            out.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
        return torch.stack(out)

    theirs, ours = gradients(False), gradients(True)
    error = ((theirs.var(0) + ours.var(0)) / len(ours)).sqrt()
    varying = error > 0
    z = (theirs.mean(0) - ours.mean(0))[varying] / error[varying]
    assert varying.sum() > 1000 and (z.abs() > 3).float().mean() < 0.01
