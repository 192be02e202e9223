"""`tailor data inspect`: what a table holds and what is wrong with it, as one JSON-ready dict
(rendered as text and HTML by `inspection_render`). It reads and never changes anything."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tailorkit.config.quality import CleanConfig
from tailorkit.data.cleaning.clean import TableColumns, keys_of, label_issues_of
from tailorkit.data.cleaning.duplicates import NearIndex, exact_groups, near_groups
from tailorkit.data.cleaning.text import garbled_count, has_control, has_html, has_mojibake
from tailorkit.data.cleaning.text import repair as repair_text
from tailorkit.data.prepare import class_names

EXAMPLES = 5  # shown per finding
CLASS_LIMIT = 50  # a numeric label column with more distinct values is a regression target


def _rows(mask: pd.Series) -> list[int]:
    return [int(i) + 1 for i in mask.index[mask.to_numpy()]]


def _finding(frame: pd.DataFrame, mask: pd.Series, column: str, fixed=None) -> dict:
    rows = _rows(mask)
    examples = []
    for index in mask.index[mask.to_numpy()][:EXAMPLES]:
        value = frame.at[index, column]
        text = "" if pd.isna(value) else str(value)  # a missing cell, not the word "nan"
        example = {"row": int(index) + 1, "text": text}
        if fixed is not None:
            example["fixed"] = fixed(text)
        examples.append(example)
    return {"count": len(rows), "rows": rows[:50], "examples": examples}


def labels_are_classes(labels: pd.Series) -> bool:
    """The guess where nobody said: numbers, when every label is one and there are more than
    CLASS_LIMIT distinct ones; else classes."""
    numeric = pd.to_numeric(labels, errors="coerce")
    return not (numeric.notna().all() and labels.nunique() > CLASS_LIMIT)


def label_summary(labels: pd.Series, classes: bool | None = None) -> dict:
    """Class counts, or a numeric target's spread; `classes` None: `labels_are_classes`."""
    numeric = pd.to_numeric(labels, errors="coerce")
    if not (labels_are_classes(labels) if classes is None else classes):
        return {"kind": "numbers", "mean": float(numeric.mean()), "std": float(numeric.std()),
                "min": float(numeric.min()), "max": float(numeric.max()), "missing": int(labels.isna().sum())}
    counts = class_names("", labels, note=False).dropna().value_counts()  # 5.0 reads as 5, as in training
    total = int(counts.sum())
    return {"kind": "classes", "counts": {k: int(v) for k, v in counts.items()},
            "shares": {k: round(v / total, 4) for k, v in counts.items()},
            "imbalance": round(float(counts.max() / counts.min()), 2) if len(counts) else None,
            "missing": int(labels.isna().sum()), "lookalikes": lookalike_labels(list(counts.index))}


