"""Adaptation methods, one module each. Importing this package imports every module in it, and
each registers its method with `@register`: adding a method is adding one file here."""

import importlib
import pkgutil

from tailorkit.methods.base import (
    METHODS,
    Method,
    MethodConfig,
    adapter_method,
    apply_methods,
    build_methods,
    default_lr_of,
    finish_methods,
    model_owner,
    register,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["METHODS", "Method", "MethodConfig", "adapter_method", "apply_methods", "build_methods",
           "default_lr_of", "finish_methods", "model_owner", "register"]
