"""Pydantic validation of untrusted content (answers, packs), with a failure reported as one InputError line."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .errors import InputError

M = TypeVar("M", bound=BaseModel)


def validate_model(model: type[M], doc: Any, source: str, what: str = "", prefix: str = "") -> M:
    """`model` from a decoded JSON value; the error names the first bad field (under `prefix`), and says what the
    value is not when `what` is given (a caller that says so itself leaves it empty)."""
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join([prefix] * bool(prefix) + [str(p) for p in first["loc"]]) or None
        raise InputError(f"not {what}: {first['msg']}" if what else first["msg"], source=source, field=where) from None
