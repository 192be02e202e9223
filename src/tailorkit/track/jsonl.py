"""Append-only JSON-lines metrics log: one record per step or evaluation."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np

METRICS = "metrics.jsonl"  # the run directory's log


def finite(value):
    """`value` with every NaN or infinity as None: JSON has no NaN, and a file holding one is
    not JSON (json.dumps would write a bare NaN)."""
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def dumps(value, **options) -> str:
    return json.dumps(finite(value), allow_nan=False, **options)


class JsonlSink:
    """The log; `trackers` (track/trackers.py, from train.report_to) get every record too."""

    def __init__(self, path: Path, trackers: list | None = None) -> None:
        self.path, self.trackers = path, trackers or []
        # records the trackers got before a crash, dropped from the log on resume: the resumed run
        # writes them again (the same values, resume being exact); a tracker that stored each record
        # as it came (`durable`) is not sent them twice
        self._tracked: set[tuple] = set()

    def log(self, kind: str, step: int, values: dict) -> None:
        record = {"kind": kind, "step": step, "time": round(time.time(), 3), **values}
        with self.path.open("a") as f:
            f.write(dumps(record) + "\n")
        again = _key(record) in self._tracked
        self._tracked.discard(_key(record))
        for tracker in self.trackers:
            if not (again and tracker.durable):
                tracker.log(kind, step, finite(values))

    def close(self, run_dir: Path | None = None) -> None:
        """The run is over: trackers mark their runs finished, keeping the files of `run_dir`
        (a finished run's) as artefacts where they can."""
        for tracker in self.trackers:
            tracker.close(run_dir)
        self.trackers = []

    def truncate_after(self, step: int) -> None:
        """On resume, drop records written after the checkpoint, so none appear twice; and a
        last line torn by a crash during its append. TensorBoard and MLflow cannot drop theirs,
        so they are not sent those records again."""
        if not self.path.exists():
            return
        lines = [line for line in self.path.read_text().splitlines() if line.strip()]
        kept = []
        for n, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
            except ValueError:
                print(f"warning: {self.path}: dropped line {n}, torn by a crash while it was written",
                      file=sys.stderr)
                continue
            if record["step"] <= step:
                kept.append(line)
            else:
                self._tracked.add(_key(record))
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        tmp.replace(self.path)


def _key(record: dict) -> tuple:
    return record["kind"], record.get("split"), record["step"]
