"""User settings: the model and its file (defaults, round trip, corrupt or invalid files, atomic write), the
settings dialog (validation inline, restore defaults, save) and the theme."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dstack_inspector.gui.settings_dialog import SettingsDialog
from dstack_inspector.gui.theme import apply_theme, effective_theme, system_is_dark
from dstack_inspector.settings import UserSettings, load_settings, save_settings, settings_path
from dstack_verifier.quote.policy import TcbPolicy
from pydantic import ValidationError
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication


@pytest.fixture
def config(tmp_path: Path, monkeypatch) -> Path:  # type: ignore[no-untyped-def]
    folder = tmp_path / "config"
    monkeypatch.setenv("DSTACK_INSPECTOR_CONFIG_DIR", str(folder))
    return folder


def test_first_start_defaults_and_round_trip(config: Path) -> None:
    assert settings_path() == config / "settings.json"
    settings, warning = load_settings()
    assert warning is None and settings == UserSettings()
    assert settings.pccs_url == "https://pccs.phala.network" and settings.theme == "system"
    assert settings.rpc_urls["base"] == "https://mainnet.base.org" and not settings.offline
    assert settings.images_dir().name == "images" and settings.image_cache_cap_bytes() == 8 * 1024**3
    changed = settings.model_copy(update={"offline": True, "theme": "dark", "image_cache_cap_gb": 2.5,
                                          "rpc_urls": {"base": "http://127.0.0.1:8545"}})
    assert save_settings(changed) == config / "settings.json"
    assert load_settings() == (changed, None)
    assert [p.name for p in config.iterdir()] == ["settings.json"]  # the temporary file was renamed, not left


@pytest.mark.parametrize(("content", "expected"), [
    (b'{"pccs_url": ', "not valid JSON at byte 13"),
    (b"\xff\xfe\x00", "not valid JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (b'{"pccs_url": "ftp://pccs.example"}', "field pccs_url: must be an http:// or https:// URL"),
    (b'{"rpc_urls": {"base": "file:///etc/passwd"}}', "field rpc_urls.base: must be an http:// or https:// URL"),
    (b'{"theme": "purple"}', "field theme:"),
    (b'{"image_cache_cap_gb": 0}', "field image_cache_cap_gb:"),
])
def test_a_bad_file_gives_defaults_and_one_line(config: Path, content: bytes, expected: str) -> None:
    config.mkdir()
    (config / "settings.json").write_bytes(content)
    settings, warning = load_settings()
    assert settings == UserSettings()
    assert warning is not None and expected in warning and "\n" not in warning
    assert warning.startswith(str(config / "settings.json")) and warning.endswith("using the default settings")


def test_unknown_keys_are_ignored_and_urls_checked(config: Path) -> None:
    config.mkdir()
    (config / "settings.json").write_text(json.dumps({"theme": "light", "from_a_newer_version": 1}))
    assert load_settings() == (UserSettings(theme="light"), None)
    with pytest.raises(ValidationError):
        UserSettings(cloud_api_url="javascript:alert(1)")
    with pytest.raises(ValidationError):
        UserSettings(rpc_urls={" ": "https://rpc.example"})
    assert UserSettings(rpc_urls={" Base ": " https://rpc.example "}).rpc_urls == {"base": "https://rpc.example"}


def test_dialog_validates_saves_and_restores(qtbot, config: Path, tmp_path: Path) -> None:
    start = UserSettings(theme="dark", offline=True, rpc_urls={"base": "http://127.0.0.1:8545",
                                                               "ethereum": "https://eth.example"})
    chosen = {"dir": str(tmp_path / "images"), "file": str(tmp_path / "key.pem")}
    dialog = SettingsDialog(start, choose_directory=lambda *_: chosen["dir"], choose_file=lambda *_: chosen["file"])
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.theme.currentData() == "dark" and dialog.offline.isChecked()
    assert dialog.rpc_urls["base"].text() == "http://127.0.0.1:8545"
    saved: list[UserSettings] = []
    dialog.saved.connect(saved.append)

    dialog.pccs_url.setText("pccs.example")  # no scheme
    dialog.accept()
    assert dialog.isVisible() and not saved and not settings_path().exists()
    assert dialog.error.text().startswith("PCCS URL: must be an http:// or https:// URL")
    dialog.pccs_url.setText("https://api.trustedservices.intel.com")
    dialog.rpc_urls["ethereum"].setText("ws://eth.example")
    dialog.accept()
    assert dialog.error.text().startswith("JSON-RPC URL of ethereum:") and dialog.isVisible()
    dialog.rpc_urls["ethereum"].clear()  # emptied: back to the chain's default endpoint

    for button in dialog.findChildren(type(dialog.buttons.buttons()[0])):
        if button.text() == "Browse…":
            button.click()
    assert dialog.image_cache_dir.text() == chosen["dir"] and dialog.signing_key_path.text() == chosen["file"]
    dialog.image_cache_cap.setValue(3.5)
    dialog.theme.setCurrentIndex(dialog.theme.findData("light"))
    dialog.accept()
    assert not dialog.isVisible()
    result = dialog.result_settings
    assert result is not None and saved == [result]
    assert result.pccs_url == "https://api.trustedservices.intel.com"
    assert result.rpc_urls == {"base": "http://127.0.0.1:8545", "ethereum": "https://ethereum-rpc.publicnode.com",
                               "base-sepolia": "https://sepolia.base.org",  # every chain read, with its default
                               "sepolia": "https://ethereum-sepolia-rpc.publicnode.com"}
    assert (result.image_cache_cap_gb, result.theme, result.offline) == (3.5, "light", True)
    assert load_settings() == (result, None)

    again = SettingsDialog(result)
    qtbot.addWidget(again)
    again.restore_defaults()
    assert again.edited() == UserSettings()
    assert again.theme.currentData() == "system" and not again.offline.isChecked()


def test_tcb_policy_bounds_are_set_in_the_dialog(qtbot, config: Path) -> None:
    assert UserSettings().tcb_policy() == TcbPolicy()  # none by default
    dialog = SettingsDialog(UserSettings())
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.max_collateral_age.text() == "no limit" and dialog.min_tcb_eval.text() == "any"
    dialog.max_collateral_age.setValue(7)
    dialog.min_tcb_eval.setValue(18)
    dialog.accept()
    result = dialog.result_settings
    assert result is not None and load_settings() == (result, None)
    assert result.tcb_policy() == TcbPolicy(max_collateral_age_seconds=7 * 86400, min_tcb_evaluation_data_number=18)
    with pytest.raises(ValidationError):
        UserSettings(max_collateral_age_days=-1)


@pytest.mark.parametrize(("field", "bad", "error", "good", "kept"), [
    ("allowed_mrseams", "12", "Accepted TDX modules: '12' is not an MRSEAM (48 bytes of hex)",
     f"0x{'AB' * 48}, {'cd' * 48}", ["ab" * 48, "cd" * 48]),
    ("allowed_os_images", "f1b9", "Accepted OS images: 'f1b9' is not an OS image hash (32 bytes of hex)",
     f"0x{'AB' * 32} {'cd' * 32}", ["ab" * 32, "cd" * 32]),
    ("blocked_advisories", "SA-1", "Refused advisories: 'SA-1' is not an Intel advisory id (INTEL-SA- and five "
     "digits)", "intel-sa-00615, INTEL-SA-00828", ["INTEL-SA-00615", "INTEL-SA-00828"]),
    # A fingerprint is written in groups of four digits: only commas separate signers.
    ("trusted_signers", "dbc2 9825", "Trusted pack signers: 'dbc2 9825' is not a key id (the 64 hex digits of a "
     "fingerprint)", f"{' '.join(['dbc2'] * 16)}, {'AB' * 32}", ["dbc2" * 16, "ab" * 32]),
])
def test_lists_of_hex_values_are_checked_in_the_dialog(qtbot, config: Path, field: str, bad: str, error: str,
                                                      good: str, kept: list[str]) -> None:
    dialog = SettingsDialog(UserSettings())
    qtbot.addWidget(dialog)
    dialog.show()
    edit = getattr(dialog, field)
    edit.setText(bad)
    dialog.accept()
    assert dialog.isVisible() and dialog.error.text() == error
    edit.setText(good)
    dialog.accept()
    result = dialog.result_settings
    assert result is not None and getattr(result, field) == kept and load_settings() == (result, None)
    again = SettingsDialog(result)
    qtbot.addWidget(again)
    assert getattr(again, field).text() == ", ".join(kept)
    if field in ("allowed_mrseams", "blocked_advisories"):
        assert getattr(result.tcb_policy(), field) == kept


def test_dialog_reports_a_failed_save(qtbot, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    dialog = SettingsDialog(UserSettings(), path=blocker / "settings.json")
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.accept()
    assert dialog.isVisible() and dialog.error.text().startswith("The settings could not be saved")


def test_theme(qtbot) -> None:
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    style, palette = app.style().name(), app.palette()
    try:
        assert apply_theme(app, "dark") == "dark"
        assert app.style().name().lower() == "fusion"
        assert app.palette().color(QPalette.ColorRole.Window).lightness() < 80
        assert app.palette().color(QPalette.ColorRole.Text).lightness() > 180
        assert apply_theme(app, "light") == "light"
        assert app.palette().color(QPalette.ColorRole.Window).lightness() > 180
        assert app.findChild(object, "themeSystemFollower") is None
        expected = "dark" if system_is_dark() else "light"
        assert apply_theme(app, "system") == expected == effective_theme("system")
        assert app.findChild(object, "themeSystemFollower") is not None
        apply_theme(app, "system")  # re-applying keeps one follower
        assert len([c for c in app.children() if c.objectName() == "themeSystemFollower"]) == 1
        with pytest.raises(ValueError, match="unknown theme"):
            apply_theme(app, "sepia")
    finally:  # the other GUI tests run in this QApplication: leave it as it was
        apply_theme(app, "light")
        app.setStyle(style)
        app.setPalette(palette)
