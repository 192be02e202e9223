"""`tailor data clean DATA --format F`: instruction data (causal LMs) cleaned as `data.clean` cleans
it in a run (data/cleaning/chat.py): every text repaired with its line breaks kept, whole examples
deduplicated, filtered by length and checked against --test."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tailorkit.config.data import ChatColumns
from tailorkit.config.quality import CleanConfig
from tailorkit.data.cleaning.changes import count_lines, write_changes
from tailorkit.data.cleaning.chat import clean_chat_frames
from tailorkit.data.instructions import detect_format
from tailorkit.data.tables import write_csv
from tailorkit.errors import TailorError
from tailorkit.tasks.base import CLEAN_LABEL_FIELDS


def clean_instruction_file(frame: pd.DataFrame, test: pd.DataFrame | None, cfg: CleanConfig, fmt: str,
                           output: str, changes_path: Path) -> None:
    """Write the cleaned rows to `output` (JSON lines for .jsonl, else CSV with turn lists as JSON
    text, as instructions.py reads them) and the record to `changes_path`."""
    for name in CLEAN_LABEL_FIELDS:
        value, default = getattr(cfg, name), CleanConfig.model_fields[name].default
        if value != default and value not in (False, None, 0, "off"):
            raise TailorError(f"--{name.replace('_', '-')}: instruction data has no labels; leave it out")
    cols = ChatColumns()
    fmt = detect_format(list(frame.columns), cols) if fmt == "auto" else fmt
    frames = {"train": frame} | ({"test": test} if test is not None else {})
    cleaned = clean_chat_frames(frames, cfg.model_copy(update={"splits": ["train"]}), fmt, cols)
    out = cleaned.frames["train"]
    if output.endswith(".jsonl"):
        out.to_json(output, orient="records", lines=True, force_ascii=False)
    else:
        out = out.map(lambda v: json.dumps(v, ensure_ascii=False) if isinstance(v, list) else v)
        write_csv(out, output)
    write_changes(cleaned.changes, changes_path)
    print(f"instruction data, format {fmt}")
    for line in count_lines(cleaned.changes):
        print(line.removeprefix("train "))
    print(f"wrote {len(out):,} of {len(frame):,} rows to {output}; changes: {changes_path}")
