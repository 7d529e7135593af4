"""The synthetic DCAP builder must produce evidence that the reference engine (dcap-qvl) accepts."""

from __future__ import annotations

import json

import dcap_qvl
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from dstack_verifier.synth import (
    SGX_EXTENSION_OID,
    PckPlatformInfo,
    PkiOptions,
    SynthEvidence,
    TcbLevel,
    build_pki,
    make_evidence,
)
from dstack_verifier.synth import der as synth_der
from dstack_verifier.synth.pki import DAY, DEFAULT_CPU_SVN, DEFAULT_PCE_SVN
from hypothesis import given, settings
from hypothesis import strategies as st

NOW = 1_767_225_600  # 2026-01-01T00:00:00Z

FORMATS = [
    pytest.param({"tee": "tdx", "version": 4, "body": "td10"}, "TD10", id="tdx-v4-td10"),
    pytest.param({"tee": "tdx", "version": 5, "body": "td10"}, "TD10", id="tdx-v5-td10"),
    pytest.param({"tee": "tdx", "version": 5, "body": "td15"}, "TD15", id="tdx-v5-td15"),
    pytest.param({"tee": "tdx", "version": 5, "body": "td15ex"}, "TD15Ex", id="tdx-v5-td15ex"),
    pytest.param({"tee": "sgx"}, "SgxEnclave", id="sgx-v3"),
]


def verify(ev: SynthEvidence, now: int | None = None, quote: bytes | None = None) -> dcap_qvl.VerifiedReport:
    collateral = dcap_qvl.QuoteCollateralV3.from_json(json.dumps(ev.collateral))
    return dcap_qvl.verify_with_root_ca(quote or ev.quote, collateral, ev.root_ca_der, ev.now if now is None else now)


def verify_error(ev: SynthEvidence, now: int | None = None, quote: bytes | None = None) -> str:
    with pytest.raises(ValueError) as info:
        verify(ev, now, quote)
    return str(info.value)


# --- acceptance ------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "variant"), FORMATS)
def test_default_evidence_is_up_to_date(fmt: dict, variant: str) -> None:
    ev = make_evidence(now=NOW, **fmt)
    result = verify(ev)
    assert result.status == "UpToDate"
    assert result.advisory_ids == []
    report = json.loads(result.to_json())
    assert variant in report["report"]
    assert report["qe_status"]["status"] == "UpToDate"
    assert result.ppid == ev.pki.pck_info.ppid


@pytest.mark.parametrize("tee", ["tdx", "sgx"])
def test_processor_ca_leaf_is_accepted(tee: str) -> None:
    ev = make_evidence(now=NOW, tee=tee, pki_options=PkiOptions(pck_ca_kind="processor"))
    assert dcap_qvl.parse_quote(ev.quote).ca() == "processor"
    assert verify(ev).status == "UpToDate"


def test_demo_names_and_crl_distribution_points_are_accepted() -> None:
    opts = PkiOptions(root_cn="Demo SGX Root CA — not Intel", crl_url_base="https://example.invalid/sgx")
    ev = make_evidence(now=NOW, pki_options=opts)
    assert ev.pki.root.cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value.startswith("Demo")
    assert verify(ev).status == "UpToDate"


def test_synthetic_root_is_not_the_intel_root() -> None:
    # The embedded Intel root must reject synthetic evidence outright.
    ev = make_evidence(now=NOW)
    with pytest.raises(ValueError):
        dcap_qvl.verify(ev.quote, dcap_qvl.QuoteCollateralV3.from_json(json.dumps(ev.collateral)), ev.now)


def test_other_seeds_root_is_rejected() -> None:
    ev = make_evidence(now=NOW)
    other = make_evidence(seed="other", now=NOW)
    collateral = dcap_qvl.QuoteCollateralV3.from_json(json.dumps(ev.collateral))
    with pytest.raises(ValueError):
        dcap_qvl.verify_with_root_ca(ev.quote, collateral, other.root_ca_der, ev.now)


@settings(max_examples=15, deadline=None)
@given(
    seed=st.text(min_size=1, max_size=12),
    report_data=st.binary(min_size=64, max_size=64),
    fmt=st.sampled_from([("tdx", 4, "td10"), ("tdx", 5, "td15"), ("sgx", 3, "sgx")]),
)
def test_arbitrary_seeds_and_report_data_verify(seed: str, report_data: bytes, fmt: tuple) -> None:
    tee, version, body = fmt
    ev = make_evidence(seed=seed, now=NOW, tee=tee, version=version, body=body, report={"report_data": report_data})
    assert verify(ev).status == "UpToDate"
    assert dcap_qvl.parse_quote(ev.quote).report.report_data == report_data


