"""Gateway domain checks: TEE-controlled ACME key, served certificate key, DNS CAA, CT log.

Real servers on loopback stand in for the network (a DNS server built with dnspython, a crt.sh-like HTTP server);
a test CA made here is the trust store; synthetic quotes carry the report_data bindings. The Trust Center fixture's
real Let's Encrypt chain for *.dstack-base-prod7.phala.network and its real gateway quote are used where they fit.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from dstack_verifier.domain import (
    CHECK_CAA,
    CHECK_CERTIFICATE_KEY,
    CHECK_CT_LOG,
    CHECK_TEE_CONTROLLED_KEY,
    AcmeInfo,
    check_certificate_key,
    check_ct_log,
    check_dns_caa,
    check_tee_controlled_key,
    default_trust_store,
    parse_acme_info,
    parse_caa_property,
    parse_quote_envelope,
    tee_controlled_keys,
    zt_cert_report_data,
)
from dstack_verifier.errors import InputError
from dstack_verifier.model import Check, CheckStatus
from dstack_verifier.net import NetClient
from dstack_verifier.ratls import acme_report_data, load_certificates, spki_der
from dstack_verifier.synth import make_evidence

from tests.support.crtsh_server import CrtShServer
from tests.support.dns_server import DnsServer
from tests.support.fixtures import fixture_path
from tests.support.web_pki import DOMAIN, NOW, Pki, build_cert, new_key

SYNTH_NOW = int(NOW.timestamp())
URI = "https://acme-v02.api.letsencrypt.org/acme/acct/2204483175"
OTHER_URI = "https://acme-v02.api.letsencrypt.org/acme/acct/1"
PROD7 = "dstack-base-prod7.phala.network"


@cache
def pki() -> Pki:
    return Pki()


@cache
def tee_leaf() -> x509.Certificate:
    return pki().leaf(pki().tee_key)


@cache
def foreign_leaf() -> x509.Certificate:
    return pki().leaf(pki().foreign_key, [f"evil.{DOMAIN}"])


# ================================================================================================ real fixtures


@cache
def _gateway_dataset() -> dict[str, Any]:
    return json.loads(fixture_path("trust-center", "dataset1-gateway.json").read_text())


def prod7_chain() -> list[x509.Certificate]:
    fixture_path("trust-center", "dataset1-gateway.json")
    return load_certificates(_gateway_dataset()["main_fields"]["app_cert"], "dataset1-gateway app_cert")


def prod7_mid_validity() -> datetime:
    leaf = prod7_chain()[0]
    return leaf.not_valid_before_utc + (leaf.not_valid_after_utc - leaf.not_valid_before_utc) / 2


# ================================================================================================ acme-info


def envelope(quote: bytes, **extra: Any) -> str:
    return json.dumps({"quote": quote.hex(), "event_log": json.dumps([{"imr": 3, "event": "x"}]), **extra})


def account_quote(uri: str = URI, seed: str = "gateway") -> bytes:
    return make_evidence(seed=seed, now=SYNTH_NOW, report={"report_data": acme_report_data(uri)}).quote


def key_quote(spki: bytes, seed: str = "gateway", bound_to: bytes | None = None) -> bytes:
    report_data = zt_cert_report_data(bound_to if bound_to is not None else spki)
    return make_evidence(seed=seed, now=SYNTH_NOW, report={"report_data": report_data}).quote


def acme_json(
    *,
    uri: str | None = URI,
    account: bytes | None = None,
    keys: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    doc: dict[str, Any] = {"account_uri": uri}
    doc["account_quote"] = envelope(account if account is not None else account_quote())
    doc["quoted_hist_keys"] = (
        keys if keys is not None
        else [{"public_key": pki().tee_spki.hex(), "quote": envelope(key_quote(pki().tee_spki))}]
    )
    doc.update(extra)
    return doc


def acme(**kw: Any) -> AcmeInfo:
    return parse_acme_info(json.dumps(acme_json(**kw)).encode())


def always(result: bool) -> Callable[[bytes], bool]:
    return lambda raw: result


def assert_check(check: Check, check_id: str, status: CheckStatus, *fragments: str) -> None:
    assert check.id == check_id
    assert check.phase == "domain" and check.entity == "gateway"
    assert check.status is status, check.summary
    assert "\n" not in check.summary
    for fragment in fragments:
        assert fragment in check.summary, (fragment, check.summary)
    json.dumps(check.details)  # details must be serialisable into the report


# ------------------------------------------------------------------------------------------------ parsing


def test_parse_acme_info_current_shape() -> None:
    info = acme()
    assert info.account_uri == URI
    assert len(info.quoted_hist_keys) == 1
    env = parse_quote_envelope(info.account_quote or "", "t")
    assert env.form == "json" and env.event_log_entries == 1 and len(env.quote) > 600


def test_parse_acme_info_legacy_shape_and_unquoted_keys() -> None:
    chain_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (tee_leaf(), pki().inter))
    doc = acme_json(hist_keys=["0x" + pki().tee_spki.hex().upper(), pki().foreign_spki.hex()],
                    active_cert=chain_pem.decode(), base_domain=DOMAIN)
    info = parse_acme_info(json.dumps(doc))
    assert info.unquoted_keys() == [pki().foreign_spki.hex()]  # the first is quoted (case and 0x ignored)
    assert [c.subject for c in info.active_chain()] == [tee_leaf().subject, pki().inter.subject]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (b"{not json", "invalid JSON"),
        (b"[1, 2]", "expected a JSON object, got array"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[" * 5000 + b"]" * 5000, "nests too deeply"),
        (json.dumps({"account_uri": 5}).encode(), "account_uri"),
        (json.dumps({"quoted_hist_keys": [{"quote": "00"}]}).encode(), "public_key"),
        (json.dumps({"quoted_hist_keys": [{"public_key": "00"}] * 300}).encode(), "quoted_hist_keys"),
        (json.dumps({"account_uri": "u" * 5000}).encode(), "account_uri"),
    ],
)
def test_parse_acme_info_rejects_bad_input(text: bytes, fragment: str) -> None:
    with pytest.raises(InputError) as err:
        parse_acme_info(text, "acme-info")
    assert fragment in err.value.describe()
    assert err.value.describe().startswith("acme-info")


def test_parse_quote_envelope_forms() -> None:
    raw = account_quote()
    assert parse_quote_envelope(raw.hex(), "t").form == "hex"
    assert parse_quote_envelope("0x" + raw.hex(), "t").quote == raw
    claimed = parse_quote_envelope(envelope(raw, report_data="ab" * 64), "t").claimed_report_data
    assert claimed == bytes([0xAB]) * 64
    for bad in ("", "zz", "{}", '{"quote": 5}', "[1]"):
        with pytest.raises(InputError):
            parse_quote_envelope(bad, "t")


# ------------------------------------------------------------------------------------------------ tee_controlled_key


def test_tee_controlled_key_passes_when_everything_binds() -> None:
    info = acme()
    check = check_tee_controlled_key(info, True, verify_quote=always(True))
    assert_check(check, CHECK_TEE_CONTROLLED_KEY, CheckStatus.PASS, URI, "1 of 1 quoted TLS key")
    assert check.anchor == "quote"
    assert check.details["report_data"]["match"] is True
    key = check.details["historical_keys"][0]
    assert key["status"] == "bound" and key["report_data"]["match"] is True
    assert key["td_identity"]["same_as_account_quote"] is True
    assert check.details["tee_keys"] == [pki().tee_spki.hex()]
    assert tee_controlled_keys(info, always(True)) == {pki().tee_spki}


def test_tee_controlled_key_warns_when_key_quotes_are_not_dcap_checked() -> None:
    info = acme()
    check = check_tee_controlled_key(info, True)
    assert_check(check, CHECK_TEE_CONTROLLED_KEY, CheckStatus.WARN, "DCAP signatures were not verified")
    assert check.details["historical_keys"][0]["status"] == "bound-unverified"
    assert tee_controlled_keys(info) == {pki().tee_spki}


def test_tee_controlled_key_unknown_account_dcap_status_warns() -> None:
    check = check_tee_controlled_key(acme(), None, verify_quote=always(True))
    assert_check(check, CHECK_TEE_CONTROLLED_KEY, CheckStatus.WARN, "DCAP verification status is unknown")
    assert check.anchor == "none"


def test_tee_controlled_key_fails_when_account_quote_binds_another_uri() -> None:
    check = check_tee_controlled_key(acme(account=account_quote(OTHER_URI)), True, verify_quote=always(True))
    assert_check(check, CHECK_TEE_CONTROLLED_KEY, CheckStatus.FAIL, 'SHA-512("acme-account:" ‖ URI)', URI)
    assert check.details["report_data"]["match"] is False


def test_tee_controlled_key_fails_when_account_quote_failed_dcap() -> None:
    check = check_tee_controlled_key(acme(), False, verify_quote=always(True))
    assert_check(check, CHECK_TEE_CONTROLLED_KEY, CheckStatus.FAIL, "did not pass DCAP")


def test_tee_controlled_key_fails_when_a_key_quote_binds_another_key() -> None:
    keys = [
        {"public_key": pki().tee_spki.hex(), "quote": envelope(key_quote(pki().tee_spki))},
        {"public_key": pki().foreign_spki.hex(), "quote": envelope(key_quote(pki().foreign_spki,
                                                                             bound_to=pki().tee_spki))},
    ]
    info = acme(keys=keys)
    check = check_tee_controlled_key(info, True, verify_quote=always(True))
    assert_check(check, CHECK_TEE_CONTROLLED_KEY, CheckStatus.FAIL, "key 1", 'SHA-512("zt-cert:" ‖ key)')
    assert [k["status"] for k in check.details["historical_keys"]] == ["bound", "mismatch"]
    assert tee_controlled_keys(info, always(True)) == {pki().tee_spki}


def test_tee_controlled_key_warns_for_a_key_quoted_by_another_td() -> None:
    keys = [{"public_key": pki().tee_spki.hex(), "quote": envelope(key_quote(pki().tee_spki, seed="elsewhere"))}]
    info = acme(keys=keys)
    check = check_tee_controlled_key(info, True, verify_quote=always(True))
    assert_check(check, CHECK_TEE_CONTROLLED_KEY, CheckStatus.WARN, "differ from the account quote's")
    identity = check.details["historical_keys"][0]["td_identity"]
    assert identity["same_as_account_quote"] is False and "mrtd" in identity["differing_fields"]
    assert tee_controlled_keys(info, always(True)) == set()


def test_tee_controlled_key_fails_when_the_callers_dcap_refuses_a_key_quote() -> None:
    check = check_tee_controlled_key(acme(), True, verify_quote=always(False))
    assert_check(check, CHECK_TEE_CONTROLLED_KEY, CheckStatus.FAIL, "refused by DCAP verification")

    def broken(raw: bytes) -> bool:
        raise RuntimeError("collateral unavailable")

    check = check_tee_controlled_key(acme(), True, verify_quote=broken)
    assert_check(check, CHECK_TEE_CONTROLLED_KEY, CheckStatus.FAIL, "RuntimeError: collateral unavailable")


def test_tee_controlled_key_warns_for_unquoted_and_attestation_only_keys() -> None:
    keys = [
        {"public_key": pki().tee_spki.hex(), "quote": ""},
        {"public_key": pki().foreign_spki.hex(), "quote": None, "attestation": {"version": 2}},
    ]
    check = check_tee_controlled_key(acme(keys=keys), True, verify_quote=always(True))
    assert_check(check, CHECK_TEE_CONTROLLED_KEY, CheckStatus.WARN, "without a quote", "versioned attestation")
    assert check.details["tee_keys"] == []


def test_tee_controlled_key_fails_for_unparseable_keys_and_quotes() -> None:
    keys = [
        {"public_key": "not hex", "quote": envelope(key_quote(pki().tee_spki))},
        {"public_key": "3000", "quote": envelope(key_quote(pki().tee_spki))},
        {"public_key": pki().tee_spki.hex(), "quote": '{"quote": "00ff"}'},
    ]
    check = check_tee_controlled_key(acme(keys=keys), True, verify_quote=always(True))
    assert_check(check, CHECK_TEE_CONTROLLED_KEY, CheckStatus.FAIL, "not a hex string", "not a DER", "does not parse")
    assert [k["status"] for k in check.details["historical_keys"]] == ["invalid"] * 3


def test_tee_controlled_key_accepts_a_decoded_acme_info() -> None:
    """A source layer may hand over the answer already decoded (bytes keys, raw quotes): same result."""
    from types import SimpleNamespace

    decoded = SimpleNamespace(
        account_uri=URI,
        account_quote=account_quote(),
        quoted_hist_keys=(SimpleNamespace(public_key=pki().tee_spki, quote=key_quote(pki().tee_spki)),),
        hist_keys=(pki().tee_spki,),
    )
    check = check_tee_controlled_key(decoded, True, verify_quote=always(True))
    assert check.status is CheckStatus.PASS
    assert tee_controlled_keys(decoded, always(True)) == {pki().tee_spki}
    bad = check_tee_controlled_key(SimpleNamespace(account_uri=7), True)
    assert_check(bad, CHECK_TEE_CONTROLLED_KEY, CheckStatus.FAIL, "not an acme-info answer")


def test_tee_controlled_key_missing_inputs() -> None:
    check = check_tee_controlled_key(acme(uri=None), True)
    assert_check(check, CHECK_TEE_CONTROLLED_KEY, CheckStatus.FAIL, "no ACME account URI")
    info = parse_acme_info(json.dumps({"account_uri": URI}))
    check = check_tee_controlled_key(info, True)
    assert_check(check, CHECK_TEE_CONTROLLED_KEY, CheckStatus.FAIL, "no account quote")
    assert "no quoted historical keys" in " ".join(check.details["warnings"])
    assert check_tee_controlled_key(None, True).status is CheckStatus.ERROR


def test_tee_controlled_key_real_gateway_quote_does_not_bind_an_arbitrary_uri() -> None:
    """The fixture's real gateway quote parses as the account quote; a made-up URI is (rightly) not bound."""
    quote = bytes.fromhex(_gateway_dataset()["quote_hex"].removeprefix("0x"))
    check = check_tee_controlled_key(acme(account=quote, keys=[]), True)
    assert_check(check, CHECK_TEE_CONTROLLED_KEY, CheckStatus.FAIL, "report_data")
    assert check.details["report_data"]["actual"] == _gateway_dataset()["td_report"]["report_data"]
    assert check.details["account_quote"]["size"] == 5006


