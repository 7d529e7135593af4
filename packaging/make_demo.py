"""Write the demo evidence pack (resources/demo/): one synthetic dstack app, complete, whose every check passes.

    .venv/bin/python packaging/make_demo.py [OUT_DIR]      (default: resources/demo beside this folder)

The app "demo-app" as a dstack guest would present it:
  * getquote.json    the guest agent's GetQuote answer: a TDX quote v4, the event log (firmware events of RTMR0-2,
                     then the dstack runtime events of RTMR3), report_data and vm_config, which carries the OS
                     image's TDX-lite material (its sha256sum.txt and measurement.tdx.cbor, spec §10);
  * app-compose.json the exact app-compose bytes whose sha256 is the compose-hash event and sits in mr_config_id;
  * app-cert.pem     the app's RA-TLS chain: leaf → "Dstack App CA" → self-signed "Dstack KMS CA", the leaf carrying
                     the quote, the event log, the app id and its usage; the quote's report_data binds the leaf key;
  * collateral.json  the DCAP collateral, and demo_root_ca.der, the self-made root that anchors quote and collateral.

Order of construction (the quote and the leaf refer to each other): the KMS CA and App CA first (the KMS CA key is
named by the key-provider event), then the OS image (its measurement document, and the checksum file whose sha256 is
the os_image_hash), then the event log and its replay into RTMR0-3, then the leaf key and from it report_data, then
the quote, and last the leaf, issued with that quote inside.

The OS image is a stand-in too, but a consistent one: its measurement document holds seed-derived kernel, command
line, initrd and MRTD digests and a realistic TD HOB witness, and the firmware events of RTMR0-2 are exactly the ones
the verifier's own TDX-lite code (dstack_verifier.measure) expects for that document and this vm_config, so the OS
checks pass by construction. The three ACPI digests are seed-derived and, as in a real TDX-lite boot, taken from the
event log by the verifier.

Deterministic: every key is derived from the seed, signatures are RFC 6979, dates come from the fixed instant, so two
runs give byte-identical files. Nothing here is Intel's or a real KMS's: the pack verifies only against its own root
("Demo SGX Root CA — not Intel") and proves nothing about any real machine.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from dstack_verifier.demo import DEMO_ANCHOR, DEMO_EVIDENCE, DEMO_FILES, DEMO_LABEL, DEMO_SCHEMA
from dstack_verifier.measure.kernel import rtmr1_events
from dstack_verifier.measure.lite import MEASUREMENT_FILENAME
from dstack_verifier.measure.model import ExpectedEvent, Register
from dstack_verifier.measure.rtmr0 import (
    ACPI_EVENT_NAMES,
    ACPI_EVENT_PAYLOAD,
    EV_PLATFORM_CONFIG_FLAGS,
    AcpiDigests,
    replay_digests,
    rtmr0_events,
)
from dstack_verifier.measure.rtmr2 import rtmr2_events_from_digests
from dstack_verifier.measure.tdhob import TdHobLayout, encode_witness, td_hob_digest
from dstack_verifier.measure.tdvf import MRTD_VARIANTS, qemu_options
from dstack_verifier.synth import PkiOptions, derive_private_key, make_evidence
from dstack_verifier.synth.der import octet_string

SEED = "dstack-inspector-demo"
INSTANT = "2026-06-01T00:00:00Z"
ROOT_CN = "Demo SGX Root CA — not Intel"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "resources" / "demo"

DAY = 86_400
YEAR = 365 * DAY
# The guest booted six hours before the instant the demo is verified at; its app was deployed a month earlier.
BOOT_BEFORE = 6 * 3600
APP_DEPLOYED_BEFORE = 30 * DAY
KMS_CREATED_BEFORE = 400 * DAY

RUNTIME_EVENT_TYPE = 0x08000001

# dstack RA-TLS certificate extensions (ra-tls crate): each value a DER OCTET STRING wrapping the raw bytes.
OID_RATLS_QUOTE = "1.3.6.1.4.1.62397.1.1"
OID_RATLS_EVENT_LOG = "1.3.6.1.4.1.62397.1.2"
OID_RATLS_APP_ID = "1.3.6.1.4.1.62397.1.3"
OID_RATLS_USAGE = "1.3.6.1.4.1.62397.1.4"
RATLS_ORG = "dstack-inspector demo (synthetic, not a real KMS)"
APP_DOMAIN = "demo-app.dstack.example"

# The firmware part of the log, in the order OVMF/TDVF and the kernel's EFI stub measure it (the interleaving of a
# real dstack boot, as in the lite GetQuote fixture): (register, index of the event within that register). RTMR0's
# 13 events are interrupted by the kernel's Authenticode (RTMR1 #0) before BootOrder and Boot0000; RTMR2's command
# line and initrd come after RTMR1's separator, before the two Exit Boot Services actions.
FIRMWARE_ORDER: tuple[tuple[Register, int], ...] = (
    *(("rtmr0", i) for i in range(11)),  # TD HOB, CFV, 5 EFI variables, separator, 3 ACPI DATA
    ("rtmr1", 0),  # the kernel
    ("rtmr0", 11),  # BootOrder
    ("rtmr0", 12),  # Boot0000
    ("rtmr1", 1),  # "Calling EFI Application from Boot Option"
    ("rtmr1", 2),  # separator
    ("rtmr2", 0),  # the kernel command line
    ("rtmr2", 1),  # the initrd
    ("rtmr1", 3),  # "Exit Boot Services Invocation"
    ("rtmr1", 4),  # "Exit Boot Services Returned with Success"
)
_IMR: dict[Register, int] = {"rtmr0": 0, "rtmr1": 1, "rtmr2": 2}

# The demo VM: 4 GiB (TDX-lite allows exactly 2 GiB or at least 0xB0000000), QEMU 8.2.2 (so two-pass MRTD).
MEMORY_SIZE = 4 << 30
QEMU_VERSION = "8.2.2"
OVMF_VARIANT = "pre202505"
# The accepted ranges of dstack's OVMF (its TD_HOB and TEMP_MEM sections, in 4 KiB pages' bytes) and the TD HOB's own
# address: the layout the TdHobWitnessV1 of a real dstack image describes.
TD_HOB_LAYOUT = TdHobLayout(
    hob_base=0x809000,
    ranges=((0x800000, 0x806000), (0x809000, 0x80B000), (0x80B000, 0x80D000), (0x810000, 0x820000)),
)
# The other files a dstack release's sha256sum.txt lists, before measurement.tdx.cbor (spec §8.1).
IMAGE_FILES = ("ovmf.fd", "bzImage", "initramfs.cpio.gz", "metadata.json")

DOCKER_COMPOSE = (
    "services:\n"
    "  web:\n"
    f"    image: nginx@sha256:{hashlib.sha256(f'{SEED}/nginx-image'.encode()).hexdigest()}\n"
    "    ports:\n"
    '      - "80:80"\n'
    "    environment:\n"
    "      - WELCOME_MESSAGE=${WELCOME_MESSAGE}\n"
    "    volumes:\n"
    "      - /var/run/dstack.sock:/var/run/dstack.sock\n"
    "    restart: always\n"
)

# The app-compose of the demo app, as the deployer wrote it: its exact bytes are hashed into the compose hash.
DEMO_COMPOSE: bytes = json.dumps(
    {
        "manifest_version": 2,
        "name": "demo-app",
        "runner": "docker-compose",
        "docker_compose_file": DOCKER_COMPOSE,
        "kms_enabled": True,
        "gateway_enabled": True,
        "local_key_provider_enabled": False,
        "key_provider_id": "",
        "public_logs": True,
        "public_sysinfo": True,
        "public_tcbinfo": True,
        "allowed_envs": ["WELCOME_MESSAGE"],
        "no_instance_id": False,
        "secure_time": False,
    },
    indent=2,
).encode()


def _sha384(data: bytes) -> bytes:
    return hashlib.sha384(data).digest()


def _derived(label: str, length: int) -> bytes:
    """Seed-derived bytes standing for an identifier or a measurement (up to 48)."""
    return _sha384(f"{SEED}/{label}".encode())[:length]


def _utc(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _serial(label: str) -> int:
    # 159 bits: positive and within RFC 5280's 20 octets, like dstack's random serials.
    return int.from_bytes(hashlib.sha256(f"{SEED}/serial/{label}".encode()).digest()[:20], "big") >> 1 or 1


def _spki(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


# --------------------------------------------------------------------------------------------------- OS image


def _cbor_head(major: int, argument: int) -> bytes:
    """A CBOR item head in its shortest form (RFC 8949 §3, §4.2.1)."""
    if argument < 24:
        return bytes([major << 5 | argument])
    for info, width in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if argument < 1 << (8 * width):
            return bytes([major << 5 | info]) + argument.to_bytes(width, "big")
    raise ValueError(f"{argument} does not fit a CBOR head")


def cbor_encode(value: Any) -> bytes:
    """Deterministic CBOR of what a measurement document holds: definite-length maps with text keys (kept in the
    order given), text and byte strings, unsigned integers. Anything else is a programming error."""
    if isinstance(value, bool) or (isinstance(value, int) and value < 0):
        raise TypeError(f"not encodable here: {value!r}")
    if isinstance(value, int):
        return _cbor_head(0, value)
    if isinstance(value, bytes):
        return _cbor_head(2, len(value)) + value
    if isinstance(value, str):
        text = value.encode()
        return _cbor_head(3, len(text)) + text
    if isinstance(value, dict):
        out = _cbor_head(5, len(value))
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"map keys must be text, got {key!r}")
            out += cbor_encode(key) + cbor_encode(item)
        return out
    raise TypeError(f"not encodable here: {type(value).__name__}")


def measurement_document() -> dict[str, Any]:
    """measurement.tdx.cbor version 3 (spec §10.1), keys in dstack's order, its digests seed-derived stand-ins."""
    return {
        "version": 3,
        "image": {
            "cmdline_sha384": _derived("os-image/cmdline", 48),
            "kernel_authenticode": _derived("os-image/kernel-authenticode", 48),
            "initrd_sha384": _derived("os-image/initrd", 48),
        },
        "tdvf": {
            "ovmf": OVMF_VARIANT,
            "mrtd": {variant: _derived(f"os-image/mrtd/{variant}", 48) for variant in MRTD_VARIANTS},
            "td_hob": encode_witness(TD_HOB_LAYOUT),
        },
    }


