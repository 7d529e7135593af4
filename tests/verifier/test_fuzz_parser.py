"""Fuzzing the untrusted-input boundary: the quote parser, evidence detection and the quote verifier.

Properties: `parse_quote` returns a Quote or raises InputError (nothing else); `evidence.detect` returns Evidence
or raises InputError; `verify_quote` never raises for any bytes and always reports the hardware checks.
"""

from __future__ import annotations

import base64
import json
import textwrap
from collections.abc import Callable
from functools import cache
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from dstack_verifier.errors import InputError
from dstack_verifier.evidence import Evidence, check_quote, detect, replay_inputs
from dstack_verifier.model import REPORT_SCHEMA, Check, CheckStatus
from dstack_verifier.quote.collateral import COLLATERAL_KEYS, Collateral
from dstack_verifier.quote.reader import MAX_FIELD_LEN
from dstack_verifier.quote.structure import Quote, parse_quote
from dstack_verifier.quote.verify import CollateralMemo, TrustAnchor, verify_quote
from dstack_verifier.synth import SynthEvidence, make_evidence
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# verify_quote does real signature checks and runs dcap-qvl: fewer examples keep the file fast.
FUZZ_VERIFY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FORMATS = {
    "tdx-v4": {"tee": "tdx", "version": 4, "body": "td10"},
    "tdx-v5-td15": {"tee": "tdx", "version": 5, "body": "td15"},
    "sgx-v3": {"tee": "sgx"},
}
LENGTH_FIELDS = (
    "body_descriptor.size",
    "auth_data_size",
    "auth.outer_cert_data_size",
    "auth.qe_report_cert_data.qe_auth_data_size",
    "auth.qe_report_cert_data.cert_data_size",
    "auth.qe_auth_data_size",
    "auth.cert_data_size",
)


@cache
def evidence(fmt: str) -> SynthEvidence:
    return make_evidence(seed=f"fuzz-{fmt}", now=NOW, **FORMATS[fmt])


@cache
def length_spans(fmt: str) -> tuple[tuple[str, int, int], ...]:
    """(name, start, end) of every length prefix of the base quote."""
    return tuple((s.name, s.start, s.end) for s in parse_quote(evidence(fmt).quote).spans if s.name in LENGTH_FIELDS)


# -- properties ------------------------------------------------------------------------------------------------


def assert_clean_error(exc: InputError, size: int) -> None:
    text = exc.describe()
    assert text and "\n" not in text
    if exc.offset is not None:
        assert 0 <= exc.offset <= size, text


def parse_or_input_error(data: bytes) -> Quote | None:
    """The parser's contract. Returns the Quote, or None after checking the InputError is well-formed."""
    try:
        q = parse_quote(data)
    except InputError as exc:
        assert_clean_error(exc, len(data))
        return None
    assert q.raw == data
    assert 0 < q.signed_len <= q.used_len <= len(data)
    for span in q.spans:
        assert 0 <= span.start <= span.end <= len(data), span
    json.dumps(q.decoded())  # every decoded field is JSON-friendly
    json.dumps(q.span_map())
    return q


# -- mutations of a well-formed quote --------------------------------------------------------------------------


@st.composite
def mutated_quotes(draw: st.DrawFn) -> bytes:
    fmt = draw(st.sampled_from(sorted(FORMATS)))
    data = bytearray(evidence(fmt).quote)
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "length", "mixed"]))
    if kind in ("flip", "mixed"):
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
    if kind in ("length", "mixed"):
        _name, start, end = draw(st.sampled_from(length_spans(fmt)))
        size = end - start
        top = (1 << (8 * size)) - 1
        current = int.from_bytes(data[start:end], "little")
        value = draw(
            st.sampled_from(
                [0, 1, top, top - 1, MAX_FIELD_LEN, MAX_FIELD_LEN + 1, current + 1, max(current - 1, 0), len(data)]
                + ([0x7FFFFFFF, 0x80000000] if size == 4 else [])
            )
        )
        data[start:end] = (value & top).to_bytes(size, "little")
    if kind == "insert":
        i = draw(st.integers(0, len(data)))
        data[i:i] = draw(st.binary(min_size=1, max_size=64))
    if kind == "delete":
        i = draw(st.integers(0, len(data) - 1))
        del data[i : i + draw(st.integers(1, 64))]
    if kind in ("truncate", "mixed") and draw(st.booleans()):
        del data[draw(st.integers(0, len(data))) :]
    return bytes(data)


@FUZZ
@given(st.binary(max_size=6000))
def test_parse_random_bytes(data: bytes) -> None:
    parse_or_input_error(data)


@FUZZ
@given(st.binary(min_size=48, max_size=2000))
def test_parse_random_bytes_behind_a_valid_header(tail: bytes) -> None:
    """Random bytes behind each real header reach the body and auth data parsers, not just the header check."""
    for fmt in FORMATS:
        head = evidence(fmt).quote[:48]
        parse_or_input_error(head + tail)