# ================================================================================================ certificate_key


def chain_of(leaf: x509.Certificate) -> list[x509.Certificate]:
    return [leaf, pki().inter]


def test_certificate_key_passes_for_tee_key_and_valid_chain() -> None:
    check = check_certificate_key(chain_of(tee_leaf()), {pki().tee_spki}, [pki().root], DOMAIN, NOW)
    assert_check(check, CHECK_CERTIFICATE_KEY, CheckStatus.PASS, f"*.{DOMAIN}", "Test Root", f"app-probe.{DOMAIN}")
    assert check.details["validation"]["result"] == "valid"
    assert check.details["validation"]["path"][-1].startswith("CN=Test Root")
    assert check.details["key_match"]["matches"] is True


def test_certificate_key_accepts_pem_bytes_and_other_tee_keys() -> None:
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain_of(tee_leaf()))
    check = check_certificate_key(pem, [pki().foreign_spki, pki().tee_spki.hex()], [pki().root], DOMAIN, NOW)
    assert check.status is CheckStatus.PASS


def test_certificate_key_fails_for_a_foreign_key() -> None:
    leaf = pki().leaf(pki().foreign_key)
    check = check_certificate_key(chain_of(leaf), {pki().tee_spki}, [pki().root], DOMAIN, NOW)
    assert_check(check, CHECK_CERTIFICATE_KEY, CheckStatus.FAIL, "is not one of the 1 TEE-controlled key")
    assert check.details["validation"]["result"] == "valid"  # the chain itself is fine


