"""Grouped key/value heads go to SDPA unrepeated in training (train/lean_attention.py): the same
loss, gradients within 1e-6, keys and values kept n_rep times smaller, and one padding mask for
all layers."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from tailorkit.train.lean_attention import lean_attention

HEADS, KV_HEADS, LAYERS, HEAD_DIM = 4, 2, 2, 8


@pytest.fixture
def gqa_llama():
    config = LlamaConfig(vocab_size=64, hidden_size=HEADS * HEAD_DIM, intermediate_size=48,
                         num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
                         attn_implementation="sdpa")
    torch.manual_seed(0)
    return LlamaForCausalLM(config).train()


@pytest.fixture
def padded():
    ids = torch.randint(1, 64, (3, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0  # a padding mask: transformers would repeat the key/value heads
    mask[2, 4:] = 0
    return ids, mask


def _run(model, ids, mask):
    kept: dict[int, int] = {}
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(t):
        if t.untyped_storage().data_ptr() not in weights:
            kept.setdefault(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        return t

    model.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}, sum(kept.values())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_same_loss_close_gradients_and_smaller_keys_and_values(gqa_llama, padded, precision):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        plain_loss, plain, plain_kept = _run(gqa_llama, *padded)
        with lean_attention(gqa_llama) as layers:
            lean_loss, lean, lean_kept = _run(gqa_llama, *padded)
    assert layers == LAYERS
    assert torch.equal(lean_loss, plain_loss)
    for name, grad in plain.items():
        if precision == "fp32":
            torch.testing.assert_close(lean[name], grad, rtol=1e-5, atol=1e-6, msg=name)
        else:  # bf16 sums in another order, and the difference passes through the layers below
            assert (lean[name] - grad).norm() <= 2**-6 * grad.norm(), name
    if precision == "bf16":  # the kept bytes below are fp32's
        return
    # per layer, keys and values kept for KV_HEADS heads instead of HEADS; one additive mask
    # (batch x 1 x tokens x tokens floats) kept for all layers instead of one per layer
    batch, tokens = padded[0].shape
    kv = LAYERS * 2 * batch * tokens * (HEADS - KV_HEADS) * HEAD_DIM * 4
    assert plain_kept - lean_kept == kv + (LAYERS - 1) * batch * tokens * tokens * 4


def test_generation_other_models_and_the_model_outside_use_transformers_attention(gqa_llama, padded):
    original = ALL_ATTENTION_FUNCTIONS["sdpa"]
    other = LlamaForCausalLM(gqa_llama.config).train()
    ids, mask = padded
    with lean_attention(gqa_llama):
        assert ALL_ATTENTION_FUNCTIONS["sdpa"] is not original
        other_kept = _run(other, ids, mask)[2]
        with torch.no_grad():
            gqa_llama.generate(input_ids=ids[:1, :5], max_new_tokens=3, do_sample=False)
    assert ALL_ATTENTION_FUNCTIONS["sdpa"] is original
    assert _run(other, ids, mask)[2] == other_kept  # the model not inside kept repeated heads
