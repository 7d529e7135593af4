"""Check ids in the order a verification emits them (the CLI contract's stable ids, plus ours)."""

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

# After the hardware checks, for every quote: event log, key binding and source checks.
OTHER_CHECKS = [
    "eventlog.replay",
    "eventlog.rtmr3_payloads",
    "binding.report_data",
    "source.compose_hash",
    "source.mr_config_id",
    "source.onchain_registry",
    "os.image_hash",
    "os.mrtd",
    "os.rtmr0",
    "os.rtmr1",
    "os.rtmr2",
]
