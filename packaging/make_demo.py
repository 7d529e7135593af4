"""Write the demo evidence pack (resources/demo/): one synthetic dstack deployment — the app, its KMS and its
gateway — whose every check that the evidence allows passes.

    .venv/bin/python packaging/make_demo.py [OUT_DIR]      (default: resources/demo beside this folder)

The three entities as the Trust Center's sources present them:
  * cloud-attestations.json  a Phala Cloud attestations answer: the app's running instance (quote, event log and
                     app-compose in tcb_info), kms_info (KMS ≥ 0.5.3, the gateway's app id and URL), and the KMS's and
                     the gateway's guest-agent info (quote in app_certificates, event log, app-compose, vm_config with
                     the TDX-lite material); the app and the gateway take their keys from the demo KMS (its CA key),
                     the KMS from the local SGX key provider;
  * acme-info.json   the gateway's /.dstack/acme-info: its ACME account bound to its quote (the same quote as in its
                     guest-agent info), a TLS key bound by a second quote of the same TD, and the wildcard certificate
                     for the base domain on that key, from a demo web root (demo_web_root.pem, the TLS trust store);
  * kms-meta.json    the KMS's KMS.GetMeta: its CA certificate, CA and k256 keys, and the bootstrap quote (same TD)
                     whose report_data is the Keccak-256 of both keys;
  * app-info.json    the app's guest agent /prpc/Info: its vm_config (the TDX-lite material) and RA-TLS chain, which
                     the Cloud answer does not carry;
And the app alone as its own guest agent serves it:
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
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from dstack_verifier.demo import (
    DEMO_ANCHOR,
    DEMO_APP_EVIDENCE,
    DEMO_EVIDENCE,
    DEMO_FILES,
    DEMO_LABEL,
    DEMO_SCHEMA,
    DEMO_WEB_ROOT,
)
from dstack_verifier.domain import zt_cert_report_data
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
from dstack_verifier.ratls import acme_report_data, decode_ratls, kms_report_data
from dstack_verifier.synth import PkiOptions, derive_private_key, make_evidence
from dstack_verifier.synth.der import octet_string

SEED = "dstack-inspector-demo"
SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141  # the order of the k256 curve
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
# The deployment's public names: the reserved .invalid TLD, so that nothing here can ever resolve.
BASE_DOMAIN = "demo.dstack.invalid"
GATEWAY_URL = f"https://gateway.{BASE_DOMAIN}"
KMS_URL = f"https://kms.{BASE_DOMAIN}"
ACME_ACCOUNT_URI = f"https://acme.{BASE_DOMAIN}/acme/acct/1"
KMS_VERSION = f"v0.5.3 (git:{hashlib.sha256(f'{SEED}/kms-git'.encode()).hexdigest()[:20]})"
IMAGE_VERSION = "dstack-0.6.0"
WEB_ORG = "dstack-inspector demo web PKI (not a public CA)"
WEB_ROOT_CN = "Demo Web Root — not a public CA"

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


def _service(name: str, image: str, environment: tuple[str, ...]) -> str:
    """A one-service docker-compose file whose image is pinned by a seed-derived digest."""
    digest = hashlib.sha256(f"{SEED}/{image}-image".encode()).hexdigest()
    env = "".join(f"      - {var}=${{{var}}}\n" for var in environment)
    return (f"services:\n  {name}:\n    image: {image}@sha256:{digest}\n    environment:\n{env}"
            "    volumes:\n      - /var/run/dstack.sock:/var/run/dstack.sock\n    restart: always\n")


def app_compose(name: str, docker_compose: str, *, kms: bool, gateway: bool, allowed_envs: list[str],
                no_instance_id: bool = False) -> bytes:
    """An app-compose as a deployer writes it: its exact bytes are hashed into the compose hash. Without the KMS
    the TD takes its keys from the local (SGX) key provider, as dstack's KMS itself does."""
    return json.dumps(
        {
            "manifest_version": 2,
            "name": name,
            "runner": "docker-compose",
            "docker_compose_file": docker_compose,
            "kms_enabled": kms,
            "gateway_enabled": gateway,
            "local_key_provider_enabled": not kms,
            "key_provider_id": "",
            "public_logs": True,
            "public_sysinfo": True,
            "public_tcbinfo": True,
            "allowed_envs": allowed_envs,
            "no_instance_id": no_instance_id,
            "secure_time": False,
        },
        indent=2,
    ).encode()


