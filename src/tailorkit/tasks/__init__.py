"""Tasks. Importing this package registers every built-in task (one module each)."""

from tailorkit.tasks import (  # noqa: F401  (registration)
    causal_lm,
    classification,
    image_classification,
    mlm,
    regression,
)
from tailorkit.tasks.base import TASKS, Task, register, task_of

__all__ = ["TASKS", "Task", "register", "task_of"]
