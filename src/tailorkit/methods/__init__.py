"""Adaptation methods. Importing this package registers every built-in method."""

from tailorkit.methods import (  # noqa: F401  (registration)
    bottleneck,
    features,
    freeze,
    full,
    ia3,
    layerwise,
    lora,
    prompt,
)
from tailorkit.methods.base import (
    METHODS,
    Method,
    MethodConfig,
    adapter_method,
    apply_methods,
    build_method,
    register,
)

__all__ = ["METHODS", "Method", "MethodConfig", "adapter_method", "apply_methods", "build_method", "register"]
