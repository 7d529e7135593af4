"""The main window's flows beyond one verification: the history (saved, opened, re-run, deleted, compared), several
verifications at once, the trust graph's drill-down, pasting a quote, an app fetched by id from loopback servers,
exporting a signed pack and opening one, and the settings."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from dstack_inspector import workers
from dstack_inspector.gui.main_window import MainWindow
from dstack_inspector.settings import UserSettings
from dstack_verifier.demo import load_demo
from dstack_verifier.model import CheckStatus, Report
from dstack_verifier.synth import make_evidence
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication

WAIT_MS = 20_000


def settle(qtbot, window: MainWindow) -> Report:
    qtbot.waitUntil(lambda: window.state in ("done", "error", "cancelled") and not window.is_busy(),
                    timeout=WAIT_MS)
    assert window.report is not None, window.message_bar.text()
    return window.report


def test_a_verification_is_saved_and_reopened_from_the_history(window, qtbot):
    with qtbot.waitSignal(window.taskSaved, timeout=WAIT_MS) as saved:
        window.load_demo()
    task_id = saved.args[0]
    report = settle(qtbot, window)
    assert window.task_id == task_id and window.store is not None
    assert window.history_view is not None and window.history_view.model.total == 1
    stored = window.store.get(task_id)
    assert stored.verdict == report.verdict.value and stored.source == "demo"

    with qtbot.waitSignal(window.taskSaved, timeout=WAIT_MS):
        window.load_demo()  # a second run of the same evidence, saved apart
    settle(qtbot, window)
    assert window.store.count() == 2
    window.open_task(task_id)  # shown as it was, without verifying again
    assert window.task_id == task_id and not window.is_busy()
    assert window.report is not None and window.report.verified_at == report.verified_at
    assert [c.id for c in window.report.checks] == [c.id for c in report.checks]


def test_rerun_offline_from_the_recorded_evidence_and_delete(window, qtbot):
    with qtbot.waitSignal(window.taskSaved, timeout=WAIT_MS) as saved:
        window.load_demo()
    first = settle(qtbot, window)
    with qtbot.waitSignal(window.taskSaved, timeout=WAIT_MS) as again:
        window.rerun_task(saved.args[0], True)
    rerun = settle(qtbot, window)
    assert window.store.get(again.args[0]).source == "rerun"
    assert [(c.entity, c.id, c.status) for c in rerun.checks] == [(c.entity, c.id, c.status) for c in first.checks]
    window.delete_task(again.args[0])
    assert window.store.count() == 1 and window.task_id is None


def block_the_demo(monkeypatch) -> tuple[threading.Event, threading.Event]:  # type: ignore[no-untyped-def]
    """The demo's verification (a Cloud answer) waits for `gate`; `started` is set when it begins to wait."""
    gate, started = threading.Event(), threading.Event()
    real = workers.verify_evidence

    def demo_blocks(items, *args, **kwargs):  # type: ignore[no-untyped-def]
        if any(e.kind == "cloud-attestations" for e in items) and not started.is_set():
            started.set()
            gate.wait(10)
        return real(items, *args, **kwargs)

    monkeypatch.setattr(workers, "verify_evidence", demo_blocks)
    return gate, started


def test_two_verifications_run_at_once_and_both_are_saved(window, qtbot, monkeypatch, tmp_path):
    gate, started = block_the_demo(monkeypatch)
    window.load_demo()
    assert started.wait(5)
    assert window.tasks_view.numbers() == [1]
    ev = make_evidence(seed="second", now=1_750_000_000)
    quote = tmp_path / "q.bin"
    quote.write_bytes(ev.quote)
    window.open_paths([quote])  # another session: the demo goes on in the background
    assert sorted(window.tasks_view.numbers()) == [1, 2]
    qtbot.waitUntil(lambda: window.tasks_view.numbers() == [1], timeout=WAIT_MS)
    assert window.report is not None and window.state == "done"
    gate.set()
    qtbot.waitUntil(lambda: window.store.count() == 2, timeout=WAIT_MS)
    assert window.tasks_view.numbers() == []
    assert window.report is not None and window.report.entities.keys() == {"app"}  # the shown one stays