# The three entities' app-composes: the app, the KMS that gives the app and the gateway their keys, the gateway that
# routes the app's domain.
DEMO_COMPOSE = app_compose("demo-app", DOCKER_COMPOSE, kms=True, gateway=True, allowed_envs=["WELCOME_MESSAGE"])
KMS_COMPOSE = app_compose("demo-kms", _service("kms", "dstack-kms", ("KMS_DOMAIN",)), kms=False, gateway=False,
                          allowed_envs=["KMS_DOMAIN"], no_instance_id=True)
GATEWAY_COMPOSE = app_compose("demo-gateway", _service("gateway", "dstack-gateway", ("SRV_DOMAIN", "ACME_URL")),
                              kms=True, gateway=False, allowed_envs=["SRV_DOMAIN", "ACME_URL"])


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


def _name(common_name: str, organization: str = RATLS_ORG) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
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


def ratls_leaf(label: str, common_name: str, key: ec.EllipticCurvePrivateKey,
               issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey], boot: int, quote: bytes, event_log: str,
               app_id: bytes) -> x509.Certificate:
    """An RA-TLS leaf as dstack's guest agent issues it at boot: the quote that binds its key, the stripped event
    log and the app id ride in dstack's extensions."""
    return _issue(label, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]), key, issuer, boot,
                  boot + YEAR,
                  [(_key_usage(ca=False), True),
                   (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), False),
                   (x509.SubjectAlternativeName([x509.DNSName(common_name)]), False),
                   (x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()), False),
                   (_ratls_ext(OID_RATLS_QUOTE, quote), False),
                   (_ratls_ext(OID_RATLS_EVENT_LOG, event_log.encode()), False),
                   (_ratls_ext(OID_RATLS_APP_ID, app_id), False),
                   (_ratls_ext(OID_RATLS_USAGE, b"app:custom"), False)])


def app_ca(label: str, key: ec.EllipticCurvePrivateKey, kms: tuple[x509.Name, ec.EllipticCurvePrivateKey],
           app_id: bytes, created: int) -> x509.Certificate:
    """The "Dstack App CA" the KMS issues to one app (its app id inside), the issuer of the app's RA-TLS leaves."""
    return _issue(label, _name("Dstack App CA"), key, kms, created, created + 10 * YEAR,
                  [*ca_extensions(key, kms[1], 0),
                   (_ratls_ext(OID_RATLS_APP_ID, app_id), False),
                   (_ratls_ext(OID_RATLS_USAGE, b"app:ca"), False)])


def certificate_info(cert: x509.Certificate, position: int, quote: bytes | None) -> dict[str, Any]:
    """One entry of the Cloud API's ``app_certificates``: metadata of a served certificate, with its RA-TLS quote."""
    ratls = decode_ratls(cert)
    extensions = {type(e.value): e.value for e in cert.extensions}
    san = extensions.get(x509.SubjectAlternativeName)
    sans = [str(n) for n in san.get_values_for_type(x509.DNSName)] if isinstance(san, x509.SubjectAlternativeName) \
        else []
    constraints = extensions.get(x509.BasicConstraints)

    def party(name: x509.Name) -> dict[str, Any]:
        def first(oid: x509.ObjectIdentifier) -> str | None:
            found = name.get_attributes_for_oid(oid)
            return str(found[0].value) if found else None

        return {"common_name": first(NameOID.COMMON_NAME), "organization": first(NameOID.ORGANIZATION_NAME),
                "country": None}

    is_ca = isinstance(constraints, x509.BasicConstraints) and constraints.ca
    return {
        "subject": party(cert.subject),
        "issuer": party(cert.issuer),
        "serial_number": f"{cert.serial_number:x}",
        "not_before": cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "not_after": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "version": "V3",
        "fingerprint": "sha256:" + cert.fingerprint(hashes.SHA256()).hex(),
        "signature_algorithm": "ecdsa-with-SHA256",
        "sans": sans,
        "is_ca": is_ca,
        "position_in_chain": position,
        "quote": quote.hex() if quote is not None else None,
        "app_id": ratls.app_id.hex() if ratls is not None and ratls.app_id is not None else None,
        "cert_usage": ratls.usage if ratls is not None else None,
    }


