"""The data stage's quality steps for a run: `data.clean` on the carved splits, `data.augment` on
the training split, and the record of both in the run directory:

    <run>/data/changes.csv   one line per removed, repaired, relabelled, flagged or added row
    <run>/data/quality.json  counts by split, action and reason; steps that could not run
    <run>/data/<split>.csv   each split a step changed, as the run trains and scores on it

The user's files are only read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from tailorkit.config.data import DataConfig
from tailorkit.data.augment.augment import augment_frame
from tailorkit.data.augment.synonyms import synonym_source
from tailorkit.data.cleaning.changes import CHANGES, Change, count_lines, counts, write_changes
from tailorkit.data.cleaning.clean import TableColumns, clean_frames

DATA_DIR = "data"  # in the run directory
QUALITY = "quality.json"


@dataclass
class DataQuality:
    """Cleans and augments one run's splits, then writes what it did into `folder`."""

    cfg: DataConfig
    folder: Path
    model_path: Path | None = None  # for synonyms from the model's embeddings
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    touched: dict[str, pd.DataFrame] = field(default_factory=dict)  # split -> the table it became

    @property
    def enabled(self) -> bool:
        return self.cfg.clean is not None or self.cfg.augment is not None

    def columns(self, labelled: bool = True) -> TableColumns:
        return TableColumns(self.cfg.text_column, self.cfg.label_column if labelled else None,
                            self.cfg.text_pair_column)

    def clean(self, raw: dict[str, tuple[str, pd.DataFrame]], classes: bool
              ) -> dict[str, tuple[str, pd.DataFrame]]:
        if self.cfg.clean is None:
            return raw
        cleaned = clean_frames({name: frame for name, (_, frame) in raw.items()}, self.cfg.clean,
                               self.columns(), numeric=not classes)
        self.changes += cleaned.changes
        self.notes += cleaned.notes
        changed = {c.split for c in cleaned.changes if c.action in ("removed", "repaired", "relabelled")}
        self.touched |= {name: cleaned.frames[name] for name in changed}
        return {name: (source, cleaned.frames[name]) for name, (source, _) in raw.items()}

    def augment(self, train: pd.DataFrame, classes: bool) -> pd.DataFrame:
        cfg = self.cfg.augment
        if cfg is None:
            return train
        synonyms = synonym_source(cfg, self.model_path)
        train, added = augment_frame(train, cfg, self.cfg.text_column, self.cfg.label_column, classes,
                                     synonyms)
        self.changes += added
        self.touched["train"] = train
        return train

    def keep(self, name: str, frame: pd.DataFrame) -> None:
        """The split as the run uses it (after max_*_samples), if a step changed it."""
        if name in self.touched:
            self.touched[name] = frame

    def summary(self) -> dict:
        return {"counts": counts(self.changes), "notes": self.notes}

    def lines(self) -> list[str]:
        return [f"data quality: {line}" for line in count_lines(self.changes)] + \
               [f"data quality: {note}" for note in self.notes]

    def write(self) -> None:
        if not self.enabled:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        write_changes(self.changes, self.folder / CHANGES)
        for name, frame in self.touched.items():
            frame.to_csv(self.folder / f"{name}.csv", index=False)
        (self.folder / QUALITY).write_text(json.dumps(self.summary(), indent=2) + "\n")
