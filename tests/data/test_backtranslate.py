"""Back-translation plumbing through real seq2seq folders: two tiny randomly initialised MarianMT
models with real MarianTokenizers, built here (no download). The words they produce are noise;
what is tested is the path: rows through forward then backward, the copy keeps its label, every
new row is recorded, the same models give the same rows, and a folder that is not seq2seq is a
one-line error."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest

from conftest import VOCAB, make_sentences
from tailorkit import cli
from tailorkit.config.quality import AugmentConfig
from tailorkit.data.augment.augment import augment_frame
from tailorkit.data.augment.backtranslate import back_translate
from tailorkit.errors import TailorError

ROWS = pd.DataFrame({"text": ["good film", "the plot was awful", "a very nice day", "sad and poor acting"],
                     "label": ["pos", "neg", "pos", "neg"]})


def build_tiny_marian(directory: Path, seed: int) -> Path:
    """A folder laid out like Helsinki-NLP's opus-mt ones: a 1-layer MarianMT model and a real
    MarianTokenizer (source.spm, target.spm, vocab.json) over a SentencePiece word model trained here."""
    import io
    import json

    import sentencepiece as spm
    import torch
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    directory.mkdir(parents=True)
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(make_sentences(200)["text"]), model_writer=proto,
                                   vocab_size=30, model_type="word", pad_id=-1, unk_id=0, bos_id=-1,
                                   eos_id=-1, minloglevel=2)
    for name in ("source.spm", "target.spm"):
        (directory / name).write_bytes(proto.getvalue())
    pieces = spm.SentencePieceProcessor(model_proto=proto.getvalue())
    vocab = {"</s>": 0, "<unk>": 1, "<pad>": 2}
    for i in range(pieces.get_piece_size()):
        vocab.setdefault(pieces.id_to_piece(i), len(vocab))
    (directory / "vocab.json").write_text(json.dumps(vocab))
    with warnings.catch_warnings():  # its advice to install sacremoses, which is not used here
        warnings.simplefilter("ignore", UserWarning)
        MarianTokenizer(str(directory / "source.spm"), str(directory / "target.spm"),
                        str(directory / "vocab.json")).save_pretrained(directory)
    config = MarianConfig(vocab_size=len(vocab), d_model=16, encoder_layers=1, decoder_layers=1,
                          encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                          decoder_ffn_dim=32, max_position_embeddings=256, pad_token_id=2, eos_token_id=0,
                          decoder_start_token_id=2, forced_eos_token_id=0)
    torch.manual_seed(seed)
    MarianMTModel(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("marian")
    return str(build_tiny_marian(root / "en-xx", 1)), str(build_tiny_marian(root / "xx-en", 2))


def _cfg(pair, **kwargs) -> AugmentConfig:
    return AugmentConfig(**{"per_example": 0, **kwargs},
                         back_translation={"forward": pair[0], "backward": pair[1], "max_length": 8})


def test_rows_go_forward_then_backward(pair):
    cfg = _cfg(pair).back_translation
    texts = ROWS["text"].tolist()
    out = back_translate(texts, cfg)
    assert len(out) == len(texts) and all(w in VOCAB for t in out for w in t.split())  # the spm words
    assert out == back_translate(texts, cfg)  # greedy: the same rows every time
    swapped = cfg.model_copy(update={"forward": cfg.backward, "backward": cfg.forward})
    assert back_translate(texts, swapped) != out  # both models are really used, in order


def test_augment_adds_one_recorded_copy_per_row_with_its_label(pair):
    out, changes = augment_frame(ROWS, _cfg(pair), "text", "label", True, None)
    added = out.iloc[len(ROWS):]
    assert len(added) == len(changes) > 0
    assert {c.reason for c in changes} == {"back_translation"}
    for change, (_, row) in zip(changes, added.iterrows(), strict=True):
        source = ROWS.iloc[change.row - 1]
        assert row["label"] == source["label"] and row["text"] == change.text != source["text"]
    assert out.iloc[: len(ROWS)].equals(ROWS)  # originals untouched
    eda_too, more = augment_frame(ROWS, _cfg(pair, per_example=1, ops=["swap"]), "text", "label", True, None)
    assert {c.reason for c in more} == {"back_translation", "eda:swap"}


def test_cli_flag_and_a_folder_that_is_not_seq2seq(pair, tiny_model_dir, tmp_path, capsys):
    data = tmp_path / "rows.csv"
    ROWS.to_csv(data, index=False)
    code = cli.main(["data", "augment", str(data), "--output", str(tmp_path / "a.csv"), "--per-example", "0",
                     "--back-translate", *pair])
    out = capsys.readouterr().out
    assert code == 0 and "back_translation" in out
    assert len(pd.read_csv(tmp_path / "a.changes.csv")) == len(pd.read_csv(tmp_path / "a.csv")) - len(ROWS)
    with pytest.raises(TailorError, match="back_translation.forward: .* is not a seq2seq"):
        back_translate(["good film"], _cfg((str(tiny_model_dir), pair[1])).back_translation)
    with pytest.raises(TailorError, match="back_translation.backward: .*nowhere.* is neither a local folder"):
        back_translate(["good film"], _cfg((pair[0], str(tmp_path / "nowhere"))).back_translation)
