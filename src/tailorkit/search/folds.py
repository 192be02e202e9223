"""k-fold cross-validation data for the trials of a study.

The recipe's own train and validation splits (after its seeded split and subsets) are pooled
and cut into k folds, stratified by label for classification; fold i validates on part i and
trains on the rest, and every fold keeps the recipe's test split. The folds are written once
per study as Parquet files, so each fold run is a normal run with `data.train`,
`data.validation` and `data.test` files, and every trial sees the same folds.

The files hold the raw rows: `data.clean` and `data.augment` (the trial's values, which a space
may search) run inside each fold run, after its split, so augmentation adds copies of that
fold's training rows only and leakage removal drops training rows found in its validation fold.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tailorkit.data.prepare import carve_missing_splits, check_columns, class_names, read_splits, subset
from tailorkit.errors import TailorError
from tailorkit.tasks import task_of

FOLDS = "folds"
DONE = ".complete"


def fold_sections(recipe, study_dir: Path, data: dict | None = None) -> list[dict]:
    """The `data:` section of each fold's recipe: `data` (a trial's section, with its own clean and
    augment values; default the recipe's) reading the fold's files. Writes the files on first use."""
    k = recipe.search.cv_folds
    root = study_dir / FOLDS
    if not (root / DONE).exists():
        _write_folds(recipe, root, k)
    base = data if data is not None else recipe.data.model_dump(mode="json")
    out = []
    for i in range(k):
        folder = root / f"fold-{i}"
        out.append({**base, "name": None, "max_train_samples": None, "max_eval_samples": None,
                    **{split: str(folder / f"{split}.parquet") for split in ("train", "validation", "test")}})
    return out


def _write_folds(recipe, root: Path, k: int) -> None:
    from sklearn.model_selection import KFold, StratifiedKFold


    cfg = recipe.data
    raw = read_splits(cfg)
    for source, frame in raw.values():
        check_columns(source, frame, cfg, needs_label=True)
    classification = task_of(recipe).output == "classes"
    stratify = cfg.label_column if classification and cfg.split.stratify else None
    raw = carve_missing_splits(raw, cfg, stratify)
    columns = [c for c in (cfg.text_column, cfg.text_pair_column, cfg.label_column) if c]
    limits = {"train": cfg.max_train_samples, "validation": cfg.max_eval_samples,
              "test": cfg.max_eval_samples}
    frames = {name: subset(raw[name][1], limit, cfg.split.seed)[columns] for name, limit in limits.items()}
    pool = pd.concat([frames["train"], frames["validation"]], ignore_index=True)
    if len(pool) < 2 * k:
        raise TailorError(f"search.cv_folds: {k} folds need at least {2 * k} train + validation rows "
                          f"(the recipe gives {len(pool)})")
    labels = class_names(str(cfg.train), pool[cfg.label_column]).astype(str) if classification else None
    stratified = labels is not None and cfg.split.stratify and labels.value_counts().min() >= k
    splitter = (StratifiedKFold(k, shuffle=True, random_state=cfg.split.seed) if stratified
                else KFold(k, shuffle=True, random_state=cfg.split.seed))
    if classification:  # labels are read back as strings anyway; one type keeps Parquet happy
        pool[cfg.label_column] = labels
        test = frames["test"]
        names = class_names(str(cfg.test), test[cfg.label_column], note=False).astype(str)
        frames["test"] = test.assign(**{cfg.label_column: names})
    for i, (train_idx, val_idx) in enumerate(splitter.split(pool, labels)):
        folder = root / f"fold-{i}"
        folder.mkdir(parents=True, exist_ok=True)
        pool.iloc[train_idx].to_parquet(folder / "train.parquet", index=False)
        pool.iloc[val_idx].to_parquet(folder / "validation.parquet", index=False)
        frames["test"].to_parquet(folder / "test.parquet", index=False)
    (root / DONE).write_text(f"{k} folds\n")