def lookalike_labels(names: list[str]) -> list[list[str]]:
    """Class names that differ only in case or surrounding spaces ('positive', 'Positive ',
    'positive'): training keeps each as a class of its own, which is rarely meant."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(str(name).strip().casefold(), []).append(str(name))
    return [sorted(group) for group in groups.values() if len(group) > 1]


def length_summary(texts: list[str], tokenizer=None, max_length: int | None = None) -> dict:
    if tokenizer is not None:
        lengths = np.asarray([len(ids) for ids in tokenizer(texts, truncation=False)["input_ids"]])
        unit = "tokens"
    else:
        lengths, unit = np.asarray([len(t.split()) for t in texts]), "words"
    if not len(lengths):
        return {"unit": unit}
    p50, p90, p95, p99 = (float(x) for x in np.percentile(lengths, [50, 90, 95, 99]))
    out = {"unit": unit, "mean": round(float(lengths.mean()), 1), "median": p50, "p90": p90, "p95": p95,
           "p99": p99, "max": int(lengths.max())}
    if tokenizer is not None and max_length:
        cut = int((lengths > max_length).sum())
        out |= {"max_length": max_length, "truncated": cut, "truncated_share": round(cut / len(lengths), 4)}
    return out


def _groups(frame: pd.DataFrame, groups: list[list[int]], columns: TableColumns) -> list[dict]:
    out = []
    for group in groups[:EXAMPLES]:
        item = {"rows": [int(frame.index[i]) + 1 for i in group],
                "texts": [str(frame.iloc[i][columns.text]) for i in group]}
        if columns.label:
            item["labels"] = [str(frame.iloc[i][columns.label]) for i in group]
        out.append(item)
    return out


def duplicates(frame: pd.DataFrame, columns: TableColumns, threshold: float | None) -> dict:
    keys = keys_of(frame, columns)
    exact = exact_groups(keys)
    out = {"duplicates": {"groups": len(exact), "extra_rows": sum(len(g) - 1 for g in exact),
                          "examples": _groups(frame, exact, columns)}}
    conflicts = []
    if columns.label:  # a missing label conflicts with none
        labels = class_names("", frame[columns.label], note=False).tolist()
        conflicts = [g for g in exact if _conflicting(labels, g)]
    if threshold is not None:
        firsts = _first_of_each(keys)
        near = [[firsts[i] for i in g] for g in near_groups([keys[i] for i in firsts], threshold)]
        out["near_duplicates"] = {"threshold": threshold, "groups": len(near),
                                  "extra_rows": sum(len(g) - 1 for g in near),
                                  "examples": _groups(frame, near, columns)}
        if columns.label:
            conflicts += [g for g in near if _conflicting(labels, g)]
    if columns.label:
        out["label_conflicts"] = {"groups": len(conflicts), "rows": sum(len(g) for g in conflicts),
                                  "examples": _groups(frame, conflicts, columns)}
    return out


def _conflicting(labels: list, group: list[int]) -> bool:
    return len({labels[i] for i in group if isinstance(labels[i], str)}) > 1


def _first_of_each(keys: list[str]) -> list[int]:
    """The position of the first row of each distinct key (near duplicates beyond the exact ones)."""
    seen: dict[str, int] = {}
    for i, key in enumerate(keys):
        seen.setdefault(key, i)
    return sorted(seen.values())


def overlap(train: pd.DataFrame, test: pd.DataFrame, columns: TableColumns, threshold: float | None) -> dict:
    """Test rows whose text is in train: exactly, or nearly (train/test leakage)."""
    train_keys, test_keys = keys_of(train, columns), keys_of(test, columns)
    known = set(train_keys)
    exact = [i for i, k in enumerate(test_keys) if k in known]
    out = {"rows": len(test), "exact": len(exact), "exact_share": round(len(exact) / max(1, len(test)), 4),
           "examples": [{"test_row": int(test.index[i]) + 1, "text": str(test.iloc[i][columns.text])}
                        for i in exact[:EXAMPLES]]}
    if threshold is not None:
        found = NearIndex(train_keys, threshold).query(test_keys)
        exact_set = set(exact)
        near = [i for i, f in enumerate(found) if f and i not in exact_set]
        out |= {"near": len(near), "near_share": round(len(near) / max(1, len(test)), 4),
                "threshold": threshold}
    return out


def label_errors(frame: pd.DataFrame, columns: TableColumns, features: str, encoder=None) -> dict:
    """Likely label errors, as `data.clean` finds them with label_error_features `features`."""
    cfg = CleanConfig(label_error_features=features)
    index_of, issues, note = label_issues_of(frame, cfg, columns, encoder)
    indices = [index_of[i.position] for i in issues]
    examples = [{"row": int(index) + 1, "text": str(frame.at[index, columns.text]), "label": i.given,
                 "predicted": i.predicted, "confidence": round(i.confidence, 3)}
                for index, i in zip(indices[:EXAMPLES], issues, strict=False)]
    return {"features": features, "model": encoder.name if encoder else None, "count": len(issues),
            "rows": [int(index) + 1 for index in indices[:50]], "examples": examples, "note": note}


def inspect_table(frame: pd.DataFrame, source: str, columns: TableColumns, test: pd.DataFrame | None = None,
                  test_source: str | None = None, tokenizer=None, tokenizer_name: str | None = None,
                  max_length: int | None = None, threshold: float | None = 0.9,
                  label_error_features: str | None = None, encoder=None, classes: bool | None = None) -> dict:
    """The report of one table (and its overlap with a test table); with `label_error_features`
    (tfidf, or encoder with `encoder`), its likely label errors too."""
    text = frame[columns.text]
    present = text.notna()
    as_text = text.where(present, "").astype(str)
    repair = CleanConfig()
    report = {"source": source, "rows": len(frame), "columns": [str(c) for c in frame.columns],
              "text_column": columns.text, "label_column": columns.label}
    if columns.label:
        report["labels"] = label_summary(frame[columns.label], classes)
    report["lengths"] = length_summary(as_text[present].tolist(), tokenizer, max_length)
    if tokenizer_name:
        report["lengths"]["tokenizer"] = tokenizer_name
    report["empty"] = _finding(frame, ~present | (as_text.str.strip() == ""), columns.text)
    report["mojibake"] = _finding(frame, as_text.map(has_mojibake), columns.text,
                                  lambda t: repair_text(t, repair))
    report["garbled"] = _finding(frame, as_text.map(lambda t: garbled_count(t) > 0), columns.text)
    report["html"] = _finding(frame, as_text.map(has_html), columns.text)
    report["control_characters"] = _finding(frame, as_text.map(has_control), columns.text)
    report |= duplicates(frame[present], columns, threshold)
    if label_error_features and columns.label:
        report["label_errors"] = label_errors(frame[present], columns, label_error_features, encoder)
    if test is not None:
        report["test"] = {"source": test_source, **overlap(frame[present], test[test[columns.text].notna()],
                                                           columns, threshold)}
    return report

