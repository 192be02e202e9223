"""Weight-only int8/int4: the layers compute with exactly their dequantised weights, shapes the
kernels cannot take stay fp32, and a saved model reloads to the same outputs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from tailorkit.compress import STEPS
from tailorkit.compress.measure import parameter_counts
from tailorkit.compress.quantize_weights import WeightOnlyLinear, quantize_weights
from tailorkit.config.compress import StepSpec
from tailorkit.tasks import TASKS

RECIPE = SimpleNamespace(model=SimpleNamespace(trust_remote_code=False))


def step(spec):
    (s,) = StepSpec.parse_list([spec], "")
    return STEPS[s.name](s.config)


@pytest.mark.parametrize(("bits", "group", "worst"), [(8, 64, 1 / 254), (4, 32, 1 / 30)])
def test_codes_round_each_weight_to_its_nearest_level(bits, group, worst):
    """int8: one symmetric scale per row; int4: a scale and offset per group of inputs. Every
    weight is within half a step of its dequantised value (a step is 1/254 or 1/15 of the range;
    bf16 scales add a little)."""
    torch.manual_seed(0)
    linear = nn.Linear(64, 32)
    layer = WeightOnlyLinear.from_linear(linear, bits, group)
    w = linear.weight.detach()
    if bits == 8:
        span = 2 * w.abs().amax(1, keepdim=True)
    else:
        g = w.view(32, -1, group)
        span = (g.amax(-1, keepdim=True) - g.amin(-1, keepdim=True)).expand_as(g).reshape(32, 64)
    error = (layer.dequantized() - w).abs()
    assert (error <= span * worst * 1.02 + 1e-7).all()
    assert (error > 0).any()


@pytest.mark.parametrize("bits", [8, 4])
def test_the_kernel_multiplies_by_the_dequantised_weights(bits):
    torch.manual_seed(0)
    linear = nn.Linear(128, 48)
    layer = WeightOnlyLinear.from_linear(linear, bits, 32)
    x = torch.randn(3, 5, 128)
    want = x.bfloat16().float() @ layer.dequantized().t() + linear.bias.detach()
    got = layer(x)
    assert got.shape == (3, 5, 48) and got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=0.02 * float(want.abs().max()), rtol=0.01)
    fp32 = linear(x).detach()
    assert (got - fp32).abs().max() < (0.05 if bits == 8 else 0.3) * fp32.abs().max()


def test_shapes_the_kernels_cannot_take_stay_fp32():
    model = nn.Sequential(nn.Linear(64, 32), nn.Linear(32, 5), nn.Linear(5, 16), nn.Linear(40, 16))
    chosen, unfit = quantize_weights(model, 8, 64)
    assert chosen == ["0", "1"] and unfit == ["2", "3"]  # int8: inputs a multiple of 16
    model = nn.Sequential(nn.Linear(64, 32), nn.Linear(32, 5), nn.Linear(96, 16))
    chosen, unfit = quantize_weights(model, 4, 64)
    assert chosen == ["0"] and unfit == ["1", "2"]  # int4: outputs of 16s, inputs of the group
    assert [type(m) for m in model] == [WeightOnlyLinear, nn.Linear, nn.Linear]


@pytest.mark.parametrize("bits", [8, 4])
def test_a_weight_only_bert_saves_and_reloads_to_the_same_outputs(bits, make_handle, tmp_path):
    handle = make_handle()
    batch = handle.tokenizer(["good movie", "the plot was awful and sad"], padding=True, return_tensors="pt")
    with torch.no_grad():
        fp32 = handle.model.eval()(**batch).logits
    total = parameter_counts(handle)["total"]
    quantize = step({"quantize_weights": {"bits": bits, "group_size": 32, "keep_fp32": ["pooler"]}})
    report = quantize.apply(handle)
    # the tiny BERT: 2 blocks x 6 linear layers; the pooler is kept, the 2-class head does not fit int4
    assert report["quantized_layers"] == (13 if bits == 8 else 12)
    assert report["unfit_kept_fp32"] == ([] if bits == 8 else ["classifier"])
    assert type(handle.model.bert.pooler.dense) is nn.Linear
    with torch.no_grad():
        quantized = handle.model(**batch).logits
    assert not torch.equal(quantized, fp32)
    torch.testing.assert_close(quantized, fp32, atol=0.05 if bits == 8 else 0.3, rtol=0)
    assert parameter_counts(handle)["total"] == total

    quantize.save_model(handle, tmp_path)
    loaded = quantize.load_model(TASKS["classification"], RECIPE, tmp_path, ["neg", "pos"])
    with torch.no_grad():
        assert torch.equal(loaded.model(**batch).logits, quantized)


def test_a_weight_only_causal_lm_with_tied_embeddings_reloads_and_generates(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from conftest import build_bpe_tokenizer
    from tailorkit.models.handle import handle_for

    tokenizer = build_bpe_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    handle = handle_for(LlamaForCausalLM(config).eval(), tokenizer, "next_token")
    embedding = handle.model.model.embed_tokens.weight.detach().clone()
    quantize = step({"quantize_weights": {"bits": 4, "group_size": 32}})
    assert quantize.apply(handle)["quantized_layers"] == 15  # 7 per block and the LM head
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        logits = handle.model(input_ids=ids).logits
    quantize.save_model(handle, tmp_path)
    loaded = quantize.load_model(TASKS["causal_lm"], RECIPE, tmp_path, [])
    assert isinstance(loaded.model.lm_head, WeightOnlyLinear)
    assert torch.equal(loaded.model.model.embed_tokens.weight, embedding)  # the lookup stays fp32
    with torch.no_grad():
        assert torch.equal(loaded.model(input_ids=ids).logits, logits)
        out = loaded.model.generate(input_ids=ids, max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 7)


def test_weight_only_quantisation_is_for_text_models():
    task = SimpleNamespace(modality="image", name="image_classification")
    with pytest.raises(ValueError, match="quantize_weights.*quantize_static"):
        step("quantize_weights").check_recipe(None, task, "compress.steps[0]")
