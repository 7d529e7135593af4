"""Signed, re-verifiable reports: evidence packs holding the evidence as verified, an in-toto statement of the
results in a DSSE envelope (Ed25519), and HTML/PDF renderings; and their verification, down to an offline re-run."""

from .export import PackSummary, export_pack
from .verify_pack import PackVerification, verify_pack

__all__ = ["PackSummary", "PackVerification", "export_pack", "verify_pack"]
