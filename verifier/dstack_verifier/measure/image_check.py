"""`os.image_hash`: which OS image the VM claims to run, and whether the files at hand are that image.

Three values should agree: sha256(sha256sum.txt) of the image (the folder's, or TDX-lite's `checksum_file`),
`vm_config.os_image_hash` (chosen by the host, not hardware-bound on TDX), and the `os-image-hash` RTMR3 event (which
the guest extends into RTMR3, so the quote vouches for it once the RTMR3 replay passed). Any disagreement is reported
with both values, saying which one the hardware measured.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Any

from ..errors import InputError
from ..model import Anchor, Check, CheckStatus, Entity, image_anchor
from .image import ImageFolder, parse_manifest

CHECK_ID = "os.image_hash"
LITE_DOCUMENT = "measurement.tdx.cbor"
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")

# dstack's own verifier never compares the RTMR3 event with vm_config (spec §9.2); we do, so a reviewer sees it.
_UNCHECKED_BY_DSTACK = ("dstack-verifier does not compare the RTMR3 os-image-hash event with vm_config.os_image_hash; "
                        "a vm_config rewritten after the quote was taken (as in dstack's own TDX-lite test fixture) "
                        "shows up here")


def os_image_hex(text: str) -> str:
    """An OS image hash as a policy keeps it: 64 lower-case hex digits (a `0x` prefix is dropped); ValueError
    otherwise."""
    value = text.strip().lower().removeprefix("0x")
    if not _HEX64.fullmatch(value):
        raise ValueError(f"{text[:40]!r} is not an OS image hash (32 bytes of hex)")
    return value


def apply_allowed_images(check: Check, vm_config: dict[str, Any] | None, measured: bytes | None,
                         allowed: tuple[str, ...]) -> Check:
    """The user's list of accepted OS images (e.g. the releases they reviewed), applied to `os.image_hash`: an
    image that held but is not listed fails; one that is listed says so. With no image at hand (skipped), what names
    the image is still compared: the hardware-measured os-image-hash RTMR3 event, and the VM config's claim; any of
    them the list does not accept fails, whether or not the files could be checked.

    It stands in for the KMS's `allowedOsImages` offline, and is what makes a TDX-lite pass name a known release."""
    if not allowed:
        return check
    if check.status in (CheckStatus.PASS, CheckStatus.WARN):
        verified = check.details.get("os_image_hash")
        named = [("os_image_hash", verified)] if isinstance(verified, str) else []
    elif check.status is CheckStatus.SKIP:
        named = [(what, value) for what, value in (
            ("the hardware-measured os-image-hash RTMR3 event", measured.hex() if measured else None),
            ("vm_config.os_image_hash (not verified: no image at hand)", _vm_config_hash(vm_config, [])))
            if value is not None]
    else:
        return check  # it failed already, for a reason of its own
    if not named:
        return check
    refused = [(what, value) for what, value in named if value not in allowed]
    details = {**check.details, "allowed_os_images": list(allowed), "allowed": not refused}
    if not refused:
        if check.status is CheckStatus.SKIP:
            return check.model_copy(update={"details": details})
        return check.model_copy(update={"summary": f"{check.summary}; an image the policy accepts",
                                        "details": details})
    what, image = refused[0]
    return check.model_copy(update={
        "status": CheckStatus.FAIL,
        "summary": f"{what} {image} is not one of the {len(allowed)} OS image(s) the policy accepts",
        "details": details,
    })


def _skip(entity: Entity, reason: str) -> Check:
    return Check(id=CHECK_ID, entity=entity, phase="os", status=CheckStatus.SKIP, anchor=Anchor.NONE,
                 summary=f"skipped: {reason}", details={"reason": reason})


def _vm_config_hash(vm_config: dict[str, Any] | None, problems: list[str]) -> str | None:
    """vm_config.os_image_hash as lowercase hex, or None when there is none (a malformed one is a problem)."""
    if vm_config is None:
        return None
    value = vm_config.get("os_image_hash")
    if value is None or value == "":  # dstack's default is empty
        return None
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        problems.append(f"vm_config.os_image_hash is not 64 hex digits: {str(value)[:80]!r}")
        return None
    return value.lower()