def test_certificate_key_fails_without_tee_keys() -> None:
    check = check_certificate_key(chain_of(tee_leaf()), set(), [pki().root], DOMAIN, NOW)
    assert_check(check, CHECK_CERTIFICATE_KEY, CheckStatus.FAIL, "no TEE-controlled key")


def test_certificate_key_fails_naming_the_expiry() -> None:
    later = NOW + timedelta(days=120)
    check = check_certificate_key(chain_of(tee_leaf()), {pki().tee_spki}, [pki().root], DOMAIN, later)
    expiry = tee_leaf().not_valid_after_utc.isoformat()
    assert_check(check, CHECK_CERTIFICATE_KEY, CheckStatus.FAIL, f"expired at {expiry}")
    assert sum("expired" in p or "validation time" in p for p in check.details["problems"]) == 1


def test_certificate_key_ignores_a_stale_certificate_off_the_validated_path() -> None:
    """Servers may still send an expired cross-signed root; what matters is the path that validates."""
    stale_key = new_key()
    stale = build_cert("Old Cross Root", stale_key, None, stale_key, ca=True,
                       not_before=NOW - timedelta(days=4000), not_after=NOW - timedelta(days=10))
    chain = [*chain_of(tee_leaf()), stale]
    check = check_certificate_key(chain, {pki().tee_spki}, [pki().root], DOMAIN, NOW)
    assert check.status is CheckStatus.PASS
    assert any("'Old Cross Root' expired at" in n for n in check.details["notes"])
    check = check_certificate_key(chain, {pki().tee_spki}, [Pki().root], DOMAIN, NOW)  # no valid path: named
    assert_check(check, CHECK_CERTIFICATE_KEY, CheckStatus.FAIL, "'Old Cross Root' expired at", "does not validate")


