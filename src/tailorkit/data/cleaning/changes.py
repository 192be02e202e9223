"""The per-row record of what cleaning and augmentation changed, and why."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from tailorkit.data.tables import write_csv

CHANGES = "changes.csv"
# rejected: a row augmentation made and then did not add (recorded with why)
ACTIONS = ("removed", "repaired", "relabelled", "flagged", "added", "rejected")


@dataclass(frozen=True)
class Change:
    split: str
    row: int  # 1-based row of the split's source table; for an added row, the row it was made from
    action: str  # one of ACTIONS
    reason: str  # e.g. duplicate, near_duplicate, label_conflict, leakage, garbled, label_error, eda:swap
    detail: str  # e.g. "duplicate of row 17", the text before repair, the predicted label
    text: str  # the row's text (after repair; for an added row, the new text)


def counts(changes: list[Change]) -> dict[str, dict[str, dict[str, int]]]:
    """split -> action -> reason -> rows, in the order first seen."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for (split, action, reason), n in Counter((c.split, c.action, c.reason) for c in changes).items():
        out.setdefault(split, {}).setdefault(action, {})[reason] = n
    return out


def count_lines(changes: list[Change]) -> list[str]:
    """One console line per split and action: `train removed 312: duplicate 280, leakage 32`."""
    lines = []
    for split, actions in counts(changes).items():
        for action, reasons in actions.items():
            total = sum(reasons.values())
            lines.append(f"{split} {action} {total:,}: "
                         + ", ".join(f"{r} {n:,}" for r, n in sorted(reasons.items(), key=lambda x: -x[1])))
    return lines


def write_changes(changes: list[Change], path: Path) -> None:
    columns = list(Change.__dataclass_fields__)
    write_csv(pd.DataFrame([asdict(c) for c in changes], columns=columns), path)
