"""Turn the recipe's data section into checked train/validation/test splits.

All checks happen here, before any model is loaded, so bad input fails in
seconds with a message naming the file, row or column.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd

from tailorkit.config.data import DataConfig
from tailorkit.data.tables import read_table
from tailorkit.errors import TailorError
from tailorkit.sources import load_catalogue_dataset

SPLITS = ("train", "validation", "test")


@dataclass
class Split:
    """One split in canonical form: texts, optional pairs, and targets."""

    source: str  # the file or catalogue name, for error messages
    texts: list[str]
    pairs: list[str] | None
    targets: np.ndarray  # int64 class ids or float32 regression targets

    def __len__(self) -> int:
        return len(self.texts)


class QualitySteps(Protocol):
    """The data stage's `data.clean` / `data.augment` (data/quality.py's DataQuality). Only this
    shape is named here: the steps themselves sit above this module (label-error features read
    encoded splits, data/batching.py, which imports this module)."""

    changes: list  # the Change records so far (data/cleaning/changes.py)

    def clean(self, raw: dict[str, tuple[str, pd.DataFrame]], classes: bool
              ) -> dict[str, tuple[str, pd.DataFrame]]:
        ...

    def augment(self, train: pd.DataFrame, classes: bool) -> pd.DataFrame:
        ...

    def keep(self, name: str, frame: pd.DataFrame) -> None:
        ...

    def write(self) -> None:
        ...


@dataclass
class TaskData:
    classes: bool  # targets are class names (else numbers)
    splits: dict[str, Split]
    labels: list[str] = field(default_factory=list)  # class names; empty for regression
    quality: QualitySteps | None = None  # what data.clean and data.augment did, when they ran

    @property
    def num_labels(self) -> int:
        return len(self.labels) if self.classes else 1


def _raw_splits(cfg: DataConfig, flags: dict[str, str]) -> dict[str, tuple[str, pd.DataFrame]]:
    """Named frames as given by the user (some splits may be missing); `flags` may name the
    command-line flag that gave a split's file."""
    if cfg.name is not None:

        return {"train": (cfg.name, load_catalogue_dataset(cfg.name))}
    frames: dict[str, tuple[str, pd.DataFrame]] = {}
    for name in SPLITS:
        path = getattr(cfg, name)
        if path is None:
            continue
        table = read_table(path, flags.get(name, f"data.{name}"), cfg.encoding)
        if isinstance(table, dict):  # a DatasetDict folder brings its own splits
            if name != "train":
                if name not in table:
                    raise TailorError(f"data.{name}: {path} has no '{name}' split ({list(table)})")
                table = table[name]
            else:
                for split_name, frame in table.items():
                    key = {"valid": "validation", "val": "validation"}.get(split_name, split_name)
                    if key == "train" or (key in SPLITS and getattr(cfg, key) is None):
                        frames.setdefault(key, (f"{path}[{split_name}]", frame))
                continue
        frames[name] = (str(path), table)
    if "train" not in frames:
        raise TailorError(f"data.train: {cfg.train} has no 'train' split; name one of its splits 'train'")
    return frames


def _rows_inside(frame: pd.DataFrame) -> tuple[str, int] | None:
    """A one-row table one of whose cells is a list of objects: (that column, how many)."""
    if len(frame) != 1:
        return None
    for column, value in frame.iloc[0].items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            return str(column), len(value)
    return None


def check_columns(source: str, frame: pd.DataFrame, cfg: DataConfig, needs_label: bool,
                  flags: dict[str, str] | None = None) -> None:
    """Every column the recipe names is in `frame`; `flags` names the command-line flag that
    sets each column option, for commands that take one (`tailor eval`)."""
    wanted = [("text_column", cfg.text_column)]
    if cfg.text_pair_column:
        wanted.append(("text_pair_column", cfg.text_pair_column))
    if needs_label:
        wanted.append(("label_column", cfg.label_column))
    for option, column in wanted:
        if column not in frame.columns:
            fix = (f"name the right one with {flags[option]}" if flags
                   else f"set data.{option} to the right one")
            nested = _rows_inside(frame)
            if nested:  # {"data": [{...}, ...]} read as one row
                fix = (f"the file is one JSON object whose '{nested[0]}' holds {nested[1]} rows; give "
                       "those rows themselves (a JSON array of objects, or JSON Lines)")
            raise TailorError(
                f"{source}: no column '{column}' (columns: {', '.join(map(str, frame.columns))}); {fix}"
            )
    if len(frame) == 0:
        raise TailorError(f"{source}: has no rows")


SHOWN_ROWS = 5


def _rows(bad: pd.Series) -> str:
    """The first few rows where `bad` is True, and how many: `row 3`, or `rows 3, 7, 9, 12, 20, ...
    (8 rows)`; 1-based rows of the user's table (frames keep the file's index)."""
    rows = [int(i) + 1 for i in bad.index[bad.to_numpy()]]
    if len(rows) == 1:
        return f"row {rows[0]}"
    shown = ", ".join(map(str, rows[:SHOWN_ROWS])) + (", ..." if len(rows) > SHOWN_ROWS else "")
    return f"rows {shown} ({len(rows)} rows)"


