"""Tasks, one module each. Importing this package imports every module in it, and each
registers its task with `@register`: adding a task is adding one file here."""

import importlib
import pkgutil

from tailorkit.tasks.base import TASKS, Task, register, task_of

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["TASKS", "Task", "register", "task_of"]