def checksum_file(measurement: bytes) -> bytes:
    """The image's sha256sum.txt: `sha256sum` lines for its files, measurement.tdx.cbor with its real sha256."""
    lines = [f"{hashlib.sha256(f'{SEED}/os-image/{name}'.encode()).hexdigest()}  {name}\n" for name in IMAGE_FILES]
    lines.append(f"{hashlib.sha256(measurement).hexdigest()}  {MEASUREMENT_FILENAME}\n")
    return "".join(lines).encode()


def acpi_digests() -> AcpiDigests:
    """Seed-derived digests of QEMU's ACPI blobs, which the verifier can only take from the event log."""
    loader, rsdp, tables = (_sha384(f"{SEED}/rtmr0/{blob}".encode())
                            for blob in ("etc/table-loader", "etc/acpi/rsdp", "etc/acpi/tables"))
    return AcpiDigests(loader=loader, rsdp=rsdp, tables=tables, source="event-log-only",
                       note="seed-derived stand-ins for the demo's ACPI blobs")


def expected_events(document: dict[str, Any]) -> list[ExpectedEvent]:
    """RTMR0-2's events as the verifier's TDX-lite path expects them for this document and the demo VM."""
    image = document["image"]
    return [
        *rtmr0_events(td_hob_digest(TD_HOB_LAYOUT, MEMORY_SIZE), acpi_digests(),
                      td_hob_source="measurement-document", ovmf_variant=OVMF_VARIANT),
        *rtmr1_events(image["kernel_authenticode"], "measurement-document"),
        *rtmr2_events_from_digests(image["cmdline_sha384"], image["initrd_sha384"], source="measurement-document"),
    ]


