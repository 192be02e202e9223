"""Static int8 of text models' linear layers: the input scales come from the calibration
batches, the model stays close to fp32, and a saved model reloads to the same outputs."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from tailorkit.compress import STEPS
from tailorkit.compress.quantize import quantized_layers
from tailorkit.compress.static_linear import static_int8
from tailorkit.config.compress import StepSpec
from tailorkit.tasks import TASKS

RECIPE = SimpleNamespace(model=SimpleNamespace(trust_remote_code=False))
TEXTS = ["good movie", "the plot was awful and sad", "great acting, fine music", "boring", "I loved it",
         "not worth the ticket", "a slow start but a fine end", "terrible"] * 4


class _Texts:
    """A training split for calibration: `lengths` and `collate(indices)` as EncodedSplit has."""

    def __init__(self, tokenizer, texts: list[str]) -> None:
        self.tokenizer, self.texts = tokenizer, texts
        self.lengths = np.array([len(tokenizer(t)["input_ids"]) for t in texts])

    def __len__(self) -> int:
        return len(self.texts)

    def collate(self, indices):
        return self.tokenizer([self.texts[i] for i in indices], padding=True, return_tensors="pt")


def step(spec):
    (s,) = StepSpec.parse_list([spec], "")
    return STEPS[s.name](s.config)


def test_the_input_scale_comes_from_the_calibration_range():
    scales = []
    for spread in (1.0, 10.0):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(16, 8))
        x = torch.rand(64, 16) * 2 * spread - spread
        static_int8(model, ["0"], lambda m=model, x=x: m(x))
        scales.append(float(model[0].quant.scale))
    assert 8 < scales[1] / scales[0] < 12  # ten times the range, about ten times the step


def test_static_int8_bert_stays_close_and_saves_and_reloads_exactly(make_handle, tmp_path):
    handle = make_handle()
    batch = handle.tokenizer(TEXTS[:2], padding=True, return_tensors="pt")
    with torch.no_grad():
        fp32 = handle.model.eval()(**batch).logits
    quantize = step({"quantize_static": {"calibration_batches": 1, "keep_fp32": ["pooler"]}})
    report = quantize.apply(handle, _Texts(handle.tokenizer, TEXTS))
    assert report["calibration_examples"] == 32 and report["quantized_layers"] == 13
    layers = quantized_layers(handle.model)
    assert len(layers) == 13 and not any("pooler" in n for n in layers)
    with torch.no_grad():
        int8 = handle.model(**batch).logits
    assert not torch.equal(int8, fp32)
    torch.testing.assert_close(int8, fp32, atol=0.1, rtol=0)

    quantize.save_model(handle, tmp_path)
    loaded = quantize.load_model(TASKS["classification"], RECIPE, tmp_path, ["neg", "pos"])
    with torch.no_grad():
        assert torch.equal(loaded.model(**batch).logits, int8)
