"""Compression steps, one module each. Importing this package imports every module in it, and
each registers its step with `@register`: adding a step is adding one file here."""

import importlib
import pkgutil

from tailorkit.compress.base import STEPS, Step, build_steps, model_writer, order_problems, register

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["STEPS", "Step", "build_steps", "model_writer", "order_problems", "register"]