def test_certificate_key_refuses_an_overlong_chain() -> None:
    check = check_certificate_key([tee_leaf()] * 17, {pki().tee_spki}, [pki().root], DOMAIN, NOW)
    assert_check(check, CHECK_CERTIFICATE_KEY, CheckStatus.FAIL, "17 certificates")


def test_certificate_key_fails_for_an_untrusted_root() -> None:
    other = Pki()
    check = check_certificate_key(chain_of(tee_leaf()), {pki().tee_spki}, [other.root], DOMAIN, NOW)
    assert_check(check, CHECK_CERTIFICATE_KEY, CheckStatus.FAIL, "does not validate")


def test_certificate_key_fails_for_another_domain() -> None:
    check = check_certificate_key(chain_of(tee_leaf()), {pki().tee_spki}, [pki().root], "other.test", NOW)
    assert_check(check, CHECK_CERTIFICATE_KEY, CheckStatus.FAIL, "'other.test'", "subjectAltName")


def test_certificate_key_exact_name_certificate() -> None:
    leaf = pki().leaf(pki().tee_key, [DOMAIN])
    check = check_certificate_key(chain_of(leaf), {pki().tee_spki}, [pki().root], DOMAIN, NOW)
    assert check.status is CheckStatus.PASS
    assert check.details["validation"]["name"] == DOMAIN


def test_certificate_key_missing_or_malformed_chain() -> None:
    assert_check(check_certificate_key(None, {pki().tee_spki}, [pki().root], DOMAIN, NOW),
                 CHECK_CERTIFICATE_KEY, CheckStatus.ERROR, "no served certificate")
    assert_check(check_certificate_key(b"-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----\n",
                                       {pki().tee_spki}, [pki().root], DOMAIN, NOW),
                 CHECK_CERTIFICATE_KEY, CheckStatus.FAIL, "does not parse")


def test_certificate_key_empty_trust_store_is_an_error() -> None:
    check = check_certificate_key(chain_of(tee_leaf()), {pki().tee_spki}, [], DOMAIN, NOW)
    assert_check(check, CHECK_CERTIFICATE_KEY, CheckStatus.ERROR, "no trust store")


def test_certificate_key_real_lets_encrypt_chain_against_the_system_store() -> None:
    """The fixture's real chain (E6 → ISRG Root X1) validates while it was valid, and fails naming its expiry now."""
    chain = prod7_chain()
    leaf_key = spki_der(chain[0])
    check = check_certificate_key(chain, {leaf_key}, None, PROD7, prod7_mid_validity())
    assert_check(check, CHECK_CERTIFICATE_KEY, CheckStatus.PASS, "ISRG Root X1", f"app-probe.{PROD7}")
    assert check.details["validation"]["trust_store"].startswith("system")
    check = check_certificate_key(chain, {leaf_key}, None, PROD7, NOW)
    assert_check(check, CHECK_CERTIFICATE_KEY, CheckStatus.FAIL, "expired at 2025-11-12T18:24:48+00:00")
    check = check_certificate_key(chain, {pki().tee_spki}, None, PROD7, prod7_mid_validity())
    assert_check(check, CHECK_CERTIFICATE_KEY, CheckStatus.FAIL, "not one of the 1 TEE-controlled key")


def test_default_trust_store_falls_back_to_bundle_paths(tmp_path: Any) -> None:
    assert len(default_trust_store()) > 50
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pki().root.public_bytes(serialization.Encoding.PEM) + b"\n-----BEGIN CERTIFICATE-----\n"
                       b"broken\n-----END CERTIFICATE-----\n")
    from dstack_verifier import domain

    assert domain._bundle_certificates(bundle.read_bytes()) == [pki().root]


# ================================================================================================ dns_caa


def issue(value: str, tag: str = "issue", flags: int = 0) -> tuple[int, str, str]:
    return flags, tag, value


PINNED = f"letsencrypt.org; validationmethods=dns-01; accounturi={URI}"


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    with DnsServer() as server:
        yield server


def caa(server: DnsServer, name: str = DOMAIN, uri: str = URI, timeout: float = 2.0) -> Check:
    return check_dns_caa(name, server.address, uri, timeout)


