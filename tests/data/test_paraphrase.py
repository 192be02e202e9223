"""Paraphrase augmentation: a tiny randomly initialised chat model (Llama layout, ChatML template)
built here writes the rows (noise, but through the real path: chat template, seeded sampling,
decoding), and the label filter is checked on controlled paraphrases."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from pydantic import ValidationError

from conftest import build_bpe_tokenizer
from tailorkit import cli
from tailorkit.config.quality import AugmentConfig, ParaphraseConfig
from tailorkit.data.augment import paraphrase as para_mod
from tailorkit.data.augment.augment import augment_frame
from tailorkit.errors import TailorError

ROWS = pd.DataFrame({"text": ["a good film", "a great day", "good food", "a bad film", "an awful day",
                              "bad food"],
                     "label": ["pos", "pos", "pos", "neg", "neg", "neg"]})


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory) -> str:
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("models") / "tiny-chat"
    tokenizer = build_bpe_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def test_a_chat_model_writes_one_seeded_paraphrase_per_row(chat_model):
    cfg = ParaphraseConfig(model=chat_model, max_new_tokens=6, label_filter=False, seed=3)
    texts = ROWS["text"].tolist()
    out = para_mod.paraphrase(texts, cfg)
    assert len(out) == len(texts) and any(out)
    assert out == para_mod.paraphrase(texts, cfg)  # the same seed, the same rows
    assert out != para_mod.paraphrase(texts, cfg.model_copy(update={"seed": 4}))
    augmented, changes = augment_frame(ROWS, AugmentConfig(per_example=0, paraphrase=cfg), "text", "label",
                                       True, None)
    added = augmented.iloc[len(ROWS):]
    assert len(added) == len(changes) and {c.reason for c in changes} == {"paraphrase"}
    assert all(augmented.loc[i, "label"] == ROWS.iloc[c.row - 1]["label"]
               for i, c in zip(added.index, changes, strict=True))


def test_the_filter_drops_paraphrases_whose_label_the_model_disputes(monkeypatch):
    kept_meaning = ["a good movie", "a great sunny day", "good tasty food", "a bad movie",
                    "an awful rainy day", "bad tasteless food"]
    flipped = kept_meaning[:2] + ["awful food"] + kept_meaning[3:5] + ["great food"]
    monkeypatch.setattr(para_mod, "paraphrase", lambda texts, cfg: flipped)
    out, changes = augment_frame(ROWS, AugmentConfig(per_example=0, paraphrase={"model": "unused"}),
                                 "text", "label", True, None)
    rejected = [c for c in changes if c.action == "rejected"]
    assert [(c.row, c.text) for c in rejected] == [(3, "awful food"), (6, "great food")]
    assert {c.reason for c in rejected} == {"paraphrase_label_disagrees"}
    assert out.iloc[len(ROWS):]["text"].tolist() == kept_meaning[:2] + kept_meaning[3:5]
    unfiltered, _ = augment_frame(ROWS, AugmentConfig(per_example=0, paraphrase={"model": "unused",
                                                                                  "label_filter": False}),
                                  "text", "label", True, None)
    assert len(unfiltered) == 2 * len(ROWS)


def test_bad_settings_are_clear_errors(tiny_model_dir, tmp_path, chat_model, capsys):
    with pytest.raises(ValidationError, match="prompt must contain"):
        ParaphraseConfig(prompt="Rewrite this.")
    with pytest.raises(TailorError, match="paraphrase.model: .* has no chat template|is not a causal LM"):
        para_mod.paraphrase(["x"], ParaphraseConfig(model=str(tiny_model_dir)))
    data = tmp_path / "rows.csv"
    ROWS.to_csv(data, index=False)
    code = cli.main(["data", "augment", str(data), "--output", str(tmp_path / "p.csv"), "--per-example", "0",
                     "--paraphrase", str(tmp_path / "nowhere")])
    assert code == 2 and capsys.readouterr().err.startswith("error: --paraphrase: ")
    assert not Path(tmp_path / "p.csv").exists()
