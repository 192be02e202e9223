"""`tailor data inspect --render N`: instruction data rendered through the training path, the
supervised tokens marked, and the warnings about set-ups that would train a model that never stops."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import build_bpe_tokenizer
from tailorkit import cli
from tailorkit.data.inspection_chat import CLOSE, OPEN

ROWS = pd.DataFrame({"prompt": ["What is the capital of France?", "Translate good morning into German."],
                     "completion": ["Paris.", "Guten Morgen."]})
NO_END = "{% for m in messages %}{{ m['content'] + '\n' }}{% endfor %}"  # replies end with no stop token


def _tokenizer_dir(tmp_path: Path, name: str, **kwargs) -> Path:
    folder = tmp_path / name
    build_bpe_tokenizer(**kwargs).save_pretrained(folder)
    return folder


@pytest.fixture
def data(tmp_path) -> Path:
    path = tmp_path / "chat.csv"
    ROWS.to_csv(path, index=False)
    return path


def _run(argv, capsys) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_render_marks_the_reply_and_its_end_of_turn_only(data, tmp_path, capsys):
    model = _tokenizer_dir(tmp_path, "chatml")
    code, out, _ = _run(["data", "inspect", data, "--render", 1, "--model", model,
                         "--json", tmp_path / "r.json"], capsys)
    assert code == 0
    assert f"<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n" \
           f"{OPEN}Paris.<|im_end|>{CLOSE}" in out
    assert "-- row 1:" in out and "-- row 2:" not in out  # N examples, no more
    assert "format prompt_completion" in out
    assert "pad token is EOS" in out  # the test tokenizer pads with <|endoftext|>
    assert "not supervised" not in out  # <|im_end|> is a stop token and it is trained
    report = json.loads((tmp_path / "r.json").read_text())
    supervised = [s["text"] for s in report["examples"][0]["segments"] if s["supervised"]]
    assert supervised == ["Paris.<|im_end|>"]


def test_warns_when_no_stop_token_is_supervised(data, tmp_path, capsys):
    model = _tokenizer_dir(tmp_path, "chatml")
    code, out, _ = _run(["data", "inspect", data, "--render", 2, "--model", model, "--template", NO_END],
                        capsys)
    assert code == 0
    assert "warning: EOS is not supervised in 2 of 2 examples (rows 1, 2)" in out
    assert "would never learn to stop" in out
    assert f"{OPEN}Paris.\n{CLOSE}" in out or f"{OPEN}Paris.{CLOSE}" in out


def test_warns_when_truncation_cuts_the_stop_token(data, tmp_path, capsys):
    model = _tokenizer_dir(tmp_path, "chatml")
    code, out, _ = _run(["data", "inspect", data, "--render", 1, "--model", model, "--max-length", 20],
                        capsys)
    assert code == 0 and "cut at max_length" in out
    assert "EOS is not supervised in 1 of 1 examples (rows 1) (1 of them cut at max_length=20)" in out


def test_without_a_chat_template_it_says_to_name_one(data, tmp_path, capsys):
    model = _tokenizer_dir(tmp_path, "bare", chat_template=None)
    code, out, _ = _run(["data", "inspect", data, "--render", 2, "--model", model], capsys)
    assert code == 0 and "has no chat template and none is named" in out and "-- row" not in out
    code, out, _ = _run(["data", "inspect", data, "--render", 2, "--model", model, "--template", "plain"],
                        capsys)
    assert code == 0 and "no chat template" not in out
    assert f"What is the capital of France?\n{OPEN}Paris.<|endoftext|>{CLOSE}" in out  # plain ends with EOS


def test_render_needs_a_model(data, capsys):
    code, _, err = _run(["data", "inspect", data, "--render", 2], capsys)
    assert code == 2 and "--render needs --model" in err
