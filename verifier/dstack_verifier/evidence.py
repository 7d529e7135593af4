"""Evidence files: read with a size bound, detect the kind from content (never the file name), decode.

Kinds: a raw quote (binary, or hex with or without 0x, whitespace tolerated), a guest-agent GetQuote JSON (`quote`,
`event_log`, `vm_config`), an attestation JSON (`attestation`: dstack's SCALE V0 or MessagePack V1 blob), an event
log (JSON array or CCEL), an app-compose JSON, certificates (PEM or DER; RA-TLS), DCAP collateral JSON, a saved Phala
Cloud answer, a Trust Center result (its DataObjects), and a report of ours (its recorded inputs are replayed).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from .errors import InputError
from .eventlog import Attestation, Event, decode_attestation, parse_event_log
from .jsontext import load_json
from .model import REPORT_SCHEMA, InputFile
from .quote.collateral import COLLATERAL_KEYS
from .quote.structure import INTEL_QE_VENDOR_ID, TEE_SGX, TEE_TDX, Quote, parse_quote
from .ratls import check_attestation_binding, load_certificates

RECORDING_SCHEMA = "dstack-inspector/network-recording/v1"
MAX_EVIDENCE_BYTES = 32 * 1024 * 1024
MAX_QUOTE_BYTES = 1024 * 1024
_NOT_HEX_RE = re.compile(rb"[^0-9a-fA-F \t\r\n]")
_SPACE_RE = re.compile(rb"[ \t\r\n]+")


@dataclass
class Evidence:
    name: str
    kind: str  # quote | getquote | attestation | event-log | app-compose | certificate | collateral | report
    data: bytes
    quote: bytes | None = None
    json: Any = None
    events: list[Event] | None = None  # the event log this evidence carries, parsed
    vm_config: dict[str, Any] | None = None
    certificates: list[x509.Certificate] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    # An attestation's log is stripped (dstack-measurement §7.3): of RTMR0-2 it keeps only the three ACPI events, so
    # those registers cannot be replayed from it; they are recomputed and compared by value (the os checks).
    log_stripped: bool = False

    def input_file(self, role: str = "") -> InputFile:
        return InputFile(
            name=self.name,
            kind=self.kind,
            sha256=hashlib.sha256(self.data).hexdigest(),
            size=len(self.data),
            role=role,
            content_b64=base64.b64encode(self.data).decode() if len(self.data) <= MAX_QUOTE_BYTES else None,
        )


def read_bounded(path: Path, limit: int = MAX_EVIDENCE_BYTES) -> bytes:
    """Read a file, refusing it before reading when it is larger than `limit`."""
    name = str(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise InputError("not a regular file", source=name)
        if size > limit:
            raise InputError(f"file is {size} bytes, more than the {limit} bytes evidence may have", source=name)
        with path.open("rb") as fh:
            data = fh.read(limit + 1)
    except FileNotFoundError:
        raise InputError("no such file", source=name) from None
    except IsADirectoryError:
        raise InputError("is a directory", source=name) from None
    except PermissionError:
        raise InputError("permission denied", source=name) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", source=name) from None
    if len(data) > limit:
        raise InputError(f"file grew past {limit} bytes while being read", source=name)
    return data


def decode_hex_text(text: bytes, source: str, field_name: str | None = None) -> bytes:
    """Hex with optional 0x prefix and any whitespace; the error names the offset of the first bad character."""
    start = len(text) - len(text.lstrip())
    body = text.strip()
    if body[:2] in (b"0x", b"0X"):
        body, start = body[2:], start + 2
    bad = _NOT_HEX_RE.search(body)
    if bad:
        byte = bad.group()[0]
        shown = repr(chr(byte)) if 32 < byte < 127 else f"byte 0x{byte:02x}"
        raise InputError(f"not hex: character {shown}", source=source, field=field_name, offset=start + bad.start())
    compact = _SPACE_RE.sub(b"", body)
    if not compact:
        raise InputError("empty: no hex digits", source=source, field=field_name)
    if len(compact) % 2:
        raise InputError(f"odd number of hex digits ({len(compact)})", source=source, field=field_name)
    return bytes.fromhex(compact.decode())


_BASE64_RE = re.compile(rb"[A-Za-z0-9+/]+={0,2}")


def decode_quote_text(text: bytes, source: str, field_name: str | None = None) -> bytes:
    """A quote written as hex (0x optional, any whitespace) or, as Intel's and other attestation services send it,
    as base64. Hex is tried first (hex digits are base64 too); base64 is taken only when it decodes to something
    with a DCAP quote's version (3, 4 or 5) in front, else the hex error stands, naming the first bad character."""
    try:
        return decode_hex_text(text, source, field_name)
    except InputError as hex_error:
        compact = _SPACE_RE.sub(b"", text)
        if len(compact) % 4 or not _BASE64_RE.fullmatch(compact):
            raise
        data = base64.b64decode(compact)
        if len(data) < 2 or int.from_bytes(data[:2], "little") not in (3, 4, 5):
            raise InputError(f"{hex_error.message}; as base64 it is {len(data)} bytes that do not begin with a "
                             "DCAP quote version (3, 4 or 5)", source=source, field=field_name,
                             offset=hex_error.offset) from None
        return data


