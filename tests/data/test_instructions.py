"""Instruction data: every layout becomes the same list of messages; bad rows name file and row."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tailorkit.data.instructions import FORMATS, ChatColumns, detect_format, to_conversations
from tailorkit.data.tables import read_table
from tailorkit.errors import TailorError

COLS = ChatColumns()
CHAT = [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Capital of France?"},
        {"from": "gpt", "value": "Paris."}, {"from": "user", "value": "And Germany?"},
        {"from": "assistant", "value": "Berlin."}]
EXPECTED_CHAT = [{"role": "system", "content": "Be brief."},
                 {"role": "user", "content": "Capital of France?"},
                 {"role": "assistant", "content": "Paris."},
                 {"role": "user", "content": "And Germany?"}, {"role": "assistant", "content": "Berlin."}]
MESSAGES = [{"role": m["role"], "content": m["content"], "name": "extra keys are dropped"}
            for m in EXPECTED_CHAT]


def convert(rows: list[dict], fmt: str, cols: ChatColumns = COLS, source: str = "chat.jsonl"):
    return to_conversations(pd.DataFrame(rows), fmt, cols, source)


def test_alpaca_joins_instruction_and_input_and_keeps_system():
    rows = [{"instruction": "Add the numbers.", "input": "2 and 3", "output": "5", "system": "Be exact."},
            {"instruction": "Say hi.", "input": "", "output": "Hi!", "system": None},
            {"instruction": "Count to two.", "input": float("nan"), "output": 12, "system": ""}]
    assert convert(rows, "alpaca") == [
        [{"role": "system", "content": "Be exact."},
         {"role": "user", "content": "Add the numbers.\n\n2 and 3"}, {"role": "assistant", "content": "5"}],
        [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi!"}],
        [{"role": "user", "content": "Count to two."}, {"role": "assistant", "content": "12"}],
    ]


def test_alpaca_without_optional_columns():
    assert convert([{"instruction": "Say hi.", "output": "Hi!"}], "alpaca") == [
        [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi!"}]]


def test_prompt_completion_and_text():
    assert convert([{"prompt": "2+2=", "completion": "4"}], "prompt_completion") == [
        [{"role": "user", "content": "2+2="}, {"role": "assistant", "content": "4"}]]
    assert convert([{"text": "A document."}], "text") == [[{"role": "text", "content": "A document."}]]


@pytest.mark.parametrize("as_json", [False, True], ids=["list", "json-string"])
def test_sharegpt_and_messages_take_lists_or_json_strings(as_json):
    wrap = json.dumps if as_json else (lambda v: v)
    assert convert([{"conversations": wrap(CHAT)}], "sharegpt") == [EXPECTED_CHAT]
    assert convert([{"messages": wrap(MESSAGES)}], "messages") == [EXPECTED_CHAT]


@pytest.mark.parametrize("name", ["chat.csv", "chat.jsonl", "chat.parquet"])
def test_lists_survive_every_file_format(name, write_table):
    """CSV stores lists as JSON strings, JSONL as lists, Parquet as arrays of structs."""
    column = json.dumps(CHAT) if name.endswith(".csv") else CHAT
    path = write_table(pd.DataFrame({"conversations": [column, column]}), name)
    frame = read_table(path, "data.train")
    assert detect_format(list(frame.columns), COLS) == "sharegpt"
    assert to_conversations(frame, "sharegpt", COLS, str(path)) == [EXPECTED_CHAT, EXPECTED_CHAT]


def test_column_mapping():
    cols = ChatColumns(instruction="question", output="answer", input="context", system="persona",
                       conversations="dialog", sharegpt_role="speaker", sharegpt_content="text",
                       messages="turns", messages_role="who", messages_content="said",
                       prompt="query", completion="reply", text="body")
    assert convert([{"question": "Q", "context": "C", "answer": "A", "persona": "P"}], "alpaca", cols) == [
        [{"role": "system", "content": "P"}, {"role": "user", "content": "Q\n\nC"},
         {"role": "assistant", "content": "A"}]]
    dialog = [{"speaker": "human", "text": "Q"}, {"speaker": "gpt", "text": "A"}]
    turns = [{"who": "user", "said": "Q"}, {"who": "assistant", "said": "A"}]
    expected = [[{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]]
    assert convert([{"dialog": dialog}], "sharegpt", cols) == expected
    assert convert([{"turns": turns}], "messages", cols) == expected
    assert convert([{"query": "Q", "reply": "A"}], "prompt_completion", cols) == expected
    assert convert([{"body": "doc"}], "text", cols) == [[{"role": "text", "content": "doc"}]]
    assert detect_format(["question", "answer"], cols) == "alpaca"


@pytest.mark.parametrize("columns,fmt", [
    (["messages", "text"], "messages"),
    (["conversations", "id"], "sharegpt"),
    (["instruction", "input", "output"], "alpaca"),
    (["prompt", "completion", "text"], "prompt_completion"),
    (["text", "label"], "text"),
])
def test_detect_format_prefers_the_most_structured(columns, fmt):
    assert detect_format(columns, COLS) == fmt


def test_detect_format_explains_what_each_format_needs():
    with pytest.raises(TailorError) as err:
        detect_format(["question", "answer"], COLS)
    message = str(err.value)
    assert "question, answer" in message
    for fmt in FORMATS:
        assert f"{fmt}:" in message
    assert "instruction, output" in message and "prompt, completion" in message


def test_missing_columns_and_unknown_format():
    with pytest.raises(TailorError, match=r"chat.jsonl: the alpaca format needs column\(s\) output"):
        convert([{"instruction": "x"}], "alpaca")
    with pytest.raises(TailorError, match="unknown instruction format 'chatml'.*alpaca, sharegpt"):
        convert([{"text": "x"}], "chatml")


GOOD = {"from": "human", "value": "Hi"}
BAD_ROWS = [
    ("alpaca", {"instruction": "Say hi.", "output": " "}, "empty 'output'"),
    ("alpaca", {"instruction": None, "output": "Hi"}, "empty 'instruction'"),
    ("prompt_completion", {"prompt": "Hi", "completion": float("nan")}, "empty 'completion'"),
    ("text", {"text": ""}, "empty 'text'"),
    ("sharegpt", {"conversations": '[{"from": "human", "value": "Hi"'}, "not valid JSON"),
    ("sharegpt", {"conversations": '{"from": "human"}'}, "holds dict, not a list"),
    ("sharegpt", {"conversations": "[]"}, "has no turns"),
    ("sharegpt", {"conversations": None}, "empty 'conversations'"),
    ("sharegpt", {"conversations": [GOOD, {"from": "bot", "value": "Hi"}]}, "turn 2: unknown role 'bot'"),
    ("sharegpt", {"conversations": [GOOD, {"role": "gpt", "content": "x"}]}, "keys 'from' and 'value'"),
    ("sharegpt", {"conversations": [GOOD, {"from": "gpt", "value": ""}]}, "turn 2: empty assistant reply"),
    ("sharegpt", {"conversations": [GOOD, {"from": "gpt", "value": 3}]}, "content is int"),
    ("sharegpt", {"conversations": [GOOD]}, "ends with a user turn"),
    ("messages", {"messages": [{"role": "user", "content": "Hi"}, {"role": "tool", "content": "x"}]},
     "unknown role 'tool'"),
    ("messages", {"messages": [{"role": "assistant", "content": "Hi"}, {"role": "system", "content": "x"}]},
     "ends with a system turn"),
]


@pytest.mark.parametrize("fmt,bad,problem", BAD_ROWS, ids=[p for _, _, p in BAD_ROWS])
def test_bad_rows_name_the_source_and_row(fmt, bad, problem):
    good = {"alpaca": {"instruction": "Say hi.", "output": "Hi"},
            "prompt_completion": {"prompt": "Hi", "completion": "Hello"},
            "text": {"text": "doc"},
            "sharegpt": {"conversations": [GOOD, {"from": "gpt", "value": "Hello"}]},
            "messages": {"messages": [{"role": "user", "content": "Hi"},
                                      {"role": "assistant", "content": "Hello"}]}}[fmt]
    with pytest.raises(TailorError) as err:
        convert([good, good, bad], fmt, source="data/train.csv")
    message = str(err.value)
    assert message.startswith("data/train.csv: row 3: "), message
    assert problem in message
    assert "\n" not in message


def test_rows_follow_the_frame_index():
    """A subset keeps the file's row numbers, as prepare.py does."""
    frame = pd.DataFrame({"prompt": ["a", "b", "c"], "completion": ["x", "y", ""]}).iloc[[0, 2]]
    with pytest.raises(TailorError, match="t.csv: row 3: empty 'completion'"):
        to_conversations(frame, "prompt_completion", COLS, "t.csv")