def test_caa_compliant(dns_server: DnsServer) -> None:
    dns_server.set_records(DOMAIN, {"CAA": [issue(PINNED), issue(PINNED, "issuewild"),
                                            issue("mailto:sec@example.test", "iodef")]})
    check = caa(dns_server)
    assert_check(check, CHECK_CAA, CheckStatus.PASS, URI, "dns-01", f"'{DOMAIN}'")
    assert check.details["inherited"] is False
    assert check.details["expected_ca"] == "letsencrypt.org"
    assert check.details["validationmethods"] == ["dns-01"]
    by_tag = {r["tag"]: r for r in check.details["records"]}  # an RRset has no order
    assert by_tag["issue"]["parameters"] == {"validationmethods": "dns-01", "accounturi": URI}
    assert any("iodef" in n for n in check.details["notes"])  # the Trust Center failed on iodef; RFC 8659 ignores it


def test_caa_issue_alone_governs_wildcards_too(dns_server: DnsServer) -> None:
    dns_server.set_records(DOMAIN, {"CAA": [issue(PINNED)]})
    check = caa(dns_server)
    assert check.status is CheckStatus.PASS
    assert check.details["wildcard"]["governed_by"] == "issue"


def test_caa_missing_accounturi(dns_server: DnsServer) -> None:
    dns_server.set_records(DOMAIN, {"CAA": [issue("letsencrypt.org")]})
    check = caa(dns_server)
    assert_check(check, CHECK_CAA, CheckStatus.FAIL, "any account at 'letsencrypt.org'", "governs wildcards too")
    assert len(check.details["problems"]) == 1  # one record, named once


def test_caa_another_ca_allowed(dns_server: DnsServer) -> None:
    dns_server.set_records(DOMAIN, {"CAA": [issue(PINNED), issue("digicert.com")]})
    assert_check(caa(dns_server), CHECK_CAA, CheckStatus.FAIL, "authorizes CA 'digicert.com'")


def test_caa_another_account(dns_server: DnsServer) -> None:
    dns_server.set_records(DOMAIN, {"CAA": [issue(f"letsencrypt.org; accounturi={OTHER_URI}")]})
    assert_check(caa(dns_server), CHECK_CAA, CheckStatus.FAIL, "another ACME account", OTHER_URI)


def test_caa_unpinned_issuewild_opens_wildcards(dns_server: DnsServer) -> None:
    dns_server.set_records(DOMAIN, {"CAA": [issue(PINNED), issue("letsencrypt.org", "issuewild")]})
    assert_check(caa(dns_server), CHECK_CAA, CheckStatus.FAIL, "wildcard issuance (issuewild)")


def test_caa_issuewild_alone_leaves_other_names_open(dns_server: DnsServer) -> None:
    dns_server.set_records(DOMAIN, {"CAA": [issue(PINNED, "issuewild")]})
    assert_check(caa(dns_server), CHECK_CAA, CheckStatus.FAIL, "non-wildcard issuance: any CA may issue")


def test_caa_misspelt_ca_name_is_named(dns_server: DnsServer) -> None:
    # A real-world slip (an issuewild for "etsencrypt.org"): right account, wrong CA.
    dns_server.set_records(DOMAIN, {"CAA": [issue(PINNED), issue(f"etsencrypt.org; accounturi={URI}", "issuewild")]})
    assert_check(caa(dns_server), CHECK_CAA, CheckStatus.FAIL, "'etsencrypt.org', not 'letsencrypt.org'")


def test_caa_no_records_anywhere(dns_server: DnsServer) -> None:
    dns_server.set_records(f"gw.{DOMAIN}", {"A": ["127.0.0.2"]})
    check = caa(dns_server, f"gw.{DOMAIN}")
    assert_check(check, CHECK_CAA, CheckStatus.FAIL, "any CA may issue")
    assert dns_server.asked() == [f"gw.{DOMAIN}", DOMAIN, "test"]
    assert [x["result"] for x in check.details["lookups"]] == ["no CAA records", "no CAA records", "no CAA records"]


def test_caa_from_a_resolver_that_denies_the_top_level_domain(dns_server: DnsServer) -> None:
    """A sandboxed or filtering resolver answers NXDOMAIN for everything: that is not "no CAA record" (a fail),
    it is a resolver whose answers cannot decide (an error, the verdict incomplete)."""
    check = caa(dns_server, "gw.example.nosuchtld")
    assert_check(check, CHECK_CAA, CheckStatus.ERROR, "top-level domain 'nosuchtld' does not exist (NXDOMAIN)")
    assert [x["result"] for x in check.details["lookups"]] == ["NXDOMAIN"] * 3


def test_caa_inherited_from_the_parent(dns_server: DnsServer) -> None:
    dns_server.set_records(DOMAIN, {"CAA": [issue(PINNED)]})
    check = caa(dns_server, f"*.deep.gw.{DOMAIN}")
    assert_check(check, CHECK_CAA, CheckStatus.PASS, f"inherited by 'deep.gw.{DOMAIN}'")
    assert check.details["relevant_name"] == DOMAIN and check.details["inherited"] is True
    assert [x["result"] for x in check.details["lookups"]] == ["NXDOMAIN", "NXDOMAIN", "1 CAA record(s)"]


def test_caa_closest_record_set_wins(dns_server: DnsServer) -> None:
    dns_server.set_records(DOMAIN, {"CAA": [issue(PINNED)]})
    dns_server.set_records(f"gw.{DOMAIN}", {"CAA": [issue("letsencrypt.org")]})
    check = caa(dns_server, f"gw.{DOMAIN}")
    assert check.status is CheckStatus.FAIL and check.details["relevant_name"] == f"gw.{DOMAIN}"


