"""Verify an evidence pack: the signature (with a trusted key, or only the embedded one), every signed digest,
missing and extra files, then the checks re-run offline at the recorded instant and compared with the signed ones."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel

from ..errors import InputError
from ..evidence import Evidence
from ..jsontext import load_json
from ..model import Report
from ..quote.policy import TcbPolicy
from ..quote.verify import TrustAnchor
from ..resources import INTEL_ROOT_CA_SHA256
from ..validation import validate_model
from ..verification import PHASES, ImageOptions, VerifyOptions, load_anchor, verify_evidence
from .dsse import SignatureError, parse_envelope
from .keys import fingerprint, key_id, public_key_from_pem
from .pack import (
    HTML_FILE,
    PUBLIC_KEY_FILE,
    RENDERINGS_FILE,
    REPORT_FILE,
    STATEMENT_FILE,
    read_pack,
)
from .statement import (
    RENDERING_PREDICATE,
    VERIFICATION_PREDICATE,
    RenderingPredicate,
    Statement,
    VerificationPredicate,
    identity_subjects,
    is_identity_subject,
    parse_predicate,
    parse_statement,
)

ProblemKind = Literal["signature", "statement", "missing", "changed", "extra", "report", "anchor", "rerun",
                      "difference"]


class PackProblem(BaseModel):
    kind: ProblemKind
    member: str | None = None
    message: str

    def line(self) -> str:
        return f"{self.member}: {self.message}" if self.member else self.message


class CheckDifference(BaseModel):
    entity: str
    id: str
    signed: str | None  # "status @ anchor" as signed; None: the check was not in the statement
    rerun: str | None  # as re-run; None: the re-run did not produce it
    # Signed `error` (it could not run then, e.g. a network failure) and `skip` offline now: neither ran, so there is
    # nothing to compare and it is no sign of tampering; listed, not a problem.
    not_run_either: bool = False


class PackVerification(BaseModel):
    path: str
    key_source: Literal["trusted", "embedded", "none"] = "none"
    key_id: str | None = None
    fingerprint: str | None = None
    key_note: str = ""
    anchor_note: str = ""
    predicate: VerificationPredicate | None = None
    report: Report | None = None
    rerun: Report | None = None
    differences: list[CheckDifference] = []
    problems: list[PackProblem] = []

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class _Pack:
    members: dict[str, bytes]
    result: PackVerification
    signed: dict[str, str] = field(default_factory=dict)  # subject name -> sha256, from both statements

    def problem(self, kind: ProblemKind, message: str, member: str | None = None) -> None:
        self.result.problems.append(PackProblem(kind=kind, member=member, message=message))


def verify_pack(path: Path, trusted_key: Ed25519PublicKey | None = None, *,
                trusted_ids: Collection[str] = (), images: ImageOptions | None = None) -> PackVerification:
    """InputError when the file is not a safe, readable zip; every other finding is a problem in the result.

    `trusted_key` checks the signature with that key; without it, the key the pack carries is used, and it counts
    as trusted when its key id (SHA-256 of the raw public key, hex) is among `trusted_ids`."""
    pack = _Pack(read_pack(path), PackVerification(path=str(path)))
    key = _signing_key(pack, trusted_key, trusted_ids)
    if key is None:
        return pack.result
    try:
        statement = _signed_statement(pack, key, STATEMENT_FILE, VERIFICATION_PREDICATE)
        predicate = parse_predicate(statement, VerificationPredicate, STATEMENT_FILE)
        bound = _signed_statement(pack, key, RENDERINGS_FILE, RENDERING_PREDICATE)
        rendering = parse_predicate(bound, RenderingPredicate, RENDERINGS_FILE)
    except SignatureError as exc:
        pack.problem("signature", str(exc))
        return pack.result
    except InputError as exc:
        pack.problem("statement", exc.describe())
        return pack.result
    pack.result.predicate = predicate
    if rendering.statement.get("sha256") != hashlib.sha256(statement.payload()).hexdigest():
        pack.problem("statement", "the renderings were signed for another verification statement", RENDERINGS_FILE)
    _check_digests(pack, statement, bound)
    report = _signed_report(pack, predicate)
    if report is None or pack.result.problems:
        pack.problem("rerun", "checks not re-run: the pack is not as it was signed")
        return pack.result
    pack.result.report = report
    rerun = _rerun(pack, predicate, images)
    if rerun is not None:
        pack.result.rerun = rerun
        signed = {n: d for n, d in pack.signed.items() if is_identity_subject(n)}
        found = {s.name: s.digest["sha256"] for s in identity_subjects(rerun)}
        if signed and found != signed:  # packs made before identity subjects existed name none
            pack.problem("difference", "the evidence tells other app identities than the statement: signed "
                                       f"{_identities(signed)}, re-run {_identities(found)}")
        pack.result.differences = diff_checks(predicate, rerun)
        for d in pack.result.differences:
            if d.not_run_either:
                continue
            pack.problem("difference", f"{d.entity} {d.id}: signed {d.signed or 'absent'}, re-run "
                                       f"{d.rerun or 'absent'}")
    return pack.result


def _signing_key(pack: _Pack, trusted: Ed25519PublicKey | None,
                 trusted_ids: Collection[str]) -> Ed25519PublicKey | None:
    result = pack.result
    if trusted is not None:
        key, result.key_source = trusted, "trusted"
        result.key_note = f"signature checked with the trusted key {fingerprint(key)}"
    else:
        pem = pack.members.get(PUBLIC_KEY_FILE)
        if pem is None:
            pack.problem("signature", "no trusted key given and the pack carries no public key", PUBLIC_KEY_FILE)
            return None
        try:
            key = public_key_from_pem(pem, PUBLIC_KEY_FILE)
        except InputError as exc:
            pack.problem("signature", exc.describe())
            return None
        if key_id(key) in trusted_ids:
            result.key_source = "trusted"
            result.key_note = (f"signature checked with the key the pack carries ({fingerprint(key)}), which is one "
                               "of the signers you trust")
        else:
            result.key_source = "embedded"
            result.key_note = (f"signature checked with the key the pack carries ({fingerprint(key)}), not a "
                               "trusted one: this proves the pack is unchanged since it was signed, not who signed "
                               "it (give --trusted-key to check the signer)")
    result.key_id, result.fingerprint = key_id(key), fingerprint(key)
    return key


def _signed_statement(pack: _Pack, key: Ed25519PublicKey, member: str, predicate_type: str) -> Statement:
    data = pack.members.get(member)
    if data is None:
        raise InputError("missing: the pack has no signed statement", source=member)
    payload = parse_envelope(data, member).verify(key)
    statement = parse_statement(payload, member, predicate_type)
    pack.signed.update(statement.digests())
    return statement


def _check_digests(pack: _Pack, statement: Statement, bound: Statement) -> None:
    for name, digest in pack.signed.items():
        if is_identity_subject(name):  # an app's identity, not a file: the re-run is held to it
            continue
        data = pack.members.get(name)
        if data is None:
            pack.problem("missing", "signed, but missing from the pack", name)
        elif hashlib.sha256(data).hexdigest() != digest:
            pack.problem("changed", f"changed since signing (sha256 {hashlib.sha256(data).hexdigest()[:16]}…, "
                                    f"signed {digest[:16]}…)", name)
    for name, what in ((REPORT_FILE, statement), (HTML_FILE, bound)):
        if name not in what.digests():
            pack.problem("statement", "not among the signed subjects", name)
    unsigned = set(pack.members) - set(pack.signed) - {STATEMENT_FILE, RENDERINGS_FILE, PUBLIC_KEY_FILE}
    for name in sorted(unsigned):
        pack.problem("extra", "not covered by the signature (added after signing)", name)


def _identities(subjects: dict[str, str]) -> str:
    return ", ".join(f"{n} (compose {d[:16]}…)" for n, d in sorted(subjects.items())) or "none"


def _signed_report(pack: _Pack, predicate: VerificationPredicate) -> Report | None:
    """report.json, checked against the predicate: same instant, and its inputs are the pack's evidence files."""
    data = pack.members.get(REPORT_FILE)
    if data is None:
        return None
    try:
        report = validate_model(Report, load_json(data.decode("utf-8", "replace"), REPORT_FILE), REPORT_FILE,
                                "a dstack-inspector report")
    except InputError as exc:
        pack.problem("report", exc.describe())
        return None
    if report.verified_at != predicate.verified_at:
        pack.problem("report", "its verification instant is not the statement's", REPORT_FILE)
    if [i.sha256 for i in report.inputs] != [e.sha256 for e in predicate.evidence]:
        pack.problem("report", "its inputs are not the evidence files of the statement", REPORT_FILE)
    for e in predicate.evidence:
        if pack.signed.get(e.file) != e.sha256:
            pack.problem("statement", "an evidence file whose digest is not a signed subject", e.file)
    return report


