"""Bad, truncated, oversized and hostile evidence: exit 2 with one line naming the file, the field and the offset.

The contract (ARCHITECTURE.md, "Bad input"): never a traceback, never a hang, sizes bounded before reading.
"""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dstack_inspector.cli import main
from dstack_verifier.errors import InputError
from dstack_verifier.evidence import detect, load_evidence
from dstack_verifier.quote.collateral import COLLATERAL_KEYS, HEX_KEYS
from dstack_verifier.quote.structure import parse_quote
from dstack_verifier.synth import make_evidence

from tests.support.fixtures import fixture_path

REAL_AT = 1751624191
PREFIX = "dstack-inspector: bad input: "


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DSTACK_INSPECTOR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DSTACK_INSPECTOR_DEBUG", raising=False)


@pytest.fixture(scope="module")
def quote() -> bytes:
    return fixture_path("dcap-qvl", "tdx_quote").read_bytes()


@pytest.fixture(scope="module")
def collateral() -> dict[str, str]:
    return json.loads(fixture_path("dcap-qvl", "tdx_quote_collateral.json").read_text())


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def bad_input(capsys: pytest.CaptureFixture[str], path: Path, *extra: object) -> str:
    """Run `verify --offline PATH ...`; assert exit 2, nothing on stdout, one line on stderr. Returns that line."""
    code, out, err = run(capsys, "verify", "--offline", path, *extra)
    assert code == 2, (code, out, err)
    assert out == ""
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    assert err.startswith(PREFIX), err
    return err.rstrip("\n")


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


# -- truncation ------------------------------------------------------------------------------------------------


def test_every_truncation_is_refused_with_field_and_offset(quote: bytes) -> None:
    parsed = parse_quote(quote)
    used = parsed.used_len
    # The real quote carries zero padding after the structure; cutting only padding leaves a whole quote.
    assert used < len(quote)
    assert not any(quote[used:])
    fields = set()
    for n in range(len(quote)):
        cut = quote[:n]
        if n >= used:
            assert detect(cut, "cut").quote == cut
            continue
        with pytest.raises(InputError) as info:
            detect(cut, "cut")
        err = info.value
        assert err.source == "cut"
        assert "\n" not in err.describe()
        if n == 0:
            assert "empty" in err.message
            continue
        assert err.field is not None and err.offset is not None, (n, err.describe())
        assert 0 <= err.offset <= n, (n, err.describe())
        assert "truncated" in err.message, (n, err.describe())
        assert f"field {err.field}, offset {err.offset}" in err.describe()
        fields.add(err.field)
    # Cuts land in the header, in every body field and in the auth data.
    assert {
        "header.version",
        "header.tee_type",
        "header.qe_vendor_id",
        "header.user_data",
        "body.mrtd",
        "body.reportdata",
        "auth_data_size",
    } <= fields


def test_truncation_names_the_exact_field(quote: bytes) -> None:
    spans = {s.name: (s.start, s.end) for s in parse_quote(quote).spans}
    for name in ("header.version", "header.tee_type", "header.user_data", "body.mrtd", "body.rtmr3", "body.reportdata"):
        start, end = spans[name]
        for n in {start, start + 1, end - 1} - {0}:
            with pytest.raises(InputError) as info:
                detect(quote[:n], "cut")
            assert (info.value.field, info.value.offset) == (name, start), n
    # Inside the auth data the declared size is what no longer fits.
    with pytest.raises(InputError) as info:
        detect(quote[:1000], "cut")
    assert (info.value.field, info.value.offset) == ("auth_data_size", 632)
    assert "declares 4300 bytes, only 364 left" in info.value.message


def _cli_sample(quote: bytes) -> list[int]:
    """Lengths for the CLI: both sides of every field boundary, plus a stride through the rest."""
    used = parse_quote(quote).used_len
    edges = {0, 1, used - 1}
    for span in parse_quote(quote).spans:
        edges.update({span.start, span.start + 1, span.end - 1})
    edges.update(range(0, used, 37))
    return sorted(n for n in edges if 0 <= n < used)


