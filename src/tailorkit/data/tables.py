"""Read a user's table (CSV, JSON Lines or a JSON array of objects, Parquet or a saved
`datasets` folder) into pandas, and write the CSV files tailor gives back."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pandas as pd

from tailorkit.data.encoding import AUTO, detect_encoding
from tailorkit.errors import TailorError, undecodable

READERS = {  # path, text encoding -> DataFrame
    ".csv": lambda p, e: pd.read_csv(p, encoding=e),
    ".tsv": lambda p, e: pd.read_csv(p, sep="\t", encoding=e),
    ".jsonl": lambda p, e: _read_json(p, e),
    ".json": lambda p, e: _read_json(p, e),
    ".parquet": lambda p, e: pd.read_parquet(p),
}


def read_table(path: str | Path, field: str, encoding: str = "utf-8", encoding_flag: str | None = None
               ) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """A DataFrame, or for a saved `DatasetDict` folder a DataFrame per split. `encoding` is the
    text encoding of CSV, TSV and JSON files (`data.encoding`, or the command's `encoding_flag`);
    `auto` detects it (data/encoding.py)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise TailorError(f"{field}: file not found: {path}")
    if path.is_dir():
        return _read_datasets_folder(path, field)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise TailorError(
            f"{field}: {path}: unknown file type '{path.suffix}' "
            f"(use one of {', '.join(READERS)} or a saved datasets folder)"
        )
    if path.stat().st_size == 0:
        raise TailorError(f"{field}: {path}: the file is empty")
    if encoding == AUTO and path.suffix.lower() != ".parquet":
        encoding = _detected(path, field)
    try:
        return reader(path, encoding)
    except UnicodeDecodeError as err:
        found = detect_encoding(path.read_bytes())
        hint = f"detected: {found}" if found not in (None, encoding) else "e.g. cp1252"
        fix = "save it as UTF-8"
        if field.startswith("data."):  # a recipe's file: the recipe can name its encoding
            fix = f"set data.encoding to the file's encoding ({hint}) or " + fix
        elif encoding_flag:
            fix = f"name the file's encoding with {encoding_flag} ({hint}) or " + fix
        raise TailorError(f"{field}: {path}: {_undecodable(path, encoding, err)}; {fix}") from None
    except NotATable as err:
        raise TailorError(f"{field}: {path}: holds {err}; a JSON table is one object per line (JSON Lines) "
                          "or one array of objects") from None
    except (ValueError, pd.errors.ParserError, OSError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise TailorError(f"{field}: {path}: cannot read as {path.suffix[1:]}: {first}") from None


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    """`frame` as CSV that reads back row for row. Python's csv writer quotes a text holding a
    newline but not one holding a lone carriage return, where every reader (pandas, csv) then
    ends the row; a frame with such a text is written with every text quoted."""
    texts = frame.select_dtypes(include=["object", "string"])
    carriage = any(texts[c].astype(str).str.contains("\r", regex=False).any() for c in texts.columns)
    frame.to_csv(path, index=False, quoting=csv.QUOTE_NONNUMERIC if carriage else csv.QUOTE_MINIMAL)


def _detected(path: Path, field: str) -> str:
    """The file's encoding by detection; says so on stderr when it is not UTF-8."""
    data = path.read_bytes()
    found = detect_encoding(data)
    if found is None:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise TailorError(f"{field}: {path}: cannot detect the text encoding ({undecodable(err)}); "
                              "name it (e.g. cp1252) or save the file as UTF-8") from None
    if found != "utf-8":
        print(f"{field}: {path}: not UTF-8; read as {found} (detected by charset-normalizer; name the "
              "encoding to be sure)", file=sys.stderr)
    return found


def _undecodable(path: Path, encoding: str, err: UnicodeDecodeError) -> str:
    """The line and column of the first byte that does not decode (a reader's own error may
    count from the start of its buffer, not of the file)."""
    try:
        path.read_bytes().decode(encoding)
    except UnicodeDecodeError as whole:
        return undecodable(whole)
    return str(err)


class NotATable(Exception):
    """JSON that is not a table; the message says what it holds instead."""


def _read_json(path: Path, encoding: str) -> pd.DataFrame:
    """JSON Lines (one object per line), or one JSON array of objects."""
    text = path.read_text(encoding=encoding).removeprefix("\ufeff")  # a byte-order mark (Notepad's)
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:  # several values, one per line
        return pd.read_json(io.StringIO(text), lines=True)
    if isinstance(whole, dict) and "\n" not in text.strip():  # JSON Lines of one row
        return pd.read_json(io.StringIO(text), lines=True)
    if isinstance(whole, list):
        odd = next((i for i, row in enumerate(whole) if not isinstance(row, dict)), None)
        if odd is None:
            return pd.DataFrame.from_records(whole)
        raise NotATable(f"a JSON array whose item {odd + 1} is {_json_kind(whole[odd])}, not an object")
    if isinstance(whole, dict):
        raise NotATable(f"one JSON object over several lines (keys: {', '.join(list(whole)[:8])})")
    raise NotATable(f"a single JSON value ({_json_kind(whole)})")


def _json_kind(value) -> str:
    kinds = {str: "a string", bool: "true/false", int: "a number", float: "a number", list: "an array"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def _read_datasets_folder(path: Path, field: str) -> pd.DataFrame | dict[str, pd.DataFrame]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except FileNotFoundError:
        raise TailorError(
            f"{field}: {path} is a folder but not a saved datasets folder "
            "(expected dataset_info.json or dataset_dict.json from save_to_disk)"
        ) from None
    if isinstance(loaded, datasets.DatasetDict):
        return {name: split.to_pandas() for name, split in loaded.items()}
    return loaded.to_pandas()
