"""`methods:` — an ordered list of registered methods, each with its own typed options.

The options of each method are declared beside the method (`tailorkit/methods/<name>.py`) as a
subclass of `MethodConfig`, and `methods.base.register` puts that class in `METHOD_CONFIGS`.
The recipe reads the table, so adding a method never edits this file. An entry is written
`lora` or `{lora: {r: 8}}`; `MethodSpec` holds the name and the validated options, and is
saved the way it was written (only the options the recipe set).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_serializer
from pydantic_core import InitErrorDetails


class MethodConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


METHOD_CONFIGS: dict[str, type[MethodConfig]] = {}  # name -> options; filled by methods.base.register


class MethodSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    config: MethodConfig

    @classmethod
    def sub_model(cls, part: Any) -> type[BaseModel] | None:
        """Error paths run `methods[0].lora.r`: below an entry, the method's name leads to its options."""
        return METHOD_CONFIGS.get(part) if isinstance(part, str) else None

    @model_serializer
    def _as_written(self) -> dict[str, dict[str, Any]]:
        return {self.name: self.config.model_dump(mode="json", exclude_unset=True)}


def parse_methods(value: Any) -> list[MethodSpec]:
    """The recipe's `methods:` list -> specs; errors carry the path `[i].<name>.<option>`."""
    if not isinstance(value, list):
        raise ValueError("methods must be a list, e.g. [full] or [{freeze: {top: 2}}]")
    specs, problems = [], []
    for i, item in enumerate(value):
        if isinstance(item, MethodSpec):
            specs.append(item)
            continue
        if isinstance(item, str):
            item = {item: {}}
        if not isinstance(item, dict) or len(item) != 1:
            problems.append(_problem((i,), item, f"each method is a name or {{name: {{...}}}}, got {item!r}"))
            continue
        ((name, options),) = item.items()
        config_class = METHOD_CONFIGS.get(name)
        if config_class is None:
            problems.append(_problem((i,), item, f"unknown method '{name}' (registered: "
                                                 f"{', '.join(sorted(METHOD_CONFIGS))})"))
            continue
        try:
            specs.append(MethodSpec(name=name, config=config_class.model_validate(options or {})))
        except ValidationError as err:
            problems += [InitErrorDetails(type=e["type"], loc=(i, name, *e["loc"]), input=e["input"],
                                          ctx=e.get("ctx", {})) for e in err.errors()]
    if problems:
        raise ValidationError.from_exception_data("methods", problems)
    return specs


def _problem(loc: tuple, value: Any, message: str) -> InitErrorDetails:
    return InitErrorDetails(type="value_error", loc=loc, input=value, ctx={"error": ValueError(message)})
