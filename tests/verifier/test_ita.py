"""hardware.ita_appraisal against a real ITA-like server on loopback (tests/support/ita_server.py)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from functools import cache

import pytest
from dstack_verifier.errors import InputError
from dstack_verifier.ita import CHECK_ID, ItaOptions, check_ita, parse_token
from dstack_verifier.model import Check, CheckStatus
from dstack_verifier.net import NetClient, ReplayClient
from dstack_verifier.quote.structure import Quote, parse_quote
from dstack_verifier.synth import make_evidence

from tests.support.ita_server import API_KEY, ItaServer

NOW = 1_750_000_000


@cache
def _quote(version: int = 4, tee: str = "tdx") -> Quote:
    body = "td15" if version == 5 else "td10"
    return parse_quote(make_evidence("ita", now=NOW, tee=tee, version=version, body=body).quote)  # type: ignore[arg-type]


@pytest.fixture
def ita() -> Iterator[ItaServer]:
    with ItaServer(now=NOW) as server:
        yield server


def _run(ita: ItaServer, client: NetClient | None = None, tcb: str | None = "UpToDate", quote: Quote | None = None,
         **options: object) -> Check:
    with client or NetClient(retries=0, timeout=5) as net:
        return check_ita(quote or _quote(), tcb, client=net, now=NOW, options=ita.options(**options), entity="kms")


def test_no_key_skips() -> None:
    check = check_ita(_quote(), "UpToDate", client=None, now=NOW, options=None)
    assert (check.id, check.status, check.phase) == (CHECK_ID, CheckStatus.SKIP, "hardware")
    assert check.summary == "no Intel Trust Authority API key configured (optional)"


def test_pass_compares_every_register(ita: ItaServer) -> None:
    check = _run(ita)
    assert check.status is CheckStatus.PASS, check.summary
    assert check.entity == "kms"
    rows = {r["claim"]: r for r in check.details["comparison"]}
    assert {"tdx_mrtd", "tdx_rtmr0", "tdx_rtmr3", "tdx_report_data", "tdx_mrseam"} <= set(rows)
    assert all(r["match"] for r in rows.values())
    assert rows["tdx_mrtd"]["quote"] == _quote().body["mrtd"].hex()
    assert check.details["tcb_status"] == {"ita": "UpToDate", "ours": "UpToDate", "match": True}
    assert check.details["claims"]["attester_tcb_status"] == "UpToDate"
    assert check.details["token"]["alg"] == "PS384"
    assert check.details["token"]["root_sha256"] == ita.root_sha256
    assert len(check.details["token"]["revocation"]) == 2
    attest = [r for r in ita.requests if r[0] == "POST"]
    assert [(m, p) for m, p, _ in attest] == [("POST", "/appraisal/v2/attest")]
    assert attest[0][2]["x-api-key"] == API_KEY


def test_v5_quote(ita: ItaServer) -> None:
    assert _run(ita, quote=_quote(5)).status is CheckStatus.PASS


def test_pinned_root(ita: ItaServer) -> None:
    assert _run(ita, trusted_roots_sha256=(ita.root_sha256.upper(),)).status is CheckStatus.PASS
    check = _run(ita, trusted_roots_sha256=("00" * 32,))
    assert check.status is CheckStatus.FAIL
    assert "not a pinned ITA root" in check.summary and "Test ITA Root CA" in check.summary


def test_rtmr3_mismatch_fails(ita: ItaServer) -> None:
    ita.claim_overrides = {"tdx_rtmr3": "ab" * 48}
    check = _run(ita)
    assert check.status is CheckStatus.FAIL
    assert "tdx_rtmr3 differs" in check.summary
    row = next(r for r in check.details["comparison"] if r["claim"] == "tdx_rtmr3")
    assert row == {"claim": "tdx_rtmr3", "quote_field": "rtmr3", "match": False, "token": "ab" * 48,
                   "quote": _quote().body["rtmr3"].hex()}


def test_missing_claim_fails(ita: ItaServer) -> None:
    ita.claim_overrides = {"tdx_mrtd": None, "tdx_mrseam": None}
    check = _run(ita)
    assert check.status is CheckStatus.FAIL
    assert check.details["problems"] == ["the token has no tdx_mrtd claim"]  # optional mrseam: not a problem


def test_bad_signature_fails(ita: ItaServer) -> None:
    ita.bad_signature = True
    check = _run(ita)
    assert check.status is CheckStatus.FAIL
    assert "PS384 signature does not verify" in check.summary


def test_unknown_kid_fails(ita: ItaServer) -> None:
    ita.token_kid = "some-other-key"
    check = _run(ita)
    assert check.status is CheckStatus.FAIL
    assert "no key with kid 'some-other-key' in the JWKS" in check.summary


def test_expired_token_fails(ita: ItaServer) -> None:
    ita.issued_at = NOW - 3600
    check = _run(ita)
    assert check.status is CheckStatus.FAIL
    assert "token expired at" in check.summary


def test_token_from_the_future_fails(ita: ItaServer) -> None:
    ita.issued_at = NOW + 600
    assert "nbf is after the verification instant" in _run(ita).summary


def test_revoked_signing_certificate_fails(ita: ItaServer) -> None:
    ita.revoke_leaf = True
    check = _run(ita)
    assert check.status is CheckStatus.FAIL
    assert "'Test ITA Token Signing' is revoked" in check.summary


def test_tcb_status_disagreement_warns(ita: ItaServer) -> None:
    ita.tcb_status = "OutOfDate"
    check = _run(ita)
    assert check.status is CheckStatus.WARN
    assert "'OutOfDate' differs from ours 'UpToDate'" in check.summary


def test_bad_key_is_an_error(ita: ItaServer) -> None:
    check = _run(ita, api_key="wrong")
    assert check.status is CheckStatus.ERROR
    assert "rejected the API key (HTTP 401)" in check.summary
    assert "\n" not in check.summary and "wrong" not in check.summary


def test_server_error(ita: ItaServer) -> None:
    ita.attest_status = 500
    check = _run(ita)
    assert check.status is CheckStatus.ERROR
    assert "answered HTTP 500" in check.summary


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>oops</html>", "invalid JSON"),
        (b'{"jwt": "x"}', "field token: Field required"),
        (b'{"token": "only.two"}', "3 dot-separated parts"),
    ],
)
def test_malformed_answer_is_an_error(ita: ItaServer, body: bytes, message: str) -> None:
    ita.attest_body = body
    check = _run(ita)
    assert check.status is CheckStatus.ERROR
    assert "answer is malformed" in check.summary and message in check.summary


def test_jwks_unavailable_is_an_error(ita: ItaServer) -> None:
    check = _run(ita, jwks_url=f"{ita.url}/nowhere")
    assert check.status is CheckStatus.ERROR
    assert "token signing keys could not be fetched" in check.summary and "HTTP 404" in check.summary


def test_timeout(ita: ItaServer) -> None:
    ita.slow_seconds = 5
    check = _run(ita, client=NetClient(retries=0, timeout=0.3))
    assert check.status is CheckStatus.ERROR
    assert "unreachable" in check.summary and "timed out" in check.summary


def test_unreachable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    options = ItaOptions(api_key=API_KEY, base_url=f"http://127.0.0.1:{port}", jwks_url=f"http://127.0.0.1:{port}/c")
    with NetClient(retries=0, timeout=2) as net:
        check = check_ita(_quote(), None, client=net, now=NOW, options=options)
    assert check.status is CheckStatus.ERROR
    assert "unreachable" in check.summary


def test_offline_skips_and_sgx_skips(ita: ItaServer) -> None:
    assert _run(ita, client=NetClient(offline=True)).status is CheckStatus.SKIP
    check = _run(ita, quote=_quote(3, "sgx"))
    assert check.status is CheckStatus.SKIP and "not a TDX quote" in check.summary
    assert ita.requests == []


def test_recording_has_no_key_and_replays_offline() -> None:
    with ItaServer(now=NOW) as server:
        options = server.options()
        live = NetClient(retries=0, timeout=5)
        first = check_ita(_quote(), "UpToDate", client=live, now=NOW, options=options)
    assert first.status is CheckStatus.PASS
    recorded = live.recorder
    assert [e.method for e in recorded] == ["POST", "GET", "GET", "GET"]  # attest, JWKS, two CRLs
    for exchange in recorded:
        assert "x-api-key" not in exchange.request_headers
        assert API_KEY not in exchange.model_dump_json()
    replayed = check_ita(_quote(), "UpToDate", client=ReplayClient(recorded), now=NOW, options=options)
    assert replayed.status is CheckStatus.PASS
    assert replayed.details == first.details
    # A replay at a later instant sees the recorded token expired: the instant is part of the evidence.
    later = check_ita(_quote(), "UpToDate", client=ReplayClient(recorded), now=NOW + 3600, options=options)
    assert later.status is CheckStatus.FAIL and "expired" in later.summary


def test_options_repr_hides_the_key() -> None:
    assert API_KEY not in repr(ItaOptions(api_key=API_KEY))
    with pytest.raises(ValueError, match="API key is empty"):
        ItaOptions(api_key=" ")


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("a.b", "3 dot-separated parts, this one has 2"),
        ("e30.!!.AA", "ITA token, field claims: not base64url"),
        ("W10.e30.AA", "field header: expected a JSON object, got array"),
        ("e30.eyJ.AA", "ITA token, field claims, offset 1: invalid JSON"),
    ],
)
def test_malformed_token(token: str, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        parse_token(token)
