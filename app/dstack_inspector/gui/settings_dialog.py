"""The settings dialog: network endpoints (PCCS, JSON-RPC per chain, Phala Cloud API), offline mode, the OS image
cache, the signing key and the theme. Values are validated by `UserSettings` before anything is saved; a bad value
is named inline and the dialog stays open. "Restore defaults" fills in the defaults (saved only on OK)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dstack_verifier.onchain import CHAINS
from pydantic import ValidationError
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..settings import UserSettings, save_settings

# (parent, title, start) → the chosen path, "" when cancelled. Tests inject their own.
PathChooser = Callable[[QWidget, str, str], str]
THEME_LABELS = {"system": "Follow the system", "light": "Light", "dark": "Dark"}


# The settings' lists of values, each edited as one line of text: field → (its name in an error, placeholder, tooltip,
# whether only commas separate entries: a fingerprint is written in groups of four digits separated by spaces).
LIST_EDITS: dict[str, tuple[str, str, str, bool]] = {
    "allowed_mrseams": ("Accepted TDX modules", "any TDX module Intel signs at an accepted TCB level",
                        "MRSEAMs (hex, separated by commas or spaces) of the TDX module builds to accept: the TCB "
                        "status fails for any other", False),
    "blocked_advisories": ("Refused advisories", "none",
                           "Intel advisory ids (INTEL-SA-NNNNN, separated by commas or spaces) that fail the TCB "
                           "status when the platform's level lists them, whatever the status", False),
    "allowed_os_images": ("Accepted OS images", "any OS image",
                          "os_image_hash values (hex, separated by commas or spaces) of the dstack OS images to "
                          "accept, e.g. the releases you reviewed: os.image_hash fails for any other", False),
    "trusted_signers": ("Trusted pack signers", "only your own signing key",
                        "Fingerprints (key ids) of the people whose evidence packs you trust, separated by commas; "
                        "compare each with its owner before adding it", True),
}


def _choose_directory(parent: QWidget, title: str, start: str) -> str:
    return QFileDialog.getExistingDirectory(parent, title, start)


def _choose_file(parent: QWidget, title: str, start: str) -> str:
    path, _ = QFileDialog.getOpenFileName(parent, title, start, "Keys (*.pem *.key);;All files (*)")
    return path


class SettingsDialog(QDialog):
    """Edits a copy of the settings; on OK they are validated and saved, then `saved` carries them."""

    saved = Signal(object)  # UserSettings

    def __init__(self, settings: UserSettings, parent: QWidget | None = None, *, path: Path | None = None,
                 choose_directory: PathChooser = _choose_directory, choose_file: PathChooser = _choose_file) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setMinimumWidth(640)
        self._path = path
        self._kept = {"recent_files": settings.recent_files}  # not edited here, but not to be lost on OK
        self._choose_directory = choose_directory
        self._choose_file = choose_file
        self.result_settings: UserSettings | None = None

        self.pccs_url = QLineEdit()
        self.pccs_url.setToolTip("Where DCAP collateral is fetched from (a PCCS, or Intel's PCS)")
        self.cloud_api_url = QLineEdit()
        self.cloud_api_url.setToolTip("The Phala Cloud API that answers --app-id")
        chains = list(dict.fromkeys([*CHAINS, *settings.rpc_urls]))
        self.rpc_urls: dict[str, QLineEdit] = {chain: QLineEdit() for chain in chains}
        self.offline = QCheckBox("Offline: never touch the network")
        self.image_cache_dir = QLineEdit()
        self.image_cache_dir.setPlaceholderText("default: the images folder of the app's cache")
        self.image_cache_cap = QDoubleSpinBox()
        self.image_cache_cap.setRange(0.1, 10_000)
        self.image_cache_cap.setDecimals(1)
        self.image_cache_cap.setSuffix(" GB")
        self.signing_key_path = QLineEdit()
        self.signing_key_path.setPlaceholderText("default: a key made on the first export, in the app's data folder")
        self.ita_api_key = QLineEdit()
        self.ita_api_key.setEchoMode(QLineEdit.EchoMode.Password)
        self.ita_api_key.setPlaceholderText("optional: an Intel Trust Authority appraisal besides our own")
        self.max_collateral_age = QDoubleSpinBox()
        self.max_collateral_age.setRange(0, 36500)
        self.max_collateral_age.setDecimals(1)
        self.max_collateral_age.setSuffix(" days")
        self.max_collateral_age.setSpecialValueText("no limit")
        self.max_collateral_age.setToolTip("Warn when the TCB Info or QE Identity was issued longer ago: a PCCS may "
                                           "serve Intel-signed collateral that Intel has since replaced")
        self.min_tcb_eval = QSpinBox()
        self.min_tcb_eval.setRange(0, 999_999_999)
        self.min_tcb_eval.setSpecialValueText("any")
        self.min_tcb_eval.setToolTip("Fail the TCB status when it is judged with older TCB evaluation data (Intel's "
                                     "TCB recoveries raise the number)")
        self.list_edits: dict[str, QLineEdit] = {}
        self.allowed_mrseams = self._list_edit("allowed_mrseams")
        self.blocked_advisories = self._list_edit("blocked_advisories")
        self.allowed_os_images = self._list_edit("allowed_os_images")
        self.trusted_signers = self._list_edit("trusted_signers")
        self.theme = QComboBox()
        for key, label in THEME_LABELS.items():
            self.theme.addItem(label, key)
        self.error = QLabel()
        self.error.setObjectName("settingsError")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("#settingsError { color: #c62828; font-weight: bold; }")
        self.error.hide()

        network = QGroupBox("Network")
        form = QFormLayout(network)
        form.addRow("PCCS URL:", self.pccs_url)
        for chain, edit in self.rpc_urls.items():
            name = CHAINS[chain].name if chain in CHAINS else chain
            form.addRow(f"JSON-RPC ({name}):", edit)
        form.addRow("Phala Cloud API:", self.cloud_api_url)
        form.addRow("Intel Trust Authority key:", self.ita_api_key)
        form.addRow("", self.offline)
        storage = QGroupBox("OS images and signing")
        form2 = QFormLayout(storage)
        form2.addRow("Image cache folder:", self._with_browse(self.image_cache_dir, self._browse_cache))
        form2.addRow("Image cache limit:", self.image_cache_cap)
        form2.addRow("Accept only these OS images:", self.allowed_os_images)
        form2.addRow("Signing key:", self._with_browse(self.signing_key_path, self._browse_key))
        form2.addRow("Trusted pack signers:", self.trusted_signers)
        policy = QGroupBox("TCB policy")
        form4 = QFormLayout(policy)
        form4.addRow("Warn on collateral older than:", self.max_collateral_age)
        form4.addRow("Fail below TCB evaluation data number:", self.min_tcb_eval)
        form4.addRow("Accept only these TDX modules (MRSEAM):", self.allowed_mrseams)
        form4.addRow("Fail on these advisories:", self.blocked_advisories)
        appearance = QGroupBox("Appearance")
        form3 = QFormLayout(appearance)
        form3.addRow("Theme:", self.theme)

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
                                        | QDialogButtonBox.StandardButton.RestoreDefaults)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).clicked.connect(self.restore_defaults)
        layout = QVBoxLayout(self)
        for box in (network, policy, storage, appearance):
            layout.addWidget(box)
        layout.addWidget(self.error)
        layout.addWidget(self.buttons)
        self.load(settings)

    def _with_browse(self, edit: QLineEdit, browse: Callable[[], None]) -> QWidget:
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(edit, 1)
        button = QPushButton("Browse…")
        button.clicked.connect(browse)
        row.addWidget(button)
        return box

    @Slot()
    def _browse_cache(self) -> None:
        chosen = self._choose_directory(self, "Image cache folder", self.image_cache_dir.text())
        if chosen:
            self.image_cache_dir.setText(chosen)

    @Slot()
    def _browse_key(self) -> None:
        chosen = self._choose_file(self, "Signing key", self.signing_key_path.text())
        if chosen:
            self.signing_key_path.setText(chosen)

    def load(self, s: UserSettings) -> None:
        """Show `s` in the fields."""
        self.pccs_url.setText(s.pccs_url)
        self.cloud_api_url.setText(s.cloud_api_url)
        for chain, edit in self.rpc_urls.items():
            edit.setText(s.rpc_urls.get(chain, ""))
        self.offline.setChecked(s.offline)
        self.image_cache_dir.setText(s.image_cache_dir)
        self.image_cache_cap.setValue(s.image_cache_cap_gb)
        self.signing_key_path.setText(s.signing_key_path)
        self.ita_api_key.setText(s.ita_api_key)
        self.max_collateral_age.setValue(s.max_collateral_age_days)
        self.min_tcb_eval.setValue(s.min_tcb_evaluation_data_number)
        for field, edit in self.list_edits.items():
            edit.setText(", ".join(getattr(s, field)))
        self.theme.setCurrentIndex(self.theme.findData(s.theme))
        self.error.hide()

    @Slot()
    def restore_defaults(self) -> None:
        self.load(UserSettings())

    def edited(self) -> UserSettings:
        """The settings as the fields hold them; raises ValidationError for a bad value."""
        return UserSettings.model_validate({
            "pccs_url": self.pccs_url.text(),
            "cloud_api_url": self.cloud_api_url.text(),
            # An emptied chain falls back to its default endpoint rather than being kept as "".
            "rpc_urls": {chain: edit.text() or (CHAINS[chain].rpc_url if chain in CHAINS else "")
                         for chain, edit in self.rpc_urls.items()},
            "offline": self.offline.isChecked(),
            "image_cache_dir": self.image_cache_dir.text().strip(),
            "image_cache_cap_gb": self.image_cache_cap.value(),
            "signing_key_path": self.signing_key_path.text().strip(),
            "ita_api_key": self.ita_api_key.text().strip(),
            "max_collateral_age_days": self.max_collateral_age.value(),
            "min_tcb_evaluation_data_number": self.min_tcb_eval.value(),
            **{field: _entries(edit.text(), LIST_EDITS[field][3]) for field, edit in self.list_edits.items()},
            "theme": self.theme.currentData(),
            **self._kept,
        })

    def _field(self, loc: tuple) -> tuple[str, QWidget | None]:
        """The label and the widget of a validation error's location."""
        if len(loc) > 1 and loc[0] == "rpc_urls":
            chain = str(loc[1])
            return f"JSON-RPC URL of {chain}", self.rpc_urls.get(chain)
        fields: dict[str, tuple[str, QWidget | None]] = {
            "pccs_url": ("PCCS URL", self.pccs_url), "cloud_api_url": ("Phala Cloud API URL", self.cloud_api_url),
            "rpc_urls": ("JSON-RPC URLs", None),
            **{field: (LIST_EDITS[field][0], edit) for field, edit in self.list_edits.items()}}
        return fields.get(str(loc[0]) if loc else "", ("Settings", None))

    def _list_edit(self, field: str) -> QLineEdit:
        _, placeholder, tip, _ = LIST_EDITS[field]
        edit = QLineEdit()
        edit.setPlaceholderText(placeholder)
        edit.setToolTip(tip)
        self.list_edits[field] = edit
        return edit

    def _show_error(self, text: str, widget: QWidget | None) -> None:
        self.error.setText(text)
        self.error.show()
        if widget is not None:
            widget.setFocus(Qt.FocusReason.OtherFocusReason)

    def accept(self) -> None:
        try:
            settings = self.edited()
        except ValidationError as exc:
            first = exc.errors()[0]
            label, widget = self._field(tuple(first["loc"]))
            self._show_error(f"{label}: {first['msg'].removeprefix('Value error, ')}", widget)
            return
        try:
            save_settings(settings, self._path)
        except OSError as exc:
            self._show_error(f"The settings could not be saved: {exc.strerror or exc}", None)
            return
        self.result_settings = settings
        self.saved.emit(settings)
        super().accept()


def _entries(text: str, commas_only: bool) -> list[str]:
    """The entries of a list edited as one line: separated by commas, or by commas or spaces."""
    parts = text.split(",") if commas_only else text.replace(",", " ").split()
    return [p for p in parts if p.strip()]