def test_cancelling_a_background_verification_keeps_the_shown_one(window, qtbot, monkeypatch, tmp_path):
    gate, started = block_the_demo(monkeypatch)
    window.load_demo()
    assert started.wait(5)
    ev = make_evidence(seed="other", now=1_750_000_000)
    quote = tmp_path / "q.bin"
    quote.write_bytes(ev.quote)
    window.open_paths([quote])
    qtbot.waitUntil(lambda: window.tasks_view.numbers() == [1], timeout=WAIT_MS)
    shown = window.report
    window.cancel_task(1)
    assert window.tasks_view.numbers() == [] and window.report is shown and window.state == "done"
    gate.set()
    window.pool.waitForDone(5000)
    qtbot.wait(100)
    assert window.store.count() == 1  # the cancelled one is not saved


def test_graph_node_opens_its_object_and_switches_the_entity(window, qtbot):
    window.load_demo()
    report = settle(qtbot, window)
    ids = {o.id for o in report.data_objects}
    assert {"app-quote", "kms-quote", "gateway-quote"} <= ids
    assert window.graph.select_node("kms-quote")
    obj = window.object_pane.object
    assert obj is not None and obj.id == "kms-quote"
    assert window.view.entity == "kms"
    assert window.view.entity_combo.currentData() == "kms"
    rows = window.object_pane.checks.topLevelItemCount()
    assert rows == len([i for i in obj.check_ids])
    # The KMS's quote is the one in the quote pane now, and a check opened from the object is the KMS's.
    assert window.quote_pane.hex.data()[:2] in (b"\x04\x00", b"\x05\x00")
    first = window.object_pane.checks.topLevelItem(0)
    window.object_pane.checks.itemDoubleClicked.emit(first, 0)
    assert window.bottom_tabs.currentWidget() is window.view.checks_splitter
    key = window.checks_pane.proxy.data(window.checks_pane.view.currentIndex().siblingAtColumn(0),
                                        Qt.ItemDataRole.UserRole + 4)
    assert key == f"kms/{first.text(0)}"


def test_paste_a_quote_from_the_clipboard(window, qtbot):
    ev = make_evidence(seed="paste", now=1_750_000_000)
    QGuiApplication.clipboard().setText("0x" + ev.quote.hex())
    assert window.paste_quote()
    report = settle(qtbot, window)
    assert report.inputs[0].name == "pasted from the clipboard"
    QGuiApplication.clipboard().setText("not a quote at all")
    assert not window.paste_quote()
    assert "not evidence" in window.message_bar.text()


def test_export_a_signed_pack_then_open_it(window, qtbot, tmp_path):
    window.load_demo()
    report = settle(qtbot, window)
    out = tmp_path / "demo-pack.zip"
    worker = window.export_pack(out)
    assert worker is not None
    qtbot.waitUntil(lambda: out.exists() and not window._calls, timeout=WAIT_MS)
    assert (Path(window.signing_key_path()).stat().st_mode & 0o777) == 0o600
    count = window.store.count()
    assert window.open_paths([out])  # a pack dropped or opened is verified as a pack
    qtbot.waitUntil(lambda: getattr(window, "last_pack", None) is not None, timeout=WAIT_MS)
    result = window.last_pack
    assert result.ok, [p.message for p in result.problems]
    assert window.pack_dialog.isVisible() and "PACK VERIFIED" in window.pack_dialog.text.toPlainText()
    assert result.key_source == "trusted"  # the user's own key: their own export
    assert window.pack_dialog.headline.text().startswith("The pack verifies, signed by a key you trust")
    qtbot.waitUntil(lambda: window.store.count() == count + 1, timeout=WAIT_MS)  # saved from the pool
    assert [c.status for c in window.report.checks] == [c.status for c in report.checks]
    renamed = out.with_suffix(".evidence")  # known by its content, not its name
    renamed.write_bytes(out.read_bytes())
    window.last_pack = None
    assert window.open_paths([renamed])
    qtbot.waitUntil(lambda: getattr(window, "last_pack", None) is not None, timeout=WAIT_MS)
    assert window.last_pack.ok and window.last_pack.path == str(renamed)


