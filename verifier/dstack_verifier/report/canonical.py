"""RFC 8785 (JSON Canonicalization Scheme): one byte string per JSON value, so a signed statement is reproducible.

Objects have their keys sorted by UTF-16 code units, there is no whitespace, strings are escaped minimally and
numbers are written as ECMAScript writes an IEEE-754 double (RFC 8785 §3.2.2.3).
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

MAX_SAFE_INTEGER = 2**53 - 1  # beyond it an integer has no exact double: RFC 8785 cannot represent it


def canonical_json(value: Any) -> bytes:
    """The canonical UTF-8 bytes of a JSON value (dict, list, str, int, float, bool, None). ValueError otherwise."""
    return _encode(value).encode("utf-8")


def _encode(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "true" if value else "false"
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise ValueError(f"integer {value} is outside the IEEE-754 safe range of RFC 8785")
        return str(value)
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise ValueError("object keys must be strings")
        keys = sorted(value, key=lambda k: k.encode("utf-16-be", "surrogatepass"))
        return "{" + ",".join(f"{_string(k)}:{_encode(value[k])}" for k in keys) + "}"
    raise ValueError(f"{type(value).__name__} is not a JSON value")


def _string(text: str) -> str:
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        raise ValueError("a string holds a lone surrogate, which has no UTF-8 form")
    # json escapes exactly what RFC 8785 asks: quote, backslash, \b \f \n \r \t, other controls as \u00xx.
    return json.dumps(text, ensure_ascii=False)


def _number(x: float) -> str:
    """ECMAScript Number::toString: the shortest round-trip digits (Python's repr), placed by ES's rules."""
    if not math.isfinite(x):
        raise ValueError(f"{x} is not a JSON number")
    if x == 0:
        return "0"  # also -0
    sign = "-" if x < 0 else ""
    _, digit_tuple, exponent = Decimal(repr(abs(x))).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    k = len(digits)
    n = int(exponent) + k  # the decimal point sits after n digits
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = f"{digits[:n]}.{digits[n:]}"
    elif -6 < n <= 0:
        body = "0." + "0" * -n + digits
    else:
        e = n - 1
        mantissa = digits if k == 1 else f"{digits[0]}.{digits[1:]}"
        body = f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + body
