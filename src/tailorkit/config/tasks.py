"""`task:` — the registered task names; `tailorkit.tasks.register` fills the table when imported."""

from __future__ import annotations

TASK_NAMES: dict[str, str] = {}  # a name or an alias ("sft") -> the task's name
