"""The certificate pane: the demo's PCK and RA-TLS chains, the Cloud answer's per-entity PCK chains (Intel's),
validity at the verification instant, the SGX and dstack extensions decoded, and PEM export."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from cryptography import x509
from dstack_inspector.gui.cert_pane import CertificatePane, certificate_details, entity_quote, report_chains
from dstack_verifier.demo import load_demo
from dstack_verifier.evidence import detect
from dstack_verifier.model import Report
from dstack_verifier.verification import VerifyOptions, load_anchor, verify_evidence

from tests.support.cloud_server import Dataset1


@pytest.fixture(scope="module")
def demo() -> Report:
    d = load_demo()
    return verify_evidence(d.app_items, VerifyOptions(now=d.now, anchor=d.anchor, offline=True))


def cn(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value


def sections(der: bytes, at: int | None) -> dict:
    return dict(certificate_details(der, at))


def test_demo_chains(demo: Report) -> None:
    chains = report_chains(demo, "app")
    assert [cn(d) for d in chains["PCK"]] == ["Demo SGX PCK Certificate", "Demo SGX PCK Platform CA",
                                              "Demo SGX Root CA — not Intel"]
    assert [cn(d) for d in chains["RA-TLS"]] == ["demo-app.dstack.example", "Dstack App CA", "Dstack KMS CA"]
    assert chains["TLS"] == []
    pck = sections(chains["PCK"][0], demo.verified_at)
    assert pck["Certificate"]["SHA-256 fingerprint"] == hashlib.sha256(chains["PCK"][0]).hexdigest()
    assert pck["Certificate"]["key"] == "EC secp256r1"
    assert pck["Validity"]["at the verification instant"].startswith("✓ valid")
    sgx = next(v for k, v in pck["Extensions"].items() if k.startswith("Intel SGX extension"))
    assert sgx["FMSPC"] == demo.entities["app"]["pck"]["fmspc"]
    assert sgx["PCE-SVN"] == demo.entities["app"]["pck"]["pce_svn"]
    assert sgx["TCB components (SGX, 1–16)"] == demo.entities["app"]["pck"]["tcb_components"]
    assert sgx["PPID"] == demo.entities["app"]["pck"]["ppid"]
    leaf = sections(chains["RA-TLS"][0], demo.verified_at)
    assert leaf["dstack RA-TLS"]["app_id"] == demo.entities["app"]["app_info"]["app_id"]
    assert leaf["dstack RA-TLS"]["quote_present"] is True
    assert any(k.startswith("dstack extension (1.3.6.1.4.1.62397.1.") for k in leaf["Extensions"])
    # Validity is judged at the instant given: long after the leaf expired, it is marked.
    assert sections(chains["RA-TLS"][0], 4_000_000_000)["Validity"]["at the verification instant"].startswith("✕")


def test_bad_certificate_bytes_are_named() -> None:
    details = sections(b"\x30\x03\x02\x01\x00", None)
    assert "does not parse" in details["Certificate"]["error"]


def test_cloud_answer_pck_chain_per_entity(tmp_path: Path) -> None:
    answer = tmp_path / "attestations.json"
    dataset = Dataset1.load()
    answer.write_text(json.dumps(dataset.cloud_answer()))
    report = verify_evidence([detect(answer.read_bytes(), str(answer))],
                             VerifyOptions(now=load_demo().now, anchor=load_anchor(None), offline=True))
    for entity in ("app", "kms", "gateway"):
        assert entity_quote(report, entity) == dataset.quote(entity)
        chain = report_chains(report, entity)["PCK"]
        assert [cn(d) for d in chain] == ["Intel SGX PCK Certificate", "Intel SGX PCK Platform CA",
                                          "Intel SGX Root CA"]
        sgx = next(v for k, v in sections(chain[0], None)["Extensions"].items() if k.startswith("Intel SGX"))
        assert sgx["FMSPC"] == report.entities[entity]["pck"]["fmspc"]
    # An entity the report does not hold has no quote and no chain.
    assert entity_quote(report, "nobody") is None and report_chains(report, "nobody")["PCK"] == []


def test_pane_tree_selection_and_export(qtbot, demo: Report, tmp_path: Path) -> None:
    target = tmp_path / "out" / "chain.pem"
    asked: list[str] = []

    def save_dialog(_parent, _title, suggested):  # type: ignore[no-untyped-def]
        asked.append(suggested)
        return str(target)

    pane = CertificatePane(save_dialog=save_dialog)
    qtbot.addWidget(pane)
    pane.resize(1300, 800)
    pane.show()
    pane.set_report(demo, "app")
    tops = [pane.tree.topLevelItem(i) for i in range(pane.tree.topLevelItemCount())]
    assert [t.childCount() for t in tops] == [3, 3, 0]
    assert [tops[0].child(i).text(1) for i in range(3)] == ["leaf", "intermediate", "root"]
    assert pane.tree.currentItem() is tops[0].child(0)
    assert pane.details.topLevelItem(0).text(0) == "Certificate"
    # Export of one certificate: its PEM, nothing else; a missing folder is an error shown inline.
    assert pane.export_pem() is None and "Could not write" in pane.message.text()
    target.parent.mkdir()
    assert pane.export_pem() == target and asked[-1] == "Demo_SGX_PCK_Certificate.pem"
    saved = x509.load_pem_x509_certificates(target.read_bytes())
    assert [c.serial_number for c in saved] == [x509.load_der_x509_certificate(pane.chains["PCK"][0]).serial_number]
    # Export of a whole chain: select its node.
    pane.tree.setCurrentItem(tops[1])
    assert pane.export_pem() == target and asked[-1] == "RA-TLS_chain.pem"
    assert len(x509.load_pem_x509_certificates(target.read_bytes())) == 3
    # The dialog cancelled: nothing written.
    pane._save_dialog = lambda *_: ""
    assert pane.export_pem() is None
    pane.tree.setCurrentItem(tops[2])
    assert not pane.export_button.isEnabled()
    assert pane.grab().save(str(tmp_path / "certs.png"))
    pane.set_report(None, "app")
    assert pane.tree.topLevelItemCount() == 3 and not pane.export_button.isEnabled()


def test_a_certificate_whose_names_do_not_parse_is_shown(qtbot) -> None:
    """cryptography decodes names when first asked; a hostile certificate whose subject is malformed still loads,
    and the pane shows it as not parsing (found by opening mutated evidence in the window)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    pem = load_demo().app_items[2].data
    der = bytearray(x509.load_pem_x509_certificates(pem)[0].public_bytes(Encoding.DER))
    at = der.rindex(bytes.fromhex("0603550403")) + 7  # the first byte of the subject's CN, a UTF8String
    assert der[at - 2] == 0x0C
    der[at] = 0xFF  # not UTF-8
    cert = x509.load_der_x509_certificate(bytes(der))
    with pytest.raises(ValueError):
        _ = cert.subject
    pane = CertificatePane()
    qtbot.addWidget(pane)
    pane.set_chains({"app RA-TLS": [bytes(der)]}, None)
    sections = dict(certificate_details(bytes(der), None))
    assert sections["Certificate"]["subject"].startswith("(does not parse: ")
    tops = [pane.tree.topLevelItem(i) for i in range(pane.tree.topLevelItemCount())]
    labels = [top.child(j).text(0) for top in tops for j in range(top.childCount())]
    assert labels == ["<certificate whose subject does not parse>"]
