"""Checks between the entities of one deployment (trust-center.md Appendix A, step 6), which no single entity's
verification can make:

``source.kms_key_provider`` (app, gateway)
    The key provider the entity booted with (its RTMR3 ``key-provider`` event, bound to its quote) is the KMS,
    named by the KMS's CA public key — the same key for the app and the gateway, and, when a KMS source gave the CA
    key and the KMS quote binds it (``binding.report_data`` of the KMS passed), that very key.
``source.gateway_app_id`` (gateway)
    The gateway's app id (its RTMR3 ``app-id`` event) is the gateway app the KMS names (``kms_info.gateway_app_id``
    of the Cloud answer, ``kms-main.gateway_app_id`` of a Trust Center result): the gateway verified is the one the
    KMS trusts to route the app.
"""

from __future__ import annotations

from typing import Any

from .model import Anchor, Check, CheckStatus, Entity, Report

KEY_PROVIDER = "source.kms_key_provider"
GATEWAY_APP_ID = "source.gateway_app_id"


def _check(check_id: str, entity: Entity, status: CheckStatus, summary: str, details: dict[str, Any],
           anchor: str = Anchor.NONE) -> Check:
    return Check(id=check_id, entity=entity, phase="source", status=status, anchor=anchor, summary=summary,
                 details=details)


def _app_info(report: Report | None, entity: str) -> dict[str, Any] | None:
    info = report.entities.get(entity, {}).get("app_info") if report is not None else None
    return info if isinstance(info, dict) else None


def _kms_ca(kms: Report | None) -> str | None:
    """The KMS CA key that the KMS quote binds, when its binding check passed on one."""
    if kms is None:
        return None
    for c in kms.checks:
        if c.id in ("binding.report_data", "binding.kms_keys") and c.status is CheckStatus.PASS:
            key = c.details.get("bound_keys", {}).get("ca_pubkey")
            if isinstance(key, str):
                return key.lower()
    return None


def _key_provider_check(entity: Entity, reports: dict[str, Report], kms_ca: str | None) -> Check:
    info = _app_info(reports.get(entity), entity)
    provider = (info or {}).get("key_provider")
    details: dict[str, Any] = {"key_provider": provider, "kms_ca_pubkey": kms_ca}
    if not isinstance(provider, dict):
        why = "its RTMR3 events were not verified" if info is None else "it has no key-provider event"
        return _check(KEY_PROVIDER, entity, CheckStatus.SKIP,
                      f"skipped: the {entity}'s key provider is unknown ({why})", {**details, "reason": why})
    name, key = str(provider.get("name", "")), str(provider.get("id", "")).lower()
    if name != "kms":
        return _check(KEY_PROVIDER, entity, CheckStatus.FAIL,
                      f"the {entity} booted with key provider '{name}', not the KMS: its keys are not the KMS's",
                      details, Anchor.QUOTE)
    other = "gateway" if entity == "app" else "app"
    other_provider = ((_app_info(reports.get(other), other) or {}).get("key_provider") or {})
    other_key = str(other_provider.get("id", "")).lower() if isinstance(other_provider, dict) else ""
    details["other_entity_key"] = other_key or None
    if kms_ca is not None:
        if key == kms_ca:
            return _check(KEY_PROVIDER, entity, CheckStatus.PASS,
                          f"the {entity}'s key provider is the KMS whose quote binds CA key {key[:16]}…", details,
                          Anchor.QUOTE)
        return _check(KEY_PROVIDER, entity, CheckStatus.FAIL,
                      f"the {entity}'s key provider {key[:16]}… is not the verified KMS's CA key {kms_ca[:16]}…",
                      details, Anchor.QUOTE)
    if other_key and other_key != key:
        return _check(KEY_PROVIDER, entity, CheckStatus.FAIL,
                      f"the {entity} and the {other} name different KMS CA keys ({key[:16]}… vs {other_key[:16]}…)",
                      details, Anchor.QUOTE)
    agree = f" (the {other} names the same key)" if other_key else ""
    return _check(KEY_PROVIDER, entity, CheckStatus.WARN,
                  f"the {entity}'s key provider is KMS CA key {key[:16]}…{agree}, but no KMS evidence binds that key "
                  "to the KMS quote (KMS.GetMeta or the chain's kmsInfo would)", details, Anchor.QUOTE)


def _gateway_app_id_check(reports: dict[str, Report], kms_gateway_app_id: str | None) -> Check:
    expected = (kms_gateway_app_id or "").lower().removeprefix("0x")
    info = _app_info(reports.get("gateway"), "gateway")
    actual = str((info or {}).get("app_id") or "").lower()
    details = {"kms_gateway_app_id": expected or None, "gateway_app_id": actual or None}
    if not expected:
        return _check(GATEWAY_APP_ID, "gateway", CheckStatus.SKIP,
                      "skipped: the KMS's gateway app id is not in the evidence", {**details, "reason": "absent"})
    if not actual:
        return _check(GATEWAY_APP_ID, "gateway", CheckStatus.SKIP,
                      "skipped: the gateway's app id is unknown (its RTMR3 events were not verified)",
                      {**details, "reason": "unverified"})
    if actual == expected:
        return _check(GATEWAY_APP_ID, "gateway", CheckStatus.PASS,
                      f"the gateway's app id 0x{actual} is the gateway app the KMS names", details, Anchor.QUOTE)
    return _check(GATEWAY_APP_ID, "gateway", CheckStatus.FAIL,
                  f"the gateway's app id 0x{actual} is not the gateway app the KMS names (0x{expected})", details,
                  Anchor.QUOTE)


def cross_entity_checks(reports: dict[str, Report], kms_gateway_app_id: str | None) -> list[Check]:
    """`kms_gateway_app_id`: the gateway app the KMS names (the Cloud answer's ``kms_info.gateway_app_id``, a Trust
    Center result's ``kms-main.gateway_app_id``)."""
    kms_ca = _kms_ca(reports.get("kms"))
    checks = [_key_provider_check(entity, reports, kms_ca) for entity in ("app", "gateway") if entity in reports]
    if "gateway" in reports:
        checks.append(_gateway_app_id_check(reports, kms_gateway_app_id))
    return checks
