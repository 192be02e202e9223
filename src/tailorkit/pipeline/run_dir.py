"""The run directory: claimed once, written atomically, never mixed with another run.

A run directory holds:
  recipe.yaml        the resolved recipe (what `--resume` re-reads)
  metrics.jsonl      one record per step and per evaluation
  checkpoint/        the resumable state while the run is unfinished
  progress.json      the stages finished so far, while the run is unfinished
  model/             the final model in Hugging Face format (+ tokenizer); for an adapter
                     method, an adapter folder (adapter_config.json + adapter_model.safetensors)
                     plus the tokenizer and labels.json; for `features`, the head only
                     (head.safetensors or head.skops + features.json): the backbone is the base
  predictions_test.csv (classifiers) or generations.jsonl (causal LMs), summary.json
                     written when the run finishes

A merged model folder (`tailor merge RUN --out DIR`) is a plain Hugging Face model folder and a
run directory at once: the model's files (labels.json among them) at the top, and a recipe.yaml
describing it as a whole model (`methods: [full]`); `model_folder` finds the model in either.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Protocol

from tailorkit.errors import TailorError
from tailorkit.models.handle import ModelHandle
from tailorkit.track.jsonl import dumps
from tailorkit.train.checkpoint import find_checkpoint

SUMMARY = "summary.json"
PROGRESS = "progress.json"
MODEL = "model"
LABELS = "labels.json"  # the class names; adapter folders and CNNs have no config to hold them


def model_folder(run_dir: Path) -> Path:
    """Where a run keeps its final model: RUN/model/, or RUN itself for a merged model folder."""
    if not (run_dir / MODEL).is_dir() and (run_dir / LABELS).is_file():
        return run_dir
    return run_dir / MODEL


class ModelWriter(Protocol):
    def save_model(self, handle: ModelHandle, directory: Path) -> None: ...


def is_tailorkit_folder(path: Path) -> bool:
    """A run (recipe.yaml), a search study (study.yaml), or a folder of compressed runs."""
    if any((path / marker).is_file() for marker in ("recipe.yaml", "study.yaml")):
        return True
    children = list(path.iterdir())
    return bool(children) and all((child / "recipe.yaml").is_file() for child in children)


def claim_run_dir(path: Path, overwrite: bool) -> Path:
    """Refuse to mix runs. With --overwrite an old run is moved aside, never deleted; a folder
    that is not tailorkit's (the user's data) is never moved."""
    if path.exists() and not path.is_dir():
        raise TailorError(f"output_dir {path} is a file; choose a folder (a new one is created)")
    if path.exists() and any(path.iterdir()):
        if overwrite and Path.cwd().is_relative_to(path.resolve()):
            raise TailorError(f"output_dir {path} holds the current folder; --overwrite cannot move "
                              "it aside. Choose a subfolder as output_dir")
        if overwrite and not is_tailorkit_folder(path):
            raise TailorError(f"output_dir {path} holds files that are not a tailorkit run; --overwrite "
                              "moves only earlier runs aside. Choose a new output_dir")
        if not overwrite:
            what = ("a finished run" if (path / SUMMARY).exists() else
                    "an unfinished run; continue it with `tailor train --resume " + str(path) + "`"
                    if find_checkpoint(path) else "files")
            raise TailorError(
                f"output_dir {path} already holds {what}; choose another output_dir or pass "
                "--overwrite (the old one is moved to a .bak folder, not deleted)"
            )
        stamp = time.strftime("%Y%m%d-%H%M%S")
        backup, n = path.with_name(f"{path.name}.bak-{stamp}"), 1
        while backup.exists():  # two overwrites within a second
            backup, n = path.with_name(f"{path.name}.bak-{stamp}-{n}"), n + 1
        path.rename(backup)
        print(f"moved the previous run to {backup}")
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_json_atomically(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(dumps(payload, indent=2, default=float))
    tmp.replace(path)


def save_model_atomically(handle: ModelHandle, writer: ModelWriter | None, labels: list[str],
                          target: Path) -> None:
    """The whole model, or what `writer` writes (the method that owns the model folder: an
    adapter, a feature head; or a compression step's own format); then labels.json. Written
    beside `target`, then renamed into place."""
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp.mkdir()
    if writer is None:
        handle.save(tmp)
    else:
        writer.save_model(handle, tmp)
    (tmp / LABELS).write_text(json.dumps(labels))
    modes_as_umask(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


def modes_as_umask(folder: Path) -> None:
    """Give every file in `folder` the mode the umask gives a new file (0644 under 022).
    safetensors writes its files 0600 whatever the umask, so in a shared run folder the weights
    alone were unreadable to the others who can read the rest."""
    mask = os.umask(0)
    os.umask(mask)
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(0o666 & ~mask)