def check_quote(data: bytes, source: str, field_name: str | None = None) -> Quote:
    """Structure and header: what makes a quote a DCAP quote at all. Anything else is bad input (exit 2)."""
    if len(data) > MAX_QUOTE_BYTES:
        raise InputError(f"quote is {len(data)} bytes, more than {MAX_QUOTE_BYTES}", source=source, field=field_name)
    try:
        q = parse_quote(data)
    except InputError as exc:
        inner = f"{field_name}: {exc.field}" if field_name and exc.field else (exc.field or field_name)
        raise InputError(exc.message, source=source, field=inner, offset=exc.offset) from None
    h = q.header
    problems = [
        (h.attestation_key_type != 2, f"attestation key type {h.attestation_key_type} (only 2, ECDSA P-256)",
         "header.attestation_key_type", 2),
        (h.tee_type not in (TEE_SGX, TEE_TDX), f"TEE type 0x{h.tee_type:x}", "header.tee_type", 4),
        (h.tee_type == TEE_TDX and h.version not in (4, 5), f"TDX quote with version {h.version}", "header.version", 0),
        (h.qe_vendor_id != INTEL_QE_VENDOR_ID, f"QE vendor ID {h.qe_vendor_id.hex()} is not Intel's",
         "header.qe_vendor_id", 12),
    ]
    for bad, message, name, offset in problems:
        if bad:
            raise InputError(f"unsupported quote: {message}", source=source, field=name, offset=offset)
    return q


def _looks_like_text(data: bytes) -> bool:
    sample = data[:4096]
    return all(b in b"\t\r\n" or 32 <= b < 127 for b in sample)


ZIP_MAGIC = b"PK\x03\x04"


def detect(data: bytes, name: str) -> Evidence:
    if data[:4] == ZIP_MAGIC:  # an evidence pack: its signed report stands for it, as a report file does
        return _pack_report(data, name)
    stripped = data.lstrip()
    if stripped.startswith((b"{", b"[")):
        return _detect_json(data, name)
    if stripped.startswith(b"-----BEGIN") or (data[:1] == b"\x30" and not _looks_like_text(data)):
        # PEM, or binary DER (a SEQUENCE: binary quotes start with their version, 3/4/5, so the first byte differs)
        return Evidence(name, "certificate", data, certificates=load_certificates(data, name))
    if _looks_like_text(data):
        quote = decode_quote_text(data, name)
        check_quote(quote, name)
        return Evidence(name, "quote", data, quote=quote)
    check_quote(data, name)
    return Evidence(name, "quote", data, quote=data)


def _pack_report(data: bytes, name: str) -> Evidence:
    """The report inside an evidence pack, whose recorded inputs are then verified again (`report verify` is what
    checks the pack's signature and files)."""
    from .report.pack import REPORT_FILE, read_pack_bytes

    report = read_pack_bytes(data, name).get(REPORT_FILE)
    if report is None:
        raise InputError(f"a zip archive without {REPORT_FILE}: not an evidence pack", source=name)
    # JSON only (read as JSON, not detected again): a pack inside a pack would be read again, without end.
    found = _detect_json(report, f"{name}:{REPORT_FILE}") if report.lstrip().startswith(b"{") else None
    if found is None or found.kind != "report":
        raise InputError(f"{REPORT_FILE} of the pack is not a dstack-inspector report", source=name)
    return found