@dataclass(frozen=True)
class Td:
    """One entity's TD as the demo boots it: who it is (the RTMR3 events dstack-util emits) and its RA-TLS key."""

    entity: str
    compose: bytes
    app_id: bytes
    instance_id: bytes  # empty for a TD deployed with no_instance_id (the KMS)
    key_provider: dict[str, str]
    ratls_key: ec.EllipticCurvePrivateKey

    @property
    def name(self) -> str:
        return str(json.loads(self.compose)["name"])

    @property
    def compose_hash(self) -> bytes:
        return hashlib.sha256(self.compose).digest()


@dataclass
class Booted:
    """A TD after boot: its event log as GetQuote serves it, the log its RA-TLS certificate carries, its
    registers and the fields of its quote other than report_data."""

    td: Td
    log: list[dict[str, Any]]
    cert_log: str
    report: dict[str, bytes]


def boot_td(td: Td, firmware: list[dict[str, Any]], os_image_hash: bytes, mrtd: bytes) -> Booted:
    key_provider = json.dumps(td.key_provider, separators=(",", ":")).encode()
    runtime = runtime_events({"app_id": td.app_id, "compose_hash": td.compose_hash, "instance_id": td.instance_id,
                              "os_image_hash": os_image_hash, "key_provider": key_provider})
    rtmr = replay(firmware, runtime)
    # GetQuote blanks the digests of runtime events: a verifier recomputes them from (type, name, payload).
    log = firmware + [_event(3, RUNTIME_EVENT_TYPE, name, b"", payload) for name, payload in runtime]
    # RA-TLS certificates carry the stripped log: the ACPI DATA events and the runtime events (spec §7.3).
    stripped = [e for e in log if e["imr"] == 3 or e["event_type"] == EV_PLATFORM_CONFIG_FLAGS]
    report = {
        "mr_seam": _derived("mr-seam", 48),
        "mr_td": mrtd,
        "mr_config_id": b"\x01" + td.compose_hash + bytes(15),
        **{f"rt_mr{i}": rtmr[i] for i in range(4)},
    }
    return Booted(td, log, json.dumps(stripped, separators=(",", ":")), report)


def tcb_info(booted: Booted) -> dict[str, Any]:
    """The registers as claimed, the event log and the exact app-compose text: ``tcb_info`` of the Cloud API."""
    report = booted.report
    return {"mrtd": report["mr_td"].hex(), **{f"rtmr{i}": report[f"rt_mr{i}"].hex() for i in range(4)},
            "rootfs_hash": None, "event_log": booted.log, "app_compose": booted.td.compose.decode()}


def guest_agent_info(booted: Booted, vm_config: dict[str, Any], certificates: list[dict[str, Any]]) -> dict[str, Any]:
    """``kms_guest_agent_info`` / ``gateway_guest_agent_info``: the entity's guest agent info as the Cloud API
    relays it (objects and JSON-text fields), its quote in the RA-TLS entry of ``app_certificates``."""
    td = booted.td
    return {
        "app_id": td.app_id.hex(),
        "instance_id": td.instance_id.hex(),
        "app_name": td.name,
        "device_id": "",
        "public_logs": True,
        "public_sysinfo": True,
        "mr_aggregated": "",
        "os_image_hash": vm_config["os_image_hash"],
        "mr_key_provider": None,
        "key_provider_info": json.dumps(td.key_provider),
        "compose_hash": td.compose_hash.hex(),
        "vm_config": json.dumps(vm_config, separators=(",", ":")),
        "tcb_info": tcb_info(booted),
        "app_certificates": certificates,
    }


def quote_envelope(quote: bytes, booted: Booted) -> str:
    """A quote as dstack's gateway publishes it in acme-info: JSON text of the quote and its event log's text."""
    return json.dumps({"quote": quote.hex(), "event_log": json.dumps(booted.log, separators=(",", ":"))})