# --- configured statuses -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "status", "advisories"),
    [
        pytest.param(
            {"platform_status": "OutOfDate", "platform_advisories": ["INTEL-SA-01001", "INTEL-SA-01002"]},
            "OutOfDate",
            ["INTEL-SA-01001", "INTEL-SA-01002"],
            id="platform-outofdate",
        ),
        pytest.param(
            {"platform_status": "SWHardeningNeeded", "platform_advisories": ["INTEL-SA-00615"]},
            "SWHardeningNeeded",
            ["INTEL-SA-00615"],
            id="platform-swhardening",
        ),
        pytest.param(
            {
                "tee": "sgx",
                "platform_status": "ConfigurationAndSWHardeningNeeded",
                "platform_advisories": ["INTEL-SA-00289", "INTEL-SA-00615"],
            },
            "ConfigurationAndSWHardeningNeeded",
            ["INTEL-SA-00289", "INTEL-SA-00615"],
            id="sgx-config-swhardening",
        ),
        pytest.param(
            {"module_status": "OutOfDate", "module_advisories": ["INTEL-SA-02002"]},
            "OutOfDate",
            ["INTEL-SA-02002"],
            id="tdx-module-outofdate",
        ),
        pytest.param(
            {"qe_status": "OutOfDate", "qe_advisories": ["INTEL-SA-03003"]},
            "OutOfDate",
            ["INTEL-SA-03003"],
            id="qe-outofdate",
        ),
    ],
)
def test_configured_level_status_and_advisories(kwargs: dict, status: str, advisories: list[str]) -> None:
    result = verify(make_evidence(now=NOW, **kwargs))
    assert result.status == status
    assert result.advisory_ids == advisories


def test_revoked_platform_level_is_fatal() -> None:
    assert "Revoked" in verify_error(make_evidence(now=NOW, platform_status="Revoked"))


@pytest.mark.parametrize("body", ["td15", "td15ex"])
def test_td15_relaunch_advised(body: str) -> None:
    # Launched on an OutOfDate TCB, now running on an UpToDate one after a TD-preserving update.
    launch = bytes([5, 1, 2]) + bytes(13)
    current = bytes([5, 1, 3]) + bytes(13)
    levels = [
        TcbLevel(list(DEFAULT_CPU_SVN), DEFAULT_PCE_SVN, list(current)),
        TcbLevel(
            list(DEFAULT_CPU_SVN),
            DEFAULT_PCE_SVN,
            list(launch),
            status="OutOfDate",
            advisory_ids=["INTEL-SA-00111"],
        ),
    ]
    ev = make_evidence(
        now=NOW, version=5, body=body, tee_tcb_svn=launch, report={"tee_tcb_svn2": current}, tcb_levels=levels
    )
    result = verify(ev)
    assert result.status == "TDRelaunchAdvised"
    assert result.advisory_ids == ["INTEL-SA-00111"]


def test_no_matching_level_is_fatal() -> None:
    ev = make_evidence(now=NOW)
    for level in ev.collateral_builder.tcb_info.tcb_levels:
        level.pcesvn = DEFAULT_PCE_SVN + 1
    assert "No matching TCB level found" in verify_error(ev.rebuild())


# --- revocation and time ---------------------------------------------------------------


@pytest.mark.parametrize("tee", ["tdx", "sgx"])
def test_revoked_pck_fails(tee: str) -> None:
    assert "CertRevoked" in verify_error(make_evidence(now=NOW, tee=tee, revoke_pck=True))


def test_unrelated_revoked_serials_do_not_matter() -> None:
    ev = make_evidence(now=NOW, revoked_serials=[1, 2, 3])
    assert len(list(x509.load_der_x509_crl(bytes.fromhex(ev.collateral["pck_crl"])))) == 3
    assert verify(ev).status == "UpToDate"


def test_pck_crl_from_the_wrong_ca_fails() -> None:
    ev = make_evidence(now=NOW)
    ev.collateral_builder.pck_crl_issuer = "processor"
    assert "UnknownRevocationStatus" in verify_error(ev.rebuild())


def test_expired_collateral_fails() -> None:
    ev = make_evidence(now=NOW)
    assert "TCBInfo expired" in verify_error(ev, now=NOW + 31 * DAY)
    assert "issue date is in the future" in verify_error(ev, now=NOW - 2 * DAY)
    stale = make_evidence(now=NOW, collateral_issued=NOW - 40 * DAY)
    assert "TCBInfo expired" in verify_error(stale)


