"""Fuzzing the answers of the sources and the packs: every parser of untrusted JSON or zip bytes returns its model or
raises InputError — never another exception. The inputs start from real shapes (the demo's Cloud answer, acme-info,
/prpc/Info and GPU evidence, a real pack) and are mutated: fields dropped, replaced by other JSON values, truncated."""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from dstack_verifier.demo import load_demo
from dstack_verifier.errors import InputError
from dstack_verifier.evidence import detect
from dstack_verifier.gpu import parse_gpu_evidence
from dstack_verifier.report.pack import read_pack
from dstack_verifier.sources.agent import parse_info
from dstack_verifier.sources.cloud import parse_cloud_answer
from dstack_verifier.sources.gateway import parse_acme_info
from dstack_verifier.sources.trust_center import parse_trust_center_result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.function_scoped_fixture])

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)


@cache
def demo_docs() -> dict[str, Any]:
    from dstack_verifier.verification import verify_evidence

    demo = load_demo()
    docs = {e.kind: json.loads(e.data) for e in demo.items if e.kind in ("cloud-attestations", "acme-info",
                                                                          "agent-info")}
    # A Trust Center result: the demo's DataObjects (the Trust Center's layout) in a VerificationResponse.
    objects = verify_evidence(demo.items, demo.options()).data_objects
    docs["trust-center-result"] = {"dataObjects": [o.model_dump(mode="json", exclude_none=True) for o in objects],
                                   "success": True, "errors": [], "failures": []}
    return docs


def gpu_doc() -> dict[str, Any]:
    return {"nonce": "ab" * 32, "arch": "HOPPER",
            "evidence_list": [{"certificate": "LS0tLS1CRUdJTg==", "evidence": "AAAA", "arch": "HOPPER"}]}


PARSERS = {
    "cloud-attestations": lambda data: parse_cloud_answer(data, "answer.json"),
    "acme-info": lambda data: parse_acme_info(data, "acme-info.json"),
    "agent-info": lambda data: parse_info(data, "info.json"),
    "gpu": lambda data: parse_gpu_evidence(data, "gpu.json"),
    "trust-center-result": lambda data: parse_trust_center_result(data, "trust-center.json"),
}


def paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside `doc` (JSON-in-a-string fields are values)."""
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:3]):
            out += paths(v, (*prefix, i))
    return out


def mutated(doc: Any, path: tuple, value: Any, drop: bool) -> Any:
    doc = json.loads(json.dumps(doc))
    if not path:
        return value
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if drop and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


def must_parse_or_refuse(parse: Any, data: bytes) -> None:
    try:
        parse(data)
    except InputError as exc:
        assert "\n" not in str(exc)


@pytest.mark.parametrize("kind", list(PARSERS))
@FUZZ
@given(data=st.data(), value=JSON_VALUES, drop=st.booleans())
def test_mutated_answers_parse_or_are_refused(kind: str, data: st.DataObject, value: Any, drop: bool) -> None:
    doc = gpu_doc() if kind == "gpu" else demo_docs()[kind]
    path = data.draw(st.sampled_from(paths(doc)))
    text = json.dumps(mutated(doc, path, value, drop)).encode()
    must_parse_or_refuse(PARSERS[kind], text)
    must_parse_or_refuse(lambda d: detect(d, "evidence.json"), text)


@pytest.mark.parametrize("kind", list(PARSERS))
@FUZZ
@given(cut=st.integers(min_value=0, max_value=10_000), junk=st.binary(max_size=8))
def test_truncated_answers_parse_or_are_refused(kind: str, cut: int, junk: bytes) -> None:
    doc = gpu_doc() if kind == "gpu" else demo_docs()[kind]
    text = json.dumps(doc).encode()
    data = text[: cut % (len(text) + 1)] + junk
    must_parse_or_refuse(PARSERS[kind], data)
    must_parse_or_refuse(lambda d: detect(d, "evidence.json"), data)


@cache
def real_pack() -> dict[str, bytes]:
    """A pack's members, written by a real export of the demo app with a fixed test key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from dstack_verifier.report.export import export_pack
    from dstack_verifier.verification import verify_evidence

    demo = load_demo()
    report = verify_evidence(demo.app_items, demo.options())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pack.zip"
        export_pack(report, path, Ed25519PrivateKey.from_private_bytes(b"\x01" * 32))
        with zipfile.ZipFile(path) as zf:
            return {i.filename: zf.read(i) for i in zf.infolist()}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(data=st.data(), payload=st.binary(max_size=64))
def test_mutated_packs_are_read_or_refused(tmp_path: Path, data: st.DataObject, payload: bytes) -> None:
    members = dict(real_pack())
    name = data.draw(st.sampled_from([*members, "../escape", "/abs", "a/../../b", "x" * 300]))
    action = data.draw(st.sampled_from(["replace", "drop", "add", "cut-archive"]))
    if action == "drop":
        members.pop(name, None)
    else:
        members[name] = payload
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for member, body in members.items():
            zf.writestr(member, body)
    raw = buffer.getvalue()
    if action == "cut-archive":
        raw = raw[: data.draw(st.integers(min_value=0, max_value=len(raw)))]
    path = tmp_path / "pack.zip"
    path.write_bytes(raw)
    try:
        read_pack(path)
    except InputError as exc:
        assert "\n" not in str(exc)
