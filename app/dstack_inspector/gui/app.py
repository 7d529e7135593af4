"""Start the GUI: `run_gui(evidence, screenshot)`.

With evidence paths the window opens them (problems are shown in the window); without, it opens the demo evidence
(labelled "demo root — not Intel"). With `screenshot`, the window is rendered to that PNG once the verification has
settled, and the function returns instead of entering the event loop.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

from dstack_verifier.resources import app_icon_path
from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from .main_window import MainWindow

SCREENSHOT_SIZE = (1440, 900)
SCREENSHOT_TIMEOUT_MS = 60_000


def application() -> QApplication:
    """The QApplication, created when there is none yet (tests bring their own)."""
    app = QApplication.instance()
    if isinstance(app, QApplication):
        return app
    app = QApplication(sys.argv[:1])
    app.setApplicationName("dstack-inspector")
    app.setOrganizationName("dstack-inspector")
    app.setApplicationDisplayName("dstack-inspector")
    app.setWindowIcon(QIcon(str(app_icon_path())))
    return app


def tune_gc() -> None:
    """Keep the garbage collector from stalling the event loop. A full collection scans every live object — the
    imported modules and the window alone are hundreds of thousands — and runs in whichever thread allocates while
    holding the interpreter, so with verifications building large reports it paused the GUI for 40-100 ms. What
    exists once the window is up lives as long as the app: freeze it out of the scans, and collect the young
    generation less often (bench/gui.py measures the longest stall)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 1000)


def wait_until_settled(window: MainWindow, timeout_ms: int = SCREENSHOT_TIMEOUT_MS) -> bool:
    """Run the event loop until the window's verification has settled (result, error or cancel)."""
    if not window.is_busy():
        return True
    loop = QEventLoop()
    window.verificationSettled.connect(loop.quit)
    timer = QTimer()
    timer.setSingleShot(True)
    timer.timeout.connect(loop.quit)
    timer.start(timeout_ms)
    loop.exec()
    timer.stop()
    window.verificationSettled.disconnect(loop.quit)
    return not window.is_busy()


def take_screenshot(window: MainWindow, path: Path, keep_selection: bool = False) -> bool:
    window.resize(*SCREENSHOT_SIZE)
    window.show()
    QApplication.processEvents()
    window.balance_splitters()
    wait_until_settled(window)
    # Show the graph with a selected object and its checks (the window has opened the worst object already, or the
    # app's quote when everything passed), and, behind it, the MRTD field with its bytes.
    if window.report is not None and window.findings_badge.findings == 0 and not keep_selection:
        window.checks_pane.select_check("os.rtmr0")
    window.quote_pane.select_field("body.mrtd")
    window.bottom_tabs.setCurrentWidget(window.object_pane)
    window.graph.fit()
    QApplication.processEvents()
    path.parent.mkdir(parents=True, exist_ok=True)
    return window.grab().save(str(path), "PNG")


def run_gui(evidence: list[Path] | None = None, screenshot: Path | None = None, select: str | None = None) -> int:
    from ..settings import load_settings
    from .theme import apply_theme

    app = application()
    settings, warning = load_settings()
    apply_theme(app, settings.theme)  # before the widgets exist, so that every one of them takes the palette
    # A screenshot is taken at a fixed size and layout, and leaves the user's saved one alone.
    window = MainWindow(settings=settings, settings_warning=warning, keep_layout=screenshot is None)
    tune_gc()
    window.pending_object = select or ""
    if evidence:
        window.open_paths([Path(p) for p in evidence])
    else:
        window.load_demo()
    if screenshot is not None:
        ok = take_screenshot(window, Path(screenshot), keep_selection=bool(select))
        window.close()
        window.deleteLater()
        if not ok:
            print(f"dstack-inspector: could not write the screenshot {screenshot}", file=sys.stderr)
            return 3
        return 0
    window.show()
    return app.exec()
