"""Light / dark theme: the Fusion style with a light or a dark palette; "system" follows the platform's colour
scheme (QStyleHints.colorScheme) and keeps following it while the app runs."""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, Slot
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication, QStyleFactory

THEMES = ("system", "light", "dark")

# Dark palette roles; disabled text is dimmed so a disabled control never reads as active.
_DARK: dict[QPalette.ColorRole, str] = {
    QPalette.ColorRole.Window: "#2b2d30",
    QPalette.ColorRole.WindowText: "#e6e6e6",
    QPalette.ColorRole.Base: "#1e1f22",
    QPalette.ColorRole.AlternateBase: "#26282b",
    QPalette.ColorRole.ToolTipBase: "#3c3f41",
    QPalette.ColorRole.ToolTipText: "#e6e6e6",
    QPalette.ColorRole.PlaceholderText: "#8c8f94",
    QPalette.ColorRole.Text: "#e6e6e6",
    QPalette.ColorRole.Button: "#33363a",
    QPalette.ColorRole.ButtonText: "#e6e6e6",
    QPalette.ColorRole.BrightText: "#ff6b6b",
    QPalette.ColorRole.Link: "#6ea8fe",
    QPalette.ColorRole.LinkVisited: "#b197fc",
    QPalette.ColorRole.Highlight: "#3d6fb6",
    QPalette.ColorRole.HighlightedText: "#ffffff",
    QPalette.ColorRole.Light: "#45484d",
    QPalette.ColorRole.Midlight: "#3a3d41",
    QPalette.ColorRole.Mid: "#2f3134",
    QPalette.ColorRole.Dark: "#191a1c",
    QPalette.ColorRole.Shadow: "#0d0d0e",
}
_DARK_DISABLED = "#7a7d82"


def dark_palette() -> QPalette:
    palette = QPalette()
    for role, color in _DARK.items():
        palette.setColor(role, QColor(color))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.WindowText, QPalette.ColorRole.ButtonText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor(_DARK_DISABLED))
    return palette


def system_is_dark() -> bool:
    return QGuiApplication.styleHints().colorScheme() == Qt.ColorScheme.Dark


def effective_theme(theme: str) -> str:
    """"light" or "dark": what `theme` means now (system follows the platform)."""
    if theme not in THEMES:
        raise ValueError(f"unknown theme {theme!r} (expected one of {', '.join(THEMES)})")
    if theme == "system":
        return "dark" if system_is_dark() else "light"
    return theme


def _apply_palette(app: QApplication, theme: str) -> None:
    if effective_theme(theme) == "dark":
        app.setPalette(dark_palette())
    else:
        fusion = QStyleFactory.create("Fusion")
        app.setPalette(fusion.standardPalette())


class _SystemFollower(QObject):
    """Re-applies the palette when the platform switches between light and dark (theme "system" only)."""

    def __init__(self, app: QApplication) -> None:
        super().__init__(app)
        self.setObjectName("themeSystemFollower")
        self._app = app
        QGuiApplication.styleHints().colorSchemeChanged.connect(self._on_change)

    @Slot(Qt.ColorScheme)
    def _on_change(self, _scheme: Qt.ColorScheme) -> None:
        _apply_palette(self._app, "system")


def apply_theme(app: QApplication, theme: str) -> str:
    """Fusion plus the palette of `theme` ("system" | "light" | "dark"); returns the effective "light"/"dark"."""
    effective = effective_theme(theme)
    app.setStyle("Fusion")
    follower = app.findChild(_SystemFollower, "themeSystemFollower")
    if theme == "system" and follower is None:
        _SystemFollower(app)
    elif theme != "system" and follower is not None:
        QGuiApplication.styleHints().colorSchemeChanged.disconnect(follower._on_change)
        follower.deleteLater()
        follower.setObjectName("")  # deleteLater is deferred: a re-apply before then must not find it
    _apply_palette(app, theme)
    return effective
