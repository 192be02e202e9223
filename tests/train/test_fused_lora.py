"""The fused LoRA training path against PEFT's own LoRA on the same weights and inputs: the same
outputs and gradients (bit for bit in fp32 without dropout; within bf16 rounding under
autocast; the same dropout mask gives the same numbers), and adapter files PEFT loads."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tailorkit.train.fast_dropout import keep_mask
from tailorkit.train.fused_lora import fused_class, fused_lora, use_fused_lora


class _Two(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q, self.v = nn.Linear(64, 48), nn.Linear(48, 64)

    def forward(self, x):
        return self.v(torch.relu(self.q(x)))


def _pair(dropout: float = 0.0, dora: bool = False):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    config = LoraConfig(target_modules=["q", "v"], r=4, lora_alpha=8, lora_dropout=dropout, use_dora=dora)
    reference = get_peft_model(_Two(), config)
    for name, p in reference.named_parameters():
        if "lora_B" in name:  # B starts at zero; a trained B makes every term count
            nn.init.normal_(p)
    fused = copy.deepcopy(reference)
    return reference, fused, use_fused_lora(fused)


def _run(model, x, bf16=False):
    x = x.detach().clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        y = model(x)
    (y.float() ** 2).sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    return y.float(), x.grad, grads


@pytest.mark.parametrize("bf16", [False, True])
def test_the_fused_path_gives_peft_outputs_and_gradients(bf16):
    reference, fused, count = _pair()
    inner = fused.base_model.model
    assert count == 2 and type(inner.q) is type(inner.v) is fused_class()
    x = torch.randn(3, 5, 64)
    (y1, gx1, g1), (y2, gx2, g2) = _run(reference, x, bf16), _run(fused, x, bf16)
    assert sorted(g1) == sorted(g2) and len(g1) == 4  # lora_A and lora_B of both layers
    if not bf16:  # the same arithmetic; the r-wide products sum in another order (_SKINNY)
        torch.testing.assert_close(y2, y1, atol=1e-5 * float(y1.abs().max()), rtol=0)
        torch.testing.assert_close(gx2, gx1, atol=1e-5 * float(gx1.abs().max()), rtol=0)
        for n in g1:
            torch.testing.assert_close(g2[n], g1[n], atol=1e-5 * float(g1[n].abs().max()), rtol=0)
    else:  # the same arithmetic in another order, rounded to bf16 on the way
        torch.testing.assert_close(y2, y1, atol=0.02 * float(y1.abs().max()), rtol=0)
        torch.testing.assert_close(gx2, gx1, atol=0.02 * float(gx1.abs().max()), rtol=0)
        for n in g1:
            torch.testing.assert_close(g2[n], g1[n], atol=0.03 * float(g1[n].abs().max()), rtol=0)


def test_dropout_uses_one_mask_for_the_forward_and_the_backward():
    """Against the formula with the mask the function draws (the same seed draws it again)."""
    torch.manual_seed(0)
    x = torch.randn(6, 16, requires_grad=True)
    w, bias = torch.randn(8, 16), torch.randn(8)
    a, b = torch.randn(2, 16, requires_grad=True), torch.randn(8, 2, requires_grad=True)
    torch.manual_seed(1)
    y = fused_lora(x, w, bias, a, b, 0.5, 0.25)
    (y ** 2).sum().backward()
    got = (y.detach(), x.grad, a.grad, b.grad)

    torch.manual_seed(1)
    mask, keep_scale = keep_mask(x, 0.25)
    x2, a2, b2 = (t.detach().clone().requires_grad_(True) for t in (x, a, b))
    y2 = x2 @ w.t() + bias + 0.5 * ((x2 * mask * keep_scale) @ a2.t()) @ b2.t()
    (y2 ** 2).sum().backward()
    for g, want in zip(got, (y2.detach(), x2.grad, a2.grad, b2.grad), strict=True):
        torch.testing.assert_close(g, want, atol=1e-4, rtol=1e-5)
    assert 0.6 < float(mask.float().mean()) < 0.9  # it did drop


def test_layers_the_path_does_not_cover_run_peft_unchanged():
    reference, fused, _ = _pair(dora=True)  # DoRA: a LoRA variant
    x = torch.randn(2, 64)
    (y1, gx1, _), (y2, gx2, _) = _run(reference, x), _run(fused, x)
    assert torch.equal(y1, y2) and torch.equal(gx1, gx2)


def test_the_adapter_saves_as_peft_and_peft_loads_it_to_the_same_outputs(tmp_path):
    from peft import PeftModel

    _, fused, _ = _pair(dropout=0.1)
    fused.save_pretrained(tmp_path)
    fused.eval()
    x = torch.randn(2, 64)
    with torch.no_grad():
        want = fused(x)
        torch.manual_seed(0)
        base = _Two()  # the base weights _pair started from
        plain = PeftModel.from_pretrained(base, tmp_path).eval()
        assert not any(type(m) is fused_class() for m in plain.modules())
        assert torch.equal(plain(x), want)


@pytest.mark.parametrize(("methods", "masks"), [([{"lora": {"r": 4}}], False),
                                                 ([{"lora": {"r": 4, "dropout": 0.1}}], True)])
def test_default_lora_trains_without_dropout_masks(methods, masks, make_handle):
    """lora.dropout defaults to 0 (bench/RESULTS.md: as good and faster): a training forward of
    a fused LoRA layer then draws no random numbers; an explicit dropout still masks."""
    from tailorkit.methods import apply_methods

    handle = make_handle()
    apply_methods(handle, methods)
    layers = [m for m in handle.model.modules() if type(m) is fused_class()]
    assert layers, "the default LoRA must run on the fused path"
    for p in handle.model.parameters():
        if p.requires_grad:
            nn.init.normal_(p)  # a trained B, so the LoRA branch counts
    layer = layers[0].train()
    x = torch.randn(2, 3, layer.in_features)
    before = torch.get_rng_state()
    y = layer(x)
    assert (not torch.equal(torch.get_rng_state(), before)) is masks
    assert torch.equal(y, layer.eval()(x)) is not masks