# --------------------------------------------------------------------------------------------------- event log


def _event(imr: int, event_type: int, name: str, digest: bytes, payload: bytes) -> dict[str, Any]:
    # Key order and hex forms of the dstack JSON log (lowercase, no 0x).
    return {"imr": imr, "event_type": event_type, "digest": digest.hex(), "event": name,
            "event_payload": payload.hex()}


def runtime_digest(name: str, payload: bytes) -> bytes:
    """V1 runtime event digest: SHA-384(u32le(0x08000001) ‖ ":" ‖ name ‖ ":" ‖ payload)."""
    return _sha384(RUNTIME_EVENT_TYPE.to_bytes(4, "little") + b":" + name.encode() + b":" + payload)


def firmware_events(expected: list[ExpectedEvent]) -> list[dict[str, Any]]:
    """RTMR0-2 events as GetQuote serves them, in boot order: digests kept, payloads emptied except the ACPI DATA
    marker of the three ACPI events, which the guest labels acpi-loader, acpi-rsdp and acpi-tables."""
    by_position = {(e.rtmr, e.index): e for e in expected}
    assert len(by_position) == len(FIRMWARE_ORDER) and set(by_position) == set(FIRMWARE_ORDER)
    acpi_names = iter(ACPI_EVENT_NAMES)
    out = []
    for position in FIRMWARE_ORDER:
        e = by_position[position]
        assert e.event_type is not None
        acpi = e.event_type == EV_PLATFORM_CONFIG_FLAGS
        out.append(_event(_IMR[e.rtmr], e.event_type, next(acpi_names) if acpi else "", e.digest,
                          ACPI_EVENT_PAYLOAD if acpi else b""))
    return out


