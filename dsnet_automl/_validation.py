"""One reading of a pydantic validation error, for the one-line messages users see."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

__all__ = ["first_error"]


def first_error(e: ValidationError) -> tuple[str, str, Any]:
    """``(field path, message, offending input)`` of the first error; the field path is
    ``"(top level)"`` for errors on the whole object, an unknown field reads "unknown field"."""
    err = e.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    return field, msg, err.get("input")
