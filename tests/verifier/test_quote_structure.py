"""Quote decoding: every field at the byte range dcap.md §2 gives it, the Trust Center field names, and InputError
(with field and offset) for every malformed or truncated quote.
"""

from __future__ import annotations

import itertools
import struct

import pytest
from dstack_verifier.errors import InputError
from dstack_verifier.quote.reader import FieldSpan
from dstack_verifier.quote.structure import Quote, parse_quote
from dstack_verifier.synth import SynthEvidence, build_pki, make_evidence
from dstack_verifier.synth.pki import DAY, YEAR

from tests.support.fixtures import fixture_path

NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
BODY = 48  # a v4 TD10 body starts right after the header

# dcap.md §2.4: TD report 1.0, offsets relative to the body.
TD10_LAYOUT = [
    ("tee_tcb_svn", 0, 16),
    ("mrseam", 16, 48),
    ("mrsignerseam", 64, 48),
    ("seamattributes", 112, 8),
    ("tdattributes", 120, 8),
    ("xfam", 128, 8),
    ("mrtd", 136, 48),
    ("mrconfig", 184, 48),
    ("mrowner", 232, 48),
    ("mrownerconfig", 280, 48),
    ("rtmr0", 328, 48),
    ("rtmr1", 376, 48),
    ("rtmr2", 424, 48),
    ("rtmr3", 472, 48),
    ("reportdata", 520, 64),
]
TRUST_CENTER_NAMES = [name for name, _, _ in TD10_LAYOUT]


# --- helpers ---------------------------------------------------------------------------------------------


def span(q: Quote, name: str) -> tuple[int, int]:
    found = [s for s in q.spans if s.name == name]
    assert len(found) == 1, f"{name}: {len(found)} spans"
    return found[0].start, found[0].end


def leaf_spans(spans: list[FieldSpan]) -> list[FieldSpan]:
    """Spans that contain no other span (a container such as the QE report holds its own fields)."""
    def contains(outer: FieldSpan, inner: FieldSpan) -> bool:
        return outer is not inner and outer.start <= inner.start and inner.end <= outer.end

    return sorted((s for s in spans if not any(contains(s, o) for o in spans)), key=lambda s: s.start)


def assert_tiles(spans: list[FieldSpan], start: int, end: int) -> None:
    assert spans, "no spans"
    assert spans[0].start == start
    for before, after in itertools.pairwise(spans):
        assert before.end == after.start, f"{before} then {after}: gap or overlap"
    assert spans[-1].end == end


def decode_error(data: bytes) -> InputError:
    with pytest.raises(InputError) as info:
        parse_quote(data)
    return info.value


# --- the real quote (dcap.md §2.7) ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def real() -> Quote:
    return parse_quote(fixture_path("dcap-qvl", "tdx_quote").read_bytes())


def test_real_quote_header_and_body_ranges(real: Quote) -> None:
    assert len(real.raw) == 5006
    assert (real.header.version, real.header.attestation_key_type, real.header.tee_type) == (4, 2, 0x81)
    assert span(real, "header.version") == (0, 2)
    assert span(real, "header.qe_vendor_id") == (12, 28)
    assert span(real, "header.user_data") == (28, 48)
    header = [s for s in real.spans if s.name.startswith("header.")]
    assert_tiles(sorted(header, key=lambda s: s.start), 0, 48)
    assert real.body.kind == "td10"
    assert real.body_type is None and real.body_size is None  # v4 has no body descriptor
    assert real.signed_len == 632
    assert real.signed_region == real.raw[:632]


@pytest.mark.parametrize(("name", "offset", "size"), TD10_LAYOUT, ids=[n for n, _, _ in TD10_LAYOUT])
def test_real_quote_td10_field_ranges(real: Quote, name: str, offset: int, size: int) -> None:
    start, end = span(real, f"body.{name}")
    assert (start, end) == (BODY + offset, BODY + offset + size)
    assert real.body[name] == real.raw[start:end]


def test_real_quote_auth_data_ranges(real: Quote) -> None:
    assert span(real, "auth_data_size") == (632, 636)
    assert span(real, "auth.signature") == (636, 700)
    assert span(real, "auth.attestation_key") == (700, 764)
    assert span(real, "auth.outer_cert_data_type") == (764, 766)
    assert real.auth.outer_cert_type == 6
    prefix = "auth.qe_report_cert_data"
    assert span(real, f"{prefix}.qe_report") == (770, 1154)
    assert span(real, f"{prefix}.qe_report.mr_signer") == (770 + 128, 770 + 160)
    assert span(real, f"{prefix}.qe_report.report_data") == (770 + 320, 1154)
    assert span(real, f"{prefix}.qe_report_signature") == (1154, 1218)
    assert span(real, f"{prefix}.qe_auth_data") == (1220, 1252)
    assert span(real, f"{prefix}.cert_data_type") == (1252, 1254)
    assert span(real, f"{prefix}.cert_data") == (1258, 4936)
    assert real.auth.cert_type == 5
    assert real.auth.qe_report.raw == real.raw[770:1154]
    assert real.auth.qe_auth_data == real.raw[1220:1252] == bytes(range(32))
    pem = real.pck_chain_pem()
    assert pem is not None and pem.startswith(b"-----BEGIN CERTIFICATE-----") and pem.count(b"BEGIN") == 3
    assert real.used_len == 4936
    assert len(real.raw) - real.used_len == 70
    assert real.raw[4936:] == bytes(70)


