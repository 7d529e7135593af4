"""Change every signed or bound item of a quote and its collateral, one at a time.

For each change: (a) the matching check of ours fails with a summary naming what failed, (b) the checks that rest
on it are `skip` naming the failed step, every other check passes, and (c) dcap-qvl rejects the same evidence, so
our `hardware.reference_engine` check passes (both engines agree the quote is invalid).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import dcap_qvl
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from dstack_verifier.model import CheckStatus
from dstack_verifier.quote.collateral import Collateral
from dstack_verifier.quote.verify import HardwareResult, TrustAnchor, verify_quote
from dstack_verifier.synth import (
    CertifiedKey,
    CrlSpec,
    IsvLevel,
    SynthEvidence,
    SynthPki,
    build_pki,
    derive_private_key,
    make_crl,
    make_evidence,
    sign_raw,
)
from dstack_verifier.synth.pki import DAY, YEAR, crl_der

NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
SEED = "tamper"
TD_ATTR_SEPT_VE_DISABLE = 1 << 28

QS = "hardware.quote_structure"
TDA = "hardware.td_attributes"
PCK = "hardware.pck_chain"
COLSIG = "hardware.collateral_signatures"
REV = "hardware.revocation"
QE = "hardware.qe_report"
SIG = "hardware.quote_signature"
TCB = "hardware.tcb_status"
FRESH = "hardware.collateral_freshness"
REF = "hardware.reference_engine"
ALL_CHECKS = [QS, TDA, PCK, COLSIG, REV, QE, SIG, TCB, FRESH, REF]

# What each step rests on (verify.py's pipeline); a fatal failure skips everything downstream of it.
NEEDS = {
    TDA: [QS],
    PCK: [QS],
    COLSIG: [QS],
    REV: [PCK],
    QE: [PCK],
    SIG: [QE],
    TCB: [REV, COLSIG, SIG],
    FRESH: [QS],
    REF: [QS],
}


def downstream(failed: str) -> set[str]:
    out: set[str] = set()
    changed = True
    while changed:
        changed = False
        for check, needs in NEEDS.items():
            if check not in out and any(n == failed or n in out for n in needs):
                out.add(check)
                changed = True
    return out


# --- evidence surgery ------------------------------------------------------------------------------------


def flip(data: bytes, at: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[at] ^= mask
    return bytes(out)


def flip_hex(text: str, at: int = 0) -> str:
    return flip(bytes.fromhex(text), at).hex()


def with_collateral(ev: SynthEvidence, **items: str) -> SynthEvidence:
    return replace(ev, collateral={**ev.collateral, **items})


def with_quote_bytes(ev: SynthEvidence, fn: Callable[[bytes, Any], bytes]) -> SynthEvidence:
    quote, layout = ev.quote_builder.build_with_layout()
    return replace(ev, quote=fn(quote, layout))


def reissue(
    cert: x509.Certificate,
    signer: ec.EllipticCurvePrivateKey,
    *,
    issuer: x509.Name | None = None,
    not_before: int | None = None,
    not_after: int | None = None,
    ca: bool | None = None,
) -> x509.Certificate:
    """The same certificate (subject, key, serial, extensions), changed as asked and signed by `signer`."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(issuer or cert.issuer)
        .public_key(cert.public_key())
        .serial_number(cert.serial_number)
        .not_valid_before(datetime.fromtimestamp(not_before, UTC) if not_before else cert.not_valid_before_utc)
        .not_valid_after(datetime.fromtimestamp(not_after, UTC) if not_after else cert.not_valid_after_utc)
    )
    for ext in cert.extensions:
        value = ext.value
        if ca is not None and isinstance(value, x509.BasicConstraints):
            value = x509.BasicConstraints(ca=ca, path_length=0 if ca else None)
        builder = builder.add_extension(value, critical=ext.critical)
    return builder.sign(signer, hashes.SHA256(), ecdsa_deterministic=True)


def pem(cert: x509.Certificate) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.PEM).decode()


def with_pck_chain(ev: SynthEvidence, leaf: x509.Certificate, ca: x509.Certificate | None = None) -> SynthEvidence:
    pki = ev.pki
    ev.quote_builder.pck_chain_pem = pem(leaf) + pem(ca or pki.pck_ca.cert) + pki.root.pem
    return ev.rebuild()


def foreign_key(label: str) -> ec.EllipticCurvePrivateKey:
    return derive_private_key("someone-else", label)


