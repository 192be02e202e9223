"""The data stage's quality steps for a run: `data.clean` on the carved splits, `data.augment` on
the training split, and the record of both in the run directory:

    <run>/data/changes.csv   one line per removed, repaired, relabelled, flagged or added row
    <run>/data/quality.json  counts by split, action and reason; steps that could not run
    <run>/data/<split>.csv   each split a step changed, as the run trains and scores on it
                             (<split>.jsonl for instruction data)

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
from tailorkit.data.cleaning.chat import clean_chat_frames
from tailorkit.data.cleaning.clean import Cleaned, TableColumns, clean_frames
from tailorkit.data.cleaning.encoder_features import Encoder
from tailorkit.data.cleaning.images import clean_image_sets
from tailorkit.data.images import ImageSet
from tailorkit.data.tables import write_csv

DATA_DIR = "data"  # in the run directory
QUALITY = "quality.json"


@dataclass
class DataQuality:
    """Cleans and augments one run's splits, then writes what it did into `folder`."""

    cfg: DataConfig
    folder: Path
    model_path: Path | None = None  # for synonyms from the model's embeddings
    model_name: str | None = None  # the run's model.name: label_error_features' default encoder
    max_length: int = 128  # the run's model.max_length, for encoder features
    progress: bool = False  # a progress bar while encoding
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    touched: dict[str, pd.DataFrame] = field(default_factory=dict)  # split -> the table it became
    suffix: str = "csv"  # of the changed splits' files: csv, or jsonl for instruction data

    @property
    def enabled(self) -> bool:
        return self.cfg.clean is not None or self.cfg.augment is not None

    def columns(self, labelled: bool = True) -> TableColumns:
        return TableColumns(self.cfg.text_column, self.cfg.label_column if labelled else None,
                            self.cfg.text_pair_column)

    def clean(self, raw: dict[str, tuple[str, pd.DataFrame]], classes: bool, labelled: bool = True
              ) -> dict[str, tuple[str, pd.DataFrame]]:
        """Tables of text, with labels unless `labelled` is False (masked-LM text)."""
        if self.cfg.clean is None:
            return raw
        cleaned = clean_frames({name: frame for name, (_, frame) in raw.items()}, self.cfg.clean,
                               self.columns(labelled), numeric=not classes,
                               encoder=self.encoder() if labelled else None)
        return self._record(raw, cleaned)

    def clean_chat(self, raw: dict[str, tuple[str, pd.DataFrame]], fmt: str
                   ) -> dict[str, tuple[str, pd.DataFrame]]:
        """Instruction data in format `fmt`; its changed splits are written as JSON lines (lists of
        turns survive them, not CSV)."""
        if self.cfg.clean is None:
            return raw
        self.suffix = "jsonl"
        cleaned = clean_chat_frames({name: frame for name, (_, frame) in raw.items()}, self.cfg.clean, fmt,
                                    self.cfg.chat)
        return self._record(raw, cleaned)

    def clean_images(self, sets: dict[str, ImageSet]) -> dict[str, ImageSet]:
        """Image splits: duplicates and leakage by decoded pixels; only the record is written."""
        if self.cfg.clean is None:
            return sets
        cleaned = clean_image_sets(sets, self.cfg.clean)
        self.changes += cleaned.changes
        return cleaned.sets

    def _record(self, raw: dict[str, tuple[str, pd.DataFrame]], cleaned: Cleaned
                ) -> dict[str, tuple[str, pd.DataFrame]]:
        self.changes += cleaned.changes
        self.notes += cleaned.notes
        changed = {c.split for c in cleaned.changes if c.action in ("removed", "repaired", "relabelled")}
        self.touched |= {name: cleaned.frames[name] for name in changed}
        return {name: (source, cleaned.frames[name]) for name, (source, _) in raw.items()}

    def encoder(self) -> Encoder | None:
        """The model of `data.clean.label_error_features: encoder`: label_error_model, else model.name."""
        cfg = self.cfg.clean
        if cfg is None or cfg.label_error_features != "encoder":
            return None
        if cfg.label_error_model is not None:
            return Encoder(cfg.label_error_model, "data.clean.label_error_model", self.max_length,
                           self.progress)
        if self.model_name is None:
            return None
        return Encoder(self.model_name, "model.name", self.max_length, self.progress)

    def augment(self, train: pd.DataFrame, classes: bool, labelled: bool = True) -> pd.DataFrame:
        cfg = self.cfg.augment
        if cfg is None:
            return train
        synonyms = synonym_source(cfg, self.model_path)
        train, added = augment_frame(train, cfg, self.cfg.text_column,
                                     self.cfg.label_column if labelled else None, classes, synonyms)
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
            path = self.folder / f"{name}.{self.suffix}"
            if self.suffix == "jsonl":
                frame.to_json(path, orient="records", lines=True, force_ascii=False)
            else:
                write_csv(frame, path)
        (self.folder / QUALITY).write_text(json.dumps(self.summary(), indent=2) + "\n")


def quality_info(quality: DataQuality | None) -> dict:
    """The run summary's `data_quality` entry (nothing when no step ran)."""
    return {"data_quality": quality.summary()} if quality is not None else {}