def test_expired_pck_crl_fails() -> None:
    ev = make_evidence(now=NOW)
    ev.collateral_builder.pck_crl.next_update = NOW  # nextUpdate is exclusive
    assert "CrlExpired" in verify_error(ev.rebuild())


def test_now_is_inside_every_window() -> None:
    ev = make_evidence(now=NOW)
    assert ev.now == NOW
    for doc in ("tcb_info", "qe_identity"):
        obj = json.loads(ev.collateral[doc])
        assert obj["issueDate"] <= "2026-01-01T00:00:00Z" < obj["nextUpdate"]
    for name in ("pck_crl", "root_ca_crl"):
        crl = x509.load_der_x509_crl(bytes.fromhex(ev.collateral[name]))
        assert crl.next_update_utc is not None and crl.next_update_utc.timestamp() > NOW


# --- tamper hooks ---------------------------------------------------------------------


def test_debug_td_is_rejected_when_signed_over() -> None:
    debug = ((1 << 28) | 1).to_bytes(8, "little")
    assert "Debug mode is enabled" in verify_error(make_evidence(now=NOW, report={"td_attributes": debug}))
    assert "SEPT_VE_DISABLE" in verify_error(make_evidence(now=NOW, report={"td_attributes": bytes(8)}))


def test_debug_sgx_enclave_is_rejected() -> None:
    attrs = bytes([0x07]) + bytes(15)
    assert "Debug mode is enabled" in verify_error(make_evidence(now=NOW, tee="sgx", report={"attributes": attrs}))


def test_post_signing_flips_hit_the_expected_checks() -> None:
    ev = make_evidence(now=NOW)
    layout = ev.quote_builder.layout()
    expected = {
        "signature": "ISV enclave report signature is invalid",
        "body": "ISV enclave report signature is invalid",
        "attestation_key": "QE report hash mismatch",
        "qe_report": "Signature is invalid for qe_report",
        "qe_report_signature": "Signature is invalid for qe_report",
        "qe_auth_data": "QE report hash mismatch",
    }
    for item, message in expected.items():
        tampered = bytearray(ev.quote)
        tampered[getattr(layout, item).start + 5] ^= 0x01
        assert message in verify_error(ev, quote=bytes(tampered)), item


def test_builder_hooks() -> None:
    ev = make_evidence(now=NOW)
    ev.quote_builder.qe_auth_data = bytes(31)
    assert "Invalid QE auth data length" in verify_error(ev.rebuild())

    ev = make_evidence(now=NOW, version=5)
    ev.quote_builder.body_size_override = 600
    assert "Invalid body size" in verify_error(ev.rebuild())

    ev = make_evidence(now=NOW)
    ev.quote_builder.trailing = bytes(70)  # real quotes are zero-padded; verifiers ignore it
    assert verify(ev.rebuild()).status == "UpToDate"

    ev = make_evidence(now=NOW)
    ev.collateral_builder.tcb_info.tdx_module_identities = []
    assert "No TDX module identity with id TDX_01" in verify_error(ev.rebuild())

    ev = make_evidence(now=NOW)
    ev.collateral_builder.qe_identity.mrsigner = bytes(32)
    assert "QE MRSIGNER mismatch" in verify_error(ev.rebuild())


def test_json_object_can_be_edited_before_signing() -> None:
    ev = make_evidence(now=NOW)
    obj = ev.collateral_builder.tcb_info.to_json()
    obj["fmspc"] = "000000000000"
    ev.collateral_builder.tcb_info = obj
    assert "Fmspc mismatch" in verify_error(ev.rebuild())


def test_tcb_info_whitespace_breaks_the_signature() -> None:
    ev = make_evidence(now=NOW)
    ev.collateral["tcb_info"] = ev.collateral["tcb_info"].replace(",", ", ", 1)
    assert "Signature is invalid for tcb_info" in verify_error(ev)


# --- structure --------------------------------------------------------------------


def test_collateral_shape_and_signatures() -> None:
    ev = make_evidence(now=NOW)
    c = ev.collateral
    assert set(c) == {
        "pck_crl_issuer_chain",
        "root_ca_crl",
        "pck_crl",
        "tcb_info_issuer_chain",
        "tcb_info",
        "tcb_info_signature",
        "qe_identity_issuer_chain",
        "qe_identity",
        "qe_identity_signature",
    }
    assert " " not in c["tcb_info"] and json.loads(c["tcb_info"])["id"] == "TDX"
    assert json.loads(c["qe_identity"])["id"] == "TD_QE"
    signer = x509.load_pem_x509_certificates(c["tcb_info_issuer_chain"].encode())[0].public_key()
    assert isinstance(signer, ec.EllipticCurvePublicKey)
    for doc in ("tcb_info", "qe_identity"):
        raw = bytes.fromhex(c[f"{doc}_signature"])
        assert len(raw) == 64
        sig = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        signer.verify(sig, c[doc].encode(), ec.ECDSA(hashes.SHA256()))
    for name in ("pck_crl", "root_ca_crl"):
        crl = x509.load_der_x509_crl(bytes.fromhex(c[name]))
        assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 1
    sgx = json.loads(make_evidence(now=NOW, tee="sgx").collateral["tcb_info"])
    assert sgx["id"] == "SGX" and "tdxModule" not in sgx