# --- the cases ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    fails: str  # the check id that must fail
    summary: str  # regex the failing check's summary must match
    qvl: str  # regex dcap-qvl's error must match
    make: dict[str, Any] = field(default_factory=dict)  # make_evidence arguments
    tamper: Callable[[SynthEvidence, SynthPki], SynthEvidence] = lambda ev, other: ev
    also_fail: tuple[str, ...] = ()  # further checks that fail for the same change
    code: str | None = None  # the webpki-style error code in the failing check's details


def _report_data(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    return with_quote_bytes(ev, lambda q, lay: flip(q, lay.body.start + 520 + 5))


def _td_attributes_pks(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    # Bit 30 (PKS) is allowed by the TD attribute policy: only the signature can catch this change.
    return with_quote_bytes(ev, lambda q, lay: flip(q, lay.body.start + 120 + 3, 0x40))


def _td_attributes_debug(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    return with_quote_bytes(ev, lambda q, lay: flip(q, lay.body.start + 120, 0x01))


def _user_data(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    return with_quote_bytes(ev, lambda q, lay: flip(q, 28 + 17))


def _quote_signature(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    return with_quote_bytes(ev, lambda q, lay: flip(q, lay.signature.start + 40))


def _attestation_key(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    # Another valid key that signs the quote: only the QE report's binding of the key catches the swap.
    bound = ev.quote[ev.quote_builder.layout().qe_report][320:]
    ev.quote_builder.attestation_key = foreign_key("attestation-key")
    ev.quote_builder.qe_report_data_override = bound
    return ev.rebuild()


def _attestation_key_byte(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    return with_quote_bytes(ev, lambda q, lay: flip(q, lay.attestation_key.start + 63))


def _qe_report_byte(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    return with_quote_bytes(ev, lambda q, lay: flip(q, lay.qe_report.start + 258))  # isv_svn


def _qe_report_signature(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    return with_quote_bytes(ev, lambda q, lay: flip(q, lay.qe_report_signature.start + 1))


def _qe_auth_data(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    return with_quote_bytes(ev, lambda q, lay: flip(q, lay.qe_auth_data.start + 31))


def _pck_leaf_other_signer(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    return with_pck_chain(ev, reissue(ev.pki.pck.cert, foreign_key("pck-ca")))


def _pck_ca_not_ca(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    not_ca = reissue(ev.pki.pck_ca.cert, ev.pki.root.key, ca=False)
    return with_pck_chain(ev, ev.pki.pck.cert, not_ca)


def _pck_leaf_is_a_ca(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    return with_pck_chain(ev, reissue(ev.pki.pck.cert, ev.pki.pck_ca.key, ca=True))


def _pck_leaf_expired(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    leaf = reissue(ev.pki.pck.cert, ev.pki.pck_ca.key, not_before=NOW - 2 * YEAR, not_after=NOW - DAY)
    return with_pck_chain(ev, leaf)


def _revoke_pck_ca(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    ev.collateral_builder.root_crl = replace(ev.collateral_builder.root_crl, revoked_serials=[ev.pki.pck_ca.serial])
    return ev.rebuild()


def _crl_by(issuer: CertifiedKey, key: ec.EllipticCurvePrivateKey, spec: CrlSpec) -> str:
    crl = make_crl(CertifiedKey(key=key, cert=issuer.cert), this_update=spec.this_update,
                   next_update=spec.next_update)
    return crl_der(crl).hex()


def _pck_crl_wrong_key(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    return with_collateral(ev, pck_crl=_crl_by(ev.pki.pck_ca, foreign_key("pck-crl"), ev.collateral_builder.pck_crl))


def _pck_crl_wrong_ca(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    ev.collateral_builder.pck_crl_issuer = "processor"
    return ev.rebuild()


def _root_crl_expired(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    ev.collateral_builder.root_crl = CrlSpec(this_update=NOW - 400 * DAY, next_update=NOW - DAY)
    return ev.rebuild()


def _root_crl_wrong_key(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    crl = _crl_by(ev.pki.root, foreign_key("root-crl"), ev.collateral_builder.root_crl)
    return with_collateral(ev, root_ca_crl=crl)


def _tcb_info_whitespace(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    text = ev.collateral["tcb_info"]
    assert json.loads(text.replace(",", ", ", 1)) == json.loads(text)
    return with_collateral(ev, tcb_info=text.replace(",", ", ", 1))


def _tcb_info_signature(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    return with_collateral(ev, tcb_info_signature=flip_hex(ev.collateral["tcb_info_signature"], 20))


def _qe_identity_signature(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    return with_collateral(ev, qe_identity_signature=flip_hex(ev.collateral["qe_identity_signature"], 50))


def _tcb_signer_other_root(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    # Signed correctly, but by a TCB signing cert (same names) that chains to another root.
    text = ev.collateral["tcb_info"]
    return with_collateral(
        ev,
        tcb_info_signature=sign_raw(other.tcb_signing.key, text.encode()).hex(),
        tcb_info_issuer_chain=other.tcb_signing.pem + other.root.pem,
    )


def _qe_mrsigner(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    ev.collateral_builder.qe_identity.mrsigner = bytes(32)
    return ev.rebuild()


def _qe_isvprodid(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    ev.collateral_builder.qe_identity.isvprodid = 1
    return ev.rebuild()


def _fmspc(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    ev.collateral_builder.tcb_info.fmspc = bytes.fromhex("00906ED50000")
    return ev.rebuild()


def _no_matching_level(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    # Every level (the floor included) now needs SGX component 01 one above what the PCK certifies.
    need = ev.pki.pck_info.cpu_svn[0] + 1
    for level in ev.collateral_builder.tcb_info.tcb_levels:
        level.sgx_components = [need, *level.sgx_components[1:]]
    return ev.rebuild()


def _module_identity_missing(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    ev.collateral_builder.tcb_info.tdx_module_identities = []
    return ev.rebuild()


def _module_mrsigner(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    ev.collateral_builder.tcb_info.tdx_module_identities[0].mrsigner = b"\x11" * 48
    return ev.rebuild()


def _qe_identity_of_sgx(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    ev.collateral_builder.qe_identity.id = "QE"
    return ev.rebuild()


def _tcb_info_future(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    ev.collateral_builder.tcb_info.issue_date = NOW + 3600
    return ev.rebuild()


def _tcb_info_expired(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    ev.collateral_builder.tcb_info.issue_date = NOW - 40 * DAY
    ev.collateral_builder.tcb_info.next_update = NOW - 10 * DAY
    return ev.rebuild()


def _qe_identity_expired(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    ev.collateral_builder.qe_identity.issue_date = NOW - 40 * DAY
    ev.collateral_builder.qe_identity.next_update = NOW - 1
    return ev.rebuild()


def _pck_leaf_not_yet_valid(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    return with_pck_chain(ev, reissue(ev.pki.pck.cert, ev.pki.pck_ca.key, not_before=NOW + DAY))


def _inner_cert_type(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    ev.quote_builder.inner_cert_type = 4
    return ev.rebuild()


def _revoke_tcb_signing(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    spec = ev.collateral_builder.root_crl
    ev.collateral_builder.root_crl = replace(spec, revoked_serials=[ev.pki.tcb_signing.serial])
    return ev.rebuild()


def _pck_crl_ends_now(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    ev.collateral_builder.pck_crl = CrlSpec(this_update=NOW - 20 * DAY, next_update=NOW)  # nextUpdate is exclusive
    return ev.rebuild()


def _tcb_signing_expired(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    signing = reissue(ev.pki.tcb_signing.cert, ev.pki.root.key, not_after=NOW - DAY)
    chain = pem(signing) + ev.pki.root.pem
    return with_collateral(ev, tcb_info_issuer_chain=chain)


def _unknown_status(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    ev.collateral_builder.tcb_info.tcb_levels[-1].status = "Bogus"
    return ev.rebuild()


def _qe_debug(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    qe = ev.quote_builder.qe_report
    ev.quote_builder.qe_report = replace(qe, attributes=bytes([qe.attributes[0] | 0x02]) + qe.attributes[1:])
    return ev.rebuild()


def _qe_miscselect(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    ev.quote_builder.qe_report = replace(ev.quote_builder.qe_report, misc_select=1)
    return ev.rebuild()


def _qe_attributes(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    qe = ev.quote_builder.qe_report
    ev.quote_builder.qe_report = replace(qe, attributes=qe.attributes[:1] + b"\x01" + qe.attributes[2:])
    return ev.rebuild()


def _qe_isvsvn_low(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    ev.collateral_builder.qe_identity.tcb_levels = [IsvLevel(isvsvn=9)]
    return ev.rebuild()


def _qe_auth_data_short(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    ev.quote_builder.qe_auth_data = bytes(16)  # correctly hashed into the QE report, but not 32 bytes
    return ev.rebuild()


def _module_isvsvn_low(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    ev.collateral_builder.tcb_info.tdx_module_identities[0].tcb_levels = [IsvLevel(isvsvn=6)]
    return ev.rebuild()


def _seam_mask_zero(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    ev.collateral_builder.tcb_info.tdx_module_identities[0].attributes_mask = bytes(8)
    return ev.rebuild()


def _tcb_info_of_sgx(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    ev.collateral_builder.tcb_info.tee = "SGX"
    return ev.rebuild()


def _vendor_id(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    return with_quote_bytes(ev, lambda q, lay: flip(q, 12 + 3))


def _key_type(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    ev.quote_builder.header.attestation_key_type = 3
    return ev.rebuild()


def _body_size(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    ev.quote_builder.body_size_override = 584
    return ev.rebuild()


def _truncated(ev: SynthEvidence, other: SynthPki) -> SynthEvidence:
    return replace(ev, quote=ev.quote[:1000])


def _td_attrs(*bits: int) -> dict[str, Any]:
    value = 0
    for bit in bits:
        value |= 1 << bit
    return {"report": {"td_attributes": value.to_bytes(8, "little")}}


CASES: dict[str, Case] = {
    # --- the quote: header, body and signature -------------------------------------------------------------
    "report-data-byte": Case(SIG, r"quote signature over bytes 0\.\.632 does not verify",
                             "ISV enclave report signature is invalid", tamper=_report_data),
    "td-attributes-byte": Case(SIG, r"quote signature .* does not verify", "ISV enclave report signature is invalid",
                               tamper=_td_attributes_pks),
    "td-attributes-debug-after-signing": Case(
        SIG, r"quote signature .* does not verify", "ISV enclave report signature is invalid",
        tamper=_td_attributes_debug, also_fail=(TDA,)),
    "header-user-data": Case(SIG, r"quote signature .* does not verify", "ISV enclave report signature is invalid",
                             tamper=_user_data),
    "quote-signature": Case(SIG, r"quote signature .* does not verify", "ISV enclave report signature is invalid",
                            tamper=_quote_signature),
    "v5-td15-body-byte": Case(SIG, r"quote signature over bytes 0\.\.702 does not verify",
                              "ISV enclave report signature is invalid", make={"version": 5, "body": "td15"},
                              tamper=_report_data),
    "sgx-report-data-byte": Case(SIG, r"quote signature over bytes 0\.\.432 does not verify",
                                 "ISV enclave report signature is invalid", make={"tee": "sgx"},
                                 tamper=lambda ev, o: with_quote_bytes(ev, lambda q, lay: flip(q, 48 + 330))),
    # --- the attestation key and the QE report ------------------------------------------------------------
    "attestation-key-swapped": Case(QE, r"QE report data does not bind the attestation key",
                                    "QE report hash mismatch", tamper=_attestation_key),
    "attestation-key-byte": Case(QE, r"QE report data does not bind the attestation key", "QE report hash mismatch",
                                 tamper=_attestation_key_byte),
    "qe-report-byte": Case(QE, r"QE report signature does not verify with the PCK key of 'Test SGX PCK Certificate'",
                           "Signature is invalid for qe_report", tamper=_qe_report_byte),
    "qe-report-signature": Case(QE, r"QE report signature does not verify", "Signature is invalid for qe_report",
                                tamper=_qe_report_signature),
    "qe-auth-data": Case(QE, r"QE report data does not bind the attestation key", "QE report hash mismatch",
                         tamper=_qe_auth_data),
    # --- the PCK chain and the CRLs -----------------------------------------------------------------------------
    "pck-leaf-other-signer": Case(PCK, r"PCK chain: 'Test SGX PCK Certificate' .*no certificate of .*PCK Platform "
                                       r"CA.* verifies its signature", "InvalidSignatureForPublicKey",
                                  tamper=_pck_leaf_other_signer),
    "pck-ca-not-a-ca": Case(PCK, r"PCK chain: 'Test SGX PCK Platform CA' .*is not a CA", "EndEntityUsedAsCa",
                            tamper=_pck_ca_not_ca, code="EndEntityUsedAsCa"),
    "pck-leaf-is-a-ca": Case(PCK, r"PCK chain: 'Test SGX PCK Certificate' .*is a CA certificate, used as the end "
                                  r"entity", "CaUsedAsEndEntity", tamper=_pck_leaf_is_a_ca, code="CaUsedAsEndEntity"),
    "pck-leaf-expired": Case(PCK, r"PCK chain: 'Test SGX PCK Certificate' .*expired at",
                             "CertExpired", tamper=_pck_leaf_expired, code="CertExpired"),
    "pck-leaf-not-yet-valid": Case(PCK, r"PCK chain: 'Test SGX PCK Certificate' .*is not valid before",
                                   "CertNotValidYet", tamper=_pck_leaf_not_yet_valid, code="CertNotValidYet"),
    "pck-cert-data-type-4": Case(PCK, r"unsupported PCK certification data type 4",
                                 "Unsupported DCAP PCK cert format", tamper=_inner_cert_type),
    "pck-leaf-revoked": Case(REV, r"PCK chain: 'Test SGX PCK Certificate' .*is revoked by the CRL of "
                                  r"CN=Test SGX PCK Platform CA", "CertRevoked", make={"revoke_pck": True},
                             code="CertRevoked"),
    "pck-ca-revoked": Case(REV, r"PCK chain: 'Test SGX PCK Platform CA' .*is revoked by the CRL of CN=Test SGX Root CA",
                           "CertRevoked", tamper=_revoke_pck_ca, code="CertRevoked"),
    "tcb-signing-cert-revoked": Case(REV, r"TCB Info issuer chain: 'Test SGX TCB Signing' .*is revoked by the CRL of "
                                          r"CN=Test SGX Root CA", "CertRevoked", tamper=_revoke_tcb_signing),
    "pck-crl-wrong-key": Case(REV, r"PCK chain: the CRL of CN=Test SGX PCK Platform CA.* is not signed by 'Test SGX "
                                   r"PCK Platform CA'", "InvalidCrlSignatureForPublicKey", tamper=_pck_crl_wrong_key,
                              code="InvalidCrlSignatureForPublicKey"),
    "pck-crl-wrong-ca": Case(REV, r"PCK chain: no CRL from CN=Test SGX PCK Platform CA.* to check 'Test SGX PCK "
                                  r"Certificate'", "UnknownRevocationStatus", tamper=_pck_crl_wrong_ca,
                             code="UnknownRevocationStatus"),
    "pck-crl-is-root-crl": Case(REV, r"PCK chain: no CRL from CN=Test SGX PCK Platform CA", "UnknownRevocationStatus",
                                tamper=lambda ev, o: with_collateral(ev, pck_crl=ev.collateral["root_ca_crl"])),
    "pck-crl-next-update-is-now": Case(REV, r"PCK chain: the CRL of CN=Test SGX PCK Platform CA.* expired at",
                                       "CrlExpired", tamper=_pck_crl_ends_now, also_fail=(FRESH,), code="CrlExpired"),
    "root-crl-expired": Case(REV, r"root CA CRL: the CRL of CN=Test SGX Root CA.* expired at", "CrlExpired",
                             tamper=_root_crl_expired, also_fail=(FRESH,), code="CrlExpired"),
    "root-crl-wrong-key": Case(REV, r"root CA CRL: the CRL of CN=Test SGX Root CA.* is not signed by 'Test SGX Root "
                                    r"CA'", "InvalidCrlSignatureForPublicKey", tamper=_root_crl_wrong_key),
    "root-crl-is-pck-crl": Case(REV, r"the root CA CRL is issued by CN=Test SGX PCK Platform CA.*not by the trust "
                                     r"anchor", "Failed to parse root CA CRL",
                                tamper=lambda ev, o: with_collateral(ev, root_ca_crl=ev.collateral["pck_crl"])),
    # --- TCB Info and QE Identity signatures ----------------------------------------------------------------------
    "tcb-info-whitespace": Case(COLSIG, r"TCB Info signature does not verify with the key of 'Test SGX TCB Signing'",
                                "Signature is invalid for tcb_info", tamper=_tcb_info_whitespace),
    "tcb-info-signature-byte": Case(COLSIG, r"TCB Info signature does not verify", "Signature is invalid for tcb_info",
                                    tamper=_tcb_info_signature),
    "qe-identity-signature-byte": Case(COLSIG, r"QE Identity signature does not verify",
                                       "Signature is invalid for qe_identity", tamper=_qe_identity_signature),
    "tcb-signer-other-root": Case(COLSIG, r"TCB Info issuer chain: .*not issued by the trust anchor",
                                  "Failed to verify certificate chain", tamper=_tcb_signer_other_root),
    "tcb-signing-cert-expired": Case(COLSIG, r"TCB Info issuer chain: 'Test SGX TCB Signing' .*expired at",
                                     "CertExpired", tamper=_tcb_signing_expired),
    "tcb-info-unknown-status": Case(COLSIG, r"TCB Info does not parse: .*tcbStatus", "Failed to decode TcbInfo",
                                    tamper=_unknown_status, also_fail=(FRESH,)),
    "qe-identity-of-sgx-on-tdx": Case(COLSIG, r"QE Identity is QE v2; a TDX quote needs TD_QE",
                                      "Unsupported QE Identity id/version", tamper=_qe_identity_of_sgx),
    # --- TCB evaluation ----------------------------------------------------------------------------------------------
    "qe-mrsigner": Case(TCB, r"QE MRSIGNER mismatch: expected 0{64}, got", "MRSIGNER", tamper=_qe_mrsigner),
    "qe-isvprodid": Case(TCB, r"QE ISVPRODID mismatch: expected 1, got 2", "ISVPRODID", tamper=_qe_isvprodid),
    "qe-debug": Case(TCB, r"the QE is a debug enclave", "Debug mode is enabled", tamper=_qe_debug),
    "qe-miscselect": Case(TCB, r"QE MISCSELECT mismatch", "MISCSELECT", tamper=_qe_miscselect),
    "qe-attributes": Case(TCB, r"QE ATTRIBUTES mismatch at byte 1", "ATTRIBUTES", tamper=_qe_attributes),
    "qe-isvsvn-below-minimum": Case(TCB, r"QE ISVSVN 8 is below the minimum 9", "QE ISVSVN 8 is below",
                                    tamper=_qe_isvsvn_low),
    "qe-auth-data-16-bytes": Case(QE, r"QE auth data is 16 bytes", "QE auth data", tamper=_qe_auth_data_short),
    "fmspc-mismatch": Case(TCB, r"FMSPC mismatch: PCK certificate 10C06F000000, TCB Info 00906ED50000",
                           "Fmspc mismatch", tamper=_fmspc),
    "no-matching-tcb-level": Case(TCB, r"no matching TCB level: .*SGX component 01 is 4, the level needs 5",
                                  "No matching TCB level found", tamper=_no_matching_level),
    "tdx-module-identity-missing": Case(TCB, r"no TDX module identity with id TDX_01", "TDX_01",
                                        tamper=_module_identity_missing),
    "tdx-module-mrsigner": Case(TCB, r"TDX module MRSIGNER mismatch", "MRSIGNER", tamper=_module_mrsigner),
    "tdx-module-isvsvn-below-minimum": Case(TCB, r"TDX module ISVSVN 5 is below the minimum 6",
                                            "TDX module ISVSVN 5 is below", tamper=_module_isvsvn_low),
    "seam-attributes-mismatch": Case(TCB, r"SEAMATTRIBUTES mismatch at byte 0", "SEAMATTRIBUTES",
                                     make={"report": {"seam_attributes": b"\x01" + bytes(7)}}),
    "seam-attributes-outside-mask": Case(TCB, r"SEAMATTRIBUTES has bits set outside the mask", "outside",
                                         make={"report": {"seam_attributes": b"\x01" + bytes(7)}},
                                         tamper=_seam_mask_zero),
    "tcb-info-of-sgx-on-tdx": Case(TCB, r"a TDX quote needs TDX TCB Info v3\+, the collateral has SGX v3",
                                   "TDX quote with non-TDX TCB info", tamper=_tcb_info_of_sgx),
    "revoked-tcb-level": Case(TCB, r"TCB status is Revoked", "Revoked", make={"platform_status": "Revoked"}),
    "revoked-qe-level": Case(TCB, r"TCB status is Revoked", "Revoked", make={"qe_status": "Revoked"}),
    "revoked-tdx-module-level": Case(TCB, r"TCB status is Revoked", "Revoked", make={"module_status": "Revoked"}),
    # --- TD attributes (signed: only the policy can catch them) --------------------------------------------------
    "debug-td": Case(TDA, r"DEBUG is set", "Debug mode is enabled", make=_td_attrs(0, 28)),
    "sept-ve-disable-off": Case(TDA, r"SEPT_VE_DISABLE is not set", "SEPT_VE_DISABLE is not enabled",
                                make=_td_attrs()),
    "migratable-on": Case(TDA, r"MIGRATABLE is set", "TD migration is enabled", make=_td_attrs(28, 29)),
    "td-profiling": Case(TDA, r"profiling", "TD profiling is enabled", make=_td_attrs(28, 4)),
    "td-reserved-bit": Case(TDA, r"reserved bits are set \(0x0000000000000002\)", "Reserved bits",
                            make=_td_attrs(28, 1)),
    "td-servtd-ext": Case(TDA, r"SERVTD_EXT is set", "SERVTD_EXT", make=_td_attrs(28, 17)),
    "td15-mr-service-td": Case(TDA, r"MR_SERVICE_TD is set", "Invalid MR service TD",
                               make={"version": 5, "body": "td15", "report": {"mr_service_td": b"\x01" * 48}}),
    "sgx-debug-enclave": Case(TDA, r"debug enclave", "Debug mode is enabled",
                              make={"tee": "sgx", "report": {"attributes": bytes([0x07]) + bytes(15)}}),
    # --- collateral dates ------------------------------------------------------------------------------------------
    "tcb-info-issued-in-future": Case(FRESH, r"TCB Info is issued in the future", "issue date is in the future",
                                      tamper=_tcb_info_future),
    "tcb-info-expired": Case(FRESH, r"TCB Info expired at", "TCBInfo expired", tamper=_tcb_info_expired),
    "qe-identity-expired": Case(FRESH, r"QE Identity expired at", "QE Identity expired", tamper=_qe_identity_expired),
    # --- structure and header policy (everything else rests on these) ------------------------------------------
    "qe-vendor-id": Case(QS, r"unknown QE vendor ID", "Unknown QE vendor ID", tamper=_vendor_id),
    "attestation-key-type-3": Case(QS, r"unsupported attestation key type 3",
                                   "Unsupported DCAP attestation key type", tamper=_key_type),
    "v5-wrong-body-size": Case(QS, r"field body_descriptor.size, offset 50: body size 584",
                               "Failed to decode quote", make={"version": 5, "body": "td15"}, tamper=_body_size),
    "truncated": Case(QS, r"does not decode: .*truncated", "Failed to decode quote", tamper=_truncated),
}


# --- running both engines ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki() -> SynthPki:
    return build_pki(SEED, issued_at=(NOW - YEAR) // DAY * DAY)


@pytest.fixture(scope="module")
def other_pki() -> SynthPki:
    # Same names, different keys: a look-alike PKI that must not be trusted.
    return build_pki("someone-else", issued_at=(NOW - YEAR) // DAY * DAY)


def ours(ev: SynthEvidence) -> HardwareResult:
    return verify_quote(
        ev.quote,
        collateral=Collateral.from_dict(ev.collateral),
        anchor=TrustAnchor.from_der(ev.root_ca_der),
        now=ev.now,
    )


def theirs(ev: SynthEvidence) -> str:
    """dcap-qvl's error for the evidence (fails the test when dcap-qvl accepts it)."""
    collateral = dcap_qvl.QuoteCollateralV3.from_json(json.dumps(ev.collateral))
    with pytest.raises(ValueError) as info:
        dcap_qvl.verify_with_root_ca(ev.quote, collateral, ev.root_ca_der, ev.now)
    return str(info.value)


def build(case: Case, pki: SynthPki, other: SynthPki) -> SynthEvidence:
    return case.tamper(make_evidence(SEED, now=NOW, pki=pki, **case.make), other)


def test_untampered_evidence_passes_everywhere(pki: SynthPki) -> None:
    for make in ({}, {"version": 5, "body": "td15"}, {"tee": "sgx"}):
        res = ours(make_evidence(SEED, now=NOW, pki=pki, **make))
        assert {c.id: c.status for c in res.checks} == dict.fromkeys(ALL_CHECKS, CheckStatus.PASS)
        assert res.status == "UpToDate" and res.dcap_valid


@pytest.mark.parametrize("name", list(CASES))
def test_tamper(name: str, pki: SynthPki, other_pki: SynthPki) -> None:
    case = CASES[name]
    ev = build(case, pki, other_pki)
    res = ours(ev)
    by_id = {c.id: c for c in res.checks}
    assert list(by_id) == ALL_CHECKS

    # (a) the matching check fails and says what failed
    failed = by_id[case.fails]
    assert failed.status is CheckStatus.FAIL, f"{case.fails}: {failed.status} {failed.summary}"
    assert re.search(case.summary, failed.summary), failed.summary
    if case.code is not None:
        assert failed.details["code"] == case.code

    # (b) what rests on it is skipped, naming the failed step; everything else passes
    skipped = downstream(case.fails)
    for check_id in ALL_CHECKS:
        check = by_id[check_id]
        if check_id == case.fails or check_id in case.also_fail:
            assert check.status is CheckStatus.FAIL, f"{check_id}: {check.status} {check.summary}"
        elif check_id in skipped:
            assert check.status is CheckStatus.SKIP, f"{check_id}: {check.status} {check.summary}"
            assert f"{case.fails} failed" in check.summary, check.summary
            assert check.details.get("blocked_by") in NEEDS[check_id]
        else:
            assert check.status is CheckStatus.PASS, f"{check_id}: {check.status} {check.summary}"
    assert not res.dcap_valid

    # (c) dcap-qvl rejects it too, and our reference check records the agreement
    error = theirs(ev)
    assert re.search(case.qvl, error), error
    if case.fails != QS:
        ref = by_id[REF]
        assert ref.details["reference_valid"] is False and ref.details["our_valid"] is False
        assert ref.summary.startswith("dcap-qvl 0.7.0 agrees: invalid")


def test_every_listed_check_has_a_tamper_case() -> None:
    covered = {case.fails for case in CASES.values()}
    assert covered == {QS, TDA, PCK, COLSIG, REV, QE, SIG, TCB, FRESH}


# --- things both engines accept ---------------------------------------------------------------------------------


def _accepted_by_both(ev: SynthEvidence) -> HardwareResult:
    res = ours(ev)
    assert res.dcap_valid and res.check(REF).status is CheckStatus.PASS, [
        (c.id, c.status, c.summary) for c in res.checks
    ]
    collateral = dcap_qvl.QuoteCollateralV3.from_json(json.dumps(ev.collateral))
    assert dcap_qvl.verify_with_root_ca(ev.quote, collateral, ev.root_ca_der, ev.now).status == res.status
    return res


def test_unsigned_items_are_not_bound(pki: SynthPki) -> None:
    """dcap.md §5.17: trailing bytes, the outer cert-data type and the QE report data's upper half are free."""
    ev = make_evidence(SEED, now=NOW, pki=pki)
    ev.quote_builder.trailing = b"\xee" * 33
    ev.quote_builder.outer_cert_type = 7
    res = _accepted_by_both(ev.rebuild())
    assert res.check(QS).details["trailing_bytes"] == 33
    assert "not enforced" in res.check(QS).details["note"]


def test_allowed_td_attribute_bits_pass(pki: SynthPki) -> None:
    # PKS (30), KL (31), PERFMON (63) and LASS (27) are allowed by dcap-qvl 0.7.0.
    ev = make_evidence(SEED, now=NOW, pki=pki, **_td_attrs(28, 27, 30, 31, 63))
    _accepted_by_both(ev)


def test_pck_chain_from_collateral_is_used(pki: SynthPki) -> None:
    """With `pck_certificate_chain` in the collateral, both engines ignore the quote's own chain."""
    ev = make_evidence(SEED, now=NOW, pki=pki)
    ev.collateral_builder.pck_certificate_chain = pki.pck_chain_pem()
    ev.quote_builder.cert_data_override = b"not a certificate\x00"
    res = _accepted_by_both(ev.rebuild())
    assert res.check(PCK).details["source"] == "collateral"


def test_look_alike_root_is_not_trusted(pki: SynthPki, other_pki: SynthPki) -> None:
    """Evidence from a PKI with the same names but other keys fails under our anchor."""
    ev = replace(make_evidence(SEED, now=NOW, pki=other_pki), root_ca_der=pki.root_ca_der)
    res = ours(ev)
    assert res.check(PCK).status is CheckStatus.FAIL
    assert "not issued by the trust anchor" in res.check(PCK).summary
    assert res.check(COLSIG).status is CheckStatus.FAIL
    assert res.check(REF).status is CheckStatus.PASS
    theirs(ev)
