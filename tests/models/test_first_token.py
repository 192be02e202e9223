"""The last layer of a [CLS]-pooled classifier computes position 0 only (models/first_token.py)."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    ElectraConfig,
    ElectraForSequenceClassification,
    LlamaConfig,
    LlamaForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from tailorkit.models.first_token import first_token_only, last_layer
from tailorkit.train.lean_activations import lean_activations

SIZES = dict(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
             hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=3)


def _classifier(kind: str, attn: str = "sdpa", **changes):
    torch.manual_seed(0)
    sizes = SIZES | changes
    if kind == "bert":
        return BertForSequenceClassification(BertConfig(**sizes, attn_implementation=attn)).train()
    if kind == "roberta":  # its positions start after the padding index
        return RobertaForSequenceClassification(RobertaConfig(**sizes, max_position_embeddings=40,
                                                              attn_implementation=attn)).train()
    electra = ElectraConfig(**sizes, embedding_size=16, attn_implementation=attn)
    return ElectraForSequenceClassification(electra).train()


def _batch() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    ids = torch.randint(3, 60, (4, 11))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[3, 2:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 2, 1, 2])}


def _loss_and_grads(model, batch, context):
    model.zero_grad(set_to_none=True)
    with context:
        out = model(**batch)
    out.loss.backward()
    return out.logits.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(("kind", "attn"), [("bert", "sdpa"), ("bert", "eager"), ("roberta", "sdpa"),
                                            ("electra", "sdpa")])
def test_logits_and_gradients_are_the_whole_layers(kind, attn):
    model = _classifier(kind, attn)
    batch = _batch()
    whole_logits, whole = _loss_and_grads(model, batch, nullcontext())
    with first_token_only(model) as layer:
        assert layer is model.base_model.encoder.layer[-1]
        first_logits, first = _loss_and_grads(model, batch, nullcontext())
    assert torch.allclose(first_logits, whole_logits, atol=1e-6)
    assert whole.keys() == first.keys()
    for name, grad in whole.items():
        assert torch.allclose(first[name], grad, atol=1e-6), name


def test_the_last_layer_returns_one_position_in_training_and_all_in_evaluation():
    model = _classifier("bert")
    batch = _batch()
    shapes = []
    model.bert.encoder.layer[-1].register_forward_hook(lambda m, args, out: shapes.append(tuple(out.shape)))
    with first_token_only(model):
        model(**batch)
        with torch.no_grad():
            model(**batch)
    model(**batch)
    assert shapes == [(4, 1, 32), (4, 11, 32), (4, 11, 32)]
    assert type(model.bert.encoder.layer[-1]).__name__ == "BertLayer"


def test_inference_contexts_nest_inside_training_and_predict_the_same_logits():
    model = _classifier("bert").eval()
    batch = {k: v for k, v in _batch().items() if k != "labels"}
    layer = model.bert.encoder.layer[-1]
    shapes = []
    layer.register_forward_hook(lambda m, args, out: shapes.append(tuple(out.shape)))
    with torch.no_grad():
        whole = model(**batch).logits
        with first_token_only(model) as outer:
            with first_token_only(model, inference=True) as inner:
                assert inner is outer is layer
                first = model(**batch).logits
            model(**batch)  # the outer context: training forwards only
    assert shapes == [(4, 11, 32), (4, 1, 32), (4, 11, 32)]
    assert torch.allclose(first, whole, atol=1e-6)
    assert type(layer).__name__ == "BertLayer" and not hasattr(layer, "first_token_in_inference")


def test_the_evaluator_predicts_on_the_first_token():
    from tailorkit.evaluate.evaluator import predict_logits
    from tailorkit.models.handle import handle_for

    model = _classifier("bert")
    batch = _batch()
    shapes = []
    model.bert.encoder.layer[-1].register_forward_hook(lambda m, args, out: shapes.append(out.shape[1]))

    class Split:  # what predict_logits reads of an encoded split
        lengths = batch["attention_mask"].sum(1).numpy()

        def __len__(self) -> int:
            return 4

        def collate(self, indices):
            return {k: v[indices] for k, v in batch.items() if k != "labels"}

    logits = predict_logits(handle_for(model, None, "classes"), Split(), batch_size=2)
    with torch.no_grad():
        whole = model.eval()(**Split().collate([0, 1, 2, 3])).logits.numpy()
    assert shapes[:2] == [1, 1] and shapes[2] == 11
    assert abs(logits - whole).max() < 1e-6


def test_lean_activations_trains_peft_lora_on_the_first_token_with_dropout():
    from peft import LoraConfig, TaskType, get_peft_model

    model = get_peft_model(_classifier("bert", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1),
                           LoraConfig(task_type=TaskType.SEQ_CLS, r=4, target_modules="all-linear"))
    last = last_layer(model)
    assert last is model.base_model.model.bert.encoder.layer[-1]
    batch = _batch()
    with lean_activations(model):
        assert type(last).__name__ == "FirstTokenBertLayer"
        _, grads = _loss_and_grads(model, batch, nullcontext())
    assert type(last).__name__ == "BertLayer"
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert grads.keys() == trained
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert all(g.abs().sum() > 0 for n, g in grads.items() if "lora_B" in n)  # lora_A's are 0 at B = 0


def test_prefix_tuning_runs_the_whole_layer_and_matches():
    """Prefix tuning hands every layer a key/value cache, which the first-token path leaves to
    the layer's own forward."""
    from peft import PrefixTuningConfig, TaskType, get_peft_model

    model = get_peft_model(_classifier("bert"), PrefixTuningConfig(task_type=TaskType.SEQ_CLS,
                                                                   num_virtual_tokens=3))
    batch = _batch()
    whole_logits, whole = _loss_and_grads(model, batch, nullcontext())
    first_logits, first = _loss_and_grads(model, batch, first_token_only(model))
    assert torch.equal(first_logits, whole_logits)
    assert all(torch.equal(first[n], g) for n, g in whole.items())


def test_other_models_are_left_alone():
    llama = LlamaForSequenceClassification(LlamaConfig(vocab_size=60, hidden_size=32, intermediate_size=48,
                                                       num_hidden_layers=2, num_attention_heads=4,
                                                       num_labels=3, pad_token_id=0))
    masked_lm = BertForMaskedLM(BertConfig(**SIZES))  # reads every position
    for model in (llama, masked_lm):
        with first_token_only(model) as layer:
            assert layer is None
