"""ModelHandle: structure found without naming attributes; loading checks; new heads."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from tailorkit.errors import TailorError
from tailorkit.models.handle import handle_for, load_text_classifier


def test_bert_structure(make_handle):
    handle = make_handle()
    assert handle.num_blocks == 2
    assert handle.blocks_prefix == "bert.encoder.layer."
    assert handle.embeddings_prefix == "bert.embeddings."
    depths = {
        "bert.embeddings.word_embeddings.weight": 0,
        "bert.embeddings.LayerNorm.bias": 0,
        "bert.encoder.layer.0.attention.self.query.weight": 1,
        "bert.encoder.layer.1.output.dense.bias": 2,
        "bert.pooler.dense.weight": 3,
        "classifier.weight": 3,
    }
    for name, depth in depths.items():
        assert handle.depth(name) == depth, name
    assert handle.is_head("classifier.bias") and not handle.is_head("bert.encoder.layer.1.output.dense.bias")
    assert {handle.depth(n) for n, _ in handle.named_parameters()} == {0, 1, 2, 3}


def test_llama_structure_embeddings_inside_the_backbone():
    """In Llama the embedding's parent also holds the blocks: only embed_tokens is 'the embeddings'."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=3,
                         num_attention_heads=2, num_key_value_heads=1, num_labels=2, pad_token_id=0)
    handle = handle_for(LlamaForSequenceClassification(config), None, "classes")
    assert handle.num_blocks == 3
    assert handle.blocks_prefix == "model.layers."
    assert handle.embeddings_prefix == "model.embed_tokens."
    assert handle.depth("model.embed_tokens.weight") == 0
    assert handle.depth("model.layers.2.mlp.down_proj.weight") == 3
    assert handle.depth("model.norm.weight") == 4 and handle.depth("score.weight") == 4


def test_classification_head_sized_to_labels(make_handle):
    handle = make_handle(labels=["a", "b", "c"])
    config = handle.model.config
    assert config.num_labels == 3 and handle.model.classifier.out_features == 3
    assert config.id2label == {0: "a", 1: "b", 2: "c"} and config.label2id == {"a": 0, "b": 1, "c": 2}
    assert config.problem_type == "single_label_classification"


def test_regression_head_has_one_output(make_handle):
    handle = make_handle(output="scalar")
    assert handle.model.classifier.out_features == 1
    assert handle.model.config.problem_type == "regression"


def test_forward_ignores_labels_and_returns_logits(make_handle):
    handle = make_handle(labels=["a", "b", "c"])
    handle.model.eval()
    batch = {"input_ids": torch.tensor([[2, 5, 3]]), "attention_mask": torch.ones(1, 3, dtype=torch.long)}
    with torch.no_grad():
        plain = handle.forward(batch)
        with_labels = handle.forward({**batch, "labels": torch.tensor([9])})  # would break a loss
    assert plain.shape == (1, 3) and torch.equal(plain, with_labels)


def test_trainable_names_and_counts(make_handle):
    handle = make_handle()
    trainable, total = handle.count_parameters()
    assert trainable == total == sum(p.numel() for p in handle.model.parameters())
    handle.set_trainable(lambda n: n.startswith("classifier."))
    assert handle.trainable_names() == ["classifier.weight", "classifier.bias"]
    assert handle.count_parameters() == (32 * 2 + 2, total)


def test_saved_classifier_with_the_same_labels_keeps_its_head(make_handle, tmp_path):
    handle = make_handle(labels=["x", "y", "z"])
    with torch.no_grad():
        handle.model.classifier.weight.fill_(0.25)
    handle.save(tmp_path / "saved")
    again = load_text_classifier(tmp_path / "saved", "classes", ["x", "y", "z"])
    assert torch.equal(again.model.classifier.weight, handle.model.classifier.weight)
    other = load_text_classifier(tmp_path / "saved", "classes", ["x", "y", "z", "w"])
    assert other.model.classifier.out_features == 4


@pytest.mark.parametrize(("damage", "words"), [
    (lambda d: (d / "config.json").unlink(), "has no config.json"),
    (lambda d: (d / "model.safetensors").unlink(), "has no weights (expected one of: model.safetensors"),
])
def test_broken_model_folder(tiny_model_dir, tmp_path, damage, words):
    folder = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, folder)
    damage(folder)
    with pytest.raises(TailorError) as info:
        load_text_classifier(folder, "classes", ["a", "b"])
    assert str(info.value).startswith(f"model.name: {folder}") and words in str(info.value)


def test_model_folder_config_is_untouched(tiny_model_dir, make_handle):
    before = json.loads((tiny_model_dir / "config.json").read_text())
    make_handle(labels=["a", "b", "c"])
    assert json.loads((tiny_model_dir / "config.json").read_text()) == before