def _compare(image_hash: str, what: str, vm_hash: str | None, measured: bytes | None, problems: list[str]) -> None:
    """Append a problem, naming both values, for each of vm_config and the RTMR3 event that disagrees with `what`."""
    if vm_hash is not None and vm_hash != image_hash:
        problems.append(f"vm_config.os_image_hash is {vm_hash}, but {what} is {image_hash}")
    if measured is not None and measured.hex() != image_hash:
        ours = f"{what} and vm_config.os_image_hash are" if vm_hash == image_hash else f"{what} is"
        problems.append(f"the hardware measured os_image_hash {measured.hex()} (the os-image-hash RTMR3 event), "
                        f"but {ours} {image_hash}")


def _agreement(vm_hash: str | None, measured: bytes | None) -> str:
    """What the image hash equals, and what there was nothing to compare with, for a passing summary."""
    matched = [name for name, value in (("the hardware-measured os-image-hash RTMR3 event", measured),
                                        ("vm_config.os_image_hash", vm_hash)) if value is not None]
    missing = [name for name, value in (("os-image-hash RTMR3 event", measured),
                                        ("vm_config.os_image_hash", vm_hash)) if value is None]
    text = f"; it equals {' and '.join(matched)}" if matched else ""
    if missing:
        text += f"; no {' or '.join(missing)} to compare with"
    return text


def _summary_of(problems: list[str]) -> str:
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return problems[0] + more


def check_image_hash(folder: ImageFolder | None, vm_config: dict[str, Any] | None, app_os_image_hash: bytes | None,
                     entity: Entity, reason_if_absent: str) -> Check:
    """The image folder's files match sha256sum.txt, whose sha256 is os_image_hash, which agrees with the RTMR3
    event and vm_config; `skip` with `reason_if_absent` when there is no folder."""
    if folder is None:
        return _skip(entity, reason_if_absent)
    image_hash = folder.os_image_hash.hex()
    files = folder.verify_files()
    problems = [f"{f.name}: {f.problem}" for f in files if not f.ok]
    vm_hash = _vm_config_hash(vm_config, problems)
    _compare(image_hash, "sha256(sha256sum.txt) of the image folder", vm_hash, app_os_image_hash, problems)
    meta = folder.metadata
    details: dict[str, Any] = {
        "path": "full-image",
        "os_image_hash": image_hash,
        "folder": str(folder.root),
        "version": meta.version,
        "is_dev": meta.is_dev,
        "files": [f.to_json() for f in files],
        "vm_config_os_image_hash": vm_hash,
        "rtmr3_os_image_hash": None if app_os_image_hash is None else app_os_image_hash.hex(),
        "hardware_measured": None if app_os_image_hash is None else app_os_image_hash.hex(),
        "problems": problems,
    }
    if problems:
        if app_os_image_hash is not None and app_os_image_hash.hex() != image_hash:
            details["note"] = _UNCHECKED_BY_DSTACK
        return Check(id=CHECK_ID, entity=entity, phase="os", status=CheckStatus.FAIL, anchor=image_anchor(image_hash),
                     summary=_summary_of(problems), details=details)
    release = f"OS image {meta.version}{' (dev)' if meta.is_dev else ''}" if meta.version else "the OS image"
    listed = sum(1 for f in files if f.expected is not None and f.name != "digest.txt")
    summary = (f"the {listed} files of {release} match sha256sum.txt, whose sha256 {image_hash} is the "
               f"os_image_hash{_agreement(vm_hash, app_os_image_hash)}")
    status = CheckStatus.PASS
    if meta.is_dev:  # metadata.json is listed in sha256sum.txt, so the os_image_hash vouches for this flag
        status = CheckStatus.WARN
        summary = f"a development build: {summary}"
        details["note"] = ("metadata.json says is_dev: a dstack dev image is built for debugging, with tools and "
                           "access a production image leaves out; the Trust Center accepts it without a word")
    return Check(id=CHECK_ID, entity=entity, phase="os", status=status, anchor=image_anchor(image_hash),
                 summary=summary, details=details)


