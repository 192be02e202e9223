"""Each compression step on the tiny BERT: what it reports is what the model holds, and what it
saves loads back to the same outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tailorkit.compress import STEPS
from tailorkit.compress.measure import parameter_counts
from tailorkit.compress.quantize import quantized_layers
from tailorkit.config.compress import StepSpec
from tailorkit.errors import TailorError
from tailorkit.tasks import TASKS


def step(spec):
    (s,) = StepSpec.parse_list([spec], "")
    return STEPS[s.name](s.config)


def _batch(handle):
    return handle.tokenizer(["good movie", "the plot was awful and sad"], padding=True, return_tensors="pt")


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_pruning_reaches_the_sparsity_it_reports(scope, make_handle):
    handle = make_handle()
    report = step({"prune": {"amount": 0.4, "scope": scope}}).apply(handle)
    layers = {n: m for n, m in handle.model.named_modules() if isinstance(m, nn.Linear)}
    pruned = {n: m for n, m in layers.items() if not handle.is_head(f"{n}.weight")}
    assert set(report["layers"]) == set(pruned) and pruned
    for name, module in pruned.items():
        real = float((module.weight == 0).float().mean())
        assert real == pytest.approx(report["layers"][name], abs=1e-4)
        if scope == "layer":
            assert real == pytest.approx(0.4, abs=1 / module.weight.numel() + 1e-9)
    zeros = sum(int((m.weight == 0).sum()) for m in pruned.values())
    size = sum(m.weight.numel() for m in pruned.values())
    assert report["sparsity"] == pytest.approx(zeros / size, abs=1e-6)
    assert report["sparsity"] == pytest.approx(0.4, abs=1e-3)
    assert all(float((m.weight == 0).float().mean()) == 0 for n, m in layers.items() if n not in pruned)
    assert not any(hasattr(m, "weight_mask") for m in layers.values())  # permanent: no masks left


def test_global_pruning_takes_the_smallest_weights_of_all_layers(make_handle):
    handle = make_handle()
    before = {n: m.weight.detach().abs().clone() for n, m in handle.model.named_modules()
              if isinstance(m, nn.Linear) and not handle.is_head(f"{n}.weight")}
    step({"prune": {"amount": 0.3}}).apply(handle)
    threshold = torch.cat([w.flatten() for w in before.values()]).kthvalue(
        int(0.3 * sum(w.numel() for w in before.values()))).values
    for name, module in handle.model.named_modules():
        if name in before:
            kept = module.weight != 0
            assert (before[name][kept] >= threshold).all() and (before[name][~kept] <= threshold).all()


def test_dynamic_int8_keeps_the_outputs_close_and_saves_and_loads_exactly(make_handle, tmp_path):
    handle = make_handle()
    batch = _batch(handle)
    fp32_count = parameter_counts(handle)["total"]
    with torch.no_grad():
        fp32 = handle.model.eval()(**batch).logits
    quantize = step("quantize")
    report = quantize.apply(handle)
    linear_count = sum(isinstance(m, nn.Linear) for m in make_handle().model.modules())
    assert report["quantized_layers"] == linear_count == len(quantized_layers(handle.model))
    with torch.no_grad():
        int8 = handle.model(**batch).logits
    torch.testing.assert_close(int8, fp32, atol=0.05, rtol=0)  # int8 weights and activations
    assert not torch.equal(int8, fp32)

    quantize.save_model(handle, tmp_path)
    loaded = quantize.load_model(TASKS["classification"], _recipe_stub(), tmp_path, ["neg", "pos"])
    with torch.no_grad():
        assert torch.equal(loaded.model(**batch).logits, int8)
    counts = parameter_counts(loaded)
    assert counts == parameter_counts(handle) and counts["nonzero"] <= counts["total"] == fp32_count


def _recipe_stub():
    from types import SimpleNamespace

    return SimpleNamespace(model=SimpleNamespace(trust_remote_code=False))


def test_ffn_pruning_shrinks_every_block_and_saves_as_a_smaller_plain_model(make_handle, tmp_path):
    handle = make_handle()
    report = step({"prune_ffn": {"amount": 0.25}}).apply(handle)
    assert report["neurons"] == {"before": 64, "after": 48} and report["blocks"] == 2
    for layer in handle.model.bert.encoder.layer:
        assert layer.intermediate.dense.weight.shape == (48, 32)
        assert layer.output.dense.weight.shape == (32, 48)
    assert handle.model.config.intermediate_size == 48
    batch = _batch(handle)
    with torch.no_grad():
        pruned = handle.model.eval()(**batch).logits
    handle.save(tmp_path)
    loaded, _ = TASKS["classification"].load_model(_recipe_stub(), tmp_path, ["neg", "pos"])
    with torch.no_grad():
        assert torch.equal(loaded.model.eval()(**batch).logits, pruned)
    assert parameter_counts(loaded)["total"] < parameter_counts(make_handle())["total"]


def test_ffn_pruning_removes_the_neurons_that_matter_least(make_handle):
    """Neurons whose down-projection column is zero contribute nothing: pruning exactly those
    leaves the outputs as they were."""
    handle = make_handle()
    dead = torch.arange(0, 64, 4)  # 16 of 64 neurons per block
    with torch.no_grad():
        for layer in handle.model.bert.encoder.layer:
            layer.output.dense.weight[:, dead] = 0
    batch = _batch(handle)
    with torch.no_grad():
        before = handle.model.eval()(**batch).logits
    step({"prune_ffn": {"amount": 0.25}}).apply(handle)
    with torch.no_grad():
        torch.testing.assert_close(handle.model(**batch).logits, before, atol=1e-6, rtol=0)


def test_ffn_pruning_takes_the_gate_of_llama_blocks_too():
    from transformers import LlamaConfig, LlamaForCausalLM

    from tailorkit.models.handle import handle_for

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=40, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2)
    handle = handle_for(LlamaForCausalLM(config), None, "next_token")
    step({"prune_ffn": {"amount": 0.5}}).apply(handle)
    for layer in handle.model.model.layers:
        assert layer.mlp.gate_proj.out_features == layer.mlp.up_proj.out_features == 20
        assert layer.mlp.down_proj.in_features == 20
    assert handle.model(input_ids=torch.tensor([[1, 2, 3]])).logits.shape == (1, 3, 50)


@pytest.mark.parametrize(("n", "keep", "which", "kept"), [
    (6, 3, "bottom", [0, 1, 2]), (6, 3, "alternate", [0, 2, 4]), (12, 4, "alternate", [0, 3, 6, 9])])
def test_drop_blocks_keeps_the_blocks_it_names(n, keep, which, kept):
    from tailorkit.compress.drop_blocks import kept_blocks

    assert kept_blocks(n, keep, which) == kept


def test_drop_blocks_keeps_those_blocks_weights_and_saves_as_a_shallower_plain_model(make_handle, tmp_path):
    handle = make_handle()
    block0 = {k: v.clone() for k, v in handle.model.bert.encoder.layer[0].state_dict().items()}
    report = step({"drop_blocks": {"keep": 1}}).apply(handle)
    assert report["blocks"] == {"before": 2, "after": 1, "kept": [0]}
    (layer,) = handle.model.bert.encoder.layer
    assert all(torch.equal(v, block0[k]) for k, v in layer.state_dict().items())
    assert handle.model.config.num_hidden_layers == 1 and handle.num_blocks == 1
    batch = _batch(handle)
    with torch.no_grad():
        dropped = handle.model.eval()(**batch).logits
    handle.save(tmp_path)
    loaded, _ = TASKS["classification"].load_model(_recipe_stub(), tmp_path, ["neg", "pos"])
    with torch.no_grad():
        assert torch.equal(loaded.model.eval()(**batch).logits, dropped)
    assert parameter_counts(loaded)["total"] < parameter_counts(make_handle())["total"]
    with pytest.raises(TailorError, match="the model has 2 blocks"):
        step({"drop_blocks": {"keep": 2}}).apply(make_handle())


def test_drop_blocks_renumbers_a_decoders_cache_layers():
    """Llama attention finds its KV cache by layer index: generating token by token with the
    cache must give the logits of one pass over the whole sequence."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tailorkit.models.handle import handle_for

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=4,
                         num_attention_heads=2, num_key_value_heads=2)
    handle = handle_for(LlamaForCausalLM(config).eval(), None, "next_token")
    step({"drop_blocks": {"keep": 2, "which": "alternate"}}).apply(handle)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        whole = handle.model(input_ids=ids).logits
        first = handle.model(input_ids=ids[:, :3], use_cache=True)
        last = handle.model(input_ids=ids[:, 3:], past_key_values=first.past_key_values).logits
    torch.testing.assert_close(last[:, -1], whole[:, -1], atol=1e-5, rtol=0)


