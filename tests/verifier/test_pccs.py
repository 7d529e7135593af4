"""Collateral fetch (dcap.md §10) and cache, against a real PCCS-like server on loopback serving real collateral."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from dstack_verifier.net import Exchange, NetClient, NetError, ReplayClient
from dstack_verifier.quote.pccs import (
    COLLATERAL_KEYS,
    INTEL_PCS_URL,
    PHALA_PCCS_URL,
    CollateralCache,
    CollateralFetchError,
    fetch_collateral,
    get_collateral,
    is_intel_pcs,
    normalize_base_url,
    raw_json_member,
    root_crl_distribution_point,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.fixtures import fixture_path
from tests.support.pccs_server import (
    PCK_CRL_PATH,
    ROOT_CRL_DP_PATH,
    ROOT_CRL_PATH,
    PccsServer,
    qe_identity_path,
    tcb_path,
)

FMSPC = "B0C06F000000"
NOW = 1751624191  # 2025-07-04, inside every validity window of the sample (fixtures README)
INTEL_ROOT_CRL_DP = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
TCB = tcb_path("tdx")
QE = qe_identity_path("tdx")


@pytest.fixture(scope="module")
def collateral() -> dict[str, str]:
    return json.loads(fixture_path("dcap-qvl", "tdx_quote_collateral.json").read_text())


@pytest.fixture
def server(collateral: dict[str, str]) -> Iterator[PccsServer]:
    with PccsServer(collateral) as srv:
        yield srv


@pytest.fixture
def client() -> Iterator[NetClient]:
    # short timeout keeps the "hang" cases fast; no retries so failure counts are exact
    with NetClient(timeout=0.5, retries=0) as net:
        yield net


def fetch(client: NetClient, server: PccsServer, **kwargs: object) -> dict[str, str]:
    args: dict[str, object] = {"tee": "tdx", "fmspc": FMSPC, "ca": "platform"}
    args.update(kwargs)
    return fetch_collateral(client, server.url, **args)  # type: ignore[arg-type]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- happy path ------------------------------------------------------------------------------------------------


def test_fetch_matches_the_fixture_byte_for_byte(
    client: NetClient, server: PccsServer, collateral: dict[str, str]
) -> None:
    got = fetch(client, server, fmspc=FMSPC.lower())
    assert got == collateral
    assert tuple(got) == COLLATERAL_KEYS
    # one request per item, on the real paths, with the real parameters
    assert dict(server.counts) == {PCK_CRL_PATH: 1, TCB: 1, QE: 1, ROOT_CRL_PATH: 1}
    by_path = {r.path: r.query for r in server.requests}
    assert by_path[PCK_CRL_PATH] == {"ca": ["platform"], "encoding": ["der"]}
    assert by_path[TCB] == {"fmspc": [FMSPC], "update": ["standard"]}  # upper-cased
    assert by_path[QE] == {"update": ["standard"]}
    assert by_path[ROOT_CRL_PATH] == {}
    # every answer was recorded for the evidence
    assert len(client.recorder) == 4


def _verify_signed(raw: str, signature_hex: str, chain_pem: str) -> None:
    signer = x509.load_pem_x509_certificates(chain_pem.encode())[0]
    sig = bytes.fromhex(signature_hex)
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    public_key = signer.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(der, raw.encode(), ec.ECDSA(hashes.SHA256()))  # raises when a byte differs


@pytest.mark.parametrize("spaced", [False, True], ids=["compact-body", "spaced-reordered-body"])
def test_signed_text_is_kept_exactly(collateral: dict[str, str], spaced: bool) -> None:
    with PccsServer(collateral, spaced_json=spaced) as srv, NetClient(timeout=2, retries=0) as client:
        got = fetch(client, srv)
    assert got["tcb_info"] == collateral["tcb_info"]
    assert got["qe_identity"] == collateral["qe_identity"]
    _verify_signed(got["tcb_info"], got["tcb_info_signature"], got["tcb_info_issuer_chain"])
    _verify_signed(got["qe_identity"], got["qe_identity_signature"], got["qe_identity_issuer_chain"])


@pytest.mark.parametrize(
    "suffix", ["", "/", "/sgx/certification/v4", "/tdx/certification/v4/", "/sgx/certification/v4/"]
)
def test_base_url_normalisation(client: NetClient, server: PccsServer, suffix: str) -> None:
    got = fetch_collateral(client, server.url + suffix, tee="tdx", fmspc=FMSPC, ca="platform")
    assert got["tcb_info"].startswith('{"id":"TDX"')
    assert set(server.counts) == {PCK_CRL_PATH, TCB, QE, ROOT_CRL_PATH}


def test_normalize_base_url_and_intel_detection() -> None:
    assert normalize_base_url("https://pccs.example/") == "https://pccs.example"
    assert normalize_base_url("https://pccs.example/sgx/certification/v4") == "https://pccs.example"
    assert normalize_base_url("https://pccs.example/tdx/certification/v4/") == "https://pccs.example"
    assert normalize_base_url("https://pccs.example/p/tdx/certification/v4") == "https://pccs.example/p"
    assert is_intel_pcs(INTEL_PCS_URL + "/tdx/certification/v4")
    assert not is_intel_pcs(PHALA_PCCS_URL)
    assert not is_intel_pcs("https://api.trustedservices.intel.com.evil.example")


@pytest.mark.parametrize("header", ["SGX-TCB-Info-Issuer-Chain", "TCB-Info-Issuer-Chain"])
@pytest.mark.parametrize("lowercase", [False, True], ids=["as-sent", "lower-case-names"])
def test_issuer_chain_headers(collateral: dict[str, str], header: str, lowercase: bool) -> None:
    with (
        PccsServer(collateral, tcb_chain_header=header, lowercase_headers=lowercase) as srv,
        NetClient(timeout=2, retries=0) as client,
    ):
        got = fetch(client, srv)
        raw_header = client.recorder[1].headers[header.lower()]
    # percent-encoded on the wire ("+" and "/" of base64 too), decoded exactly
    assert "-----BEGIN%20CERTIFICATE-----%0A" in raw_header and "%2B" in raw_header
    assert "+" in got["tcb_info_issuer_chain"]
    for key in ("pck_crl_issuer_chain", "tcb_info_issuer_chain", "qe_identity_issuer_chain"):
        assert got[key] == collateral[key]


def test_root_crl_as_raw_der_is_accepted(collateral: dict[str, str]) -> None:
    with PccsServer(collateral, root_crl_as_hex=False) as srv, NetClient(timeout=2, retries=0) as client:
        assert fetch(client, srv)["root_ca_crl"] == collateral["root_ca_crl"]


# -- root CA CRL from the distribution point ---------------------------------------------------------------------


def test_root_crl_distribution_point_from_certificate(collateral: dict[str, str]) -> None:
    assert root_crl_distribution_point(collateral["qe_identity_issuer_chain"]) == INTEL_ROOT_CRL_DP


def test_intel_pcs_takes_root_crl_from_distribution_point(
    client: NetClient, server: PccsServer, collateral: dict[str, str]
) -> None:
    got = fetch(client, server, intel_pcs=True, root_crl_url=server.url + ROOT_CRL_DP_PATH)
    assert got == collateral
    assert server.counts[ROOT_CRL_PATH] == 0 and server.counts[ROOT_CRL_DP_PATH] == 1


def test_pccs_root_crl_failure_falls_back_to_distribution_point(
    client: NetClient, server: PccsServer, collateral: dict[str, str]
) -> None:
    server.fail(ROOT_CRL_PATH, "404")
    got = fetch(client, server, root_crl_url=server.url + ROOT_CRL_DP_PATH)
    assert got["root_ca_crl"] == collateral["root_ca_crl"]
    assert server.counts[ROOT_CRL_PATH] == 1 and server.counts[ROOT_CRL_DP_PATH] == 1


def test_default_distribution_point_answered_from_a_recording(
    client: NetClient, server: PccsServer, collateral: dict[str, str]
) -> None:
    """Intel PCS path with the DP read from the certificate, without the internet: the DP answer is recorded."""
    fetch(client, server, intel_pcs=True, root_crl_url=server.url + ROOT_CRL_DP_PATH)
    recording = [e for e in client.recorder if not e.url.endswith(ROOT_CRL_DP_PATH)]
    der = bytes.fromhex(collateral["root_ca_crl"])
    recording.append(Exchange(url=INTEL_ROOT_CRL_DP, status=200, body=base64.b64encode(der).decode(), fetched_at=NOW))
    got = fetch_collateral(ReplayClient(recording), server.url, tee="tdx", fmspc=FMSPC, ca="platform", intel_pcs=True)
    assert got == collateral


def test_bad_hex_from_pccs_root_crl_is_fatal(client: NetClient, server: PccsServer) -> None:
    server.fail(ROOT_CRL_PATH, "bad-hex")
    with pytest.raises(CollateralFetchError) as info:
        fetch(client, server, root_crl_url=server.url + ROOT_CRL_DP_PATH)
    assert info.value.item == "root CA CRL" and "bad hex" in str(info.value)
    assert server.counts[ROOT_CRL_DP_PATH] == 0  # no silent fallback on a bad answer


def test_both_root_crl_sources_failing_names_both(client: NetClient, server: PccsServer) -> None:
    server.fail(ROOT_CRL_PATH, "500")
    server.fail(ROOT_CRL_DP_PATH, "404")
    with pytest.raises(CollateralFetchError) as info:
        fetch(client, server, root_crl_url=server.url + ROOT_CRL_DP_PATH)
    message = str(info.value)
    assert message.startswith(f"root CA CRL ({server.url}{ROOT_CRL_DP_PATH}): HTTP 404")
    assert "rootcacrl request failed too: HTTP 500" in message


# -- failures ------------------------------------------------------------------------------------------------------

FAILURES = [
    (PCK_CRL_PATH, "404", "PCK CRL", "HTTP 404"),
    (PCK_CRL_PATH, "500", "PCK CRL", "HTTP 500"),
    (PCK_CRL_PATH, "malformed", "PCK CRL", "malformed CRL"),
    (PCK_CRL_PATH, "missing-header", "PCK CRL", "missing issuer-chain header SGX-PCK-CRL-Issuer-Chain"),
    (TCB, "404", "TCB Info", "HTTP 404"),
    (TCB, "500", "TCB Info", "HTTP 500"),
    (TCB, "hang", "TCB Info", "timed out"),
    (TCB, "malformed", "TCB Info", "malformed JSON"),
    (TCB, "missing-field", "TCB Info", 'missing field "signature"'),
    (TCB, "bad-hex", "TCB Info", 'bad hex in field "signature"'),
    (
        TCB,
        "missing-header",
        "TCB Info",
        "missing issuer-chain header SGX-TCB-Info-Issuer-Chain or TCB-Info-Issuer-Chain",
    ),
    (QE, "404", "QE Identity", "HTTP 404"),
    (QE, "hang", "QE Identity", "timed out"),
    (QE, "malformed", "QE Identity", "malformed JSON"),
    (QE, "missing-header", "QE Identity", "missing issuer-chain header SGX-Enclave-Identity-Issuer-Chain"),
    (ROOT_CRL_DP_PATH, "404", "root CA CRL", "HTTP 404"),
    (ROOT_CRL_DP_PATH, "hang", "root CA CRL", "timed out"),
    (ROOT_CRL_DP_PATH, "malformed", "root CA CRL", "malformed CRL"),
]


@pytest.mark.parametrize(("path", "mode", "item", "problem"), FAILURES, ids=[f"{f[2]}-{f[1]}" for f in FAILURES])
def test_failures_give_one_clear_line(
    client: NetClient, server: PccsServer, path: str, mode: str, item: str, problem: str
) -> None:
    server.fail(path, mode)  # type: ignore[arg-type]
    with pytest.raises(CollateralFetchError) as info:
        # the DP cases go the Intel PCS way, so the DP is the only root CRL source
        fetch(client, server, intel_pcs=path == ROOT_CRL_DP_PATH, root_crl_url=server.url + ROOT_CRL_DP_PATH)
    err = info.value
    message = str(err)
    assert isinstance(err, NetError)
    assert err.item == item and message.startswith(f"{item} ({server.url}{path}")
    assert problem in message
    assert "\n" not in message and len(message) < 400
    assert not err.offline


def test_wrong_fmspc_is_a_404(client: NetClient, server: PccsServer) -> None:
    with pytest.raises(CollateralFetchError, match=r"TCB Info \(.*fmspc=00A067110000.*\): HTTP 404"):
        fetch(client, server, fmspc="00a067110000")


def test_bad_inputs_are_rejected_before_any_request(client: NetClient, server: PccsServer) -> None:
    for bad in ({"fmspc": "B0C06F"}, {"fmspc": "../../etc00"}, {"tee": "sev"}, {"ca": "root"}, {"update": "x"}):
        with pytest.raises(ValueError):
            fetch(client, server, **bad)
    assert server.total_requests == 0


# -- offline and replay -----------------------------------------------------------------------------------------


def test_offline_refuses_every_request(server: PccsServer) -> None:
    with pytest.raises(CollateralFetchError) as info:
        fetch(NetClient(offline=True), server)
    assert info.value.offline and "offline" in str(info.value) and info.value.item == "PCK CRL"
    assert server.total_requests == 0


def test_replay_reproduces_a_live_fetch(collateral: dict[str, str]) -> None:
    with PccsServer(collateral) as live, NetClient(timeout=2, retries=0) as client:
        first = fetch(client, live)
        base = live.url
        recording = [Exchange.model_validate_json(e.model_dump_json()) for e in client.recorder]
    replay = ReplayClient(recording)
    assert fetch_collateral(replay, base, tee="tdx", fmspc=FMSPC, ca="platform") == first == collateral
    with pytest.raises(CollateralFetchError) as info:
        fetch_collateral(replay, base, tee="tdx", fmspc=FMSPC, ca="processor")
    assert info.value.offline and "not in the recorded evidence" in str(info.value)


# -- cache ---------------------------------------------------------------------------------------------------------


def cached(client: NetClient, server: PccsServer, cache: CollateralCache, now: datetime | float) -> dict[str, str]:
    return get_collateral(client, server.url, tee="tdx", fmspc=FMSPC, ca="platform", now=now, cache=cache)


def test_cache_hit_makes_no_request(
    client: NetClient, server: PccsServer, collateral: dict[str, str], tmp_path: Path
) -> None:
    cache = CollateralCache(tmp_path / "collateral")
    assert cached(client, server, cache, NOW) == collateral
    assert server.total_requests == 4
    assert sorted(p.name for p in (tmp_path / "collateral").iterdir()) == [
        "pck-crl-platform.json",
        "qe-identity-tdx-standard.json",
        "root-ca-crl.json",
        f"tcb-info-tdx-{FMSPC}-standard.json",
    ]
    assert cached(client, server, cache, datetime.fromtimestamp(NOW, UTC)) == collateral
    # a new run (new cache object on the same folder) hits too
    assert cached(client, server, CollateralCache(tmp_path / "collateral"), NOW) == collateral
    assert server.total_requests == 4


def test_cache_expires_item_by_item(
    client: NetClient, server: PccsServer, collateral: dict[str, str], tmp_path: Path
) -> None:
    cache = CollateralCache(tmp_path)
    cached(client, server, cache, NOW)
    # exactly the TCB Info nextUpdate (strict), after the PCK CRL's, before the QE Identity's
    assert cached(client, server, cache, at("2025-07-19T10:16:03+00:00")) == collateral
    assert dict(server.counts) == {PCK_CRL_PATH: 2, TCB: 2, QE: 1, ROOT_CRL_PATH: 1}
    # a second earlier: everything from the cache
    cached(client, server, cache, at("2025-07-19T10:00:34+00:00"))
    assert server.total_requests == 6
    # after the root CRL's nextUpdate (2026-04-03) everything is fetched again
    cached(client, server, cache, at("2026-05-01T00:00:00+00:00"))
    assert dict(server.counts) == {PCK_CRL_PATH: 3, TCB: 3, QE: 2, ROOT_CRL_PATH: 2}


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\xff\xfe not utf-8",
        b'{"format": "dstack-inspector/collateral-cache/v1", "raw": ',
        b"[]",
        b'{"format": "other/v9", "raw": "{}", "signature": "00", "issuer_chain": ""}',
        "bad-signature",
        "bad-raw",
        "bad-chain",
    ],
)
def test_corrupted_cache_file_is_a_miss(
    client: NetClient, server: PccsServer, collateral: dict[str, str], tmp_path: Path, content: bytes | str
) -> None:
    cache = CollateralCache(tmp_path)
    cached(client, server, cache, NOW)
    path = tmp_path / f"tcb-info-tdx-{FMSPC}-standard.json"
    if isinstance(content, str):
        entry = json.loads(path.read_text())
        field, value = {
            "bad-signature": ("signature", "xyz"),
            "bad-raw": ("raw", '{"nextUpdate": "not a date"}'),
            "bad-chain": ("issuer_chain", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
        }[content]
        entry[field] = value
        path.write_text(json.dumps(entry))
    else:
        path.write_bytes(content)
    assert cached(client, server, cache, NOW) == collateral
    assert dict(server.counts) == {PCK_CRL_PATH: 1, TCB: 2, QE: 1, ROOT_CRL_PATH: 1}
    # the bad file was replaced by a good one
    cached(client, server, cache, NOW)
    assert server.counts[TCB] == 2


def test_corrupted_crl_cache_files_are_misses(
    client: NetClient, server: PccsServer, collateral: dict[str, str], tmp_path: Path
) -> None:
    cache = CollateralCache(tmp_path)
    cached(client, server, cache, NOW)
    (tmp_path / "pck-crl-platform.json").write_text('{"format": "dstack-inspector/collateral-cache/v1"}')
    root = json.loads((tmp_path / "root-ca-crl.json").read_text())
    root["crl"] = root["crl"][:-8]  # truncated DER
    (tmp_path / "root-ca-crl.json").write_text(json.dumps(root))
    assert cached(client, server, cache, NOW) == collateral
    assert dict(server.counts) == {PCK_CRL_PATH: 2, TCB: 1, QE: 1, ROOT_CRL_PATH: 2}


def test_cache_entry_of_another_platform_is_not_used(client: NetClient, server: PccsServer, tmp_path: Path) -> None:
    cache = CollateralCache(tmp_path)
    cached(client, server, cache, NOW)
    other = "00A067110000"
    (tmp_path / f"tcb-info-tdx-{other}-standard.json").write_bytes(
        (tmp_path / f"tcb-info-tdx-{FMSPC}-standard.json").read_bytes()
    )
    assert cache.load_tcb_info("tdx", other, "standard", NOW) is None
    assert cache.load_tcb_info("tdx", FMSPC.lower(), "standard", NOW) is not None
    assert cache.load_tcb_info("tdx", FMSPC, "early", NOW) is None
    assert cache.load_qe_identity("sgx", "standard", NOW) is None


def test_unusable_cache_folder_never_crashes(
    client: NetClient, server: PccsServer, collateral: dict[str, str], tmp_path: Path
) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    assert cached(client, server, CollateralCache(not_a_folder), NOW) == collateral
    assert cached(client, server, CollateralCache(not_a_folder), NOW) == collateral
    assert server.total_requests == 8


def test_cache_writes_leave_no_temporary_files(client: NetClient, server: PccsServer, tmp_path: Path) -> None:
    cache = CollateralCache(tmp_path)
    cached(client, server, cache, NOW)
    cached(client, server, cache, at("2026-05-01T00:00:00+00:00"))
    assert all(not p.name.startswith(".") for p in tmp_path.iterdir())


def test_cache_needs_an_aware_now(client: NetClient, server: PccsServer, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        cached(client, server, CollateralCache(tmp_path), datetime(2025, 7, 4))
    with pytest.raises(ValueError):
        get_collateral(
            client, server.url, tee="tdx", fmspc=FMSPC, ca="platform", now=None, cache=CollateralCache(tmp_path)
        )
    assert server.total_requests == 0


# -- raw JSON member extraction --------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)
whitespace = st.text(alphabet=" \t\r\n", max_size=3)


@settings(max_examples=200, deadline=None)
@given(
    value=st.dictionaries(st.text(max_size=6), json_values, max_size=5),
    others=st.dictionaries(st.text(max_size=6).filter(lambda k: k != "tcbInfo"), json_values, max_size=3),
    position=st.integers(min_value=0, max_value=3),
    ascii_only=st.booleans(),
    indent=st.sampled_from([None, 0, 2]),
    ws=st.lists(whitespace, min_size=4, max_size=4),
)
def test_raw_json_member_returns_the_exact_text(
    value: dict[str, object],
    others: dict[str, object],
    position: int,
    ascii_only: bool,
    indent: int | None,
    ws: list[str],
) -> None:
    raw = json.dumps(value, ensure_ascii=ascii_only, indent=indent)
    members = [f"{json.dumps(k)}{ws[0]}:{ws[1]}{json.dumps(v)}" for k, v in others.items()]
    members.insert(min(position, len(members)), f'"tcbInfo"{ws[2]}:{ws[3]}{raw}')
    body = ws[0] + "{" + ws[1] + ("," + ws[2]).join(members) + ws[3] + "}" + ws[0]
    assert raw_json_member(body, "tcbInfo") == raw


def test_raw_json_member_edge_cases() -> None:
    assert raw_json_member('{"tcbInfo":{"a":1},"tcbInfo":{"b" : 2}}', "tcbInfo") == '{"b" : 2}'  # last wins
    assert raw_json_member('{"\\u0074cbInfo": {"x": "}"}}', "tcbInfo") == '{"x": "}"}'
    for bad in ('["tcbInfo"]', '{"other": 1}', '{"tcbInfo": {}} trailing', '{"tcbInfo" {}}', "{"):
        with pytest.raises(ValueError):
            raw_json_member(bad, "tcbInfo")