def runtime_events(app: dict[str, bytes]) -> list[tuple[str, bytes]]:
    """The dstack runtime events of RTMR3, in the order dstack-util emits them for a KMS-backed app."""
    return [
        ("system-preparing", b""),
        ("app-id", app["app_id"]),
        ("compose-hash", app["compose_hash"]),
        ("instance-id", app["instance_id"]),
        ("boot-mr-done", b""),
        ("os-image-hash", app["os_image_hash"]),
        ("key-provider", app["key_provider"]),
        ("storage-fs", b"zfs"),
        ("system-ready", b""),
    ]


def replay(firmware: list[dict[str, Any]], runtime: list[tuple[str, bytes]]) -> list[bytes]:
    """RTMR0-3: each from 48 zero bytes, mr = SHA-384(mr ‖ digest) per event in log order."""
    registers = [bytes(48)] * 4
    for e in firmware:
        registers[e["imr"]] = _sha384(registers[e["imr"]] + bytes.fromhex(e["digest"]))
    for name, payload in runtime:
        registers[3] = _sha384(registers[3] + runtime_digest(name, payload))
    return registers


# --------------------------------------------------------------------------------------------------- RA-TLS chain


def _ratls_ext(oid: str, value: bytes) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), octet_string(value))


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                         encipher_only=False, decipher_only=False)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, RATLS_ORG),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    label: str,
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    not_before: int,
    not_after: int,
    extensions: list[tuple[x509.ExtensionType, bool]],
) -> x509.Certificate:
    issuer_name, signer = issuer if issuer is not None else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(_serial(label))
        .not_valid_before(_utc(not_before))
        .not_valid_after(_utc(not_after))
    )
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    return builder.sign(signer, hashes.SHA256(), ecdsa_deterministic=True)


def ca_extensions(key: ec.EllipticCurvePrivateKey, signer: ec.EllipticCurvePrivateKey,
                  path_length: int) -> list[tuple[x509.ExtensionType, bool]]:
    return [
        (_key_usage(ca=True), True),
        (x509.BasicConstraints(ca=True, path_length=path_length), True),
        (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False),
        (x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), False),
    ]


# --------------------------------------------------------------------------------------------------- the pack


