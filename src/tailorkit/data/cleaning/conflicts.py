"""One row per duplicate group: the first is kept; where the group's labels differ, the
`label_conflicts` policy decides (drop all, keep one with the majority label, keep one per label)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Resolution:
    removed: dict[int, tuple[str, str]] = field(default_factory=dict)  # position -> (reason, detail)
    relabelled: dict[int, object] = field(default_factory=dict)  # position -> new label


def resolve(groups: list[list[int]], labels: list | None, rows: list[int], policy: str, numeric: bool,
            reason: str) -> Resolution:
    """`groups`: positions of duplicates; `labels`: each position's label (None: unlabelled data);
    `rows`: each position's row in its file, for the details; `reason`: duplicate or near_duplicate."""
    out = Resolution()
    what = reason.replace("_", " ")
    for group in groups:
        first = group[0]
        values = [labels[i] for i in group] if labels is not None else [None] * len(group)
        if len(set(map(str, values))) == 1:
            for i in group[1:]:
                out.removed[i] = (reason, f"{what} of row {rows[first]}")
            continue
        shown = ", ".join(f"row {rows[i]}: {labels[i]}" for i in group[:6])
        shown += ", ..." if len(group) > 6 else ""
        if policy == "drop":
            for i in group:
                out.removed[i] = ("label_conflict", f"{what}s with different labels ({shown})")
        elif policy == "keep":  # the first row of each label stays
            kept: dict[str, int] = {}
            for i in group:
                if str(labels[i]) in kept:
                    out.removed[i] = (reason, f"{what} of row {rows[kept[str(labels[i])]]}")
                else:
                    kept[str(labels[i])] = i
        else:  # majority
            winner = _majority(values, numeric)
            if winner is None:
                for i in group:
                    out.removed[i] = ("label_conflict", f"no majority label ({shown})")
                continue
            if str(labels[first]) != str(winner):
                out.relabelled[first] = winner
            for i in group[1:]:
                out.removed[i] = ("label_conflict", f"{what} of row {rows[first]}, which keeps the "
                                                    f"majority label {winner} ({shown})")
    return out


def _majority(values: list, numeric: bool):
    """The most common label (None on a tie); for numeric targets the median."""
    if numeric:
        return float(np.median(np.asarray(values, dtype=float)))
    (top, n), *rest = Counter(map(str, values)).most_common()
    if rest and rest[0][1] == n:
        return None
    return next(v for v in values if str(v) == top)