@FUZZ
@given(mutated_quotes())
def test_parse_mutated_quotes(data: bytes) -> None:
    q = parse_or_input_error(data)
    if q is not None:
        try:
            check_quote(data, "fuzz")
        except InputError as exc:
            assert_clean_error(exc, len(data))
            assert exc.source == "fuzz"


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_truncation_of_each_format(fmt: str) -> None:
    quote = evidence(fmt).quote
    assert parse_or_input_error(quote) is not None
    for n in range(len(quote)):
        with pytest.raises(InputError) as info:
            parse_quote(quote[:n])
        assert_clean_error(info.value, n)
        assert info.value.field is not None and info.value.offset is not None


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_length_field_set_to_huge(fmt: str) -> None:
    quote = evidence(fmt).quote
    for name, start, end in length_spans(fmt):
        top = (1 << (8 * (end - start))) - 1  # a 2-byte length cannot exceed MAX_FIELD_LEN, only the data
        for value in {min(MAX_FIELD_LEN + 1, top), top}:
            data = quote[:start] + value.to_bytes(end - start, "little") + quote[end:]
            with pytest.raises(InputError) as info:
                parse_quote(data)
            assert_clean_error(info.value, len(data))
            assert info.value.field is not None, name


# -- evidence detection ----------------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
)
# Objects that look like each kind of evidence, with random values where the real ones would be.
evidence_like = st.one_of(
    st.fixed_dictionaries({"quote": json_values}, optional={"event_log": json_values, "vm_config": json_values}),
    st.fixed_dictionaries({"quote": st.text(alphabet="0123456789abcdefABCDEFx \n\t", max_size=400)}),
    st.dictionaries(st.sampled_from(COLLATERAL_KEYS), json_values, max_size=len(COLLATERAL_KEYS)),
    st.fixed_dictionaries({"schema": st.just(REPORT_SCHEMA), "inputs": json_values}),
    st.dictionaries(st.text(max_size=12), json_values, max_size=6),
)


def detect_or_input_error(data: bytes) -> Evidence | None:
    try:
        ev = detect(data, "fuzz")
    except InputError as exc:
        assert_clean_error(exc, len(data))
        assert exc.source == "fuzz"
        return None
    assert ev.kind in ("quote", "getquote", "attestation", "event-log", "app-compose", "certificate", "collateral",
                       "cloud-attestations",
                       "report", "recording")
    assert ev.data == data
    if ev.kind in ("quote", "getquote"):
        assert ev.quote is not None
    return ev


@FUZZ
@given(st.text(max_size=2000))
def test_detect_random_text(text: str) -> None:
    detect_or_input_error(text.encode())


@FUZZ
@given(st.binary(max_size=3000))
def test_detect_random_bytes(data: bytes) -> None:
    detect_or_input_error(data)


@FUZZ
@given(json_values | evidence_like, st.sampled_from([None, 0, 2]))
def test_detect_random_json(doc: Any, indent: int | None) -> None:
    ev = detect_or_input_error(json.dumps(doc, indent=indent).encode())
    if ev is not None and ev.kind == "report":
        try:
            replay_inputs(ev.json, "fuzz")
        except InputError as exc:
            assert_clean_error(exc, len(ev.data))


@FUZZ
@given(mutated_quotes(), st.sampled_from(["hex", "0x", "getquote", "spaced"]))
def test_detect_mutated_quote_in_each_wrapping(data: bytes, wrapping: str) -> None:
    digits = data.hex()
    text = {
        "hex": digits,
        "0x": "0x" + digits + "\n",
        "getquote": json.dumps({"quote": digits, "event_log": "[]"}),
        "spaced": "\n".join(digits[i : i + 50] for i in range(0, len(digits), 50)),
    }[wrapping]
    ev = detect_or_input_error(text.encode())
    if ev is not None:
        assert ev.quote == data


@FUZZ
@given(st.dictionaries(st.sampled_from(COLLATERAL_KEYS), json_values | st.text(max_size=20), max_size=9))
def test_collateral_from_dict(doc: dict[str, Any]) -> None:
    try:
        Collateral.from_dict(doc, "fuzz")
    except InputError as exc:
        assert_clean_error(exc, 0)
        assert exc.field in COLLATERAL_KEYS


# -- the verifier never raises ---------------------------------------------------------------------------------

_MEMO = CollateralMemo()


def verify_checks(fmt: str, data: bytes) -> list[Check]:
    ev = evidence(fmt)
    res = verify_quote(
        data,
        collateral=Collateral.from_dict(ev.collateral),
        anchor=TrustAnchor.from_der(ev.root_ca_der),
        now=ev.now,
        memo=_MEMO,
    )
    ids = [c.id for c in res.checks]
    assert ids[0] == "hardware.quote_structure"
    assert "hardware.tcb_status" in ids and "hardware.reference_engine" in ids
    for c in res.checks:
        assert c.summary and "\n" not in c.summary, c
        json.dumps(c.details, default=str)
    return res.checks


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_unmutated_quotes_pass(fmt: str) -> None:
    assert all(c.status is CheckStatus.PASS for c in verify_checks(fmt, evidence(fmt).quote))


