"""TDX-lite (spec dstack-measurement §10): the real GetQuote fixture, every tampering, the CBOR decoder, the ACPI tool.

The fixture's measurement document, vm_config and event log must reproduce the quote's MRTD and RTMR0-2, and each
expected event must equal the log's, one for one. Every input the result rests on is then changed once and the
measurement must fail with an InputError naming it. Tampered documents are re-encoded with the small CBOR encoder
below and re-bound (checksum file, os_image_hash) so that the failure is the one under test, not the binding.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import struct
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from dstack_verifier.errors import InputError
from dstack_verifier.eventlog import Event, parse_event_log
from dstack_verifier.measure.acpi_tool import (
    TOOL_NAME,
    find_acpi_tool,
    qemu_arguments,
    run_acpi_tool,
    select_acpi,
    synthesize,
    tool_environment,
)
from dstack_verifier.measure.cbor import decode_cbor
from dstack_verifier.measure.lite import (
    decode_measurement_document,
    lite_binding,
    measure_lite,
)
from dstack_verifier.measure.rtmr0 import (
    BOOT0000_DATA,
    BOOT0000_DIGEST,
    BOOT_ORDER_DIGEST,
    CFV_DIGEST,
    SEPARATOR_DIGEST,
    AcpiDigests,
    acpi_from_event_log,
    efi_variable_digest,
)
from dstack_verifier.quote.structure import parse_quote
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.acpi import ACPI_TABLES, RSDT_AT, acpi_table, fake_acpi_tool, posix_only
from tests.support.fixtures import fixture_path

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# spec §3 and §4: the digests dstack-mr hard-codes or the spec prints in full.
SPEC_BOOT0000 = "23ada07f5261f12f34a0bd8e46760962d6b4d576a416f1fea1c64bc656b1d28eacf7047ae6e967c58fd2a98bfa74c298"
SPEC_SEPARATOR = "394341b7182cd227c5c6b07ef8000cdfd86136c4292b8e576573ad7ed9ae41019f5818b4b971c9effc60e1ad9f1289f0"
SPEC_BOOT_ORDER = "1dd6f7b457ad880d840d41c961283bab688e94e4b59359ea45686581e90feccea3c624b1226113f824f315eb60ae0a7c"
SPEC_RTMR1_CONSTANTS = [
    "77a0dab2312b4e1e57a84d865a21e5b2ee8d677a21012ada819d0a98988078d3d740f6346bfe0abaa938ca20439a8d71",
    SPEC_SEPARATOR,
    "214b0bef1379756011344877743fdc2a5382bac6e70362d624ccf3f654407c1b4badf7d8f9295dd3dabdef65b27677e0",
    "0a2e01c85deae718a530ad8c6d20a84009babe6c8989269e950d8cf440c6e997695e64d455c4174a652cd080f6230b74",
]
SPEC_EFI_VARIABLES = {  # spec §3: first and last 4 bytes
    "SecureBoot": ("9dc3a1f8", "e6fb"), "PK": ("6f2e3cbc", "0f1b"), "KEK": ("d607c0ef", "c6f9"),
    "db": ("08a74f89", "e127"), "dbx": ("18cc6e01", "828d"),
}
RTMR0_WHAT = [
    "TD HOB", "CFV (configuration firmware volume)", "EFI variable SecureBoot", "EFI variable PK", "EFI variable KEK",
    "EFI variable db", "EFI variable dbx", "separator", "ACPI loader commands (etc/table-loader)", "ACPI RSDP",
    "ACPI tables", "BootOrder", "Boot0000",
]


# --------------------------------------------------------------------------------------------------------------------
# The fixture, and a CBOR encoder for re-encoding it


@cache
def _fixture() -> dict[str, Any]:
    return json.loads(fixture_path("dstack", "tdx-lite-getquote.json").read_text())


def vm_config() -> dict[str, Any]:
    return copy.deepcopy(json.loads(_fixture()["vm_config"]))


def events() -> list[Event]:
    return parse_event_log(_fixture()["event_log"], "tdx-lite-getquote.json")


def quote_registers() -> dict[str, bytes]:
    fields = parse_quote(bytes.fromhex(_fixture()["quote"])).body.fields
    return {name: fields[name] for name in ("mrtd", "rtmr0", "rtmr1", "rtmr2")}


def document_bytes() -> bytes:
    return base64.b64decode(vm_config()["tdx_measurement"]["measurement"])


def cbor_encode(value: Any) -> bytes:
    def head(major: int, n: int) -> bytes:
        if n < 24:
            return bytes([major << 5 | n])
        for info, width in ((24, 1), (25, 2), (26, 4), (27, 8)):
            if n < 1 << (8 * width):
                return bytes([major << 5 | info]) + n.to_bytes(width, "big")
        raise ValueError(n)

    if value is False or value is True or value is None:
        return bytes([0xF4 if value is False else 0xF5 if value is True else 0xF6])
    if isinstance(value, int):
        return head(0, value)
    if isinstance(value, bytes):
        return head(2, len(value)) + value
    if isinstance(value, str):
        raw = value.encode()
        return head(3, len(raw)) + raw
    if isinstance(value, list):
        return head(4, len(value)) + b"".join(cbor_encode(v) for v in value)
    if isinstance(value, dict):
        return head(5, len(value)) + b"".join(cbor_encode(k) + cbor_encode(v) for k, v in value.items())
    raise TypeError(type(value))


def rebound(config: dict[str, Any], *, document: bytes | None = None, checksum_file: bytes | None = None
            ) -> dict[str, Any]:
    """The config with a new document and/or checksum file, the checksum line and os_image_hash made to match."""
    material = config["tdx_measurement"]
    if document is not None:
        material["measurement"] = base64.b64encode(document).decode()
        if checksum_file is None:
            checksum_file = f"{hashlib.sha256(document).hexdigest()}  measurement.tdx.cbor\n".encode()
    if checksum_file is not None:
        material["checksum_file"] = base64.b64encode(checksum_file).decode()
        config["os_image_hash"] = hashlib.sha256(checksum_file).hexdigest()
    return config


def with_document(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    doc = decode_cbor(document_bytes())
    change(doc)
    return rebound(vm_config(), document=cbor_encode(doc))


def failure(config: dict[str, Any], log: list[Event] | None = None) -> InputError:
    with pytest.raises(InputError) as info:
        measure_lite(config, events() if log is None else log)
    return info.value


# --------------------------------------------------------------------------------------------------------------------
# The real fixture


def test_reproduces_the_quote() -> None:
    measurement = measure_lite(vm_config(), events())
    quoted = quote_registers()
    for register in ("mrtd", "rtmr0", "rtmr1", "rtmr2"):
        assert measurement.value(register) == quoted[register], register
    assert measurement.mrtd_variant == "two_pass"  # qemu 8.2.2, no override
    assert measurement.path == "tdx-lite"
    assert measurement.acpi_source == "event-log-only"
    assert measurement.inputs["acpi_tables_verified"] is False
    assert measurement.inputs["os_image_hash"] == vm_config()["os_image_hash"]
    assert measurement.inputs["measurement_sha256"].startswith("8c9e955f")
    json.dumps(measurement.to_json())  # the report can serialise it


@pytest.mark.parametrize(("imr", "count"), [(0, 13), (1, 5), (2, 2)])
def test_every_expected_event_equals_the_log(imr: int, count: int) -> None:
    measurement = measure_lite(vm_config(), events())
    expected = measurement.register_events(f"rtmr{imr}")  # type: ignore[arg-type]
    logged = [e for e in events() if e.imr == imr]
    assert len(expected) == len(logged) == count
    for exp, log in zip(expected, logged, strict=True):
        assert exp.digest == log.digest, exp.what
        assert exp.event_type == log.event_type, exp.what
    assert [e.index for e in expected] == list(range(count))


def test_rtmr0_events_say_what_they_measure() -> None:
    expected = measure_lite(vm_config(), events()).register_events("rtmr0")
    assert [e.what for e in expected] == RTMR0_WHAT
    assert [e.source for e in expected] == ["measurement-document", *["constant"] * 7, *["event-log-only"] * 3,
                                           "constant", "constant"]


def test_constants_follow_their_definitions() -> None:
    assert SEPARATOR_DIGEST.hex() == SPEC_SEPARATOR
    assert BOOT_ORDER_DIGEST.hex() == SPEC_BOOT_ORDER
    assert len(BOOT0000_DATA) == 62 and BOOT0000_DIGEST.hex() == SPEC_BOOT0000
    assert CFV_DIGEST.hex().startswith("344bc51c")
    for name, (head, tail) in SPEC_EFI_VARIABLES.items():
        guid = "8be4df61-93ca-11d2-aa0d-00e098032b8c" if name in ("SecureBoot", "PK", "KEK") else \
            "d719b2cb-3d3a-4596-a3bc-dad00e67656f"
        digest = efi_variable_digest(name, guid).hex()
        assert digest.startswith(head) and digest.endswith(tail), name
    rtmr1 = measure_lite(vm_config(), events()).register_events("rtmr1")
    assert [e.digest.hex() for e in rtmr1[1:]] == SPEC_RTMR1_CONSTANTS


def test_document_round_trips_through_our_encoder() -> None:
    raw = document_bytes()
    assert cbor_encode(decode_cbor(raw)) == raw  # the decoder loses nothing the document holds
    doc = decode_measurement_document(raw)
    assert doc.version == 3 and doc.ovmf == "pre202505" and doc.td_hob.hex() == "80100904000609020b021010"
    assert doc.unknown_keys == ()


def test_binding_description() -> None:
    binding = lite_binding(vm_config())
    assert binding["ok"] is True and binding["error"] is None
    assert binding["checksum_file_matches_os_image_hash"] and binding["measurement_matches_listing"]
    assert binding["checksum_file"]["entries"] == [
        {"name": "measurement.tdx.cbor", "sha256": binding["measurement"]["sha256"]}]
    config = vm_config()
    config["os_image_hash"] = "00" * 32
    bad = lite_binding(config)
    assert bad["ok"] is False and "os_image_hash" in bad["error"]
    assert bad["checksum_file_matches_os_image_hash"] is False
    assert lite_binding({})["present"] is False and lite_binding({})["ok"] is False


# --------------------------------------------------------------------------------------------------------------------
# Tampering: each must fail naming what changed


def _flip(b64: str, index: int) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[index] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize("index", [0, 40, 70, 86])
def test_checksum_file_byte(index: int) -> None:
    config = vm_config()
    config["tdx_measurement"]["checksum_file"] = _flip(config["tdx_measurement"]["checksum_file"], index)
    err = failure(config)
    assert err.field == "tdx_measurement.checksum_file" and "os_image_hash" in err.message


@pytest.mark.parametrize("index", [0, 100, 383])
def test_measurement_byte(index: int) -> None:
    config = vm_config()
    config["tdx_measurement"]["measurement"] = _flip(config["tdx_measurement"]["measurement"], index)
    err = failure(config)
    assert err.field == "tdx_measurement.measurement" and "measurement.tdx.cbor" in err.message


def test_os_image_hash() -> None:
    config = vm_config()
    config["os_image_hash"] = "07a2388c" + config["os_image_hash"][8:]
    err = failure(config)
    assert "vm_config.os_image_hash" in err.message
    config["os_image_hash"] = "not hex"
    assert failure(config).field == "os_image_hash"
    del config["os_image_hash"]
    assert failure(config).field == "os_image_hash"


def test_listed_hash_rebound_to_os_image_hash() -> None:
    # The checksum file is re-bound to os_image_hash, but lists another document hash.
    checksum = ("00" * 32 + "  measurement.tdx.cbor\n").encode()
    err = failure(rebound(vm_config(), checksum_file=checksum))
    assert err.field == "tdx_measurement.measurement"


@pytest.mark.parametrize(("checksum", "words"), [
    (b"", "no line"),
    (b"%s  measurement.tdx.cbor\n%s  measurement.tdx.cbor\n", "2 lines"),
    (b"%s  bzImage\n", "no line"),
    (b"%s\n", "no file name"),
    (b"abcd  measurement.tdx.cbor\n", "not 32 bytes"),
    (b"\xff\xfe  measurement.tdx.cbor\n", "UTF-8"),
])
def test_checksum_file_lines(checksum: bytes, words: str) -> None:
    digest = hashlib.sha256(document_bytes()).hexdigest().encode()
    content = checksum.replace(b"%s", digest)
    err = failure(rebound(vm_config(), checksum_file=content))
    assert err.field == "tdx_measurement.checksum_file" and words in err.message


def test_checksum_file_with_other_files_and_crlf() -> None:
    digest = hashlib.sha256(document_bytes()).hexdigest()
    content = f"{'1' * 64}  ovmf.fd\r\n{digest}  measurement.tdx.cbor\r\n\n{'2' * 64}  metadata.json\n".encode()
    measurement = measure_lite(rebound(vm_config(), checksum_file=content), events())
    assert measurement.mrtd == quote_registers()["mrtd"]


def test_missing_or_malformed_material() -> None:
    config = vm_config()
    del config["tdx_measurement"]
    assert failure(config).field == "tdx_measurement"
    config = vm_config()
    config["tdx_measurement"]["measurement"] = "not base64!"
    assert failure(config).field == "tdx_measurement.measurement"
    config = vm_config()
    config["tdx_measurement"]["checksum_file"] = config["tdx_measurement"]["checksum_file"].rstrip("=")[:-1]
    assert failure(config).field == "tdx_measurement.checksum_file"


def test_ovmf_variant_in_vm_config() -> None:
    config = vm_config()
    config["ovmf_variant"] = "stable202505"
    err = failure(config)
    assert err.field == "ovmf_variant" and "pre202505" in err.message
    del config["ovmf_variant"]  # absent: the document's variant applies
    assert measure_lite(config, events()).rtmr0 == quote_registers()["rtmr0"]


def test_ovmf_variant_in_the_document() -> None:
    config = with_document(lambda d: d["tdvf"].__setitem__("ovmf", "stable202505"))
    err = failure(config)
    assert err.field == "ovmf_variant"  # step 5: the vm_config still says pre202505
    del config["ovmf_variant"]
    err = failure(config)
    assert err.field == "tdvf.ovmf" and "stable202505" in err.message


@pytest.mark.parametrize("memory_size", [0x40000000, 0x7FFFF000, 0x80001000, 0x90000000, 0xAFFFF000])
def test_memory_size_not_allowed(memory_size: int) -> None:
    config = vm_config()
    config["memory_size"] = memory_size
    err = failure(config)
    assert err.field == "memory_size" and "not allowed" in err.message


@pytest.mark.parametrize("memory_size", [0xB0000000, 0x100000000, 0x1000000000])
def test_high_memory_is_allowed_and_changes_only_the_td_hob(memory_size: int) -> None:
    config = vm_config()
    config["memory_size"] = memory_size
    measurement = measure_lite(config, events())
    logged = [e.digest for e in events() if e.imr == 0]
    expected = [e.digest for e in measurement.register_events("rtmr0")]
    assert expected[0] != logged[0] and expected[1:] == logged[1:]
    assert measurement.rtmr1 == quote_registers()["rtmr1"]


def test_memory_size_missing_or_not_a_number() -> None:
    for value in (None, "2147483648", True, -1):
        config = vm_config()
        config["memory_size"] = value
        assert failure(config).field == "memory_size", value


@pytest.mark.parametrize("name", ["acpi-loader", "acpi-rsdp", "acpi-tables"])
def test_missing_acpi_event(name: str) -> None:
    log = [e for e in events() if e.name != name]
    err = failure(vm_config(), log)
    assert err.field == name and f"missing {name}" in err.message


def test_acpi_events_by_name_not_position() -> None:
    log = events()
    acpi = acpi_from_event_log(log)
    assert acpi.log_indices == (8, 9, 10)
    # reorder: loader last; the digests follow the names
    reordered = [*log[:8], log[9], log[10], log[8], *log[11:]]
    again = acpi_from_event_log(reordered)
    assert (again.loader, again.rsdp, again.tables) == (acpi.loader, acpi.rsdp, acpi.tables)


def test_unlabelled_or_wrong_acpi_events() -> None:
    log = events()
    unlabelled = [e.model_copy(update={"name": ""}) if e.name.startswith("acpi-") else e for e in log]
    err = failure(vm_config(), unlabelled)
    assert err.field == "acpi-loader" and "did not label" in err.message
    twice = [e.model_copy(update={"name": "acpi-loader"}) if e.name == "acpi-rsdp" else e for e in log]
    assert failure(vm_config(), twice).field == "acpi-loader"
    extra = [*log, log[8].model_copy(update={"name": "acpi-extra"})]
    assert "found 4" in failure(vm_config(), extra).message
    short = [e.model_copy(update={"digest": e.digest[:32]}) if e.name == "acpi-tables" else e for e in log]
    assert failure(vm_config(), short).field == "event_log[10].digest"


def test_cbor_version() -> None:
    err = failure(with_document(lambda d: d.__setitem__("version", 2)))
    assert err.field == "version" and "3" in err.message
    err = failure(with_document(lambda d: d.pop("version")))
    assert err.field == "version"


@pytest.mark.parametrize(("change", "field"), [
    (lambda d: d["image"].__setitem__("kernel_authenticode", b"\0" * 47), "image.kernel_authenticode"),
    (lambda d: d["image"].pop("cmdline_sha384"), "image.cmdline_sha384"),
    (lambda d: d["image"].__setitem__("initrd_sha384", "00" * 48), "image.initrd_sha384"),
    (lambda d: d["tdvf"]["mrtd"].__setitem__("two_pass", b"\0" * 32), "tdvf.mrtd.two_pass"),
    (lambda d: d["tdvf"]["mrtd"].pop("single_pass"), "tdvf.mrtd.single_pass"),
    (lambda d: d["tdvf"].__setitem__("td_hob", bytes.fromhex("80100904000609020b0210")), "td_hob.ranges[3].page_count"),
    (lambda d: d.__setitem__("tdvf", []), "tdvf"),
])
def test_document_fields(change: Callable[[dict[str, Any]], None], field: str) -> None:
    assert failure(with_document(change)).field == field


def test_unused_candidate_length_is_not_checked() -> None:
    # Step 8 checks the chosen candidate only (two_pass here).
    config = with_document(lambda d: d["tdvf"]["mrtd"].__setitem__("single_pass", b"\0" * 3))
    assert measure_lite(config, events()).mrtd == quote_registers()["mrtd"]


def test_unknown_keys_are_reported_not_used() -> None:
    config = with_document(lambda d: d["tdvf"].__setitem__("acpi", b"\1" * 48))
    measurement = measure_lite(config, events())
    assert measurement.inputs["measurement_document"]["unknown_keys"] == ["tdvf.acpi"]
    assert measurement.rtmr0 == quote_registers()["rtmr0"]


def test_mrtd_variant_override_picks_the_other_candidate() -> None:
    config = vm_config()
    config["qemu_single_pass_add_pages"] = False  # read as the two-pass override: false means single-pass
    measurement = measure_lite(config, events())
    assert measurement.mrtd_variant == "single_pass"
    assert measurement.mrtd == decode_measurement_document(document_bytes()).mrtd["single_pass"]
    assert measurement.mrtd != quote_registers()["mrtd"]


def test_changed_witness_changes_rtmr0() -> None:
    witness = bytes.fromhex("80100904000609020b021011")  # the last range one page longer
    config = with_document(lambda d: d["tdvf"].__setitem__("td_hob", witness))
    measurement = measure_lite(config, events())
    assert measurement.rtmr0 != quote_registers()["rtmr0"]
    assert measurement.register_events("rtmr0")[0].digest != events()[0].digest


# --------------------------------------------------------------------------------------------------------------------
# The CBOR decoder


@pytest.mark.parametrize(("data", "words"), [
    (bytes.fromhex("9f01ff"), "indefinite"),
    (bytes.fromhex("c11a514b67b0"), "tag"),
    (bytes.fromhex("20"), "negative"),
    (bytes.fromhex("f93c00"), "floating"),
    (bytes.fromhex("f7"), "simple value 23"),
    (bytes.fromhex("f820"), "simple value"),
    (bytes.fromhex("1817"), "shortest"),
    (bytes.fromhex("190017"), "shortest"),
    (bytes.fromhex("a2616101616102"), "duplicate"),
    (bytes.fromhex("a10101"), "text strings"),
    (bytes.fromhex("0101"), "trailing"),
    (bytes.fromhex("5a00010000"), "past the end"),
    (bytes.fromhex("62c328"), "UTF-8"),
    (bytes.fromhex("9bffffffffffffffff"), "cannot fit"),
    (bytes.fromhex("1c"), "reserved"),
    (b"", "end of data"),
    (b"\x81" * 17 + b"\x00", "deeper"),
])
def test_cbor_refuses(data: bytes, words: str) -> None:
    with pytest.raises(InputError) as info:
        decode_cbor(data)
    assert words in info.value.message and info.value.offset is not None


def test_cbor_limits_and_paths() -> None:
    with pytest.raises(InputError) as info:
        decode_cbor(bytes.fromhex("a16161a1616280"), max_depth=1)
    assert info.value.field == "a"
    with pytest.raises(InputError):
        decode_cbor(b"\x80" * 10, max_bytes=5)
    with pytest.raises(InputError):
        decode_cbor(cbor_encode(list(range(100))), max_items=50)
    with pytest.raises(InputError) as info:
        decode_cbor(bytes.fromhex("a1616182f420"))
    assert info.value.field == "a[1]"
    assert decode_cbor(bytes.fromhex("a3616101616280616360")) == {"a": 1, "b": [], "c": ""}
    assert decode_cbor(bytes.fromhex("83f4f5f6")) == [False, True, None]
    assert decode_cbor(bytes.fromhex("1bffffffffffffffff")) == (1 << 64) - 1


CBOR_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(0, (1 << 64) - 1) | st.binary(max_size=64) | st.text(max_size=32),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)


@FUZZ
@given(CBOR_VALUES)
def test_cbor_round_trip(value: Any) -> None:
    assert decode_cbor(cbor_encode(value)) == value


@FUZZ
@given(st.binary(max_size=200))
def test_cbor_fuzz_random_bytes(data: bytes) -> None:
    try:
        decode_cbor(data)
    except InputError:
        pass


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 383), st.integers(0, 255)), min_size=1, max_size=4))
def test_cbor_fuzz_mutated_document(patches: list[tuple[int, int]]) -> None:
    raw = bytearray(document_bytes())
    for where, value in patches:
        raw[where] = value
    try:
        decode_cbor(bytes(raw))
        decode_measurement_document(bytes(raw))
    except InputError:
        pass


# --------------------------------------------------------------------------------------------------------------------
# dstack-acpi-tables


def test_synthesized_rsdp_and_loader() -> None:
    tables = synthesize(ACPI_TABLES)
    assert tables.rsdp == b"RSD PTR \0BOCHS \0" + struct.pack("<I", RSDT_AT)
    assert len(tables.loader) == 4096
    commands = [tables.loader[i:i + 128] for i in range(0, 4096, 128)]
    kinds = [struct.unpack_from("<I", c)[0] for c in commands]
    assert kinds == [1, 1, 3, 2, 2, 2, 3, 3, 3, 3, 2, 2, 2, 2, 3, 2, 3] + [0] * 15
    assert commands[0][4:17] == b"etc/acpi/rsdp" and struct.unpack_from("<IB", commands[0], 60) == (16, 2)
    assert struct.unpack_from("<III", commands[2], 60) == (64 + 9, 64, 200)  # DSDT checksum
    assert struct.unpack_from("<IB", commands[5], 116) == (64 + 200 + 140, 8)  # FACP X_DSDT pointer
    assert struct.unpack_from("<III", commands[16], 60) == (8, 0, 20)  # RSDP checksum
    assert [t[0] for t in tables.table_list] == ["FACS", "DSDT", "FACP", "APIC", "MCFG", "WAET", "RSDT"]


@pytest.mark.parametrize(("blob", "words"), [
    (ACPI_TABLES[:-10], "length"),
    (ACPI_TABLES + b"XSDT", "too few"),
    (acpi_table(b"DSDT", 40), "no FACP"),
    (b"DSDT" + struct.pack("<I", 0), "length 0"),
])
def test_malformed_tables(blob: bytes, words: str) -> None:
    with pytest.raises(InputError) as info:
        synthesize(blob)
    assert words in info.value.message


def test_arguments_for_the_fixture_vm() -> None:
    args = qemu_arguments(vm_config(), firmware="ovmf.fd", kernel="bzImage")
    assert args[:6] == ["-cpu", "qemu64", "-smp", "2", "-m", "2048M"]
    assert args[args.index("-bios") + 1] == "ovmf.fd" and args[args.index("-kernel") + 1] == "bzImage"
    assert args[args.index("-machine") + 1].endswith("smm=off,pic=on")  # QEMU 8.2.2 defaults to pic=on
    assert "-virtfs" in args and "-global" not in args and "-numa" not in args
    assert args.count("virtio-net-pci,netdev=net0") == 1
    assert tool_environment(vm_config()) == {"QEMU_ACPI_COMPAT_VER": "8.2.2"}
    config = vm_config() | {"num_gpus": 2, "hotplug_off": True, "pci_hole64_size": 1 << 36, "host_share_mode": "vhd",
                            "num_nics": 2, "num_verity_volumes": 1}
    args = qemu_arguments(config, firmware="f", kernel="k")
    assert "vfio-pci,host=00:00.0,bus=pci.1,iommufd=iommufd0" in args
    assert "q35-pcihost.pci-hole64-size=0x1000000000" in args and "-virtfs" not in args
    assert args.index("virtio-blk-pci,drive=vol0") < args.index("virtio-net-pci,netdev=net1")
    for bad in ({"swtpm": True}, {"host_share_mode": "nfs"}, {"cpu_count": 0}, {"num_gpus": 10_000}):
        with pytest.raises(InputError):
            qemu_arguments(vm_config() | bad, firmware="f", kernel="k")


@posix_only
def test_tool_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tables.bin").write_bytes(ACPI_TABLES)
    record = tmp_path / "call.json"
    fake_acpi_tool(tmp_path, f"json.dump({{'args': sys.argv[1:], 'compat': os.environ.get('QEMU_ACPI_COMPAT_VER')}}, "
                         f"open({str(record)!r}, 'w'))\n"
                         f"sys.stdout.buffer.write(open({str(tmp_path / 'tables.bin')!r}, 'rb').read())")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_acpi_tool() == tmp_path / TOOL_NAME
    acpi = select_acpi(vm_config(), events(), firmware="ovmf.fd", kernel="bzImage")
    assert acpi.source == "acpi-tool"
    assert acpi.tables == hashlib.sha384(ACPI_TABLES).digest()
    assert acpi.rsdp == hashlib.sha384(synthesize(ACPI_TABLES).rsdp).digest()
    call = json.loads(record.read_text())
    assert call["compat"] == "8.2.2" and call["args"] == qemu_arguments(vm_config(), firmware="ovmf.fd",
                                                                         kernel="bzImage")
    measurement = measure_lite(vm_config(), events(), acpi=acpi)
    assert measurement.acpi_source == "acpi-tool" and measurement.inputs["acpi_tables_verified"] is True
    assert {e.source for e in measurement.register_events("rtmr0")[8:11]} == {"acpi-tool"}
    assert measurement.rtmr0 != quote_registers()["rtmr0"]  # our synthetic tables are not the VM's


def test_tool_absent_falls_back_to_the_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    acpi = select_acpi(vm_config(), events(), firmware="ovmf.fd", kernel="bzImage")
    assert acpi.source == "event-log-only" and "not found on PATH" in acpi.note
    configured = select_acpi(vm_config(), events(), tool=tmp_path / "nowhere")
    assert "not found at" in configured.note
    measurement = measure_lite(vm_config(), events(), acpi=acpi)
    assert measurement.acpi_source == "event-log-only" and "not found" in measurement.inputs["acpi_note"]
    assert measurement.rtmr0 == quote_registers()["rtmr0"]


@posix_only
def test_tool_without_image_files_falls_back(tmp_path: Path) -> None:
    tool = fake_acpi_tool(tmp_path, "sys.exit(3)")
    acpi = select_acpi(vm_config(), events(), tool=tool)
    assert acpi.source == "event-log-only" and "ovmf.fd and bzImage" in acpi.note


@posix_only
@pytest.mark.parametrize(("body", "words"), [
    ("sys.stderr.write('qemu: no KVM'); sys.exit(1)", "status 1: qemu: no KVM"),
    ("time.sleep(10)", "did not finish"),
    ("pass", "wrote 0 bytes"),
    ("sys.stdout.write('RSDT')", "too few"),
])
def test_tool_failures(tmp_path: Path, body: str, words: str) -> None:
    tool = fake_acpi_tool(tmp_path, body)
    with pytest.raises(InputError) as info:
        run_acpi_tool(tool, vm_config(), firmware="f", kernel="k", timeout=1.0)
    assert words in info.value.message
    fallback = select_acpi(vm_config(), events(), tool=tool, firmware="f", kernel="k", timeout=1.0)
    assert fallback.source == "event-log-only" and words in fallback.note


def test_acpi_digests_given_by_the_caller() -> None:
    acpi = acpi_from_event_log(events())
    given_digests = AcpiDigests(loader=acpi.loader, rsdp=acpi.rsdp, tables=acpi.tables, source="acpi-tool",
                                note="regenerated")
    measurement = measure_lite(vm_config(), events(), acpi=given_digests)
    assert measurement.rtmr0 == quote_registers()["rtmr0"] and measurement.acpi_source == "acpi-tool"