def build_files(now: int) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Every file of the pack but demo.json, and the values demo.json records about the app."""
    boot = now - BOOT_BEFORE
    kms_key = derive_private_key(SEED, "dstack-kms-ca")
    app_ca_key = derive_private_key(SEED, "dstack-app-ca")
    leaf_key = derive_private_key(SEED, "dstack-app-ratls-leaf")
    kms_spki = _spki(kms_key)

    # The OS image: its measurement document, listed in its sha256sum.txt, whose sha256 is the os_image_hash.
    document = measurement_document()
    measurement = cbor_encode(document)
    checksums = checksum_file(measurement)
    os_image_hash = hashlib.sha256(checksums).digest()
    vm_config = {
        "os_image_hash": os_image_hash.hex(),
        "cpu_count": 2,
        "memory_size": MEMORY_SIZE,
        "qemu_version": QEMU_VERSION,
        "pci_hole64_size": 0,
        "hugepages": False,
        "num_gpus": 0,
        "num_nvswitches": 0,
        "hotplug_off": False,
        "image": "dstack-0.6.0",
        "host_share_mode": "9p",
        "ovmf_variant": OVMF_VARIANT,
        "tdx_attestation_variant": "lite",
        "tdx_measurement": {"checksum_file": base64.b64encode(checksums).decode(),
                            "measurement": base64.b64encode(measurement).decode()},
        "spec_version": 1,
    }
    # MRTD: the candidate dstack picks for this QEMU (spec §2.3).
    mrtd_variant = "two_pass" if qemu_options(vm_config).two_pass else "single_pass"
    mrtd = document["tdvf"]["mrtd"][mrtd_variant]

    # The app: its on-chain id (a DstackApp contract address), this instance and its KMS.
    app_id = _derived("app-contract", 20)
    compose_hash = hashlib.sha256(DEMO_COMPOSE).digest()
    instance_id = hashlib.sha256(_derived("instance-id-seed", 32) + app_id).digest()[:20]
    key_provider = json.dumps({"name": "kms", "id": kms_spki.hex()}, separators=(",", ":")).encode()
    app = {"app_id": app_id, "compose_hash": compose_hash, "instance_id": instance_id,
           "os_image_hash": os_image_hash, "key_provider": key_provider}

    expected = expected_events(document)
    firmware = firmware_events(expected)
    runtime = runtime_events(app)
    rtmr = replay(firmware, runtime)
    for imr, register in enumerate(("rtmr0", "rtmr1", "rtmr2")):  # the log's replay is the verifier's expectation
        assert rtmr[imr] == replay_digests(e.digest for e in expected if e.rtmr == register), register
    # GetQuote blanks the digests of runtime events: a verifier recomputes them from (type, name, payload).
    log = firmware + [_event(3, RUNTIME_EVENT_TYPE, name, b"", payload) for name, payload in runtime]
    event_log = json.dumps(log, separators=(",", ":"))
    # RA-TLS certificates carry the stripped log: the ACPI DATA events and the runtime events (spec §7.3).
    stripped = [e for e in log if e["imr"] == 3 or e["event_type"] == EV_PLATFORM_CONFIG_FLAGS]
    cert_event_log = json.dumps(stripped, separators=(",", ":"))

    # report_data binds the leaf key the guest generated for its RA-TLS certificate.
    report_data = hashlib.sha512(b"ratls-cert:" + _spki(leaf_key)).digest()
    evidence = make_evidence(
        SEED,
        now=now,
        tee="tdx",
        version=4,
        pki_options=PkiOptions(name_prefix="Demo SGX", root_cn=ROOT_CN),
        report={
            "mr_seam": _derived("mr-seam", 48),
            "mr_td": mrtd,
            "mr_config_id": b"\x01" + compose_hash + bytes(15),
            "rt_mr0": rtmr[0],
            "rt_mr1": rtmr[1],
            "rt_mr2": rtmr[2],
            "rt_mr3": rtmr[3],
            "report_data": report_data,
        },
    )

    kms_name, app_ca_name = _name("Dstack KMS CA"), _name("Dstack App CA")
    kms_ca = _issue("kms-ca", kms_name, kms_key, None, now - KMS_CREATED_BEFORE, now - KMS_CREATED_BEFORE + 20 * YEAR,
                    ca_extensions(kms_key, kms_key, 1))
    app_ca = _issue("app-ca", app_ca_name, app_ca_key, (kms_name, kms_key), now - APP_DEPLOYED_BEFORE,
                    now - APP_DEPLOYED_BEFORE + 10 * YEAR,
                    [*ca_extensions(app_ca_key, kms_key, 0),
                     (_ratls_ext(OID_RATLS_APP_ID, app_id), False),
                     (_ratls_ext(OID_RATLS_USAGE, b"app:ca"), False)])
    leaf = _issue("app-leaf", x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, APP_DOMAIN)]), leaf_key,
                  (app_ca_name, app_ca_key), boot, boot + YEAR,
                  [(_key_usage(ca=False), True),
                   (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), False),
                   (x509.SubjectAlternativeName([x509.DNSName(APP_DOMAIN)]), False),
                   (x509.AuthorityKeyIdentifier.from_issuer_public_key(app_ca_key.public_key()), False),
                   (_ratls_ext(OID_RATLS_QUOTE, evidence.quote), False),
                   (_ratls_ext(OID_RATLS_EVENT_LOG, cert_event_log.encode()), False),
                   (_ratls_ext(OID_RATLS_APP_ID, app_id), False),
                   (_ratls_ext(OID_RATLS_USAGE, b"app:custom"), False)])
    chain_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, app_ca, kms_ca))

    getquote = {
        "quote": evidence.quote.hex(),
        "event_log": event_log,
        "report_data": report_data.hex(),
        "vm_config": json.dumps(vm_config, separators=(",", ":")),
    }
    files = {
        "getquote.json": (json.dumps(getquote, indent=2) + "\n").encode(),
        "app-compose.json": DEMO_COMPOSE,
        "app-cert.pem": chain_pem,
        "collateral.json": (json.dumps(evidence.collateral, indent=2) + "\n").encode(),
        "demo_root_ca.der": evidence.root_ca_der,
    }
    facts = {
        "app_id": app_id.hex(),
        "compose_hash": compose_hash.hex(),
        "instance_id": instance_id.hex(),
        "os_image_hash": os_image_hash.hex(),
        "measurement_sha256": hashlib.sha256(measurement).hexdigest(),
        "mrtd_variant": mrtd_variant,
        "kms_ca_spki_sha256": hashlib.sha256(kms_spki).hexdigest(),
        "ratls_leaf_spki_sha256": hashlib.sha256(_spki(leaf_key)).hexdigest(),
        "quote_sha256": hashlib.sha256(evidence.quote).hexdigest(),
    }
    return files, facts


def build(out: Path) -> dict[str, str]:
    """Write the pack into `out`; returns each file's sha256."""
    now = int(datetime.fromisoformat(INSTANT.replace("Z", "+00:00")).timestamp())
    files, facts = build_files(now)
    assert tuple(files) == DEMO_FILES, (tuple(files), DEMO_FILES)
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    manifest = {
        "schema": DEMO_SCHEMA,
        "label": DEMO_LABEL,
        "now": now,
        "verified_at": INSTANT,
        "description": (
            "Synthetic dstack app 'demo-app' made by packaging/make_demo.py from seed "
            f"{SEED!r}: a GetQuote answer (TDX quote v4, event log, vm_config with the TDX-lite measurement of a "
            "stand-in OS image), its app-compose, its RA-TLS certificate chain (leaf → Dstack App CA → Dstack KMS "
            f"CA, a demo KMS key) and DCAP collateral. It verifies only against its own root CA ({ROOT_CN}), at "
            f"{INSTANT}: it shows what the inspector does and proves nothing about any real machine, OS image, KMS "
            "or app."
        ),
        "seed": SEED,
        "app": facts,
        "evidence": list(DEMO_EVIDENCE),
        "anchor": DEMO_ANCHOR,
        "files": digests,
    }
    files["demo.json"] = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode()
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (out / name).write_bytes(data)
    return digests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the dstack-inspector demo evidence pack.")
    parser.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    digests = build(args.out)
    for name, digest in digests.items():
        print(f"{digest}  {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