class _Images:
    """Calibration images as a split: `collate(indices)` gives their pixel batch."""

    def __init__(self, n: int, size: int = 32) -> None:
        self.pixels = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.pixels)

    def collate(self, indices):
        return {"pixel_values": self.pixels[indices]}


def _mobilenet(num_classes: int = 4):
    from tailorkit.models.mobilenet_v2 import MobileNetV2
    from tailorkit.models.vision import vision_handle

    torch.manual_seed(0)
    model = MobileNetV2(num_classes)
    for m in model.modules():  # trained-looking batch norms, so pruning has something to rank
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
    return vision_handle(model.eval())


def test_channel_pruning_removes_the_channels_that_matter_least():
    """Hidden channels whose projection weights are zero contribute nothing: pruning only
    those (a quarter, rounded to a multiple of 8) leaves the outputs as they were."""
    handle = _mobilenet()
    x = _Images(2).pixels
    blocks = [b for b in handle.model.features if hasattr(b, "hidden") and len(b.conv) == 4]
    with torch.no_grad():
        for block in blocks:
            block.conv[2].weight[:, 0::4] = 0  # a quarter of every block's channels
        before = handle.model(x)
    widths = [b.hidden for b in blocks]
    report = step({"prune_channels": {"amount": 0.25}}).apply(handle)
    kept = [8 * round(w * 0.75 / 8) for w in widths]  # multiples of 8, for the int8 kernels
    assert report["blocks"] == 16 and report["channels"]["after"] == sum(kept)
    assert [b.hidden for b in blocks] == kept and all(k % 8 == 0 for k in kept)
    assert blocks[0].conv[1][0].weight.shape == (kept[0], 1, 3, 3)
    with torch.no_grad():
        torch.testing.assert_close(handle.model(x), before, atol=1e-5, rtol=0)


