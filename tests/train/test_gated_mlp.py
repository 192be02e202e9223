"""The lean gated MLP (train/gated_mlp.py) computes the model's own forward and gradients while
the backward keeps one tensor fewer per MLP."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from tailorkit.train.gated_mlp import is_gated_mlp, lean_gated_mlps


def _loss_and_grads(model, ids):
    model.zero_grad(set_to_none=True)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _saved_bytes(model, ids) -> int:
    saved: dict[int, int] = {}
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(t):
        if t.untyped_storage().data_ptr() not in weights:
            saved.setdefault(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=ids).logits.sum()
    return sum(saved.values())


@pytest.fixture
def llama(tiny_llama):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    return model.train()


def test_same_loss_and_gradients_with_one_tensor_fewer_per_mlp(llama):
    ids = torch.randint(0, llama.config.vocab_size, (3, 11), generator=torch.Generator().manual_seed(0))
    plain_loss, plain = _loss_and_grads(llama, ids)
    plain_saved = _saved_bytes(llama, ids)
    with lean_gated_mlps(llama) as count:
        lean_loss, lean = _loss_and_grads(llama, ids)
        lean_saved = _saved_bytes(llama, ids)
    assert count == llama.config.num_hidden_layers
    assert torch.equal(lean_loss, plain_loss)  # the forward is the same arithmetic
    assert plain.keys() == lean.keys()
    for name, grad in plain.items():
        torch.testing.assert_close(lean[name], grad, rtol=1e-5, atol=1e-7, msg=name)
    # silu(gate x) is no longer kept: 3 x 11 tokens x intermediate_size floats per layer
    one_tensor = 3 * 11 * llama.config.intermediate_size * 4
    assert plain_saved - lean_saved == one_tensor * llama.config.num_hidden_layers


def test_the_model_is_as_it_was_outside(llama):
    with lean_gated_mlps(llama):
        pass
    assert all("forward" not in m.__dict__ for m in llama.modules())


def test_only_silu_gated_mlps_are_matched(llama):
    mlp = llama.model.layers[0].mlp
    assert is_gated_mlp(mlp)
    mlp.act_fn = torch.nn.GELU()  # another activation: the recomputed gradient would be wrong
    assert not is_gated_mlp(mlp)
    assert not is_gated_mlp(llama.model.layers[0].self_attn)