def test_truncations_through_the_cli(capsys, tmp_path: Path, quote: bytes) -> None:
    path = tmp_path / "cut.quote"
    lengths = _cli_sample(quote)
    assert len(lengths) > 150
    for n in lengths:
        path.write_bytes(quote[:n])
        line = bad_input(capsys, path)
        assert str(path) in line
        if n:
            assert ", field " in line and ", offset " in line, (n, line)
            assert "truncated" in line


def test_truncated_padding_still_verifies(capsys, tmp_path: Path, quote: bytes) -> None:
    used = parse_quote(quote).used_len
    path = write(tmp_path, "unpadded.quote", quote[:used])
    col = write(tmp_path, "col.json", fixture_path("dcap-qvl", "tdx_quote_collateral.json").read_bytes())
    code, _, err = run(capsys, "verify", path, "--collateral", col, "--at", REAL_AT)
    assert (code, err) == (0, "")


def test_truncated_hex_and_getquote(capsys, tmp_path: Path, quote: bytes) -> None:
    line = bad_input(capsys, write(tmp_path, "cut.hex", "0x" + quote[:700].hex() + "\n"))
    assert "field auth_data_size, offset 632" in line
    line = bad_input(capsys, write(tmp_path, "cut.json", json.dumps({"quote": quote[:100].hex()})))
    assert "field quote: body.mrseam, offset 64" in line


# -- header values ---------------------------------------------------------------------------------------------