def test_a_pack_from_another_signer_is_intact_but_not_trusted_until_named(window, qtbot, tmp_path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from dstack_verifier.report.export import export_pack
    from dstack_verifier.report.keys import fingerprint, key_id
    from dstack_verifier.verification import verify_evidence

    demo = load_demo()
    other = Ed25519PrivateKey.from_private_bytes(b"\x09" * 32)
    out = tmp_path / "theirs.zip"
    export_pack(verify_evidence(demo.app_items, demo.options()), out, other)
    window.open_pack(out)
    qtbot.waitUntil(lambda: getattr(window, "last_pack", None) is not None, timeout=WAIT_MS)
    assert window.last_pack.ok and window.last_pack.key_source == "embedded"
    headline = window.pack_dialog.headline.text()
    assert "is not a key you trust" in headline and fingerprint(other.public_key()) in headline
    assert window.pack_dialog.windowTitle() == "Evidence pack intact, signer not trusted"
    grouped = fingerprint(other.public_key())  # pasted as shown
    window.apply_settings(UserSettings.model_validate({**window.settings.model_dump(), "trusted_signers": [grouped]}))
    assert window.settings.trusted_signers == [key_id(other.public_key())]
    window.last_pack = None
    window.open_pack(out)
    qtbot.waitUntil(lambda: getattr(window, "last_pack", None) is not None, timeout=WAIT_MS)
    assert window.last_pack.key_source == "trusted" and "one of the signers you trust" in window.last_pack.key_note


def test_a_tampered_pack_says_so(window, qtbot, tmp_path):
    import zipfile

    window.load_demo()
    settle(qtbot, window)
    out = tmp_path / "pack.zip"
    window.export_pack(out)
    qtbot.waitUntil(lambda: out.exists() and not window._calls, timeout=WAIT_MS)
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(out) as src, zipfile.ZipFile(tampered, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "report.json":
                data = data.replace(b'"verdict": "pass"', b'"verdict": "fail"')
            dst.writestr(info, data)
    window.open_pack(tampered)
    qtbot.waitUntil(lambda: getattr(window, "last_pack", None) is not None, timeout=WAIT_MS)
    assert not window.last_pack.ok
    assert "DOES NOT VERIFY" in window.pack_dialog.text.toPlainText()


def test_compare_two_tasks(window, qtbot, tmp_path):
    with qtbot.waitSignal(window.taskSaved, timeout=WAIT_MS):
        window.load_demo()
    settle(qtbot, window)
    ev = make_evidence(seed="compare", now=1_750_000_000)
    quote = tmp_path / "q.bin"
    quote.write_bytes(ev.quote)
    with qtbot.waitSignal(window.taskSaved, timeout=WAIT_MS):
        window.open_paths([quote])
    settle(qtbot, window)
    window.compare()
    dialog = window.compare_dialog
    assert dialog.isVisible() and dialog.a.count() == 2
    assert dialog.a.currentData() == window.task_id and dialog.b.currentData() != window.task_id
    assert dialog.view.comparison is not None and dialog.view.comparison.differences > 0


def test_verify_an_app_by_id_from_loopback_servers(qtbot, tmp_path, monkeypatch):
    from tests.support.cloud_server import ACME_INFO_PATH, Dataset1, DstackServer, cloud_path

    dataset = Dataset1.load()
    with DstackServer(dataset) as server:
        answer = dataset.cloud_answer()
        answer["kms_info"]["gateway_app_url"] = server.url  # every endpoint is this loopback server
        answer["kms_info"]["url"] = server.url  # KMS.GetMeta is asked of this server too
        answer["kms_info"]["chain_id"] = None  # hosted governance: no public node to ask
        # No legacy base_domain: the app's agent would be looked for under the real domain.
        server.set_json(ACME_INFO_PATH, dataset.acme_info_answer(legacy_fields=False))
        server.set_json(cloud_path(dataset.app_id), answer)
        settings = UserSettings(cloud_api_url=server.cloud_base_url, pccs_url=server.url, offline=False)
        win = MainWindow(settings=settings)
        qtbot.addWidget(win)
        win.show()
        with qtbot.waitSignal(win.taskSaved, timeout=WAIT_MS):  # a Trust Center page's address stands for its app
            assert win.open_app(f"https://trust.phala.com/app/{dataset.app_id}")
        report = settle(qtbot, win)
        assert set(report.entities) == {"app", "kms", "gateway"}
        assert win.store.get(win.task_id).source == "online"
        assert win.store.get(win.task_id).app_id == dataset.app_id
        # The Network tab lists what was asked beyond the Cloud answer (an input of its own): the gateway's
        # acme-info and the KMS's GetMeta, all on this loopback server.
        network = win.view.network_pane
        urls = [x.url for x in network.exchanges]
        assert urls == [server.url + "/.dstack/acme-info", server.url + "/prpc/KMS.GetMeta"]
        assert network.table.rowCount() == 2 and network.table.item(0, 3).text() == "200"
        assert f"with 1 host(s): {server.url.split('/')[2]}" in network.summary.text()
        win.offline_action.setChecked(True)
        assert not win.open_app(dataset.app_id)
        assert "needs the network" in win.message_bar.text()
        win.close()


def test_settings_apply_and_persist(window, qtbot, tmp_path):
    from dstack_inspector.settings import load_settings

    window.show_settings()
    dialog = window.settings_dialog
    new = window.settings.model_copy(update={"theme": "dark", "offline": True})
    dialog.saved.emit(new)
    assert window.settings.theme == "dark" and window.offline_action.isChecked()
    window.open_paths([Path(p) for p in _demo_paths(tmp_path)[:1]])
    assert load_settings()[0].recent_files[:1] == [str(_demo_paths(tmp_path)[0].resolve())]
    assert window.recent_menu.actions()[0].text() == str(_demo_paths(tmp_path)[0].resolve())


def _demo_paths(tmp_path: Path) -> list[Path]:
    demo = load_demo()
    paths = []
    for item in demo.items:
        path = tmp_path / Path(item.name).name
        if not path.exists():
            path.write_bytes(item.data)
        paths.append(path)
    return paths


def test_the_gateway_tls_chain_shows_in_the_certificates_tab(window, qtbot):
    window.load_demo()
    settle(qtbot, window)
    window.select_object("gateway-domain")
    assert window.view.entity == "gateway"
    chains = window.view.cert_pane.chains
    assert chains.get("TLS") and len(chains["TLS"]) == 2  # the served wildcard certificate and its issuing CA


def test_the_signing_key_is_shown_and_its_public_key_exported(window, tmp_path):
    assert "made when the first report is exported" in window.about_text()
    out = tmp_path / "me.pub.pem"
    shown = window.export_public_key(out)
    assert out.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert f"fingerprint: {shown}" in window.about_text()
    assert (window.signing_key_path().stat().st_mode & 0o777) == 0o600


def test_settings_keep_recent_files_and_pass_the_ita_key_to_the_jobs(window, qtbot, tmp_path):
    from dstack_inspector.gui.settings_dialog import SettingsDialog

    window.settings = window.settings.model_copy(update={"recent_files": ["/tmp/a.json"]})
    dialog = SettingsDialog(window.settings, window, path=tmp_path / "settings.json")
    qtbot.addWidget(dialog)
    dialog.ita_api_key.setText("  secret-key ")
    edited = dialog.edited()
    assert edited.recent_files == ["/tmp/a.json"] and edited.ita_api_key == "secret-key"
    assert "secret-key" not in repr(edited)
    window.apply_settings(edited)
    demo = load_demo()
    from dstack_inspector.gui.main_window import Session

    job = window._job(Session(items=demo.items, anchor=demo.anchor, title="t"))
    assert job.ita is not None and job.ita.api_key == "secret-key"


def test_the_app_dialog_asks_for_phases_and_the_job_takes_them(window, qtbot):
    from dstack_inspector.gui.dialogs import VerifyAppDialog
    from dstack_inspector.gui.main_window import Session

    dialog = VerifyAppDialog("https://cloud.example/api", window)
    qtbot.addWidget(dialog)
    dialog.app_id.setText("0x" + "ab" * 20)
    dialog.phases["os"].setChecked(False)
    request = dialog.request()
    assert request is not None and request.phases == ("hardware", "source", "domain")
    for box in dialog.phases.values():
        box.setChecked(False)
    assert dialog.request() is None and "at least one phase" in dialog.error.text()
    dialog.app_id.setText("not hex")
    assert dialog.request() is None and "hex" in dialog.error.text()
    dialog.phases["hardware"].setChecked(True)
    dialog.app_id.setText(f"https://trust.phala.com/app/{'CD' * 20}?selected=app-cpu")
    request = dialog.request()
    assert request is not None and request.app_id == "cd" * 20
    demo = load_demo()
    job = window._job(Session(items=demo.items, anchor=demo.anchor, title="t", phases=("hardware",)))
    assert job.phases == ("hardware",)


def test_a_job_with_phases_verifies_only_those(qtbot):
    from dstack_inspector.workers import VerifyJob, VerifyWorker

    demo = load_demo()
    worker = VerifyWorker(VerifyJob(items=demo.items, anchor=demo.anchor, now=demo.now, offline=True,
                                    domain=demo.domain, phases=("hardware",)))
    with qtbot.waitSignal(worker.signals.result, timeout=WAIT_MS) as blocker:
        worker.run()
    report = blocker.args[0]
    assert report.policy["phases"] == ["hardware"]
    assert all(c.status.value == "skip" for c in report.checks if c.phase in ("os", "source", "domain"))


def test_a_report_fills_the_entity_panes_once_for_the_object_it_opens(window, qtbot):
    window.load_demo()
    report = settle(qtbot, window)
    kms_quote = next(o for o in report.data_objects if o.id == "kms-quote")
    failing = next(c for c in report.checks if c.entity == "kms" and c.id in kms_quote.check_ids)
    warned = next(c for c in report.checks if c.entity == "app")  # a finding before it, of another entity
    checks = [c.model_copy(update={"status": CheckStatus.FAIL}) if c is failing else
              c.model_copy(update={"status": CheckStatus.WARN}) if c is warned else c for c in report.checks]
    shown: list[str] = []
    window.view.entityChanged.connect(shown.append)
    window.view.show_report(report.model_copy(update={"checks": checks}))
    assert shown == ["kms"]  # the quote, event log, certificate and TCB panes were filled once
    assert window.object_pane.object is not None and window.object_pane.object.id == "kms-quote"
    assert window.checks_pane.current_check_id() == failing.id and window.view.entity == "kms"


def test_the_settings_tcb_policy_governs_a_verification(window, qtbot):
    window.apply_settings(window.settings.model_copy(update={"min_tcb_evaluation_data_number": 10_000}))
    window.load_demo()
    report = settle(qtbot, window)
    tcb = [c for c in report.checks if c.id == "hardware.tcb_status"]
    assert tcb and all(c.status is CheckStatus.FAIL for c in tcb)  # App, KMS and Gateway alike
    assert report.policy["tcb"]["min_tcb_evaluation_data_number"] == 10_000


def test_every_list_of_the_window_can_be_copied_from(window):
    """The checks, the quote fields, the event log, the certificates, the TCB components, the report, the inputs and
    the history: each offers Copy and Copy rows (Ctrl+C); the history keeps its own actions after them."""
    from PySide6.QtWidgets import QAbstractItemView, QComboBox

    views = [v for v in window.findChildren(QAbstractItemView) if v.window() is window]
    assert len(views) >= 8
    for view in views:
        names = [a.text() for a in view.actions()]
        assert names[:2] == ["Copy", "Copy rows"], (type(view).__name__, names)
        assert view.contextMenuPolicy() is Qt.ContextMenuPolicy.ActionsContextMenu
    history = window.history_view.table
    assert len([a for a in history.actions() if not a.isSeparator()]) > 2  # its own, after the copy actions
    for combo in window.findChildren(QComboBox):  # a combo's popup list is left as it is
        assert not any(a.text() == "Copy" for a in combo.view().actions())


def test_the_settings_os_images_govern_a_verification(window, qtbot):
    """An OS image list in the settings is applied like --os-image: the demo's stand-in image is not on it."""
    window.apply_settings(window.settings.model_copy(update={"allowed_os_images": ["ab" * 32]}))
    assert window.load_demo()
    report = settle(qtbot, window)
    images = [c for c in report.checks if c.id == "os.image_hash"]
    assert {c.entity for c in images} == {"app", "kms", "gateway"}
    assert all(c.status is CheckStatus.FAIL and "not one of the 1 OS image(s)" in c.summary for c in images)
    assert report.policy["os_images"] == ["ab" * 32]


def test_verify_app_refuses_what_is_no_app_id(window):
    window.offline_action.setChecked(False)
    assert not window.open_app("https://trust.phala.com/builders/acme")  # refused before any request
    assert "Not an app id" in window.message_bar.text() and window.session is None


def test_the_layout_is_kept_between_sessions(qtbot):
    """Geometry, docks and splitters come back as they were left; a damaged layout file means the default one."""
    from dstack_inspector.gui.layout import layout_path

    first = MainWindow(keep_layout=True)
    qtbot.addWidget(first)
    first.show()
    first.view.splitter.setSizes([200, 500])
    sizes = first.view.splitter.sizes()
    first.side_dock.hide()
    first.close()
    saved = json.loads(layout_path().read_text())
    assert saved["splitters"]["view"] == sizes and saved["geometry"] and saved["state"]

    def graph_share(window: MainWindow) -> float:
        top, bottom = window.view.splitter.sizes()
        return top / (top + bottom)

    again = MainWindow(keep_layout=True)
    qtbot.addWidget(again)
    again.show()
    # The offscreen screen is smaller than the window, so its geometry is fitted to it: the split keeps its share.
    assert abs(graph_share(again) - sizes[0] / sum(sizes)) < 0.02
    assert not again.side_dock.isVisible()  # the docks as they were left
    again.close()
    layout_path().write_text("[" * 5000 + "]" * 5000)  # deeply nested: json would recurse without end
    deep = MainWindow(keep_layout=True)
    qtbot.addWidget(deep)
    deep.show()
    deep.close()
    layout_path().write_text('{"geometry": "!!", "state": 5}')
    damaged = MainWindow(keep_layout=True)
    qtbot.addWidget(damaged)
    damaged.show()  # the default layout, no error
    assert damaged.side_dock.isVisible() and abs(graph_share(damaged) - 0.42) < 0.02


def test_a_pack_whose_re_run_fails_is_described_not_rendered(window, qtbot, tmp_path):
    """The window shows only our own re-run of a pack: a pack whose checks cannot be re-run (here, its signed
    policy names no phases) is described in the dialog, and its report.json, someone else's document, is not drawn."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from dstack_verifier.report.export import export_pack
    from dstack_verifier.verification import verify_evidence

    demo = load_demo()
    report = verify_evidence(demo.app_items, demo.options())
    odd = report.model_copy(update={"policy": {**report.policy, "phases": []}})
    out = tmp_path / "odd.zip"
    export_pack(odd, out, Ed25519PrivateKey.from_private_bytes(b"\x0a" * 32))
    window.open_pack(out)
    qtbot.waitUntil(lambda: getattr(window, "last_pack", None) is not None, timeout=WAIT_MS)
    assert not window.last_pack.ok and window.last_pack.rerun is None
    assert window.report is None and "does NOT verify" in window.pack_dialog.headline.text()
