"""Rebuilt activations (train/lean_activations.py): the same gradients, bit for bit, from fewer
kept tensors."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from tailorkit.train.fused_lora import use_fused_lora
from tailorkit.train.gated_mlp import lean_gated_mlps
from tailorkit.train.lean_activations import SavedRebuilder, lean_activations


def _grads(model, ids) -> tuple[torch.Tensor, dict]:
    model.zero_grad(set_to_none=True)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _kept_bytes(model, ids, lean: bool) -> int:
    kept: dict[int, int] = {}  # storage -> bytes
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def observe(t):
        if t.untyped_storage().data_ptr() not in weights:
            kept.setdefault(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())

    def pack(t):
        observe(t)
        return t

    if lean:
        with lean_activations(model, observe):
            model(input_ids=ids).logits.sum()
    else:
        with lean_gated_mlps(model), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(input_ids=ids).logits.sum()
    return sum(kept.values())


@pytest.fixture
def lora_llama(tiny_llama):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    return get_peft_model(model, LoraConfig(r=4, target_modules="all-linear")).train()


@pytest.fixture
def ids(lora_llama):
    return torch.randint(0, lora_llama.config.vocab_size, (3, 11), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("method", ["peft lora", "fused lora", "full"])
def test_gradients_are_bit_identical(tiny_llama, lora_llama, ids, precision, method):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama).train() if method == "full" else lora_llama
    if method == "fused lora":
        assert use_fused_lora(model) == 7 * model.config.num_hidden_layers
    for p in model.parameters():  # LoRA's B starts at zero: give every gradient something to carry
        if p.requires_grad and method != "full":
            torch.nn.init.normal_(p, std=0.02)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        with lean_gated_mlps(model):
            kept_loss, kept = _grads(model, ids)
        with lean_activations(model):
            lean_loss, lean = _grads(model, ids)
    assert torch.equal(lean_loss, kept_loss)
    assert kept.keys() == lean.keys() and kept
    for name, grad in kept.items():
        assert torch.equal(lean[name], grad), name


@pytest.mark.parametrize("fused", [False, True])
def test_norm_outputs_residuals_and_mlp_products_are_no_longer_kept(lora_llama, ids, fused):
    if fused:
        use_fused_lora(lora_llama)
    config = lora_llama.config
    plain, lean = _kept_bytes(lora_llama, ids, lean=False), _kept_bytes(lora_llama, ids, lean=True)
    tokens, layers = ids.numel(), config.num_hidden_layers
    # per layer: two norm outputs and the residual after attention (hidden each) and the MLP
    # product (intermediate); but block 0's
    # first norm reads the frozen embeddings, which nothing else keeps: its recipe keeps them
    rebuilt = layers * (3 * config.hidden_size + config.intermediate_size) - config.hidden_size
    assert plain - lean == rebuilt * tokens * 4


def test_a_tensor_changed_in_place_is_kept_as_it_is():
    rebuilder = SavedRebuilder()
    x = torch.randn(4, requires_grad=True)
    y = x * 2
    rebuilder.register(y, lambda t: t * 2, x)
    assert rebuilder.pack(y) is not y  # a recipe
    assert rebuilder.pack(y.view(2, 2)) is not y  # a view of it too
    with torch.no_grad():
        y.add_(1)
    assert rebuilder.pack(y) is y


def test_a_recipe_is_rebuilt_once_for_all_its_readers():
    calls = []
    rebuilder = SavedRebuilder()
    x = torch.randn(4, requires_grad=True)
    y = x.exp()
    rebuilder.register(y, lambda t: calls.append(1) or t.exp(), x)
    packed = [rebuilder.pack(y) for _ in range(3)]
    values = [rebuilder.unpack(p) for p in packed]
    assert len(calls) == 1 and all(torch.equal(v, y) for v in values)
    assert packed[0].recipe.value is None  # dropped after the last reader


def test_the_model_is_as_it_was_outside(lora_llama):
    with lean_activations(lora_llama):
        pass
    assert all(not m._forward_hooks and "forward" not in m.__dict__ for m in lora_llama.modules())