def test_quote_fields_and_pck_extension_round_trip() -> None:
    info = PckPlatformInfo(fmspc=bytes.fromhex("AABBCC000000"), pce_svn=300, cpu_svn=bytes([255] + [1] * 15))
    ev = make_evidence(now=NOW, pki_options=PkiOptions(pck_info=info), report={"mr_td": b"\x42" * 48})
    assert verify(ev).status == "UpToDate"
    quote = dcap_qvl.parse_quote(ev.quote)
    assert quote.fmspc() == "AABBCC000000"
    assert quote.ca() == "platform"
    assert quote.report.mr_td == b"\x42" * 48
    assert quote.cert_chain_pem_bytes() == ev.pki.pck_chain_pem().encode()
    ext = quote.pck_extension()
    assert (ext.cpu_svn, ext.pce_svn, ext.fmspc, ext.sgx_type) == (info.cpu_svn, 300, info.fmspc, 1)
    assert ext.ppid == ev.pki.pck_info.ppid
    assert ext.platform_instance_id == ev.pki.pck_info.platform_instance_id
    # The quote layout matches the offsets of Intel's own v4 quotes.
    layout = ev.quote_builder.layout()
    assert (layout.signature.start, layout.qe_report.start, layout.qe_auth_data.start) == (636, 770, 1220)
    assert ev.quote[layout.cert_data][-1:] == b"\x00"


def test_certificate_shapes_mirror_intel() -> None:
    pki = build_pki("shape", issued_at=NOW - 365 * DAY)
    root, ca, leaf = pki.root.cert, pki.platform_ca.cert, pki.pck.cert
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 1
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    for cert in (root, ca):
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
        assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    for cert in (leaf, pki.tcb_signing.cert):
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        assert usage.digital_signature and usage.content_commitment and not usage.key_cert_sign
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ext = leaf.extensions.get_extension_for_oid(x509.ObjectIdentifier(SGX_EXTENSION_OID))
    assert not ext.critical
    leaf.verify_directly_issued_by(ca)
    ca.verify_directly_issued_by(root)


def test_der_encoding() -> None:
    assert synth_der.integer(255) == bytes.fromhex("020200ff")
    assert synth_der.integer(0) == bytes.fromhex("020100")
    assert synth_der.integer(300) == bytes.fromhex("0202012c")
    assert synth_der.oid(SGX_EXTENSION_OID) == bytes.fromhex("06092a864886f84d010d01")
    assert synth_der.oid(f"{SGX_EXTENSION_OID}.2.18") == bytes.fromhex("060b2a864886f84d010d010212")
    assert synth_der.boolean(True) == b"\x01\x01\xff"
    assert synth_der.encode_length(200) == b"\x81\xc8"
    assert synth_der.encode_length(0x1234) == b"\x82\x12\x34"


# --- determinism ----------------------------------------------------------------------


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def test_same_seed_gives_the_same_pki() -> None:
    a = build_pki("det", issued_at=NOW - 365 * DAY)
    b = build_pki("det", issued_at=NOW - 365 * DAY)
    for name in ("root", "platform_ca", "pck", "tcb_signing"):
        ka, kb = getattr(a, name), getattr(b, name)
        assert ka.key.private_numbers() == kb.key.private_numbers()
        assert _der(ka.cert) == _der(kb.cert)
    c = build_pki("other", issued_at=NOW - 365 * DAY)
    assert a.root.key.private_numbers() != c.root.key.private_numbers()
    assert a.pck.serial != c.pck.serial


def test_same_inputs_give_byte_identical_evidence() -> None:
    for fmt in ({}, {"tee": "sgx"}, {"version": 5, "body": "td15ex"}):
        a = make_evidence(seed="repro", now=NOW, **fmt)
        b = make_evidence(seed="repro", now=NOW, **fmt)
        assert a.quote == b.quote
        assert a.collateral == b.collateral
        assert a.root_ca_der == b.root_ca_der
