"""One-call synthetic evidence: a quote plus matching collateral and trust anchor.

The defaults are chosen so that every cross-check between quote and collateral
holds (FMSPC, CPUSVN/PCESVN levels, TDX module identity, QE identity), and the
result verifies as ``UpToDate`` at ``SynthEvidence.now``. Status knobs insert a
better level *above* the platform so the platform falls through to the level
carrying the requested status, the way real TCB Info ladders work.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from .collateral import (
    CollateralBuilder,
    CrlSpec,
    IsvLevel,
    JsonObject,
    QeIdentitySpec,
    TcbInfoSpec,
    TcbLevel,
    TdxModule,
)
from .pki import DAY, YEAR, PkiOptions, SynthPki, build_pki, derive_bytes, derive_private_key
from .quote import (
    SGX_ATTR_INIT,
    SGX_ATTR_MODE64BIT,
    TEE_TYPE_SGX,
    TEE_TYPE_TDX,
    BodyKind,
    QuoteBuilder,
    QuoteHeader,
    SgxReport,
    TdReport,
)

TD_QE_PROD_ID = 2
SGX_QE_PROD_ID = 1
DEFAULT_QE_ISVSVN = 8
# [0] module SVN, [1] module major version (>0 selects identity "TDX_01"), [2] late microcode SVN.
DEFAULT_TEE_TCB_SVN = bytes([5, 1, 2]) + bytes(13)


@dataclass
class SynthEvidence:
    """A quote, its collateral, and the synthetic root that anchors both."""

    quote: bytes
    collateral: JsonObject
    root_ca_der: bytes
    pki: SynthPki
    now: int
    quote_builder: QuoteBuilder
    collateral_builder: CollateralBuilder

    @property
    def collateral_json(self) -> str:
        return json.dumps(self.collateral)

    def rebuild(self) -> SynthEvidence:
        """Re-run both builders, e.g. after editing their fields in a test."""
        return replace(self, quote=self.quote_builder.build(), collateral=self.collateral_builder.build())


def _ladder(own: IsvLevel, status: str, advisories: Sequence[str], tcb_date: int) -> list[IsvLevel]:
    """ISVSVN-keyed levels: a better UpToDate level first when the target status is worse."""
    mine = replace(own, status=status, advisory_ids=tuple(advisories), tcb_date=tcb_date)
    if status == "UpToDate":
        return [mine]
    return [IsvLevel(isvsvn=own.isvsvn + 1, tcb_date=tcb_date), mine]


def make_evidence(
    seed: str = "test",
    now: int | None = None,
    tee: Literal["tdx", "sgx"] = "tdx",
    version: int | None = None,
    body: BodyKind = "td10",
    *,
    pki: SynthPki | None = None,
    pki_options: PkiOptions | None = None,
    platform_status: str = "UpToDate",
    platform_advisories: Sequence[str] = (),
    module_status: str = "UpToDate",
    module_advisories: Sequence[str] = (),
    qe_status: str = "UpToDate",
    qe_advisories: Sequence[str] = (),
    tcb_levels: list[TcbLevel] | None = None,
    revoke_pck: bool = False,
    revoked_serials: Sequence[int] = (),
    collateral_issued: int | None = None,
    collateral_validity: int = 30 * DAY,
    tcb_evaluation_data_number: int = 17,
    tee_tcb_svn: bytes = DEFAULT_TEE_TCB_SVN,
    qe_isvsvn: int = DEFAULT_QE_ISVSVN,
    report: Mapping[str, Any] | None = None,
    header: Mapping[str, Any] | None = None,
) -> SynthEvidence:
    """Build matching quote + collateral.

    ``tee``/``version``/``body`` pick the quote format (TDX v4 or v5 with body
    td10/td15/td15ex; SGX v3). ``report`` and ``header`` set quote fields by
    name (TdReport / SgxReport / QuoteHeader attributes). ``*_status`` and
    ``*_advisories`` shape the platform, TDX module and QE levels the quote
    lands on; ``tcb_levels`` replaces the platform ladder entirely.
    ``revoke_pck`` lists the PCK leaf in the PCK CRL. Collateral is issued
    one day before ``now`` and valid for ``collateral_validity`` seconds unless
    ``collateral_issued`` says otherwise. The PKI is issued a year before ``now``
    (rounded down to a day) unless passed in.
    """
    now = int(time.time()) if now is None else now
    is_tdx = tee == "tdx"
    version = version if version is not None else (4 if is_tdx else 3)
    kind: BodyKind = body if is_tdx else "sgx"
    if pki is None:
        pki = build_pki(seed, issued_at=(now - YEAR) // DAY * DAY, options=pki_options)
    info = pki.pck_info

    issued = now - DAY if collateral_issued is None else collateral_issued
    next_update = issued + collateral_validity
    tcb_date = (issued - 90 * DAY) // DAY * DAY

    # --- quote ----------------------------------------------------------------
    quote_header = QuoteHeader(version=version, tee_type=TEE_TYPE_TDX if is_tdx else TEE_TYPE_SGX)
    if not is_tdx:
        # SGX quotes carry the real QE/PCE SVNs in the header (TDX leaves them 0).
        quote_header.qe_svn = qe_isvsvn
        quote_header.pce_svn = info.pce_svn
    quote_header.user_data = derive_bytes(seed, "qe-id", 16) + bytes(4)
    for name, value in (header or {}).items():
        _set_known(quote_header, name, value)

    quote_body: TdReport | SgxReport
    if is_tdx:
        quote_body = TdReport(
            tee_tcb_svn=tee_tcb_svn,
            mr_seam=derive_bytes(seed, "mr-seam", 32) + bytes(16),
            mr_td=derive_bytes(seed, "mr-td", 32) + bytes(16),
            rt_mr0=derive_bytes(seed, "rtmr0", 32) + bytes(16),
            rt_mr1=derive_bytes(seed, "rtmr1", 32) + bytes(16),
            rt_mr2=derive_bytes(seed, "rtmr2", 32) + bytes(16),
            report_data=derive_bytes(seed, "report-data", 32) + bytes(32),
        )
    else:
        quote_body = SgxReport(
            cpu_svn=info.cpu_svn,
            attributes=bytes([SGX_ATTR_INIT | SGX_ATTR_MODE64BIT]) + bytes(7) + bytes([0x03]) + bytes(7),
            mr_enclave=derive_bytes(seed, "mr-enclave", 32),
            mr_signer=derive_bytes(seed, "mr-signer", 32),
            report_data=derive_bytes(seed, "report-data", 32) + bytes(32),
        )
    for name, value in (report or {}).items():
        _set_known(quote_body, name, value)

    qe_mrsigner = derive_bytes(seed, "qe-mrsigner", 32)
    qe_report = SgxReport(
        cpu_svn=info.cpu_svn,
        # Same attribute shape as Intel's QE: INIT|MODE64BIT plus a little more; XFRM x87/SSE/AVX...
        attributes=bytes([0x15]) + bytes(7) + bytes([0xE7]) + bytes(7),
        mr_enclave=derive_bytes(seed, "qe-mrenclave", 32),
        mr_signer=qe_mrsigner,
        isv_prod_id=TD_QE_PROD_ID if is_tdx else SGX_QE_PROD_ID,
        isv_svn=qe_isvsvn,
    )
    quote_builder = QuoteBuilder(
        header=quote_header,
        body=quote_body,
        body_kind=kind,
        attestation_key=derive_private_key(seed, "attestation-key"),
        pck_key=pki.pck.key,
        pck_chain_pem=pki.pck_chain_pem(),
        qe_report=qe_report,
    )

    # --- collateral ---------------------------------------------------------------
    quote_svn = quote_body.tee_tcb_svn if isinstance(quote_body, TdReport) else None
    if tcb_levels is None:
        tcb_levels = _platform_ladder(
            cpu_svn=info.cpu_svn,
            pce_svn=info.pce_svn,
            tdx_svn=quote_svn,
            status=platform_status,
            advisories=platform_advisories,
            tcb_date=tcb_date,
        )
    tcb_info = TcbInfoSpec(
        issue_date=issued,
        next_update=next_update,
        tcb_levels=tcb_levels,
        fmspc=info.fmspc,
        pce_id=info.pce_id,
        tee="TDX" if is_tdx else "SGX",
        tcb_evaluation_data_number=tcb_evaluation_data_number,
    )
    if isinstance(quote_body, TdReport):
        tcb_info.tdx_module = TdxModule(mrsigner=quote_body.mr_signer_seam)
        major = quote_body.tee_tcb_svn[1]
        if major > 0:
            # dcap-qvl 0.7.0 judges bytes 0/1 of tee_tcb_svn only through this identity.
            tcb_info.tdx_module_identities = [
                TdxModule(
                    id=f"TDX_{major:02X}",
                    mrsigner=quote_body.mr_signer_seam,
                    tcb_levels=_ladder(
                        IsvLevel(isvsvn=quote_body.tee_tcb_svn[0]), module_status, module_advisories, tcb_date
                    ),
                )
            ]
    qe_identity = QeIdentitySpec(
        issue_date=issued,
        next_update=next_update,
        mrsigner=qe_mrsigner,
        isvprodid=qe_report.isv_prod_id,
        id="TD_QE" if is_tdx else "QE",
        tcb_evaluation_data_number=tcb_evaluation_data_number,
        tcb_levels=_ladder(IsvLevel(isvsvn=qe_isvsvn), qe_status, qe_advisories, tcb_date),
    )
    revoked = list(revoked_serials) + ([pki.pck.serial] if revoke_pck else [])
    collateral_builder = CollateralBuilder(
        pki=pki,
        tcb_info=tcb_info,
        qe_identity=qe_identity,
        # Root CRL: Intel-like one-year lifetime that still covers [issued, next_update).
        root_crl=CrlSpec(this_update=issued - 30 * DAY, next_update=max(issued + YEAR, next_update + DAY)),
        pck_crl=CrlSpec(this_update=issued, next_update=next_update, revoked_serials=revoked),
    )
    return SynthEvidence(
        quote=quote_builder.build(),
        collateral=collateral_builder.build(),
        root_ca_der=pki.root_ca_der,
        pki=pki,
        now=now,
        quote_builder=quote_builder,
        collateral_builder=collateral_builder,
    )


def _platform_ladder(
    *,
    cpu_svn: bytes,
    pce_svn: int,
    tdx_svn: bytes | None,
    status: str,
    advisories: Sequence[str],
    tcb_date: int,
) -> list[TcbLevel]:
    """Platform TCB levels: [better UpToDate level], the platform's own level, an old floor level."""
    sgx = list(cpu_svn)
    tdx = list(tdx_svn) if tdx_svn is not None else None
    own = TcbLevel(
        sgx_components=sgx,
        pcesvn=pce_svn,
        tdx_components=tdx,
        status=status,
        tcb_date=tcb_date,
        advisory_ids=tuple(advisories),
    )
    levels = [own]
    if status != "UpToDate":
        # One SVN higher on the first SGX component: the platform cannot reach it.
        better = [sgx[0] + 1, *sgx[1:]]
        levels.insert(
            0, TcbLevel(sgx_components=better, pcesvn=pce_svn, tdx_components=tdx, tcb_date=tcb_date)
        )
    # A floor level like the ones at the bottom of Intel's lists; never reached by default.
    floor_tdx = [max(0, svn - 1) for svn in tdx] if tdx is not None else None
    levels.append(
        TcbLevel(
            sgx_components=[max(0, svn - 1) for svn in sgx],
            pcesvn=max(0, pce_svn - 1),
            tdx_components=floor_tdx,
            status="OutOfDate",
            tcb_date=tcb_date - YEAR,
            advisory_ids=("INTEL-SA-00000",),
        )
    )
    return levels


def _set_known(obj: object, name: str, value: Any) -> None:
    # Reject typos early: a misspelt field would otherwise be silently ignored.
    if not hasattr(obj, name):
        raise TypeError(f"{type(obj).__name__} has no field {name!r}")
    setattr(obj, name, value)
