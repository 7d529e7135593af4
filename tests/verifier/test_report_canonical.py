"""RFC 8785 canonical JSON: the RFC's own examples (key order by UTF-16 units, ECMAScript numbers, escaping)."""

from __future__ import annotations

import json

import pytest
from dstack_verifier.report.canonical import canonical_json


def test_rfc8785_section_3_2_2_example() -> None:
    text = ('{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001], '
            '"string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/", "literals": [null, true, false]}')
    expected = ('{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
                '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}')
    assert canonical_json(json.loads(text)) == expected.encode()


def test_keys_sort_by_utf16_code_units() -> None:
    # RFC 8785 §3.2.3: the emoji (a surrogate pair, 0xD83D…) sorts before U+FB33 though its code point is larger.
    doc = {"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
           "1": "One", "\U0001f600": "Emoji: Grinning Face", "\u0080": "Control", "\u00f6": "Latin Small Letter O "
           "With Diaeresis"}
    keys = list(json.loads(canonical_json(doc)))
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


@pytest.mark.parametrize(("value", "text"), [
    (0.0, "0"), (-0.0, "0"), (1e21, "1e+21"), (1e20, "100000000000000000000"), (1e-7, "1e-7"),
    (0.000001, "0.000001"), (1.23e-6, "0.00000123"), (5e-324, "5e-324"),
    (1.7976931348623157e308, "1.7976931348623157e+308"), (-1.5, "-1.5"), (9007199254740992.0, "9007199254740992"),
    (295147905179352830000.0, "295147905179352830000"), (4.5e-10, "4.5e-10"), (123.456, "123.456"),
    (9007199254740991, "9007199254740991"), (-42, "-42"),
])
def test_numbers_are_written_as_ecmascript_does(value: float, text: str) -> None:
    assert canonical_json(value) == text.encode()


def test_strings_escape_only_what_json_requires() -> None:
    assert canonical_json("a\u0001\b\t\n\f\r\"\\/é\u007f") == b'"a\\u0001\\b\\t\\n\\f\\r\\"\\\\/\xc3\xa9\x7f"'


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 2**53, -(2**53), "\ud800", {1: "x"}, b"bytes",
                                   {"k": object()}])
def test_values_without_a_canonical_form_are_refused(value: object) -> None:
    with pytest.raises(ValueError):
        canonical_json(value)


def test_nested_structures_have_no_whitespace() -> None:
    assert canonical_json({"b": [1, {"d": None, "c": True}], "a": "x"}) == b'{"a":"x","b":[1,{"c":true,"d":null}]}'