def test_a_channel_pruned_model_saves_loads_and_quantizes(tmp_path):
    from tailorkit.models.vision import load_saved, save_image_model

    handle = _mobilenet()
    step({"prune_channels": {"amount": 0.5}}).apply(handle)
    x = _Images(2).pixels
    save_image_model(handle.model, tmp_path)
    loaded = load_saved(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), handle.model(x))
    assert parameter_counts(handle)["total"] < 0.7 * parameter_counts(_mobilenet())["total"]
    float_out = handle.model(x).detach()
    step({"quantize_static": {"calibration_batches": 1}}).apply(handle, _Images(32))
    assert (handle.model(x) - float_out).abs().max() < 0.1 * float_out.abs().max() + 1e-3


def test_head_pruning_removes_the_heads_that_matter_least(make_handle):
    """A head whose output columns are zero writes nothing: pruning exactly it leaves the
    outputs as they were, with narrower projections."""
    handle = make_handle()
    layers = handle.model.bert.encoder.layer
    with torch.no_grad():
        for layer in layers:  # the tiny BERT: 2 heads of 16
            layer.attention.output.dense.weight[:, 16:] = 0
        batch = _batch(handle)
        before = handle.model.eval()(**batch).logits
    report = step({"prune_heads": {"amount": 0.5}}).apply(handle)
    assert report["heads"] == {"before": 4, "after": 2} and report["head_size"] == 16
    for layer in layers:
        assert layer.attention.self.query.weight.shape == (16, 32)
        assert layer.attention.output.dense.weight.shape == (32, 16)
    with torch.no_grad():
        torch.testing.assert_close(handle.model(**batch).logits, before, atol=1e-6, rtol=0)


