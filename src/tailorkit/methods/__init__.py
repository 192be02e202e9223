"""Adaptation methods. Importing this package registers every built-in method (one module each)."""

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
    build_methods,
    finish_methods,
    model_owner,
    register,
)

__all__ = ["METHODS", "Method", "MethodConfig", "adapter_method", "apply_methods", "build_method",
           "build_methods", "finish_methods", "model_owner", "register"]
