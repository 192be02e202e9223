"""Quantization-aware training of text models: the fake quantiser rounds exactly as the dynamic
int8 kernel the model becomes, gradients pass straight through it, and a run ends as int8.
(The CNN path: tests/test_vision.py; the method contract: tests/contract.)"""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tailorkit import api
from tailorkit.compress.fake_int8 import FakeInt8Linear, fake_int8_input, fake_quantize_linears
from tailorkit.compress.quantize import quantize_linears, quantized_layers
from tailorkit.config.compress import CompressConfig
from tailorkit.errors import TailorError
from tailorkit.recipe import recipe_from_dict


@pytest.mark.parametrize(("inputs", "outputs"), [(32, 16), (384, 96)])
def test_the_fake_quantiser_gives_what_the_int8_kernel_gives(inputs, outputs):
    torch.manual_seed(0)
    linear = nn.Linear(inputs, outputs)
    x = torch.randn(4, 7, inputs) * 3 + 0.5  # off-centre: the input's zero point matters
    fake = copy.deepcopy(linear)
    fake.__class__ = FakeInt8Linear
    int8 = quantize_linears(nn.Sequential(copy.deepcopy(linear)).eval())
    with torch.no_grad():
        want, got, fp32 = int8(x), fake(x), linear(x)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=0)
    assert (fp32 - want).abs().max() > 100 * 2e-5  # int8 is far from fp32, the twin is not


def test_gradients_pass_straight_through_the_rounding():
    torch.manual_seed(0)
    layer = nn.Linear(16, 8)
    layer.__class__ = FakeInt8Linear
    x = torch.randn(5, 16, requires_grad=True)
    layer(x).sum().backward()
    # d/dW of x_q W_q^T is x_q (rounding counts as the identity); d/dx is W_q's columns
    torch.testing.assert_close(layer.weight.grad, fake_int8_input(x.detach()).sum(0).expand(8, 16))
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_keep_fp32_leaves_the_named_layers_float():
    model = nn.ModuleDict({"encoder": nn.Linear(4, 4), "classifier": nn.Linear(4, 2)})
    assert fake_quantize_linears(model, ["classifier"]) == ["encoder"]
    assert type(model["encoder"]) is FakeInt8Linear and type(model["classifier"]) is nn.Linear


def test_a_text_qat_run_ends_as_int8_and_reloads_to_its_test_loss(tiny_recipe, tmp_path):
    from tailorkit.inference import load_run
    from tailorkit.pipeline import setup_run
    from tailorkit.tasks import TASKS

    raw = {**tiny_recipe, "methods": [{"qat": {"keep_fp32": ["pooler"]}}]}
    run = api.train(recipe_from_dict(raw))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["parameters"]["trainable_pct"] == 100
    assert json.loads((run / "model" / "quantization.json").read_text())["mode"] == "dynamic_int8"
    recipe, handle, labels, _ = load_run(run)
    layers = quantized_layers(handle.model)
    assert len(layers) == 13 and "bert.pooler.dense" not in layers  # 2 blocks x 6, and the head
    assert not any(isinstance(m, FakeInt8Linear) for m in handle.model.modules())
    (tmp_path / "again").mkdir()
    setup = setup_run(recipe, tmp_path / "again")
    setup.handle, setup.labels = handle, labels
    again = TASKS[recipe.task].write_test_outputs(setup, recipe, tmp_path / "again")
    assert again["loss"] == pytest.approx(summary["test"]["loss"], abs=1e-6)
    # already int8: compressing it again is refused with that reason, not "nothing to merge"
    with pytest.raises(TailorError, match=rf"^compress: {run}: qat saves an int8 model, compressed already"):
        api.compress(run, CompressConfig.model_validate({"steps": ["prune"]}))
    with pytest.raises(TailorError, match=r"compress: qat saves an int8 model, compressed already"):
        recipe_from_dict({**raw, "compress": {"steps": ["prune"]}})


def test_the_fake_quantised_model_still_learns():
    """Rounding does not stop training: a fake-int8 layer fits a linear map down to about the
    rounding's own noise (7-bit inputs)."""
    torch.manual_seed(0)
    target = torch.randn(4, 16)
    x = torch.randn(256, 16)
    layer = nn.Linear(16, 4)
    layer.__class__ = FakeInt8Linear
    optimizer = torch.optim.Adam(layer.parameters(), lr=1e-2)
    for _ in range(300):
        optimizer.zero_grad()
        loss = F.mse_loss(layer(x), x @ target.t())
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.03 * float((x @ target.t()).var())
