"""Instruction data in any common layout → one conversation per row.

Every format becomes a list of OpenAI-style messages,
`[{"role": "system" | "user" | "assistant", "content": str}, ...]`, ending
with an assistant turn, so the template layer (templates.py) sees one shape.
Plain documents (the `text` format) become a single message with the role
`"text"` (TEXT_ROLE): no prompt, every token is trained.

Rows are numbered from 1 as `frame.index + 1`, the convention of prepare.py:
callers reset the index after reading a file and keep it when subsetting.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from tailorkit.config.data import FORMATS, ChatColumns
from tailorkit.errors import TailorError

TEXT_ROLE = "text"  # the role of the single message that carries a plain document

# ShareGPT names the speakers differently; the messages format uses the OpenAI names.
# Both accept either spelling, so a file that mixes them still loads.
ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
         "assistant": "assistant"}

Conversation = list[dict[str, str]]


def _check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise TailorError(f"unknown instruction format '{fmt}'; use one of {', '.join(FORMATS)}")
    return fmt


def detect_format(columns: list[str], cols: ChatColumns) -> str:
    """The first format whose columns are all present, most structured first.

    `text` comes last, so a file that also has a `text` column next to
    prompt/completion or a conversation column is read as chat data.
    """
    present = set(map(str, columns))
    for fmt in ("messages", "sharegpt", "alpaca", "prompt_completion", "text"):
        if set(cols.required(fmt)) <= present:
            return fmt
    needs = "; ".join(f"{fmt}: {', '.join(cols.required(fmt))}" for fmt in FORMATS)
    raise TailorError(
        f"cannot tell the instruction format from the columns ({', '.join(map(str, columns))}); "
        f"the formats need — {needs}. Rename the columns or map them in the data section"
    )


def to_conversations(frame: pd.DataFrame, fmt: str, cols: ChatColumns, source: str) -> list[Conversation]:
    """One conversation per row; a bad row raises a TailorError naming `source` and its row."""
    missing = [c for c in cols.required(_check_format(fmt)) if c not in frame.columns]
    if missing:
        raise TailorError(
            f"{source}: the {fmt} format needs column(s) {', '.join(missing)} "
            f"(columns: {', '.join(map(str, frame.columns))}); rename them or map them in the data section"
        )
    convert = {"alpaca": _alpaca, "sharegpt": _sharegpt, "messages": _messages,
               "prompt_completion": _prompt_completion, "text": _text}[fmt]
    out = []
    for index, row in zip(frame.index, frame.to_dict("records"), strict=True):
        try:
            out.append(convert(row, cols))
        except RowError as err:
            raise TailorError(f"{source}: row {int(index) + 1}: {err}") from None
    return out


class RowError(Exception):
    """A problem with one row; to_conversations adds the source and row number."""


def missing(value) -> bool:
    return not isinstance(value, (list, tuple, dict, np.ndarray)) and bool(pd.isna(value))


def _field(row: dict, column: str, required: bool) -> str:
    """The cell as text; '' for an empty optional cell, an error for an empty required one."""
    value = row.get(column)
    if missing(value) or (isinstance(value, str) and not value.strip()):
        if required:
            raise RowError(f"empty '{column}'; fill it or remove the row")
        return ""
    if not isinstance(value, str):
        value = str(value)  # numbers in a CSV column are still text to the model
    return value


def _alpaca(row: dict, cols: ChatColumns) -> Conversation:
    prompt = _field(row, cols.instruction, required=True)
    extra = _field(row, cols.input, required=False)
    if extra:
        prompt = f"{prompt}\n\n{extra}"
    system = _field(row, cols.system, required=False)
    head = [{"role": "system", "content": system}] if system else []
    return head + [{"role": "user", "content": prompt},
                   {"role": "assistant", "content": _field(row, cols.output, required=True)}]


def _prompt_completion(row: dict, cols: ChatColumns) -> Conversation:
    return [{"role": "user", "content": _field(row, cols.prompt, required=True)},
            {"role": "assistant", "content": _field(row, cols.completion, required=True)}]


def _text(row: dict, cols: ChatColumns) -> Conversation:
    return [{"role": TEXT_ROLE, "content": _field(row, cols.text, required=True)}]


def _sharegpt(row: dict, cols: ChatColumns) -> Conversation:
    return _turns(row[cols.conversations], cols.conversations, cols.sharegpt_role, cols.sharegpt_content)


def _messages(row: dict, cols: ChatColumns) -> Conversation:
    return _turns(row[cols.messages], cols.messages, cols.messages_role, cols.messages_content)


def turn_list(value, column: str) -> list:
    """A real list (JSONL, Parquet, datasets) or a JSON string (how CSV stores lists)."""
    if missing(value):
        raise RowError(f"empty '{column}'; fill it or remove the row")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise RowError(f"column '{column}' is not valid JSON ({err.msg} at character {err.pos}); "
                            "it must be a JSON list of turns") from None
    if isinstance(value, (np.ndarray, tuple)):  # Parquet and datasets give arrays
        value = list(value)
    if not isinstance(value, list):
        raise RowError(f"column '{column}' holds {type(value).__name__}, not a list of turns")
    return value


def _turns(value, column: str, role_key: str, content_key: str) -> Conversation:
    given = turn_list(value, column)
    if not given:
        raise RowError(f"column '{column}' has no turns")
    turns = []
    for number, turn in enumerate(given, start=1):
        where = f"column '{column}', turn {number}"
        if not isinstance(turn, dict) or role_key not in turn or content_key not in turn:
            raise RowError(f"{where}: expected an object with keys '{role_key}' and '{content_key}', "
                            f"got {str(turn)[:80]}")
        name = str(turn[role_key]).strip().lower()
        if name not in ROLES:
            raise RowError(f"{where}: unknown role {turn[role_key]!r} (known: {', '.join(ROLES)})")
        content = turn[content_key]
        if not isinstance(content, str):
            raise RowError(f"{where}: content is {type(content).__name__}, not text")
        role = ROLES[name]
        if role == "assistant" and not content.strip():
            raise RowError(f"{where}: empty assistant reply; fill it or remove the row")
        turns.append({"role": role, "content": content})
    if turns[-1]["role"] != "assistant":
        raise RowError(f"column '{column}': the conversation ends with a {turns[-1]['role']} turn, "
                        "not an assistant reply; there is nothing to learn from its last turn — "
                        "drop that turn or add the reply")
    return turns