def column_texts(source: str, frame: pd.DataFrame, column: str) -> list[str]:
    values = frame[column]
    blank = values.isna() | (values.astype(str).str.strip() == "")
    if blank.any():
        raise TailorError(f"{source}: {_rows(blank)}: empty text in column '{column}'; remove or fill them")
    return values.astype(str).tolist()


def _regression_targets(source: str, frame: pd.DataFrame, column: str) -> np.ndarray:
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() | ~np.isfinite(values.fillna(0))
    if bad.any():
        first = frame[column][bad].iloc[0]
        raise TailorError(f"{source}: {_rows(bad)}: target in column '{column}' is not a finite number "
                          f"(first: {first!r}); regression needs numeric targets")
    return values.to_numpy(dtype=np.float32)


def subset(frame: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    if limit is None or len(frame) <= limit:
        return frame
    return frame.sample(n=limit, random_state=seed).sort_index()


def _split_off(
    frame: pd.DataFrame, fraction: float, total: int, seed: int, stratify_col: str | None, name: str,
    source: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Carve fraction * total rows (total = the whole file) out of `frame`."""
    if fraction <= 0:
        raise TailorError(
            f"data.split.{name} is 0 and no data.{name} file was given; set one of them"
        )
    n_out = math.floor(total * fraction)
    if n_out == 0 or n_out >= len(frame):
        raise TailorError(
            f"{source}: the {name} split is empty after splitting {len(frame)} rows with "
            f"data.split.{name}={fraction}; give more rows, a larger fraction or data.{name}"
        )
    labels = frame[stratify_col] if stratify_col else None
    counts = labels.value_counts() if labels is not None else pd.Series(dtype=int)
    lone = sorted(map(str, counts.index[counts < 2]), key=_natural_key)
    if lone:
        labels = None  # a class with one example cannot be stratified; fall back to random
    if labels is None:
        rest, out = random_split(frame, n_out, seed)
    else:
        from sklearn.model_selection import train_test_split

        try:
            rest, out = train_test_split(frame, test_size=n_out, random_state=seed, stratify=labels)
        except ValueError:  # too few rows per class for a stratified split
            rest, out = random_split(frame, n_out, seed)
    return rest.sort_index(), out.sort_index(), lone


def random_split(frame: pd.DataFrame, n_out: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rest, the n_out rows carved out): exactly scikit-learn's unstratified train_test_split
    (ShuffleSplit carves the first n_out of one seeded permutation), without importing
    scikit-learn, which costs an instruction-tuning run ~43 MB for this split alone
    (tests/data/test_prepare.py checks that both agree)."""
    order = np.random.RandomState(seed).permutation(len(frame))
    return frame.iloc[order[n_out:]], frame.iloc[order[:n_out]]


def carve_missing_splits(raw: dict[str, tuple[str, pd.DataFrame]], cfg: DataConfig,
                         stratify: str | None) -> dict[str, tuple[str, pd.DataFrame]]:
    """Validation and test carved from train where no file gives them (seeded)."""
    raw = dict(raw)
    train_source, train = raw["train"]
    total = len(train)
    lone: dict[str, list[str]] = {}  # split -> the classes with one example that stopped stratifying it
    for name in ("test", "validation"):
        if name not in raw:
            train, carved, lone[name] = _split_off(
                train, getattr(cfg.split, name), total, cfg.split.seed, stratify, name, train_source
            )
            raw[name] = (f"{train_source} ({name} split)", carved)
    raw["train"] = (train_source, train)
    _warn_unstratified(train_source, lone)
    return raw


def _warn_unstratified(source: str, lone: dict[str, list[str]]) -> None:
    classes = list(dict.fromkeys(name for names in lone.values() for name in names))
    splits = [split for split, names in lone.items() if names]
    if not classes:
        return
    one = len(classes) == 1
    print(f"warning: {source}: {'class' if one else 'classes'} {', '.join(map(repr, classes))} "
          f"{'has' if one else 'have'} a single example, so the {' and '.join(splits)} "
          f"{'split is' if len(splits) == 1 else 'splits are'} not stratified (drawn at random) and "
          f"may lack {'it' if one else 'them'}", file=sys.stderr)


def read_splits(cfg: DataConfig, flags: dict[str, str] | None = None) -> dict[str, tuple[str, pd.DataFrame]]:
    """The user's tables, each with a fresh 0..n-1 index: messages report row = index + 1."""
    raw = _raw_splits(cfg, flags or {})
    return {k: (source, frame.reset_index(drop=True)) for k, (source, frame) in raw.items()}


def prepare_data(cfg: DataConfig, classes: bool, labels: list[str] | None = None,
                 flags: dict[str, str] | None = None, quality: QualitySteps | None = None) -> TaskData:
    """Load, check and split; `classes`: the label column holds class names, else numbers.
    `labels` fixes the class list (when re-evaluating a run); `flags` names the command-line
    flag of each column option and split file in messages (`tailor eval`). With `quality` (a
    run's data stage), `data.clean` cleans the carved splits and `data.augment` the training
    subset, and `quality` records what they did."""
    raw = read_splits(cfg, flags)
    noted: set[str] = set()
    for source, frame in raw.values():
        check_columns(source, frame, cfg, needs_label=True, flags=flags)
        if classes:
            frame[cfg.label_column] = class_names(source, frame[cfg.label_column], note=source not in noted)
            _check_labels_present(source, frame[cfg.label_column])
            noted.add(source)
    if labels is None:
        unseen = "fix the row or add it to train"
    else:
        unseen = "the run knows only these; fix the row"
        unseen += f" or name another column with {flags['label_column']}" if flags else ""

    stratify = cfg.label_column if classes and cfg.split.stratify else None
    raw = carve_missing_splits(raw, cfg, stratify)
    if quality is not None:
        raw = quality.clean(raw, classes)

    if classes and labels is None:
        train_source, train = raw["train"]
        try:
            labels = _class_names(train_source, train[cfg.label_column])
        except TailorError as err:
            raise TailorError(f"{err}{_after_cleaning(quality, 'train')}") from None
    splits = {}
    for name in SPLITS:
        source, frame = raw[name]
        limit = cfg.max_train_samples if name == "train" else cfg.max_eval_samples
        frame = subset(frame, limit, cfg.split.seed)  # keeps the file's row index for messages
        if quality is not None:
            if name == "train":
                frame = quality.augment(frame, classes)
            quality.keep(name, frame)
        splits[name] = _to_split(source, frame, cfg, classes, labels, unseen)
        if len(splits[name]) == 0:
            raise TailorError(f"{source}: the {name} split is empty{_after_cleaning(quality, name)}")
    if quality is not None:
        quality.write()
    return TaskData(classes=classes, splits=splits, labels=labels or [], quality=quality)


def _after_cleaning(quality: QualitySteps | None, split: str) -> str:
    """What data.clean took from `split`, for a message about what was left."""
    changes = [] if quality is None else quality.changes
    removed = sum(c.split == split and c.action == "removed" for c in changes)
    return (f"; data.clean removed {removed} of its rows (loosen its filters, e.g. min_words or "
            "max_words)") if removed else ""


def class_names(source: str, column: pd.Series, note: bool = True) -> pd.Series:
    """The labels as class names: text, with missing ones left missing. A whole number stored
    as a decimal (5.0: a JSON number, a CSV column with a gap, or "5.0" in a column that also
    holds words) reads as 5, as the same label stored as an integer does; a note on stderr says so."""
    whole = column.map(lambda v: _whole(v) is not None)
    if whole.any() and note:
        example = column[whole].iloc[0]
        print(f"note: {source}: column '{column.name}' holds whole numbers written as decimals; "
              f"they are read as integer labels ({example} -> {_whole(example)})", file=sys.stderr)
    return column.map(lambda v: _whole(v) or (v if _missing(v) else str(v)))


_WHOLE_DECIMAL = re.compile(r"\s*([+-]?\d+)\.0*\s*")


def _whole(value) -> str | None:
    """The integer a whole decimal (5.0, "5.0", "5.") stands for, as text; else None."""
    if isinstance(value, float | np.floating):
        return str(int(value)) if float(value).is_integer() else None
    match = _WHOLE_DECIMAL.fullmatch(value) if isinstance(value, str) else None
    return str(int(match.group(1))) if match else None


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float | np.floating) and math.isnan(value))


