"""json.loads for untrusted text: depth-bounded, and every failure an InputError naming the source and offset."""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import InputError

MAX_JSON_DEPTH = 128
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)  # unrolled: linear even on megabyte strings
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def json_too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether arrays and objects (outside strings) nest deeper than `limit`.

    json.loads recurses in C once per level, and on Python 3.11 its only guard is the interpreter's recursion limit,
    which py_ecc (imported with web3) raises to 100000: deep enough to overflow the C stack and kill the process.
    So depth is measured before parsing, whatever the recursion limit is.
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for match in _JSON_BRACKET.finditer(_JSON_STRING.sub("", text)):
        if match.group() in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def load_json(text: str, source: str, field: str | None = None, **kwargs: Any) -> Any:
    """json.loads for untrusted text: depth-bounded, and every failure an InputError (offset when known)."""
    if json_too_deep(text):
        raise InputError(f"JSON nests too deeply (more than {MAX_JSON_DEPTH} levels)", source=source, field=field)
    try:
        return json.loads(text, **kwargs)
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", source=source,
                         field=field, offset=exc.pos) from None
    except RecursionError:
        raise InputError("JSON nests too deeply", source=source, field=field) from None
    except ValueError as exc:  # e.g. an integer literal beyond Python's digit limit, or a hook's refusal
        raise InputError(f"invalid JSON: {str(exc)[:120]}", source=source, field=field) from None


def json_kind(value: Any) -> str:
    """The JSON name of a decoded value's type, for error messages ("expected a string, got number")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)