# Certificates in the quote's PEM chain are parsed lazily by `cryptography`: a malformed subject, key or extension
# surfaces at first use, and must fail hardware.pck_chain rather than escape verify_quote.


def _pem(der: bytes) -> bytes:
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
    return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n".encode()


def _edit_chain_cert(quote: bytes, index: int, edit: Callable[[bytes], bytes]) -> bytes:
    """The quote with certificate `index` of its PCK chain edited in place (same DER length, same PEM length)."""
    pem = parse_quote(quote).pck_chain_pem()
    assert pem is not None
    cert = x509.load_pem_x509_certificates(pem)[index]
    old = cert.public_bytes(Encoding.PEM)
    der = cert.public_bytes(Encoding.DER)
    new = _pem(edit(der))
    assert len(new) == len(old) and quote.count(old) == 1
    return quote.replace(old, new)


def _bad_subject(der: bytes) -> bytes:  # invalid UTF-8 in the subject's UTF8String
    i = der.rindex(b"PKI (not Intel)")
    return der[:i] + b"\xff" + der[i + 1 :]


def _bad_key(der: bytes) -> bytes:  # the P-256 point is no longer on the curve
    i = der.index(bytes.fromhex("03420004")) + 4
    return der[:i] + bytes([der[i] ^ 1]) + der[i + 1 :]


def _bad_basic_constraints(der: bytes) -> bytes:  # cA BOOLEAN 0x01: not DER
    i = der.index(b"\x30\x06\x01\x01\xff", der.index(bytes.fromhex("551d13"))) + 4
    return der[:i] + b"\x01" + der[i + 1 :]


@pytest.mark.parametrize(
    ("index", "edit"),
    [(0, _bad_subject), (1, _bad_key), (1, _bad_basic_constraints)],
    ids=["leaf-subject", "intermediate-key", "intermediate-basic-constraints"],
)
def test_verify_hostile_certificate_in_the_quote(index: int, edit: Callable[[bytes], bytes]) -> None:
    quote = _edit_chain_cert(evidence("tdx-v4").quote, index, edit)
    assert parse_quote(quote)  # structurally still a quote
    by_id = {c.id: c for c in verify_checks("tdx-v4", quote)}
    assert by_id["hardware.pck_chain"].status is CheckStatus.FAIL


@FUZZ_VERIFY
@given(st.data())
def test_verify_mutated_quotes_never_raises(data: st.DataObject) -> None:
    quote = data.draw(mutated_quotes())
    fmt = data.draw(st.sampled_from(sorted(FORMATS)))
    checks = verify_checks(fmt, quote)
    by_id = {c.id: c for c in checks}
    if parse_or_input_error(quote) is None:
        assert by_id["hardware.quote_structure"].status is CheckStatus.FAIL
    if quote != evidence(fmt).quote:
        # A changed quote may still be genuine only if the change is outside what is signed and chained:
        # either way, our engine and dcap-qvl must agree about it.
        reference = by_id["hardware.reference_engine"]
        assert reference.status in (CheckStatus.PASS, CheckStatus.SKIP), reference.summary


@FUZZ_VERIFY
@given(st.binary(max_size=5000))
def test_verify_random_bytes_never_raises(data: bytes) -> None:
    checks = verify_checks("tdx-v4", data)
    assert checks[0].status is CheckStatus.FAIL


def _bad_name_tag(der: bytes) -> bytes:  # the SET around the subject's CN gets another tag: the DER does not parse
    i = der.rindex(bytes.fromhex("301706035504030c")) - 2
    assert der[i] == 0x31
    return der[:i] + b"\x2d" + der[i + 1 :]


@pytest.mark.parametrize("fmt", ["tdx-v4", "sgx-v3"])
def test_an_unreadable_root_copy_in_the_chain_is_left_aside(fmt: str) -> None:
    """As in dcap-qvl (webpki tries the trust anchor before the chain's other certificates, and parses those only
    when it tries them), a damaged copy of the root at the end of the PCK chain is not needed, so not fatal; the
    chain check names it. Found by the fuzz test below."""
    quote = _edit_chain_cert(evidence(fmt).quote, 2, _bad_name_tag)
    by_id = {c.id: c for c in verify_checks(fmt, quote)}
    chain = by_id["hardware.pck_chain"]
    assert chain.status is CheckStatus.PASS, chain.summary
    assert "left aside as unreadable: certificate 3 does not parse" in chain.summary
    assert chain.details["unreadable"][0].startswith("certificate 3 does not parse")
    assert by_id["hardware.reference_engine"].status is CheckStatus.PASS


def test_an_unreadable_intermediate_fails_the_chain_naming_it() -> None:
    quote = _edit_chain_cert(evidence("tdx-v4").quote, 1, _bad_name_tag)
    by_id = {c.id: c for c in verify_checks("tdx-v4", quote)}
    chain = by_id["hardware.pck_chain"]
    assert chain.status is CheckStatus.FAIL
    assert "no certificate of" in chain.summary and "certificate 2 does not parse" in chain.summary
    assert by_id["hardware.reference_engine"].status is CheckStatus.PASS  # dcap-qvl rejects it too