def test_caa_follows_cname(dns_server: DnsServer) -> None:
    dns_server.set_records(f"gw.{DOMAIN}", {"CNAME": f"target.{DOMAIN}"})
    dns_server.set_records(f"target.{DOMAIN}", {"CAA": [issue(PINNED)]})
    check = caa(dns_server, f"gw.{DOMAIN}")
    assert check.status is CheckStatus.PASS
    assert check.details["lookups"][0]["cname_target"] == f"target.{DOMAIN}"


def test_caa_deny_all_warns(dns_server: DnsServer) -> None:
    dns_server.set_records(DOMAIN, {"CAA": [issue(";")]})
    assert_check(caa(dns_server), CHECK_CAA, CheckStatus.WARN, "forbids any certificate to every CA", "cannot renew")


def test_caa_pinned_wildcards_and_no_other_issuance_passes(dns_server: DnsServer) -> None:
    dns_server.set_records(DOMAIN, {"CAA": [issue(";"), issue(PINNED, "issuewild")]})
    assert_check(caa(dns_server), CHECK_CAA, CheckStatus.PASS, "issue wildcard certificates and no CA issue others")
    dns_server.set_records(DOMAIN, {"CAA": [issue(PINNED), issue(";", "issuewild")]})
    assert_check(caa(dns_server), CHECK_CAA, CheckStatus.WARN, "forbids wildcard certificates")


def test_caa_critical_unknown_property_warns(dns_server: DnsServer) -> None:
    dns_server.set_records(DOMAIN, {"CAA": [issue(PINNED), issue("x", "tbs", 128)]})
    assert_check(caa(dns_server), CHECK_CAA, CheckStatus.WARN, "critical property")


def test_caa_malformed_value_fails(dns_server: DnsServer) -> None:
    dns_server.set_records(DOMAIN, {"CAA": [issue(f"letsencrypt.org accounturi={URI}")]})
    assert_check(caa(dns_server), CHECK_CAA, CheckStatus.FAIL, "malformed")


def test_caa_servfail_is_an_error(dns_server: DnsServer) -> None:
    dns_server.set_records(DOMAIN, {"CAA": [issue(PINNED)]})
    dns_server.fail(f"gw.{DOMAIN}", "servfail")
    assert_check(caa(dns_server, f"gw.{DOMAIN}"), CHECK_CAA, CheckStatus.ERROR, "SERVFAIL")
    dns_server.fail(f"gw.{DOMAIN}", "refused")
    assert_check(caa(dns_server, f"gw.{DOMAIN}"), CHECK_CAA, CheckStatus.ERROR, "REFUSED")


def test_caa_timeout_is_an_error(dns_server: DnsServer) -> None:
    dns_server.set_records(DOMAIN, {"CAA": [issue(PINNED)]})
    dns_server.fail(DOMAIN, "timeout")
    check = caa(dns_server, timeout=0.3)
    assert_check(check, CHECK_CAA, CheckStatus.ERROR, "timed out")


def test_caa_truncated_udp_answer_is_retried_over_tcp() -> None:
    with DnsServer({DOMAIN: {"CAA": [issue(PINNED)]}}, truncate_udp=True) as server:
        assert caa(server).status is CheckStatus.PASS
        assert [q.transport for q in server.queries] == ["udp", "tcp"]


def test_caa_offline_is_skipped() -> None:
    check = check_dns_caa(DOMAIN, None, URI, 1.0)
    assert_check(check, CHECK_CAA, CheckStatus.SKIP, "offline")


def test_caa_without_account_uri_fails(dns_server: DnsServer) -> None:
    assert_check(caa(dns_server, uri=""), CHECK_CAA, CheckStatus.FAIL, "no ACME account URI")


def test_caa_unknown_ca_accepts_any_named_ca_with_the_account(dns_server: DnsServer) -> None:
    uri = "https://acme.example.org/acct/9"
    dns_server.set_records(DOMAIN, {"CAA": [issue(f"someca.example; accounturi={uri}")]})
    check = caa(dns_server, uri=uri)
    assert check.status is CheckStatus.PASS and check.details["expected_ca"] is None
    check = check_dns_caa(DOMAIN, dns_server.address, uri, 2.0, ca_domain="otherca.example")
    assert check.status is CheckStatus.FAIL


@pytest.mark.parametrize(
    ("value", "issuer", "params", "error"),
    [
        ("letsencrypt.org", "letsencrypt.org", (), None),
        ("  LetsEncrypt.org  ;  accounturi = https://a/b ; validationmethods=dns-01,http-01 ",
         "letsencrypt.org", (("accounturi", "https://a/b"), ("validationmethods", "dns-01,http-01")), None),
        (";", "", (), None),
        ("", "", (), None),
        ("letsencrypt.org;", "letsencrypt.org", (), None),
        ("letsencrypt.org; accounturi=a; accounturi=b", "letsencrypt.org", None, "more than once"),
        ("letsencrypt.org; accounturi=a;", "letsencrypt.org", None, "no parameter after"),
        ("letsencrypt.org accounturi=a", "letsencrypt.org", None, "unexpected"),
        ("letsencrypt.org; =a", "letsencrypt.org", None, "malformed parameter"),
        ("letsencrypt.org; validationmethods=dns-01,,x", "letsencrypt.org", None, "validationmethods"),
        ("-bad.org", "", None, "unexpected"),
    ],
)
def test_parse_caa_issue_values(value: str, issuer: str, params: Any, error: str | None) -> None:
    prop = parse_caa_property(0, "ISSUE", value)
    assert prop.tag == "issue" and prop.issuer == issuer
    if params is not None:
        assert prop.parameters == params
    if error is None:
        assert prop.error is None
    else:
        assert prop.error is not None and error in prop.error


