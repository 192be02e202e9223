"""Adaptation methods. Importing this package registers every built-in method."""

from tailorkit.methods import freeze, full, layerwise  # noqa: F401  (registration)
from tailorkit.methods.base import (
    METHODS,
    Method,
    MethodConfig,
    apply_methods,
    build_method,
    register,
)

__all__ = ["METHODS", "Method", "MethodConfig", "apply_methods", "build_method", "register"]