def test_real_quote_spans_tile_the_used_bytes(real: Quote) -> None:
    assert_tiles(leaf_spans(real.spans), 0, real.used_len)


def test_real_quote_decoded_names_and_values(real: Quote) -> None:
    d = real.decoded()
    body_keys = [k for k in d if k in TRUST_CENTER_NAMES]
    assert body_keys == TRUST_CENTER_NAMES
    assert d["tee_type"] == "TDX" and d["version"] == 4 and d["body_kind"] == "td10"
    assert d["mrtd"] == (
        "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
    )
    assert d["xfam"] == "e702060000000000"
    assert d["tdattributes"] == "0000001000000000"
    assert d["tee_tcb_svn"] == "06010300000000000000000000000000"
    assert d["rtmr0"].startswith("44c0197b")
    assert d["reportdata"].startswith("9a9d48e7") and len(d["reportdata"]) == 128
    assert d["qe_vendor_id"] == "939a7233f79c4ca9940a0db3957f0607"
    assert d["signed_length"] == 632 and d["quote_length"] == 5006 and d["trailing_bytes"] == 70
    assert d["qe_report"]["isv_prod_id"] == 2 and d["qe_report"]["isv_svn"] == 6
    assert not any(k.startswith("reserved") for k in d["qe_report"])
    assert d["cert_data_type"] == 5


def test_trailing_garbage_is_ignored(real: Quote) -> None:
    longer = parse_quote(real.raw + b"\xff" * 100)
    assert longer.used_len == real.used_len
    assert longer.decoded()["trailing_bytes"] == 170
    assert longer.body.fields == real.body.fields


