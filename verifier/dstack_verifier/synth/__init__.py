"""Synthetic Intel DCAP evidence (quotes, collateral, a test PKI) for tests, demos and benchmarks.

Nothing here is Intel's: the root CA is self-made, so the output only verifies
against :attr:`SynthEvidence.root_ca_der`, never against the real Intel root.

Synthetic dstack OS images (a TDVF firmware, a PE bzImage, a whole image folder)
are in the submodule :mod:`.image`, imported on its own.
"""

from .collateral import (
    CollateralBuilder,
    CrlSpec,
    IsvLevel,
    QeIdentitySpec,
    TcbInfoSpec,
    TcbLevel,
    TdxModule,
    compact_json,
    iso_time,
    sign_raw,
)
from .evidence import SynthEvidence, make_evidence
from .pki import (
    SGX_EXTENSION_OID,
    CertifiedKey,
    PckPlatformInfo,
    PkiOptions,
    SynthPki,
    build_pki,
    derive_private_key,
    make_crl,
    sgx_extension_der,
)
from .quote import (
    INTEL_QE_VENDOR_ID,
    TEE_TYPE_SGX,
    TEE_TYPE_TDX,
    QuoteBuilder,
    QuoteHeader,
    QuoteLayout,
    SgxReport,
    TdReport,
    raw_public_key,
)

__all__ = [
    "INTEL_QE_VENDOR_ID",
    "SGX_EXTENSION_OID",
    "TEE_TYPE_SGX",
    "TEE_TYPE_TDX",
    "CertifiedKey",
    "CollateralBuilder",
    "CrlSpec",
    "IsvLevel",
    "PckPlatformInfo",
    "PkiOptions",
    "QeIdentitySpec",
    "QuoteBuilder",
    "QuoteHeader",
    "QuoteLayout",
    "SgxReport",
    "SynthEvidence",
    "SynthPki",
    "TcbInfoSpec",
    "TcbLevel",
    "TdReport",
    "TdxModule",
    "build_pki",
    "compact_json",
    "derive_private_key",
    "iso_time",
    "make_crl",
    "make_evidence",
    "raw_public_key",
    "sgx_extension_der",
    "sign_raw",
]