def test_parse_caa_non_ascii_and_other_tags() -> None:
    assert parse_caa_property(0, "issue", "lets\u00e9ncrypt.org".encode()).error == "the value is not ASCII"
    iodef = parse_caa_property(0, "iodef", "mailto:x@y")
    assert iodef.issuer is None and iodef.error is None
    assert parse_caa_property(128, "tbs", "x").critical


# ================================================================================================ ct_log


@pytest.fixture
def crtsh() -> Iterator[CrtShServer]:
    with CrtShServer() as server:
        yield server


@pytest.fixture
def client() -> Iterator[NetClient]:
    with NetClient(timeout=2.0, retries=0) as c:
        yield c


def ct(client: NetClient, crtsh: CrtShServer, keys: set[bytes] | None = None, **kw: Any) -> Check:
    kw.setdefault("now", NOW)
    kw.setdefault("max_entries", 50)
    kw.setdefault("deadline", 10.0)
    return check_ct_log(client, DOMAIN, keys if keys is not None else {pki().tee_spki}, crtsh.url, **kw)


def test_ct_all_tee_keys_with_precert_duplicates(client: NetClient, crtsh: CrtShServer) -> None:
    crtsh.add(tee_leaf(), precert=True)
    crtsh.add(pki().leaf(pki().tee_key, [f"api.{DOMAIN}"]))
    check = ct(client, crtsh)
    assert_check(check, CHECK_CT_LOG, CheckStatus.PASS, "all 2 certificate(s)", "1 precertificate duplicate")
    assert check.details["certificates"]["precertificate_duplicates_merged"] == 1
    assert check.details["fetched"]["requests"] == 2  # one fetch per certificate, not per log entry
    assert crtsh.counts["listing"] == 2  # the exact name and the %.<domain> wildcard


def test_ct_foreign_key_is_named(client: NetClient, crtsh: CrtShServer) -> None:
    crtsh.add(tee_leaf(), precert=True)
    ids = crtsh.add(foreign_leaf(), precert=True)
    check = ct(client, crtsh)
    assert_check(check, CHECK_CT_LOG, CheckStatus.FAIL, "1 of 2", f"crt.sh id {ids[0]}", f"evil.{DOMAIN}")
    (offender,) = check.details["offenders"]
    assert offender["ids"] == ids and offender["names"] == [f"evil.{DOMAIN}"]
    assert offender["spki_sha256"] == __import__("hashlib").sha256(pki().foreign_spki).hexdigest()


def test_ct_subdomain_found_only_by_the_wildcard_query(client: NetClient, crtsh: CrtShServer) -> None:
    crtsh.add(pki().leaf(pki().foreign_key, [f"a.b.{DOMAIN}"]))
    assert ct(client, crtsh).status is CheckStatus.FAIL


def test_ct_expired_certificates_are_out_of_scope_unless_asked(client: NetClient, crtsh: CrtShServer) -> None:
    crtsh.add(tee_leaf())
    crtsh.add(pki().leaf(pki().foreign_key, [f"old.{DOMAIN}"], not_before=NOW - timedelta(days=400),
                         not_after=NOW - timedelta(days=300)))
    check = ct(client, crtsh)
    assert_check(check, CHECK_CT_LOG, CheckStatus.PASS, "not expired at")
    assert check.details["certificates"]["expired_out_of_scope"] == 1
    check = ct(client, crtsh, include_expired=True)
    assert_check(check, CHECK_CT_LOG, CheckStatus.FAIL, "all logged certificates", f"old.{DOMAIN}")


def test_ct_count_bound_warns(client: NetClient, crtsh: CrtShServer) -> None:
    for i in range(3):
        crtsh.add(pki().leaf(pki().tee_key, [f"n{i}.{DOMAIN}"]))
    check = ct(client, crtsh, max_entries=1)
    assert_check(check, CHECK_CT_LOG, CheckStatus.WARN, "2 not fetched", "limit of 1 certificate fetches")
    assert len(crtsh.fetched_ids) == 1
    assert len(check.details["not_checked_after_bound"]) == 2


def test_ct_byte_bound_warns(client: NetClient, crtsh: CrtShServer) -> None:
    for i in range(3):
        crtsh.add(pki().leaf(pki().tee_key, [f"n{i}.{DOMAIN}"]))
    check = ct(client, crtsh, max_total_bytes=100)
    assert_check(check, CHECK_CT_LOG, CheckStatus.WARN, "limit of 100 bytes")
    assert check.details["fetched"]["checked"] == 1


def test_ct_deadline_warns(client: NetClient, crtsh: CrtShServer) -> None:
    for i in range(3):
        crtsh.add(pki().leaf(pki().tee_key, [f"n{i}.{DOMAIN}"]))
    ticks = iter(range(0, 1000, 4))
    check = ct(client, crtsh, deadline=10.0, monotonic=lambda: float(next(ticks)))
    assert_check(check, CHECK_CT_LOG, CheckStatus.WARN, "deadline of 10 s")


def test_ct_slow_server_hits_the_client_timeout(crtsh: CrtShServer) -> None:
    crtsh.slow_seconds = 1.0
    with NetClient(timeout=0.2, retries=0) as slow_client:
        check = ct(slow_client, crtsh)
    assert_check(check, CHECK_CT_LOG, CheckStatus.ERROR, "timed out")


def test_ct_offender_found_even_when_bounded(client: NetClient, crtsh: CrtShServer) -> None:
    crtsh.add(pki().leaf(pki().tee_key, [f"old.{DOMAIN}"], not_before=NOW - timedelta(days=20)))
    crtsh.add(pki().leaf(pki().foreign_key, [f"new.{DOMAIN}"], not_before=NOW - timedelta(days=1)))
    check = ct(client, crtsh, max_entries=1)  # newest first: the offender is fetched before the bound
    assert_check(check, CHECK_CT_LOG, CheckStatus.FAIL, f"new.{DOMAIN}")