def _anchor(pack: _Pack, predicate: VerificationPredicate, report: Report) -> TrustAnchor | None:
    info = predicate.trust_anchor
    recorded = report.policy.get("trust_anchor")
    if not isinstance(recorded, dict) or recorded.get("sha256") != info.sha256:
        pack.problem("anchor", "the report's trust anchor is not the statement's", REPORT_FILE)
        return None
    if info.file is None:
        if info.sha256 != INTEL_ROOT_CA_SHA256:
            pack.problem("anchor", f"root CA sha256 {info.sha256} is not Intel's and the pack does not carry it")
            return None
        pack.result.anchor_note = "trust anchor: the built-in Intel SGX Root CA"
        return load_anchor(None)
    if pack.signed.get(info.file) != info.sha256:
        pack.problem("anchor", "the trust anchor file is not the signed one", info.file)
        return None
    try:
        anchor = TrustAnchor.from_der(pack.members[info.file], info.file)
    except InputError as exc:
        pack.problem("anchor", exc.describe())
        return None
    subject = anchor.cert.subject.rfc4514_string()
    pack.result.anchor_note = (f"trust anchor: the caller-supplied root carried in the pack ({subject}): the results "
                               "say nothing about Intel hardware")
    return anchor


def _rerun(pack: _Pack, predicate: VerificationPredicate, images: ImageOptions | None) -> Report | None:
    """The report re-run from the pack's evidence files, offline, at the signed instant, under the signed policy."""
    report = pack.result.report
    assert report is not None
    anchor = _anchor(pack, predicate, report)
    if anchor is None:
        return None
    policy = report.policy
    tcb = policy.get("tcb")
    phases = policy.get("phases")
    if (not isinstance(tcb, dict) or not isinstance(phases, list) or not phases
            or any(p not in PHASES for p in phases)):
        pack.problem("report", "its policy does not name the TCB statuses and phases", REPORT_FILE)
        return None
    try:
        tcb_policy = TcbPolicy.from_description(tcb)
    except ValueError:
        pack.problem("report", "its TCB policy is malformed", REPORT_FILE)
        return None
    # The recorded report, its inputs' bytes taken from the pack's evidence files: what was signed is what re-runs.
    doc = report.model_dump(mode="json", by_alias=True)
    for record, e in zip(doc["inputs"], predicate.evidence, strict=True):
        record["content_b64"] = base64.b64encode(pack.members[e.file]).decode()
    entities = {c.entity for c in report.checks}
    # Whether dcap-qvl was consulted is not in the policy; the signed checks say whether it ran.
    reference = any(c.id == "hardware.reference_engine" for c in report.checks)
    options = VerifyOptions(now=predicate.verified_at, anchor=anchor, offline=True, policy=tcb_policy,
                            phases=tuple(phases), explicit_phases=tuple(phases) != PHASES, reference=reference,
                            images=images)
    try:
        return verify_evidence([Evidence(REPORT_FILE, "report", b"", json=doc)], options, client=None,
                               entity=entities.pop() if len(entities) == 1 else "app")
    except InputError as exc:
        pack.problem("rerun", f"the evidence could not be re-run: {exc.describe()}")
        return None


def diff_checks(predicate: VerificationPredicate, rerun: Report) -> list[CheckDifference]:
    """Checks whose status or anchor differ between the statement and the re-run, or that only one of them has."""
    signed = {(entity, c.id): f"{c.status} @ {c.anchor}" for entity, r in predicate.submods.items() for c in r.checks}
    again = {(c.entity, c.id): f"{c.status.value} @ {c.anchor}" for c in rerun.checks}
    keys = list(signed) + [k for k in again if k not in signed]
    def not_run(a: str | None, b: str | None) -> bool:
        return a is not None and b is not None and a.startswith("error @") and b.startswith("skip @") and \
            a.split(" @ ", 1)[1] == b.split(" @ ", 1)[1]

    return [CheckDifference(entity=k[0], id=k[1], signed=signed.get(k), rerun=again.get(k),
                            not_run_either=not_run(signed.get(k), again.get(k)))
            for k in keys if signed.get(k) != again.get(k)]
