"""Append-only JSON-lines metrics log: one record per step or evaluation."""

from __future__ import annotations

import json
import time
from pathlib import Path


class JsonlSink:
    def __init__(self, path: Path) -> None:
        self.path = path

    def log(self, kind: str, step: int, values: dict) -> None:
        record = {"kind": kind, "step": step, "time": round(time.time(), 3), **values}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def truncate_after(self, step: int) -> None:
        """On resume, drop records written after the checkpoint, so none appear twice."""
        if not self.path.exists():
            return
        kept = [line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line)["step"] <= step]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        tmp.replace(self.path)
