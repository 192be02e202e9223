"""The base of every recipe section, and the one-line error format of the whole schema."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class Strict(BaseModel):
    """Unknown fields are errors (with a "did you mean"), assignments are validated too, and no
    number may be NaN or infinite (`epochs: .inf` would pass a range check, then never end)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def format_validation_error(
    err: ValidationError, source: str | None, model: type[BaseModel], prefix: str = ""
) -> str:
    """One line per problem: `source: field.path: what is wrong (allowed: ...)`."""
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        path = ".".join([prefix] * bool(prefix) + [str(p) if isinstance(p, str) else f"[{p}]" for p in loc])
        path = path.replace(".[", "[")
        if e["type"] == "extra_forbidden":
            allowed = allowed_fields(model, loc)
            sections = sections_with(model, loc)
            hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            msg = "unknown field"
            if sections:  # `lr:` at the top of a recipe: the field of `train:`
                above = path.removesuffix(str(loc[-1]))  # "" or "train."
                msg += "; did you mean " + " or ".join(f"{above}{s}.{loc[-1]}" for s in sections) + "?"
            elif hint:
                msg += f"; did you mean '{hint[0]}'?"
            msg += f" (allowed: {', '.join(allowed)})"
        else:
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] == "literal_error":
                msg = msg.replace("Input should be", "must be one of:")
        where = ": ".join(part for part in (source, path) if part)
        lines.append(f"{where}: {msg}")
    return "\n".join(lines)


def allowed_fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The fields allowed at the parent of `loc`."""
    parent = _model_at(model, loc[:-1])
    return list(parent.model_fields) if parent else []


def sections_with(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The sections beside the unknown field at `loc` that have a field of its name (a recipe's
    top-level `lr` is a field of `train`). Plugin lists (`methods`) do not count: their entries'
    own fields are not written in a recipe."""
    parent = _model_at(model, loc[:-1])
    if parent is None:
        return []
    return [name for name, info in parent.model_fields.items()
            if any(loc[-1] in sub.model_fields for sub in _nested(info.annotation)
                   if not hasattr(sub, "sub_model"))]


def _nested(annotation: Any) -> list[type[BaseModel]]:
    """The models a field's type holds: `EarlyStopping | None` holds EarlyStopping."""
    candidates = getattr(annotation, "__args__", (annotation,))
    return [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """Walk `loc` through nested models to the model there; None where it leads out of them.

    A section may name the model of a path below it with `sub_model(loc_part)` (the methods
    list does: `methods[0].lora` is a LoraConfig)."""
    current: Any = model
    for part in loc:
        resolve = getattr(current, "sub_model", None)
        if resolve is not None and resolve(part) is not None:
            current = resolve(part)
            continue
        field = current.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            if isinstance(part, int):  # a list index: same model below it
                continue
            return None
        nested = _nested(field.annotation)
        if not nested:
            return None
        current = nested[0]
    return current
