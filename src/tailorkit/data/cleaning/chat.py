"""Clean instruction data (causal LMs) with the table cleaner's own steps:

    repair every text cell (prompt, response, system, each turn of a conversation) -> drop rows whose
    required text is empty or garbled -> on the whole example (all its texts, prompt + response):
    length filters, exact and near duplicates, leakage into validation/test (`clean.clean_frames`)

Repair keeps line breaks and indentation (code and lists mean something in a reply). There are no
labels, so label conflicts and label errors do not apply. The frames keep their layout (alpaca,
sharegpt, messages, prompt_completion, text), so `instructions.to_conversations` reads them as
before; the frames given are never modified.
"""

from __future__ import annotations

import json

import pandas as pd

from tailorkit.config.data import ChatColumns
from tailorkit.config.quality import CleanConfig
from tailorkit.data.cleaning.changes import Change
from tailorkit.data.cleaning.clean import Cleaned, TableColumns, clean_frames
from tailorkit.data.cleaning.text import garbled_count, repair
from tailorkit.data.instructions import ROLES, RowError, missing, turn_list

EXAMPLE = "example"  # the view column: every text of a row, joined
# format -> (ChatColumns field, required) of each text column, in reading order
FLAT = {"alpaca": (("system", False), ("instruction", True), ("input", False), ("output", True)),
        "prompt_completion": (("prompt", True), ("completion", True)),
        "text": (("text", True),)}
# format -> the ChatColumns fields of the turn list, a turn's role key and its text key
TURNS = {"sharegpt": ("conversations", "sharegpt_role", "sharegpt_content"),
         "messages": ("messages", "messages_role", "messages_content")}


def clean_chat_frames(frames: dict[str, pd.DataFrame], cfg: CleanConfig, fmt: str, cols: ChatColumns
                      ) -> Cleaned:
    """`frames`: split -> instruction table in format `fmt`; cleaned copies and the record."""
    out = dict(frames)
    changes: list[Change] = []
    for split in cfg.splits:
        if split in out:
            out[split] = _repair_split(split, out[split], cfg, fmt, cols, changes)
    views = {name: pd.DataFrame({EXAMPLE: [_example(row, fmt, cols) for row in frame.to_dict("records")]},
                                index=frame.index, dtype=object)
             for name, frame in out.items()}
    filtered = clean_frames(views, _filters_only(cfg), TableColumns(EXAMPLE, None), numeric=False)
    out = {name: frame.loc[filtered.frames[name].index] for name, frame in out.items()}
    return Cleaned(out, changes + filtered.changes, filtered.notes)


def _filters_only(cfg: CleanConfig) -> CleanConfig:
    """The steps after repair (already done per cell); no labels, so no label errors."""
    return cfg.model_copy(update={"fix_text": False, "strip_html": False, "whitespace": False,
                                  "garbled": "keep", "label_errors": "off"})


def _repair_split(split: str, frame: pd.DataFrame, cfg: CleanConfig, fmt: str, cols: ChatColumns,
                  changes: list[Change]) -> pd.DataFrame:
    frame = frame.copy()
    drop: dict[int, tuple[str, str]] = {}
    if fmt in FLAT:
        for field, required in FLAT[fmt]:
            column = getattr(cols, field)
            if column not in frame.columns:
                continue
            for index, value in frame[column].items():
                text = None if missing(value) else str(value)
                new = None if text is None else repair(text, cfg, keep_lines=True)
                if text is not None and new != text:
                    changes.append(Change(split, int(index) + 1, "repaired", f"{column}_repaired",
                                          f"was: {text}", new))
                    frame.at[index, column] = new
                if index not in drop:
                    drop |= _problem(index, column, text, new, required, cfg)
    else:
        column, role_key, content_key = (getattr(cols, f) for f in TURNS[fmt])
        values = []
        for index, value in frame[column].items():
            turns = _turn_list(value, column)
            values.append(value)
            if turns is None:  # not a list of turns: to_conversations names the row's problem
                continue
            for number, turn in enumerate(turns, start=1):
                text = turn.get(content_key)
                if not isinstance(text, str):
                    continue
                new = repair(text, cfg, keep_lines=True)
                if new != text:
                    changes.append(Change(split, int(index) + 1, "repaired", f"{column}_repaired",
                                          f"turn {number} was: {text}", new))
                    turn[content_key] = new
                reply = ROLES.get(str(turn.get(role_key, "")).strip().lower()) == "assistant"
                if index not in drop:
                    drop |= _problem(index, f"{column} turn {number}", text, new, reply, cfg)
            values[-1] = json.dumps(turns, ensure_ascii=False) if isinstance(value, str) else turns
        frame[column] = pd.Series(values, index=frame.index, dtype=object)
    for index, (reason, detail) in sorted(drop.items()):
        changes.append(Change(split, int(index) + 1, "removed", reason, detail,
                              _example(frame.loc[index].to_dict(), fmt, cols)))
    return frame.drop(index=list(drop))


def _problem(index: int, where: str, text: str | None, new: str | None, required: bool, cfg: CleanConfig
             ) -> dict[int, tuple[str, str]]:
    if cfg.garbled == "drop" and text is not None and garbled_count(text) > 0:
        return {index: ("garbled", f"{where}: characters no repair recovers")}
    if required and not (new or "").strip():
        after = " after repair" if text is not None and text.strip() else ""
        return {index: ("empty", f"{where}: no text{after}")}
    return {}


def _turn_list(value, column: str) -> list[dict] | None:
    """A fresh copy of the turns, read as instructions.py reads them; None where it would refuse
    the row (to_conversations then names the row's problem)."""
    try:
        turns = turn_list(value, column)
    except RowError:
        return None
    return [dict(t) for t in turns] if all(isinstance(t, dict) for t in turns) else None


def _example(row: dict, fmt: str, cols: ChatColumns) -> str:
    """Every text of one row, in reading order: what dedupe, length and leakage compare."""
    if fmt in FLAT:
        texts = [row.get(getattr(cols, field)) for field, _ in FLAT[fmt]]
        return "\n".join(str(t) for t in texts if t is not None and not missing(t) and str(t).strip())
    column, _, content_key = (getattr(cols, f) for f in TURNS[fmt])
    turns = _turn_list(row.get(column), column)
    if turns is None:  # left for to_conversations to refuse with the row's problem
        return str(row.get(column))
    return "\n".join(str(t.get(content_key, "")) for t in turns)