def _patch(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


@pytest.mark.parametrize(
    ("offset", "value", "field", "words"),
    [
        (0, (6).to_bytes(2, "little"), "header.version, offset 0", "version 6"),
        (0, (2).to_bytes(2, "little"), "header.version, offset 0", "version 2"),
        (0, (3).to_bytes(2, "little"), "header.tee_type, offset 4", "version 3"),  # TDX TEE type, SGX v3 quote
        (4, (0x82).to_bytes(4, "little"), "header.tee_type, offset 4", "0x82"),
        (4, (0xFFFFFFFF).to_bytes(4, "little"), "header.tee_type, offset 4", "0xffffffff"),
        (2, (3).to_bytes(2, "little"), "header.attestation_key_type, offset 2", "attestation key type 3"),
        (12, bytes(16), "header.qe_vendor_id, offset 12", "not Intel's"),
    ],
    ids=[
        "version-6",
        "version-2",
        "version-3-with-tdx",
        "tee-type-0x82",
        "tee-type-ffffffff",
        "ak-type-3",
        "vendor-id",
    ],
)
def test_unsupported_header(
    capsys, tmp_path: Path, quote: bytes, offset: int, value: bytes, field: str, words: str
) -> None:
    line = bad_input(capsys, write(tmp_path, "hdr.quote", _patch(quote, offset, value)))
    assert f"field {field}" in line
    assert words in line


def test_v5_bad_body_descriptor(capsys, tmp_path: Path) -> None:
    ev = make_evidence(seed="bad-input", now=1_767_225_600, version=5, body="td15")
    line = bad_input(capsys, write(tmp_path, "v5-type.quote", _patch(ev.quote, 48, (9).to_bytes(2, "little"))))
    assert "field body_descriptor.type, offset 48" in line
    line = bad_input(capsys, write(tmp_path, "v5-size.quote", _patch(ev.quote, 50, (7).to_bytes(4, "little"))))
    assert "field body_descriptor.size, offset 50" in line


def test_huge_auth_data_size(capsys, tmp_path: Path, quote: bytes) -> None:
    line = bad_input(capsys, write(tmp_path, "huge.quote", _patch(quote, 632, b"\xff\xff\xff\xff")))
    assert "field auth_data_size, offset 632" in line
    assert "4294967295" in line


@pytest.mark.parametrize("seed", range(8))
def test_random_bytes(capsys, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    data = rng.randbytes(rng.choice([1, 7, 48, 600, 5000, 70000]))
    if data.lstrip()[:1] in (b"{", b"["):
        data = b"\x00" + data
    line = bad_input(capsys, write(tmp_path, f"random{seed}.bin", data))
    assert f"random{seed}.bin" in line


# -- sizes and files -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"   \n\t\r\n"], ids=["empty", "whitespace"])
def test_empty_file(capsys, tmp_path: Path, content: bytes) -> None:
    line = bad_input(capsys, write(tmp_path, "empty.quote", content))
    assert "empty" in line


def test_100_mb_file_is_refused_before_reading(capsys, tmp_path: Path) -> None:
    path = tmp_path / "big.quote"
    with path.open("wb") as fh:
        fh.truncate(100 * 1024 * 1024)  # sparse: no 100 MB written to disk
    started = time.monotonic()
    line = bad_input(capsys, path)
    assert time.monotonic() - started < 2
    assert "104857600 bytes" in line
    assert str(path) in line


def test_oversized_quote_inside_limits_of_the_file(capsys, tmp_path: Path, quote: bytes) -> None:
    """A hex file below the file limit whose quote is larger than any quote may be."""
    path = write(tmp_path, "long.hex", (quote + bytes(2 * 1024 * 1024)).hex())
    line = bad_input(capsys, path)
    assert "more than 1048576" in line


def test_directory(capsys, tmp_path: Path) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    line = bad_input(capsys, folder)
    assert str(folder) in line and ("directory" in line or "not a regular file" in line)


def test_missing_file(capsys, tmp_path: Path) -> None:
    line = bad_input(capsys, tmp_path / "absent.quote")
    assert "absent.quote" in line and "no such file" in line


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_does_not_hang(capsys, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    started = time.monotonic()
    line = bad_input(capsys, fifo)
    assert time.monotonic() - started < 2
    assert "not a regular file" in line


def test_device_file(capsys) -> None:
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    line = bad_input(capsys, Path("/dev/zero"))
    assert "not a regular file" in line


# -- hex ---------------------------------------------------------------------------------------------------------


def test_odd_hex(capsys, tmp_path: Path, quote: bytes) -> None:
    digits = quote.hex()[:-1]
    line = bad_input(capsys, write(tmp_path, "odd.hex", "0x" + digits))
    assert "odd number of hex digits" in line and str(len(digits)) in line


def test_non_hex_character_offset(capsys, tmp_path: Path, quote: bytes) -> None:
    digits = quote.hex()
    text = "0x" + digits[:100] + "g" + digits[101:]
    line = bad_input(capsys, write(tmp_path, "nonhex.hex", text))
    assert "offset 102" in line and "'g'" in line
    # Offsets count from the start of the file, leading whitespace included.
    line = bad_input(capsys, write(tmp_path, "nonhex2.hex", "\n  " + digits[:10] + "#" + digits[11:]))
    assert "offset 13" in line and "'#'" in line
    # Text beyond the sniffed start that is not hex: a binary byte is named by its value.
    line = bad_input(capsys, write(tmp_path, "nonhex3.hex", digits[:5000].encode() + b"\x01" + digits[5001:].encode()))
    assert "offset 5000" in line and "byte 0x01" in line


def test_non_hex_in_getquote(capsys, tmp_path: Path, quote: bytes) -> None:
    digits = quote.hex()
    line = bad_input(capsys, write(tmp_path, "gq.json", json.dumps({"quote": digits[:20] + "z" + digits[21:]})))
    assert "field quote, offset 20" in line
    line = bad_input(capsys, write(tmp_path, "gq2.json", json.dumps({"quote": "é" + digits}, ensure_ascii=False)))
    assert "field quote, offset 0" in line
    # A lone surrogate escape is legal JSON but cannot be UTF-8: still a clean error.
    line = bad_input(capsys, write(tmp_path, "gq3.json", '{"quote": "\\ud800' + digits + '"}'))
    assert "field quote, offset 0" in line


# -- JSON --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["[1, 2]", '["quote"]', "  [{}]"])
def test_json_array_of_non_events(capsys, tmp_path: Path, text: str) -> None:
    # A JSON array is read as an event log: its first bad entry is named.
    line = bad_input(capsys, write(tmp_path, "list.json", text))
    assert "event_log[0]" in line


def test_empty_event_log_alone_has_no_quote(capsys, tmp_path: Path) -> None:
    line = bad_input(capsys, write(tmp_path, "list.json", "[]"))
    assert "no quote among the evidence" in line


@pytest.mark.parametrize("value", [5, None, True, ["00"], {"hex": "00"}])
def test_json_quote_not_a_string(capsys, tmp_path: Path, value: object) -> None:
    line = bad_input(capsys, write(tmp_path, "gq.json", json.dumps({"quote": value, "event_log": "[]"})))
    assert "field quote" in line and "hex string" in line


def test_json_unknown_keys(capsys, tmp_path: Path) -> None:
    line = bad_input(capsys, write(tmp_path, "odd.json", json.dumps({"hello": 1, "world": [2]})))
    assert "unrecognised JSON evidence" in line and "hello" in line and "world" in line


def test_json_key_with_a_line_break_stays_one_line(capsys, tmp_path: Path) -> None:
    line = bad_input(capsys, write(tmp_path, "nl.json", json.dumps({"line\nbreak": 1, "cr\rkey": 2})))
    assert "line\\nbreak" in line


@pytest.mark.parametrize(
    "text",
    ['{"quote": "00"', '{"quote": }', '{"quote": "00",}', "{'quote': '00'}", '{"quote": "00"} trailing'],
)
def test_invalid_json(capsys, tmp_path: Path, text: str) -> None:
    line = bad_input(capsys, write(tmp_path, "broken.json", text))
    assert "invalid JSON" in line and "offset " in line


@pytest.mark.parametrize(
    "data",
    [b'{"quote": "\xff\xfe00"}', b'{"quote": "00", "x": "\xc3\x28"}', b"[\x80]"],
    ids=["ff-fe", "bad-continuation", "lone-continuation"],
)
def test_json_not_utf8(capsys, tmp_path: Path, data: bytes) -> None:
    line = bad_input(capsys, write(tmp_path, "latin.json", data))
    assert "UTF-8" in line


@pytest.mark.parametrize("depth", [100_000, 1_000_000])
def test_deeply_nested_json(capsys, tmp_path: Path, depth: int) -> None:
    line = bad_input(capsys, write(tmp_path, "deep-list.json", "[" * depth + "]" * depth))
    assert "nests too deeply" in line
    line = bad_input(capsys, write(tmp_path, "deep-obj.json", '{"a":' * depth + "1" + "}" * depth))
    assert "nests too deeply" in line


def test_nested_quote_value_is_not_followed(capsys, tmp_path: Path) -> None:
    line = bad_input(capsys, write(tmp_path, "nested.json", json.dumps({"quote": {"quote": {"quote": "00"}}})))
    assert "field quote" in line


# -- collateral ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", COLLATERAL_KEYS)
def test_collateral_missing_key(capsys, tmp_path: Path, quote: bytes, collateral: dict[str, str], key: str) -> None:
    q = write(tmp_path, "q.quote", quote)
    broken = {k: v for k, v in collateral.items() if k != key}
    col = write(tmp_path, "col.json", json.dumps(broken))
    for line in (bad_input(capsys, q, "--collateral", col), bad_input(capsys, col, q)):
        assert "col.json" in line and f"field {key}" in line, line


@pytest.mark.parametrize("key", HEX_KEYS)
def test_collateral_bad_hex(capsys, tmp_path: Path, quote: bytes, collateral: dict[str, str], key: str) -> None:
    q = write(tmp_path, "q.quote", quote)
    col = write(tmp_path, "col.json", json.dumps({**collateral, key: "zz" + collateral[key][2:]}))
    line = bad_input(capsys, q, "--collateral", col)
    assert f"col.json, field {key}" in line and "not hex" in line


@pytest.mark.parametrize("key", ["tcb_info", "pck_crl", "qe_identity_issuer_chain"])
def test_collateral_value_not_a_string(
    capsys, tmp_path: Path, quote: bytes, collateral: dict[str, str], key: str
) -> None:
    q = write(tmp_path, "q.quote", quote)
    col = write(tmp_path, "col.json", json.dumps({**collateral, key: {"nested": True}}))
    line = bad_input(capsys, q, "--collateral", col)
    assert f"field {key}" in line and "expected a string" in line


def test_collateral_file_that_is_not_json(capsys, tmp_path: Path, quote: bytes) -> None:
    q = write(tmp_path, "q.quote", quote)
    line = bad_input(capsys, q, "--collateral", write(tmp_path, "col.json", '{"pck_crl": '))
    assert "col.json" in line and "invalid JSON" in line


# -- a report as evidence ----------------------------------------------------------------------------------------


@pytest.fixture
def saved_report(capsys, tmp_path: Path, quote: bytes) -> dict:
    q = write(tmp_path, "q.quote", quote)
    col = write(tmp_path, "c.json", fixture_path("dcap-qvl", "tdx_quote_collateral.json").read_bytes())
    out = tmp_path / "r.json"
    code, _, _ = run(capsys, "verify", q, "--collateral", col, "--at", REAL_AT, "--output", out)
    assert code == 0
    return json.loads(out.read_text())


def _tamper(report: dict, **changes: object) -> dict:
    copy = json.loads(json.dumps(report))
    copy["inputs"][0].update(changes)
    return copy


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"content_b64": base64.b64encode(b"other bytes").decode()}, "does not match its sha256"),
        ({"content_b64": "abc"}, "not valid base64"),
        ({"content_b64": "!!!!"}, "not valid base64"),
        ({"content_b64": None}, "was not recorded"),
        ({"sha256": 5}, "malformed input record"),
    ],
    ids=["other-bytes", "bad-padding", "bad-chars", "not-recorded", "bad-record"],
)
def test_tampered_report(capsys, tmp_path: Path, saved_report: dict, change: dict, words: str) -> None:
    path = write(tmp_path, "tampered.json", json.dumps(_tamper(saved_report, **change)))
    line = bad_input(capsys, path)
    assert "tampered.json" in line and "field inputs[0]" in line and words in line


