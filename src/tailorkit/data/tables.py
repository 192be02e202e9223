"""Read a user's table (CSV, JSONL, Parquet or a saved `datasets` folder) into pandas."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tailorkit.errors import TailorError

READERS = {
    ".csv": lambda p: pd.read_csv(p),
    ".tsv": lambda p: pd.read_csv(p, sep="\t"),
    ".jsonl": lambda p: pd.read_json(p, lines=True),
    ".json": lambda p: pd.read_json(p, lines=True),
    ".parquet": lambda p: pd.read_parquet(p),
}


def read_table(path: str | Path, field: str) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """A DataFrame, or for a saved `DatasetDict` folder a DataFrame per split."""
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
    try:
        return reader(path)
    except (ValueError, pd.errors.ParserError, OSError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise TailorError(f"{field}: {path}: cannot read as {path.suffix[1:]}: {first}") from None


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
