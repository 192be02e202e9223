"""`methods:` — an ordered list of registered methods, each with its own typed options.

The options of each method are declared beside the method (`tailorkit/methods/<name>.py`) as a
subclass of `MethodConfig`, and `methods.base.register` puts that class in `METHOD_CONFIGS`.
"""

from __future__ import annotations

from typing import Any

from tailorkit.config.plugins import PluginConfig, PluginSpec


class MethodConfig(PluginConfig):
    pass


METHOD_CONFIGS: dict[str, type[MethodConfig]] = {}  # name -> options; filled by methods.base.register


class MethodSpec(PluginSpec):
    table = METHOD_CONFIGS
    kind = "method"


def parse_methods(value: Any) -> list[MethodSpec]:
    if not isinstance(value, list):
        raise ValueError("methods must be a list, e.g. [full] or [{freeze: {top: 2}}]")
    return MethodSpec.parse_list(value, "[full] or [{freeze: {top: 2}}]")