# --- synthetic v5 and SGX quotes --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki():
    return build_pki("structure", issued_at=(NOW - YEAR) // DAY * DAY)


def evidence(pki, **kw) -> SynthEvidence:
    return make_evidence("structure", now=NOW, pki=pki, **kw)


FORMATS = [
    pytest.param({"version": 5, "body": "td10"}, "td10", 2, 638, id="v5-td10"),
    pytest.param({"version": 5, "body": "td15"}, "td15", 3, 702, id="v5-td15"),
    pytest.param({"version": 5, "body": "td15ex"}, "td15ex", 4, 939, id="v5-td15ex"),
    pytest.param({"tee": "sgx"}, "sgx", None, 432, id="sgx-v3"),
    pytest.param({}, "td10", None, 632, id="v4-td10"),
]


@pytest.mark.parametrize(("kw", "kind", "body_type", "signed"), FORMATS)
def test_synthetic_formats(pki, kw: dict, kind: str, body_type: int | None, signed: int) -> None:
    ev = evidence(pki, **kw)
    q = parse_quote(ev.quote)
    layout = ev.quote_builder.layout()
    assert q.body.kind == kind
    assert q.body_type == body_type
    assert q.signed_len == signed == layout.signed.stop
    assert q.used_len == len(ev.quote)
    # The spans tile the whole quote: no gap, no overlap.
    assert_tiles(leaf_spans(q.spans), 0, len(ev.quote))
    # Containers are only the QE report, and its fields tile it exactly.
    containers = [s for s in q.spans if s not in leaf_spans(q.spans)]
    assert [c.name.rsplit(".", 1)[-1] for c in containers] == ["qe_report"]
    inside = [s for s in q.spans if s.name.startswith(containers[0].name + ".")]
    assert_tiles(sorted(inside, key=lambda s: s.start), containers[0].start, containers[0].end)
    assert (containers[0].start, containers[0].end) == (layout.qe_report.start, layout.qe_report.stop)
    assert span(q, next(s.name for s in q.spans if s.name.endswith(".qe_auth_data"))) == (
        layout.qe_auth_data.start,
        layout.qe_auth_data.stop,
    )
    assert q.auth.signature == ev.quote[layout.signature]
    assert q.auth.attestation_key == ev.quote[layout.attestation_key]


def test_v5_body_descriptor_and_td15_fields(pki) -> None:
    svn2 = bytes([7, 1, 3]) + bytes(13)
    ev = evidence(pki, version=5, body="td15", report={"tee_tcb_svn2": svn2, "mr_service_td": b"\x5a" * 48})
    q = parse_quote(ev.quote)
    assert span(q, "body_descriptor.type") == (48, 50)
    assert span(q, "body_descriptor.size") == (50, 54)
    assert q.body_size == 648
    assert span(q, "body.tee_tcb_svn") == (54, 70)
    assert span(q, "body.reportdata") == (54 + 520, 54 + 584)
    assert span(q, "body.tee_tcb_svn2") == (54 + 584, 54 + 600)
    assert span(q, "body.mr_service_td") == (54 + 600, 54 + 648)
    assert q.body["tee_tcb_svn2"] == svn2
    d = q.decoded()
    assert d["mr_service_td"] == "5a" * 48 and d["body_type"] == 3


def test_td15ex_fields(pki) -> None:
    ev = evidence(pki, version=5, body="td15ex", report={"vmid": 7, "init_tee_fmspc": b"\x01" * 12})
    q = parse_quote(ev.quote)
    assert span(q, "body.vmid") == (54 + 648, 54 + 649)
    assert span(q, "body.cur_service_td_attributes") == (54 + 877, 54 + 885)
    assert q.body["vmid"] == 7
    assert q.body["init_tee_fmspc"] == b"\x01" * 12


def test_sgx_report_fields(pki) -> None:
    ev = evidence(pki, tee="sgx", report={"isv_prod_id": 0x1234, "isv_svn": 9, "misc_select": 5})
    q = parse_quote(ev.quote)
    assert q.tee_name == "SGX" and q.header.version == 3
    assert span(q, "body.mr_enclave") == (48 + 64, 48 + 96)
    assert span(q, "body.report_data") == (48 + 320, 432)
    assert (q.body["isv_prod_id"], q.body["isv_svn"], q.body["misc_select"]) == (0x1234, 9, 5)
    # v3 layout: the QE report follows the attestation key directly (dcap.md §2.5).
    assert span(q, "auth.qe_report") == (436 + 128, 436 + 512)
    assert q.auth.outer_cert_type is None


# --- malformed quotes ------------------------------------------------------------------------------------


def test_wrong_v5_body_size(pki) -> None:
    ev = evidence(pki, version=5, body="td15")
    ev.quote_builder.body_size_override = 584
    err = decode_error(ev.quote_builder.build())
    assert (err.field, err.offset) == ("body_descriptor.size", 50)
    assert "584" in err.message and "648" in err.message


def test_unknown_body_type(pki) -> None:
    ev = evidence(pki, version=5, body="td10")
    ev.quote_builder.body_type_override = 9
    err = decode_error(ev.quote_builder.build())
    assert (err.field, err.offset) == ("body_descriptor.type", 48)
    assert "unsupported body type 9" in err.message


@pytest.mark.parametrize(("tee", "body_type"), [("tdx", 1), ("sgx", 2), ("sgx", 3)])
def test_v5_body_of_the_other_tee(pki, tee: str, body_type: int) -> None:
    """A TDX header over an SGX report body (or the reverse) is refused: dcap-qvl rejects it too, and the TD checks
    would otherwise look for fields the body has not got."""
    ev = evidence(pki, version=5, body="td10")
    ev.quote_builder.body_type_override = body_type
    ev.quote_builder.body_size_override = {1: 384, 2: 584, 3: 648}[body_type]
    if tee == "sgx":
        ev.quote_builder.header.tee_type = 0
    raw = ev.quote_builder.build()
    err = decode_error(raw)
    assert (err.field, err.offset) == ("body_descriptor.type", 48)
    assert "does not fit TEE type" in err.message


def test_version_6(pki) -> None:
    ev = evidence(pki)
    ev.quote_builder.header.version = 6
    err = decode_error(ev.quote_builder.build())
    assert (err.field, err.offset) == ("header.version", 0)
    assert "version 6" in err.message


def test_v3_with_tdx_tee_type(pki) -> None:
    raw = bytearray(evidence(pki, tee="sgx").quote)
    raw[4:8] = struct.pack("<I", 0x81)
    err = decode_error(bytes(raw))
    assert (err.field, err.offset) == ("header.tee_type", 4)


def test_hostile_length_is_bounded(pki) -> None:
    ev = evidence(pki)
    raw = bytearray(ev.quote)
    raw[632:636] = struct.pack("<I", 0xFFFFFFF0)
    err = decode_error(bytes(raw))
    assert (err.field, err.offset) == ("auth_data_size", 632)
    assert "maximum" in err.message


@pytest.mark.parametrize("kw", [{}, {"version": 5, "body": "td15"}, {"tee": "sgx"}], ids=["v4", "v5-td15", "sgx"])
def test_every_truncation_raises_input_error(pki, kw: dict) -> None:
    raw = evidence(pki, **kw).quote
    for n in range(len(raw)):
        with pytest.raises(InputError) as info:
            parse_quote(raw[:n])
        err = info.value
        assert err.field, f"cut at {n}: no field"
        assert err.offset is not None and err.offset <= n, f"cut at {n}: offset {err.offset}"
        assert "offset" in str(err)


def test_truncation_inside_consistent_lengths_names_the_inner_field(pki) -> None:
    """Shrink auth_data_size and the outer size with the cut, so the short read happens inside the QE section."""
    ev = evidence(pki)
    layout = ev.quote_builder.layout()
    cut = layout.qe_auth_data.start + 10
    raw = bytearray(ev.quote[:cut])
    raw[632:636] = struct.pack("<I", cut - 636)
    raw[766:770] = struct.pack("<I", cut - 770)
    err = decode_error(bytes(raw))
    assert err.field == "auth.qe_report_cert_data.qe_auth_data"
    assert err.offset == layout.qe_auth_data.start
