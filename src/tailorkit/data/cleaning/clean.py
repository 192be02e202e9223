"""Clean a table's splits, top to bottom, recording every change:

    drop unlabelled rows -> repair text -> drop garbled -> drop empty and out-of-length
    -> exact duplicates (label conflicts)
    -> near duplicates (label conflicts) -> leakage into validation/test -> likely label errors (train)

Each split is cleaned on its own; only leakage removal compares splits, and it only removes rows
of the training side (train against validation and test, validation against test). The frames
given are never modified: cleaned copies are returned, with their rows' original index.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from tailorkit.config.quality import CleanConfig
from tailorkit.data.cleaning.changes import Change
from tailorkit.data.cleaning.conflicts import resolve
from tailorkit.data.cleaning.duplicates import NearIndex, exact_groups, near_groups
from tailorkit.data.cleaning.encoder_features import Encoder, encoder_features
from tailorkit.data.cleaning.label_errors import LabelIssue, find_label_issues
from tailorkit.data.cleaning.text import dedupe_key, garbled_count, repair
from tailorkit.errors import TailorError

LEAK_ORDER = (("validation", ("test",)), ("train", ("validation", "test")))  # cleaned split, its references


@dataclass(frozen=True)
class TableColumns:
    text: str
    label: str | None  # None: unlabelled text
    pair: str | None = None  # the second text of pair tasks


@dataclass
class Cleaned:
    frames: dict[str, pd.DataFrame]
    changes: list[Change]
    notes: list[str]  # steps that could not run, and why


def keys_of(frame: pd.DataFrame, columns: TableColumns) -> list[str]:
    texts = frame[columns.text].astype(str)
    if columns.pair:
        texts = texts + " \x1f " + frame[columns.pair].astype(str)
    return [dedupe_key(t) for t in texts]


def clean_frames(frames: dict[str, pd.DataFrame], cfg: CleanConfig, columns: TableColumns,
                 numeric: bool, encoder: Encoder | None = None) -> Cleaned:
    """`frames`: split -> table; `numeric`: the labels are regression targets; `encoder`: the
    model of `label_error_features: encoder`."""
    searched = cfg.label_errors != "off" and columns.label is not None and not numeric
    if searched and cfg.label_error_features == "encoder" and encoder is None:
        raise TailorError("data.clean.label_error_features: encoder needs a model: set "
                          "data.clean.label_error_model (tailor data clean: --model)")
    out = dict(frames)
    changes: list[Change] = []
    notes: list[str] = []
    for split in cfg.splits:
        if split in out:
            out[split] = _clean_split(split, out[split], cfg, columns, numeric, changes)
    if cfg.leakage:
        for split, references in LEAK_ORDER:
            present = [r for r in references if r in out]
            if split in cfg.splits and split in out and present:
                out[split] = _remove_leaks(split, out[split], {r: out[r] for r in present}, cfg, columns,
                                           changes)
    if cfg.label_errors != "off" and "train" in cfg.splits and "train" in out and columns.label:
        if numeric:
            notes.append("label errors not searched: regression targets have no classes")
        else:
            out["train"], note = _label_errors(out["train"], cfg, columns, changes, encoder)
            notes += [note] if note else []
    return Cleaned(out, changes, notes)


def _clean_split(split: str, frame: pd.DataFrame, cfg: CleanConfig, columns: TableColumns, numeric: bool,
                 changes: list[Change]) -> pd.DataFrame:
    frame = frame.copy()
    if columns.label:  # training refuses a row without its label
        unlabelled = frame.index[frame[columns.label].isna()]
        frame = _drop(split, frame, {i: ("missing_label", f"{columns.label}: no label") for i in unlabelled},
                      columns, changes)
    text_columns = [c for c in (columns.text, columns.pair) if c]
    for column in text_columns:
        before = frame[column]
        after = before.map(lambda v: v if pd.isna(v) else repair(str(v), cfg))
        for index in frame.index[(after != before) & before.notna()]:
            changes.append(Change(split, int(index) + 1, "repaired", f"{column}_repaired",
                                  f"was: {before[index]}", after[index]))
        frame[column] = after
        drop = {}
        if cfg.garbled == "drop":
            garbled = before.map(lambda v: not pd.isna(v) and garbled_count(str(v)) > 0)
            drop |= {i: ("garbled", f"{column}: characters no repair recovers") for i in frame.index[garbled]}
        frame = _drop(split, frame, drop, columns, changes)
        frame = _drop(split, frame, _length_problems(frame[column], cfg, column), columns, changes)
    keys = keys_of(frame, columns)
    if cfg.dedupe:
        frame, keys = _drop_groups(split, frame, keys, exact_groups(keys), "duplicate", cfg, columns, numeric,
                                   changes)
    if cfg.near_duplicates is not None:
        groups = near_groups(keys, cfg.near_duplicates, cfg.seed)
        frame, keys = _drop_groups(split, frame, keys, groups, "near_duplicate", cfg, columns, numeric,
                                   changes)
    return frame


def _length_problems(texts: pd.Series, cfg: CleanConfig, column: str) -> dict[int, tuple[str, str]]:
    problems = {}
    for index, value in texts.items():
        text = "" if pd.isna(value) else str(value)
        words, chars = len(text.split()), len(text)
        if not text.strip():
            after = " after repair" if not pd.isna(value) else ""
            problems[index] = ("empty", f"{column}: no text{after}")
        elif words < cfg.min_words or chars < cfg.min_chars:
            problems[index] = ("too_short", f"{column}: {words} words, {chars} characters")
        elif (cfg.max_words and words > cfg.max_words) or (cfg.max_chars and chars > cfg.max_chars):
            problems[index] = ("too_long", f"{column}: {words} words, {chars} characters")
    return problems


def _drop(split: str, frame: pd.DataFrame, drop: dict[int, tuple[str, str]], columns: TableColumns,
          changes: list[Change]) -> pd.DataFrame:
    for index, (reason, detail) in drop.items():
        changes.append(Change(split, int(index) + 1, "removed", reason, detail, _text(frame, index, columns)))
    return frame.drop(index=list(drop))


def _text(frame: pd.DataFrame, index: int, columns: TableColumns) -> str:
    value = frame.at[index, columns.text]
    return "" if pd.isna(value) else str(value)


def _drop_groups(split: str, frame: pd.DataFrame, keys: list[str], groups: list[list[int]], reason: str,
                 cfg: CleanConfig, columns: TableColumns, numeric: bool, changes: list[Change]
                 ) -> tuple[pd.DataFrame, list[str]]:
    rows = [int(i) + 1 for i in frame.index]
    labels = frame[columns.label].tolist() if columns.label else None
    decided = resolve(groups, labels, rows, cfg.label_conflicts, numeric, reason)
    for position, label in decided.relabelled.items():
        index = frame.index[position]
        changes.append(Change(split, int(index) + 1, "relabelled", "label_conflict",
                              f"{frame.at[index, columns.label]} -> {label} (majority of its duplicates)",
                              _text(frame, index, columns)))
        frame.at[index, columns.label] = label
    drop = {frame.index[p]: why for p, why in sorted(decided.removed.items())}
    kept = [k for p, k in enumerate(keys) if p not in decided.removed]
    return _drop(split, frame, drop, columns, changes), kept


def _remove_leaks(split: str, frame: pd.DataFrame, references: dict[str, pd.DataFrame], cfg: CleanConfig,
                  columns: TableColumns, changes: list[Change]) -> pd.DataFrame:
    keys = keys_of(frame, columns)
    drop: dict[int, tuple[str, str]] = {}
    for name, reference in references.items():
        ref_keys = keys_of(reference, columns)
        first = {}
        for index, key in zip(reference.index, ref_keys, strict=True):
            first.setdefault(key, index)
        for index, key in zip(frame.index, keys, strict=True):
            if key in first and index not in drop:
                drop[index] = ("leakage", f"same text as {name} row {int(first[key]) + 1}")
        if cfg.near_duplicates is not None:
            near = NearIndex(ref_keys, cfg.near_duplicates, cfg.seed).query(keys)
            for index, found in zip(frame.index, near, strict=True):
                if found and index not in drop:
                    j, sim = found[0]
                    row = int(reference.index[j]) + 1
                    drop[index] = ("leakage", f"near duplicate ({sim:.2f}) of {name} row {row}")
    return _drop(split, frame, dict(sorted(drop.items())), columns, changes)


def label_issues_of(frame: pd.DataFrame, cfg: CleanConfig, columns: TableColumns, encoder: Encoder | None
                    ) -> tuple[pd.Index, list[LabelIssue], str | None]:
    """The likely label errors of a table's labelled rows: (those rows' index, the issues by
    position in it, why none were looked for)."""
    labelled = frame[frame[columns.label].notna()]  # a row without a label has none to doubt
    texts = labelled[columns.text].fillna("").astype(str)
    pairs = labelled[columns.pair].fillna("").astype(str).tolist() if columns.pair else None
    features = None
    if cfg.label_error_features == "encoder" and encoder is not None and len(labelled):
        features, _ = encoder_features(encoder, texts.tolist(), pairs)
    if columns.pair:
        texts = texts + " [SEP] " + pd.Series(pairs, index=texts.index)
    issues, note = find_label_issues(texts.tolist(), labelled[columns.label].astype(str).tolist(),
                                     cfg.label_error_folds, cfg.seed, features)
    return labelled.index, issues, note


def _label_errors(frame: pd.DataFrame, cfg: CleanConfig, columns: TableColumns, changes: list[Change],
                  encoder: Encoder | None) -> tuple[pd.DataFrame, str | None]:
    index_of, issues, note = label_issues_of(frame, cfg, columns, encoder)
    action = "removed" if cfg.label_errors == "remove" else "flagged"
    for issue in issues:
        index = index_of[issue.position]
        changes.append(Change("train", int(index) + 1, action, "label_error",
                              f"labelled {issue.given}; out-of-fold model says {issue.predicted} "
                              f"(p={issue.confidence:.2f})", _text(frame, index, columns)))
    if cfg.label_errors == "remove":
        frame = frame.drop(index=[index_of[i.position] for i in issues])
    return frame, note