def test_report_without_inputs(capsys, tmp_path: Path, saved_report: dict) -> None:
    path = write(tmp_path, "empty-report.json", json.dumps({**saved_report, "inputs": {}}))
    line = bad_input(capsys, path)
    assert "field inputs" in line


def test_report_whose_recorded_quote_is_bad(capsys, tmp_path: Path, saved_report: dict, quote: bytes) -> None:
    import hashlib

    cut = quote[:300]
    changed = _tamper(saved_report, content_b64=base64.b64encode(cut).decode(), sha256=hashlib.sha256(cut).hexdigest())
    line = bad_input(capsys, write(tmp_path, "cut-report.json", json.dumps(changed)))
    assert "cut-report.json:" in line
    assert "field body.mrowner, offset 280" in line


# -- the library entry point names the file too ----------------------------------------------------------------


def test_load_evidence_names_file_field_offset(tmp_path: Path, quote: bytes) -> None:
    path = write(tmp_path, "cut.quote", quote[:40])
    with pytest.raises(InputError) as info:
        load_evidence(path)
    assert info.value.source == str(path)
    assert (info.value.field, info.value.offset) == ("header.user_data", 28)


# -- a real process ----------------------------------------------------------------------------------------------


def test_subprocess_sample(tmp_path: Path, quote: bytes) -> None:
    """The real interpreter: each case ends with exit 2 and exactly one line on stderr, no traceback."""
    big = tmp_path / "big.bin"
    with big.open("wb") as fh:
        fh.truncate(100 * 1024 * 1024)
    cases = [
        write(tmp_path, "cut48.quote", quote[:48]),
        write(tmp_path, "cut4000.quote", quote[:4000]),
        write(tmp_path, "deep.json", "[" * 200_000 + "]" * 200_000),
        write(tmp_path, "surrogate.json", '{"quote": "\\udc00"}'),
        big,
        tmp_path,
    ]
    env = {**os.environ, "DSTACK_INSPECTOR_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("DSTACK_INSPECTOR_DEBUG", None)
    proc_args = [sys.executable, "-c", _SUBPROCESS_SCRIPT, *map(str, cases)]
    proc = subprocess.run(proc_args, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(proc.stdout)
    assert len(results) == len(cases)
    for path, (code, err) in zip(cases, results, strict=True):
        assert code == 2, (path, err)
        assert err.count("\n") == 1 and "Traceback" not in err, (path, err)
        assert err.startswith(PREFIX)
    # And one case through the module entry point itself, exactly as a user runs it.
    proc = subprocess.run(
        [sys.executable, "-m", "dstack_inspector.cli", "verify", str(cases[0])],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "field body.tee_tcb_svn, offset 48" in proc.stderr


# One interpreter, many CLI runs, each with stderr captured separately (saves the start-up time per case).
_SUBPROCESS_SCRIPT = """
import contextlib, io, json, sys
from dstack_inspector.cli import main
results = []
for path in sys.argv[1:]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["verify", path, "--offline"])
    results.append([code, err.getvalue()])
print(json.dumps(results))
"""


def test_a_malformed_trust_center_result_is_one_line(capsys, tmp_path: Path) -> None:
    """A Trust Center result (its DataObject list, or the VerificationResponse around it) is told apart from an
    event log (also a JSON list); a malformed one is refused naming the object and field."""
    objects = json.loads(fixture_path("trust-center", "debug-data-1.dataObjects.json").read_text())
    app_main = next(o for o in objects if o["id"] == "app-main")
    app_main["fields"]["intel_attestation_report"] = "0x" + "04" * 40  # a quote cut short
    for name, doc in (("objects.json", objects), ("response.json", {"dataObjects": objects, "success": True})):
        err = bad_input(capsys, write(tmp_path, name, json.dumps(doc)))
        assert "field app-main.fields.intel_attestation_report" in err, err
    assert detect(json.dumps([{"imr": 0, "event_type": 1, "digest": "00" * 48, "event": "", "event_payload": ""}])
                  .encode(), "log.json").kind == "event-log"


def test_a_base64_quote_is_read_as_hex_is(capsys, tmp_path: Path, quote: bytes, collateral: dict) -> None:
    """Attestation services (Intel's among them) hand quotes out in base64: taken as a raw file and in a GetQuote
    JSON; a base64 text that is not a quote keeps the hex error, saying what the base64 held."""
    col = write(tmp_path, "col.json", json.dumps(collateral))
    b64 = base64.b64encode(quote).decode()
    wrapped = "\n".join(b64[i:i + 76] for i in range(0, len(b64), 76)) + "\n"
    for path in (write(tmp_path, "quote.b64", wrapped), write(tmp_path, "getquote.json", json.dumps({"quote": b64}))):
        code, out, err = run(capsys, "verify", path, "--collateral", col, "--at", "1751624191", "--offline")
        assert code == 0 and out.startswith("verdict: PASS"), (out, err)
    err = bad_input(capsys, write(tmp_path, "text.b64", base64.b64encode(b"Hello, world!!").decode()))
    assert "not hex: character 'S'" in err and "as base64 it is 14 bytes that do not begin with a DCAP quote" in err
    err = bad_input(capsys, write(tmp_path, "short.b64", base64.b64encode(quote[:100]).decode()))
    assert "truncated" in err and "offset 64" in err