@pytest.mark.parametrize("then_int8", [False, True], ids=["alone", "then-int8"])
def test_a_head_pruned_model_saves_with_its_structure_and_loads_the_same(then_int8, make_handle, tmp_path):
    handle = make_handle()
    steps = [step({"prune_heads": {"amount": 0.5}})] + ([step("quantize")] if then_int8 else [])
    for s in steps:
        s.apply(handle)
    batch = _batch(handle)
    with torch.no_grad():
        pruned = handle.model.eval()(**batch).logits
    if then_int8:
        steps[-1].save_model(handle, tmp_path)
        loaded = steps[-1].load_model(TASKS["classification"], _recipe_stub(), tmp_path, ["neg", "pos"])
    else:
        handle.save(tmp_path)
        loaded, _ = TASKS["classification"].load_model(_recipe_stub(), tmp_path, ["neg", "pos"])
    assert (tmp_path / "structure.json").is_file()
    with torch.no_grad():
        assert torch.equal(loaded.model.eval()(**batch).logits, pruned)
    assert parameter_counts(loaded)["total"] < parameter_counts(make_handle())["total"]


def test_dynamic_int8_keeps_the_named_layers_in_fp32_and_reloads_them_so(make_handle, tmp_path):
    handle = make_handle()
    quantize = step({"quantize": {"keep_fp32": ["intermediate"]}})
    report = quantize.apply(handle)
    kept = [n for n, m in handle.model.named_modules() if type(m) is nn.Linear]
    assert sorted(kept) == [f"bert.encoder.layer.{i}.intermediate.dense" for i in (0, 1)]
    assert report["kept_fp32"] == ["intermediate"] and report["quantized_layers"] == 12
    batch = _batch(handle)
    with torch.no_grad():
        before = handle.model(**batch).logits
    quantize.save_model(handle, tmp_path)
    loaded = quantize.load_model(TASKS["classification"], _recipe_stub(), tmp_path, ["neg", "pos"])
    assert sorted(n for n, m in loaded.model.named_modules() if type(m) is nn.Linear) == sorted(kept)
    with torch.no_grad():
        assert torch.equal(loaded.model(**batch).logits, before)


def _tiny_llama(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from conftest import build_bpe_tokenizer
    from tailorkit.models.handle import handle_for

    tokenizer = build_bpe_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    return handle_for(LlamaForCausalLM(config).eval(), tokenizer, "next_token")


def test_grouped_query_heads_go_with_their_key_value_head_and_reload(tmp_path):
    """Llama: 4 query heads share 2 key/value heads. Zeroing the output columns of group 1's
    query heads makes it the weakest; pruning half the groups removes exactly it, so the
    logits stay, and the model saves and loads back through structure.json."""
    handle = _tiny_llama(tmp_path)
    ids = torch.tensor([[3, 7, 11, 5]])
    with torch.no_grad():
        for layer in handle.model.model.layers:
            layer.self_attn.o_proj.weight[:, 16:] = 0  # query heads 2 and 3 (head size 8)
        before = handle.model(input_ids=ids).logits
    report = step({"prune_heads": {"amount": 0.5}}).apply(handle)
    assert report["heads"] == {"before": 8, "after": 4} and report["head_size"] == 8
    for layer in handle.model.model.layers:
        a = layer.self_attn
        assert (a.q_proj.out_features, a.k_proj.out_features, a.o_proj.in_features) == (16, 8, 16)
    with torch.no_grad():
        torch.testing.assert_close(handle.model(input_ids=ids).logits, before, atol=1e-5, rtol=0)
    handle.save(tmp_path)
    loaded, _ = TASKS["causal_lm"].load_model(_recipe_stub(), tmp_path, [])
    with torch.no_grad():
        assert torch.equal(loaded.model.eval()(input_ids=ids).logits, handle.model(input_ids=ids).logits)