@pytest.mark.parametrize("failure", ["malformed", "not-a-list"])
def test_ct_malformed_listing_is_an_error(client: NetClient, crtsh: CrtShServer, failure: Any) -> None:
    crtsh.add(tee_leaf())
    crtsh.listing_failure = failure
    assert_check(ct(client, crtsh), CHECK_CT_LOG, CheckStatus.ERROR, "malformed")


def test_ct_malformed_rows_are_skipped_with_a_warning(client: NetClient, crtsh: CrtShServer) -> None:
    crtsh.add(tee_leaf())
    crtsh.listing_failure = "bad-rows"
    check = ct(client, crtsh)
    assert_check(check, CHECK_CT_LOG, CheckStatus.WARN, "malformed listing row")
    assert check.details["listing"]["malformed_rows"] == 6  # three bad rows in each of the two listings


def test_ct_listing_too_large_for_the_client_is_an_error(crtsh: CrtShServer) -> None:
    crtsh.add(tee_leaf())
    crtsh.listing_failure = "huge"
    with NetClient(timeout=2.0, retries=0, max_body=1 << 20) as small:
        assert_check(ct(small, crtsh), CHECK_CT_LOG, CheckStatus.ERROR, "too large")


@pytest.mark.parametrize("failure", ["malformed", "404", "huge", "other-cert"])
def test_ct_bad_certificate_answers(client: NetClient, crtsh: CrtShServer, failure: Any) -> None:
    crtsh.add(tee_leaf())
    (bad_id,) = crtsh.add(pki().leaf(pki().tee_key, [f"x.{DOMAIN}"]))
    crtsh.cert_failure[bad_id] = failure
    check = ct(client, crtsh)
    assert_check(check, CHECK_CT_LOG, CheckStatus.WARN, "1 could not be checked")
    assert check.details["unchecked"][0]["id"] == bad_id


def test_ct_nothing_checkable_is_an_error(client: NetClient, crtsh: CrtShServer) -> None:
    (only,) = crtsh.add(tee_leaf())
    crtsh.cert_failure[only] = "malformed"
    assert_check(ct(client, crtsh), CHECK_CT_LOG, CheckStatus.ERROR, "none of the 1")


def test_ct_precert_fallback_to_the_other_entry(client: NetClient, crtsh: CrtShServer) -> None:
    pre, final = crtsh.add(tee_leaf(), precert=True)
    crtsh.cert_failure[pre] = "404"
    crtsh.cert_failure[final] = "der"
    check = ct(client, crtsh)
    assert check.status is CheckStatus.PASS
    assert crtsh.fetched_ids == [pre, final]


def test_ct_server_errors(client: NetClient, crtsh: CrtShServer) -> None:
    crtsh.listing_failure = "502"
    assert_check(ct(client, crtsh), CHECK_CT_LOG, CheckStatus.ERROR, "HTTP 502")
    crtsh.listing_failure = "drop"
    assert_check(ct(client, crtsh), CHECK_CT_LOG, CheckStatus.ERROR, "failed")


def test_ct_server_down_is_an_error(client: NetClient) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    check = check_ct_log(client, DOMAIN, {pki().tee_spki}, f"http://127.0.0.1:{port}", NOW, 10, 5.0)
    assert_check(check, CHECK_CT_LOG, CheckStatus.ERROR, "connection failed")


def test_ct_offline_is_skipped(crtsh: CrtShServer) -> None:
    with NetClient(offline=True) as offline:
        assert_check(ct(offline, crtsh), CHECK_CT_LOG, CheckStatus.SKIP, "offline")
    assert crtsh.counts["listing"] == 0


def test_ct_empty_log_warns(client: NetClient, crtsh: CrtShServer) -> None:
    assert_check(ct(client, crtsh), CHECK_CT_LOG, CheckStatus.WARN, "lists no certificates")


def test_ct_without_tee_keys_every_certificate_offends(client: NetClient, crtsh: CrtShServer) -> None:
    crtsh.add(tee_leaf())
    assert ct(client, crtsh, keys=set()).status is CheckStatus.FAIL


def test_ct_real_lets_encrypt_certificate(client: NetClient, crtsh: CrtShServer) -> None:
    leaf = prod7_chain()[0]
    crtsh.add(leaf, precert=True, issuer_ca_id=295815)
    when = prod7_mid_validity()
    check = check_ct_log(client, PROD7, {spki_der(leaf)}, crtsh.url, when, 10, 5.0)
    assert_check(check, CHECK_CT_LOG, CheckStatus.PASS, f"'*.{PROD7}'")
    check = check_ct_log(client, PROD7, {pki().tee_spki}, crtsh.url, when, 10, 5.0)
    assert_check(check, CHECK_CT_LOG, CheckStatus.FAIL, f"*.{PROD7}")
    assert check.details["offenders"][0]["serial"] == f"{leaf.serial_number:x}"


# ================================================================================================ end to end


def test_tee_keys_flow_into_certificate_and_ct_checks(client: NetClient, crtsh: CrtShServer) -> None:
    info = acme()
    keys = tee_controlled_keys(info, always(True))
    assert check_certificate_key(chain_of(tee_leaf()), keys, [pki().root], DOMAIN, NOW).status is CheckStatus.PASS
    crtsh.add(tee_leaf(), precert=True)
    assert check_ct_log(client, DOMAIN, keys, crtsh.url, NOW, 10, 5.0).status is CheckStatus.PASS