def _detect_json(data: bytes, name: str) -> Evidence:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError("JSON is not UTF-8", source=name, offset=exc.start) from None
    doc = load_json(text, name)
    from .sources.trust_center import data_objects

    if data_objects(doc) is not None:  # before the event log, which is a JSON list too
        return Evidence(name, "trust-center-result", data, json=doc)
    if isinstance(doc, list):
        return Evidence(name, "event-log", data, events=parse_event_log(doc, name, field="event_log"))
    if not isinstance(doc, dict):
        raise InputError("expected a JSON object", source=name)
    if doc.get("schema") == REPORT_SCHEMA:
        return Evidence(name, "report", data, json=doc)
    if doc.get("schema") == RECORDING_SCHEMA:
        if not isinstance(doc.get("exchanges"), list):
            raise InputError("a network recording needs an `exchanges` list", source=name, field="exchanges")
        return Evidence(name, "recording", data, json=doc)
    if all(k in doc for k in COLLATERAL_KEYS):
        return Evidence(name, "collateral", data, json=doc)
    from .gpu import is_gpu_evidence, parse_gpu_evidence

    if is_gpu_evidence(doc):  # NVIDIA GPU evidence (a Redpill bundle's nvidia_payload, or the payload itself)
        from .gpu_binding import parse_bundle

        return Evidence(name, "gpu-evidence", data, json=doc, extra={"gpu": parse_gpu_evidence(doc, name),
                                                                     "gpu_bundle": parse_bundle(doc, name)})
    if "quote" in doc:
        value = doc["quote"]
        if not isinstance(value, str):
            raise InputError("expected a hex string", source=name, field="quote")
        # surrogatepass: a lone "\ud800" escape is reported as a non-hex byte instead of crashing the encoder.
        quote = decode_quote_text(value.encode("utf-8", "surrogatepass"), name, "quote")
        check_quote(quote, name, "quote")
        events = parse_event_log(doc["event_log"], name) if doc.get("event_log") not in (None, "") else None
        return Evidence(name, "getquote", data, quote=quote, json=doc, events=events,
                        vm_config=_vm_config(doc.get("vm_config"), name))
    if "attestation" in doc:
        value = doc["attestation"]
        if not isinstance(value, str):
            raise InputError("expected a hex string", source=name, field="attestation")
        att = decode_attestation(decode_hex_text(value.encode("utf-8", "surrogatepass"), name, "attestation"), name)
        check_attestation_binding(att, check_quote(att.quote, name, "attestation.quote"), name,
                                  "attestation.report_data")
        return Evidence(name, "attestation", data, quote=att.quote, json=doc, events=att.events(),
                        vm_config=_vm_config(att.config, name), extra=_attestation_facts(att),
                        log_stripped=True)
    if "account_uri" in doc and ("account_quote" in doc or "quoted_hist_keys" in doc):  # a gateway's acme-info
        return Evidence(name, "acme-info", data, json=doc)
    if "bootstrap_info" in doc or ("ca_cert" in doc and "k256_pubkey" in doc):  # the KMS's KMS.GetMeta answer
        return Evidence(name, "kms-meta", data, json=doc)
    if "tcb_info" in doc and "app_id" in doc:  # a guest agent's /prpc/Info (or Worker.Info) answer
        return Evidence(name, "agent-info", data, json=doc)
    if "instances" in doc and "kms_info" in doc:  # a saved Phala Cloud attestations answer: three entities
        return Evidence(name, "cloud-attestations", data, json=doc)
    if "manifest_version" in doc or "docker_compose_file" in doc:
        return Evidence(name, "app-compose", data, json=doc)
    missing = [k for k in COLLATERAL_KEYS if k not in doc]
    if len(missing) < len(COLLATERAL_KEYS):  # collateral with keys missing: name the first one
        raise InputError(f"DCAP collateral JSON without the key {missing[0]!r}", source=name, field=missing[0])
    keys = ", ".join(json.dumps(k[:40]) for k in sorted(doc)[:8])  # quoted and escaped: the message stays one line
    raise InputError(f"unrecognised JSON evidence (keys: {keys}); expected a GetQuote answer (`quote`), an "
                     "attestation (`attestation`), an app-compose, an event log, DCAP collateral, a Phala Cloud "
                     "answer, a Trust Center result, a guest agent's Info, an acme-info, a KMS GetMeta, GPU "
                     "evidence, or a dstack-inspector report", source=name)


def _attestation_facts(att: Attestation) -> dict[str, Any]:
    """What the report says of an attestation blob besides its quote, log and config."""
    out: dict[str, Any] = {"format": att.format, "stack": att.stack, "report_data": att.report_data.hex()}
    if att.report_data_payload is not None:  # a dstack-pod's: shown as given, what its report_data was made from
        out["report_data_payload"] = att.report_data_payload
    return {"attestation": out}


def _vm_config(value: Any, source: str) -> dict[str, Any] | None:
    """vm_config travels as a JSON string (GetQuote, attestation) or an object; absent is None."""
    if value in (None, ""):
        return None
    if isinstance(value, str):
        value = load_json(value, source, "vm_config")
    if not isinstance(value, dict):
        raise InputError("vm_config is not a JSON object", source=source, field="vm_config")
    return value


def load_evidence(path: Path) -> Evidence:
    return detect(read_bounded(path), str(path))


def replay_inputs(report: dict[str, Any], source: str) -> list[Evidence]:
    """The recorded inputs of a report, decoded again (each is checked against its recorded digest)."""
    out = []
    inputs = report.get("inputs")
    if not isinstance(inputs, list):
        raise InputError("report has no inputs list", source=source, field="inputs")
    for i, item in enumerate(inputs):
        try:
            record = InputFile.model_validate(item)
        except ValueError:
            raise InputError("malformed input record", source=source, field=f"inputs[{i}]") from None
        if record.content_b64 is None:
            raise InputError(f"input {record.name} was not recorded in the report", source=source,
                             field=f"inputs[{i}]")
        try:
            data = base64.b64decode(record.content_b64, validate=True)
        except ValueError:  # binascii.Error: bad padding or characters
            raise InputError(f"recorded input {record.name} is not valid base64", source=source,
                             field=f"inputs[{i}].content_b64") from None
        if hashlib.sha256(data).hexdigest() != record.sha256:
            raise InputError(f"recorded input {record.name} does not match its sha256", source=source,
                             field=f"inputs[{i}]")
        out.append(detect(data, f"{source}:{record.name}"))
    return out
