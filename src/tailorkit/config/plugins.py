"""Lists of registered plug-ins in a recipe (`methods:`, `compress.steps:`), each entry a name
with that plug-in's own typed options.

An entry is written `lora` or `{lora: {r: 8}}`. The options class of each plug-in is declared
beside its code and registered into a table here (`METHOD_CONFIGS`, `COMPRESS_CONFIGS`), so
adding a plug-in never edits this file. A spec holds the name and the validated options, and
is dumped the way it was written (only the options the recipe set), except in a saved recipe
(`tailorkit.recipe.dump_recipe`), which lists every option, so that a default changed later does
not change what a run resumes or reloads with.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, SerializationInfo, ValidationError, model_serializer
from pydantic_core import InitErrorDetails

EVERY_OPTION = "every_plugin_option"  # serialisation context key: dump unset options too


def set_options(config: BaseModel) -> list[str]:
    """The options a config was given with a value other than their default (a saved recipe
    lists every option, so "given" alone would count the defaults it wrote)."""
    fields = type(config).model_fields
    return sorted(name for name in config.model_fields_set
                  if getattr(config, name) != fields[name].get_default(call_default_factory=True))


class PluginConfig(BaseModel):
    """A plug-in's options: unknown ones are errors, and no number may be NaN or infinite (as
    in every recipe section: `lora: {alpha: .inf}` would pass `gt=0`)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class PluginSpec(BaseModel):
    model_config = ConfigDict(frozen=True)
    table: ClassVar[dict[str, type[PluginConfig]]]  # name -> options class, filled on registration
    kind: ClassVar[str]  # "method", for messages

    name: str
    config: PluginConfig

    @classmethod
    def sub_model(cls, part: Any) -> type[BaseModel] | None:
        """Error paths run `methods[0].lora.r`: below an entry, the name leads to its options."""
        return cls.table.get(part) if isinstance(part, str) else None

    @model_serializer
    def _as_written(self, info: SerializationInfo) -> dict[str, dict[str, Any]]:
        every = bool(info.context and info.context.get(EVERY_OPTION))
        return {self.name: self.config.model_dump(mode="json", exclude_unset=not every)}

    @classmethod
    def parse_list(cls, value: Any, example: str) -> list:
        """A recipe list -> specs; errors carry the path `[i].<name>.<option>`."""
        if not isinstance(value, list):
            raise ValueError(f"must be a list, e.g. {example}")
        specs, problems = [], []
        for i, item in enumerate(value):
            if isinstance(item, cls):
                specs.append(item)
                continue
            if isinstance(item, str):
                item = {item: {}}
            if not isinstance(item, dict) or len(item) != 1:
                message = f"each {cls.kind} is a name or {{name: {{...}}}}, got {item!r}"
                problems.append(_problem((i,), item, message))
                continue
            ((name, options),) = item.items()
            config_class = cls.table.get(name)
            if config_class is None:
                problems.append(_problem((i,), item, f"unknown {cls.kind} '{name}' (registered: "
                                                     f"{', '.join(sorted(cls.table))})"))
                continue
            try:
                specs.append(cls(name=name, config=config_class.model_validate(options or {})))
            except ValidationError as err:
                problems += [InitErrorDetails(type=e["type"], loc=(i, name, *e["loc"]), input=e["input"],
                                              ctx=e.get("ctx", {})) for e in err.errors()]
        if problems:
            raise ValidationError.from_exception_data(cls.kind, problems)
        return specs


def _problem(loc: tuple, value: Any, message: str) -> InitErrorDetails:
    return InitErrorDetails(type="value_error", loc=loc, input=value, ctx={"error": ValueError(message)})
