"""The hardware check ids in the order a verification emits them (the CLI contract's stable ids, plus ours)."""

HARDWARE_CHECKS = [
    "hardware.quote_structure",
    "hardware.td_attributes",
    "hardware.pck_chain",
    "hardware.collateral_signatures",
    "hardware.revocation",
    "hardware.qe_report",
    "hardware.quote_signature",
    "hardware.tcb_status",
    "hardware.collateral_freshness",
    "hardware.reference_engine",
]