def web_pki(now: int, tls_key: ec.EllipticCurvePrivateKey) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """The demo's stand-in for a public web PKI: a root (given to the verifier as its TLS trust store), an issuing
    CA and the gateway's wildcard certificate for the base domain, on the gateway's TEE-held TLS key."""
    root_key, ca_key = derive_private_key(SEED, "web-root"), derive_private_key(SEED, "web-issuing-ca")
    root_name, ca_name = _name(WEB_ROOT_CN, WEB_ORG), _name("Demo Web Issuing CA", WEB_ORG)
    root = _issue("web-root", root_name, root_key, None, now - 5 * YEAR, now + 15 * YEAR,
                  ca_extensions(root_key, root_key, 1))
    ca = _issue("web-ca", ca_name, ca_key, (root_name, root_key), now - YEAR, now + 4 * YEAR,
                ca_extensions(ca_key, root_key, 0))
    names = [f"*.{BASE_DOMAIN}", BASE_DOMAIN]
    leaf = _issue("gateway-tls", x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]), tls_key,
                  (ca_name, ca_key), now - 20 * DAY, now + 70 * DAY,
                  [(_key_usage(ca=False), True),
                   (x509.BasicConstraints(ca=False, path_length=None), True),
                   (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
                   (x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False),
                   (x509.SubjectKeyIdentifier.from_public_key(tls_key.public_key()), False),
                   (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False)])
    return root, [leaf, ca]


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def build_files(now: int) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Every file of the pack but demo.json, and the values demo.json records about the three entities."""
    boot = now - BOOT_BEFORE
    kms_key = derive_private_key(SEED, "dstack-kms-ca")
    kms_spki = _spki(kms_key)
    kms_name = _name("Dstack KMS CA")
    kms_signer = (kms_name, kms_key)
    by_kms = {"name": "kms", "id": kms_spki.hex()}

    # The OS image all three boot: its measurement document, listed in its sha256sum.txt, whose sha256 is the
    # os_image_hash.
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
        "image": IMAGE_VERSION,
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
    expected = expected_events(document)
    firmware = firmware_events(expected)

    # The three TDs. App ids are DstackApp contract addresses; the KMS runs with no instance id and takes its keys
    # from the local SGX key provider (named by that enclave's measurement).
    app_id = _derived("app-contract", 20)
    app = Td("app", DEMO_COMPOSE, app_id, hashlib.sha256(_derived("instance-id-seed", 32) + app_id).digest()[:20],
             by_kms, derive_private_key(SEED, "dstack-app-ratls-leaf"))
    kms = Td("kms", KMS_COMPOSE, _derived("kms-app-id", 20), b"",
             {"name": "local-sgx", "id": _sha384(f"{SEED}/local-key-provider".encode())[:32].hex()},
             derive_private_key(SEED, "dstack-kms-ratls-leaf"))
    gateway_id = _derived("gateway-app-id", 20)
    gateway = Td("gateway", GATEWAY_COMPOSE, gateway_id,
                 hashlib.sha256(_derived("gateway-instance-id-seed", 32) + gateway_id).digest()[:20], by_kms,
                 derive_private_key(SEED, "dstack-gateway-ratls-leaf"))
    booted = {td.entity: boot_td(td, firmware, os_image_hash, mrtd) for td in (app, kms, gateway)}
    for imr, register in enumerate(("rtmr0", "rtmr1", "rtmr2")):  # the log's replay is the verifier's expectation
        assert booted["app"].report[f"rt_mr{imr}"] == replay_digests(
            e.digest for e in expected if e.rtmr == register), register

    # Every quote comes from one platform (one PCK, one attestation key): one collateral serves them all. The
    # app's and the KMS's report_data bind their RA-TLS keys; the gateway's binds its ACME account (the quote it
    # publishes in acme-info and in its guest agent info alike) and a second quote of the same TD binds its TLS key.
    tls_key = derive_private_key(SEED, "gateway-tls")
    # The KMS's root k256 key; its bootstrap quote (same TD as its running one) binds it with the CA key (Keccak-256).
    k256 = ec.derive_private_key(int.from_bytes(_derived("kms-k256", 32), "big") % (SECP256K1_ORDER - 1) + 1,
                                 ec.SECP256K1())
    k256_pub = k256.public_key().public_bytes(serialization.Encoding.X962,
                                              serialization.PublicFormat.CompressedPoint)
    pki_options = PkiOptions(name_prefix="Demo SGX", root_cn=ROOT_CN)
    report_data = {
        "app": hashlib.sha512(b"ratls-cert:" + _spki(app.ratls_key)).digest(),
        "kms": hashlib.sha512(b"ratls-cert:" + _spki(kms.ratls_key)).digest(),
        "gateway": acme_report_data(ACME_ACCOUNT_URI),
        "gateway-tls": zt_cert_report_data(_spki(tls_key)),
        "kms-bootstrap": kms_report_data(kms_spki, k256_pub),
    }
    first = make_evidence(SEED, now=now, tee="tdx", version=4, pki_options=pki_options,
                          report={**booted["app"].report, "report_data": report_data["app"]})
    quotes = {"app": first.quote}
    for label in ("kms", "gateway", "gateway-tls", "kms-bootstrap"):
        made = make_evidence(SEED, now=now, tee="tdx", version=4, pki=first.pki,
                             report={**booted[label.split("-")[0]].report, "report_data": report_data[label]})
        assert made.collateral == first.collateral, label
        quotes[label] = made.quote

    # RA-TLS chains: the app's and the gateway's leaves under their App CAs, issued by the KMS; the KMS's own leaf
    # under its CA (it holds its keys itself).
    kms_ca = _issue("kms-ca", kms_name, kms_key, None, now - KMS_CREATED_BEFORE, now - KMS_CREATED_BEFORE + 20 * YEAR,
                    ca_extensions(kms_key, kms_key, 1))
    chains: dict[str, list[x509.Certificate]] = {}
    for td, common_name in ((app, APP_DOMAIN), (gateway, f"gateway.{BASE_DOMAIN}")):
        ca_key = derive_private_key(SEED, f"dstack-{td.entity}-ca")
        issued_ca = app_ca(f"{td.entity}-ca", ca_key, kms_signer, td.app_id, now - APP_DEPLOYED_BEFORE)
        leaf = ratls_leaf(f"{td.entity}-leaf", common_name, td.ratls_key, (issued_ca.subject, ca_key), boot,
                          quotes[td.entity], booted[td.entity].cert_log, td.app_id)
        chains[td.entity] = [leaf, issued_ca, kms_ca]
    chains["kms"] = [ratls_leaf("kms-leaf", f"kms.{BASE_DOMAIN}", kms.ratls_key, kms_signer, boot, quotes["kms"],
                                booted["kms"].cert_log, kms.app_id), kms_ca]
    served = {entity: [certificate_info(c, i, quotes[entity] if i == 0 else None) for i, c in enumerate(chain[:2])]
              for entity, chain in chains.items()}

    cloud = {
        "app_id": app.app_id.hex(),
        "contract_address": "0x" + app.app_id.hex(),
        # Hosted governance: the demo names no chain, so the on-chain check has nothing to read.
        "kms_info": {"contract_address": None, "chain_id": None, "version": KMS_VERSION, "url": KMS_URL,
                     "gateway_app_id": gateway.app_id.hex(), "gateway_app_url": GATEWAY_URL, "kms_type": "demo"},
        "instances": [{
            "vm_uuid": str(uuid.UUID(bytes=_derived("vm-uuid", 16), version=4)),
            "name": "demo-app-0",
            "instance_id": app.instance_id.hex(),
            "status": "running",
            "image_version": IMAGE_VERSION,
            "quote": quotes["app"].hex(),
            "tcb_info": tcb_info(booted["app"]),
            "app_certificates": served["app"],
        }],
        "qemu_version": QEMU_VERSION,
        "kms_guest_agent_info": guest_agent_info(booted["kms"], vm_config, served["kms"]),
        "gateway_guest_agent_info": guest_agent_info(booted["gateway"], vm_config, served["gateway"]),
    }
    web_root, tls_chain = web_pki(now, tls_key)
    tls_spki = _spki(tls_key).hex()
    acme_info = {
        "account_uri": ACME_ACCOUNT_URI,
        "account_quote": quote_envelope(quotes["gateway"], booted["gateway"]),
        "quoted_hist_keys": [{"public_key": tls_spki,
                              "quote": quote_envelope(quotes["gateway-tls"], booted["gateway"])}],
        "hist_keys": [tls_spki],
        "active_cert": _pem(*tls_chain).decode(),
        "base_domain": BASE_DOMAIN,
    }
    kms_meta = {  # the KMS's KMS.GetMeta: its CA certificate and keys, and the bootstrap quote that binds them
        "ca_cert": _pem(kms_ca).decode(),
        "allow_any_upgrade": False,
        "k256_pubkey": k256_pub.hex(),
        "bootstrap_info": {"ca_pubkey": kms_spki.hex(), "k256_pubkey": k256_pub.hex(),
                           "quote": quotes["kms-bootstrap"].hex(),
                           "eventlog": json.dumps(booted["kms"].log).encode().hex()},
        "is_dev": False,
        "gateway_app_id": gateway.app_id.hex(),
    }
    app_tcb = tcb_info(booted["app"])
    app_info = {  # the app's guest agent /prpc/Info: what the Cloud answer lacks (vm_config, the RA-TLS chain)
        "app_id": app.app_id.hex(),
        "instance_id": app.instance_id.hex(),
        "app_cert": _pem(*chains["app"]).decode(),
        "tcb_info": json.dumps({**{k: v for k, v in app_tcb.items() if k != "rootfs_hash"},
                                "mr_aggregated": "", "os_image_hash": vm_config["os_image_hash"],
                                "compose_hash": app.compose_hash.hex(), "device_id": ""}),
        "app_name": app.name,
        "device_id": "",
        "mr_aggregated": "",
        "os_image_hash": vm_config["os_image_hash"],
        "key_provider_info": json.dumps(app.key_provider),
        "compose_hash": app.compose_hash.hex(),
        "vm_config": json.dumps(vm_config, separators=(",", ":")),
    }
    getquote = {
        "quote": quotes["app"].hex(),
        "event_log": json.dumps(booted["app"].log, separators=(",", ":")),
        "report_data": report_data["app"].hex(),
        "vm_config": json.dumps(vm_config, separators=(",", ":")),
    }
    files = {
        "cloud-attestations.json": (json.dumps(cloud, indent=2) + "\n").encode(),
        "acme-info.json": (json.dumps(acme_info, indent=2) + "\n").encode(),
        "app-info.json": (json.dumps(app_info, indent=2) + "\n").encode(),
        "kms-meta.json": (json.dumps(kms_meta, indent=2) + "\n").encode(),
        "collateral.json": (json.dumps(first.collateral, indent=2) + "\n").encode(),
        "getquote.json": (json.dumps(getquote, indent=2) + "\n").encode(),
        "app-compose.json": DEMO_COMPOSE,
        "app-cert.pem": _pem(*chains["app"]),
        "demo_root_ca.der": first.root_ca_der,
        "demo_web_root.pem": _pem(web_root),
    }
    facts = {
        "os_image_hash": os_image_hash.hex(),
        "measurement_sha256": hashlib.sha256(measurement).hexdigest(),
        "mrtd_variant": mrtd_variant,
        "kms_ca_spki_sha256": hashlib.sha256(kms_spki).hexdigest(),
        "base_domain": BASE_DOMAIN,
        "gateway_url": GATEWAY_URL,
        "acme_account_uri": ACME_ACCOUNT_URI,
        "gateway_tls_spki_sha256": hashlib.sha256(_spki(tls_key)).hexdigest(),
        "entities": {
            td.entity: {"name": td.name, "app_id": td.app_id.hex(), "compose_hash": td.compose_hash.hex(),
                        "instance_id": td.instance_id.hex(), "key_provider": td.key_provider,
                        "ratls_leaf_spki_sha256": hashlib.sha256(_spki(td.ratls_key)).hexdigest(),
                        "quote_sha256": hashlib.sha256(quotes[td.entity]).hexdigest()}
            for td in (app, kms, gateway)
        },
    }
    return files, facts


def build(out: Path) -> dict[str, str]:
    """Write the pack into `out`; returns each file's sha256."""
    now = int(datetime.fromisoformat(INSTANT.replace("Z", "+00:00")).timestamp())
    files, facts = build_files(now)
    assert set(files) == set(DEMO_FILES), (sorted(files), sorted(DEMO_FILES))
    digests = {name: hashlib.sha256(files[name]).hexdigest() for name in DEMO_FILES}
    manifest = {
        "schema": DEMO_SCHEMA,
        "label": DEMO_LABEL,
        "now": now,
        "verified_at": INSTANT,
        "description": (
            "Synthetic dstack deployment made by packaging/make_demo.py from seed "
            f"{SEED!r}: the app 'demo-app', the KMS that gives it its keys and the gateway that serves its domain "
            f"{BASE_DOMAIN}. A Phala Cloud attestations answer (each entity's TDX quote, event log and app-compose; "
            "the KMS's and gateway's VM configs with the TDX-lite measurement of a stand-in OS image), the "
            "gateway's acme-info (its ACME account and TLS key bound to its quotes, its certificate from a demo web "
            f"root), DCAP collateral, and the app's own GetQuote answer and RA-TLS chain. It verifies only against "
            f"its own roots ({ROOT_CN}; {WEB_ROOT_CN}), at {INSTANT}: it shows what the inspector does and proves "
            "nothing about any real machine, OS image, KMS, gateway, domain or app."
        ),
        "seed": SEED,
        "deployment": facts,
        "evidence": list(DEMO_EVIDENCE),
        "app_evidence": list(DEMO_APP_EVIDENCE),
        "anchor": DEMO_ANCHOR,
        "web_root": DEMO_WEB_ROOT,
        "base_domain": BASE_DOMAIN,
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