def _check_labels_present(source: str, column: pd.Series) -> None:
    missing = column.isna()
    if missing.any():
        raise TailorError(f"{source}: {_rows(missing)}: missing label in column '{column.name}'; "
                          "fill or remove them")


def _class_names(source: str, column: pd.Series) -> list[str]:
    names = sorted({str(v) for v in column}, key=_natural_key)
    if not names:
        raise TailorError(f"{source}: the train split has no rows")
    if len(names) < 2:
        raise TailorError(
            f"{source}: column '{column.name}' has one class ({names[0]!r}); classification "
            "needs at least two (or set task: regression for numeric targets)"
        )
    return names


def _natural_key(name: str) -> tuple[int, float, str]:
    """Numeric labels sort as numbers (2 before 10), the rest alphabetically."""
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)


def _to_split(source: str, frame: pd.DataFrame, cfg: DataConfig, classes: bool,
              labels: list[str] | None, unseen: str) -> Split:
    texts = column_texts(source, frame, cfg.text_column)
    pairs = column_texts(source, frame, cfg.text_pair_column) if cfg.text_pair_column else None
    column = frame[cfg.label_column] if len(frame) else pd.Series(dtype=object)
    if not classes:
        targets = _regression_targets(source, frame, cfg.label_column)
    else:
        assert labels is not None
        index = {name: i for i, name in enumerate(labels)}
        ids = []
        for row, value in zip(frame.index + 1, column, strict=True):
            key = None if pd.isna(value) else str(value)
            if key not in index:
                raise TailorError(
                    f"{source}: row {row}: label {value!r} was not seen in training "
                    f"(known labels: {', '.join(labels)}); {unseen}"
                )
            ids.append(index[key])
        targets = np.asarray(ids, dtype=np.int64)
    return Split(source=source, texts=texts, pairs=pairs, targets=targets)