def _b64(value: Any, field: str, problems: list[str]) -> bytes | None:
    if not isinstance(value, str):
        problems.append(f"vm_config.tdx_measurement.{field} is {'absent' if value is None else 'not a string'}")
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        problems.append(f"vm_config.tdx_measurement.{field} is not valid base64")
        return None


def _check_document_listed(checksum_file: bytes, document: bytes | None, problems: list[str]) -> str | None:
    """The checksum file must list measurement.tdx.cbor with the document's sha256 (spec §10.2 step 3)."""
    try:
        entries = parse_manifest(checksum_file, "vm_config.tdx_measurement.checksum_file")
    except InputError as exc:
        problems.append(exc.describe())
        return None
    entry = next((e for e in entries if e.name == LITE_DOCUMENT), None)
    if entry is None:
        problems.append(f"the checksum file does not list {LITE_DOCUMENT}")
        return None
    if document is not None and hashlib.sha256(document).digest() != entry.sha256:
        problems.append(f"the checksum file lists {LITE_DOCUMENT} as {entry.sha256.hex()}, but the measurement "
                        f"document's sha256 is {hashlib.sha256(document).hexdigest()}")
    return entry.sha256.hex()


def check_image_hash_lite(vm_config: dict[str, Any] | None, app_os_image_hash: bytes | None,
                          entity: Entity) -> Check:
    """TDX-lite: os_image_hash = sha256(vm_config.tdx_measurement.checksum_file), which lists the measurement
    document by its sha256; it must agree with vm_config.os_image_hash and the RTMR3 event."""
    if vm_config is None:
        return _skip(entity, "no vm_config given, so there is no TDX-lite checksum file")
    problems: list[str] = []
    material = vm_config.get("tdx_measurement")
    if not isinstance(material, dict):
        reason = "a TDX-lite boot needs vm_config.tdx_measurement, and it is absent"
        return Check(id=CHECK_ID, entity=entity, phase="os", status=CheckStatus.FAIL, anchor=Anchor.NONE,
                     summary=reason, details={"path": "tdx-lite", "problems": [reason]})
    checksum_file = _b64(material.get("checksum_file"), "checksum_file", problems)
    document = _b64(material.get("measurement"), "measurement", problems)
    if checksum_file is None:
        return Check(id=CHECK_ID, entity=entity, phase="os", status=CheckStatus.FAIL, anchor=Anchor.NONE,
                     summary=_summary_of(problems), details={"path": "tdx-lite", "problems": problems})
    image_hash = hashlib.sha256(checksum_file).hexdigest()
    vm_hash = _vm_config_hash(vm_config, problems)
    if vm_hash is None and not any(p.startswith("vm_config.os_image_hash") for p in problems):
        problems.append("vm_config.os_image_hash is absent; TDX-lite needs it to name the image")
    listed = _check_document_listed(checksum_file, document, problems)
    _compare(image_hash, "sha256(vm_config.tdx_measurement.checksum_file)", vm_hash, app_os_image_hash, problems)
    measured = None if app_os_image_hash is None else app_os_image_hash.hex()
    details: dict[str, Any] = {
        "path": "tdx-lite",
        "os_image_hash": image_hash,
        "checksum_file": checksum_file.decode("utf-8", "replace"),
        "measurement_document_sha256": None if document is None else hashlib.sha256(document).hexdigest(),
        "listed_document_sha256": listed,
        "vm_config_os_image_hash": vm_hash,
        "rtmr3_os_image_hash": measured,
        "hardware_measured": measured,
        "problems": problems,
    }
    if problems:
        if measured is not None and measured != image_hash:
            details["note"] = _UNCHECKED_BY_DSTACK
        return Check(id=CHECK_ID, entity=entity, phase="os", status=CheckStatus.FAIL, anchor=image_anchor(image_hash),
                     summary=_summary_of(problems), details=details)
    summary = (f"os_image_hash {image_hash} = sha256(vm_config.tdx_measurement.checksum_file), which lists "
               f"{LITE_DOCUMENT} by the measurement document's sha256"
               f"{_agreement(vm_hash, app_os_image_hash)}")
    return Check(id=CHECK_ID, entity=entity, phase="os", status=CheckStatus.PASS, anchor=image_anchor(image_hash),
                 summary=summary, details=details)
