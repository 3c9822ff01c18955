"""One reading of a pydantic validation error, for the one-line messages users see."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

__all__ = ["first_error", "validated"]

M = TypeVar("M", bound=BaseModel)


def first_error(e: ValidationError) -> tuple[str, str, Any]:
    """``(field path, message, offending input)`` of the first error; the field path is
    ``"(top level)"`` for errors on the whole object, an unknown field reads "unknown field"."""
    err = e.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    return field, msg, err.get("input")


def validated(model: type[M], data: Any, error: type[Exception], what: str, hint: str = "") -> M:
    """``model`` validated from ``data``, or one line ``"{what}: field 'x': msg (got v){hint}"``
    raised as ``error``."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        where, msg, value = first_error(e)
        raise error(f"{what}: field {where!r}: {msg} (got {value!r}){hint}") from None
