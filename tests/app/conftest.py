"""GUI tests run on Qt's offscreen platform, with the app's folders in a temporary directory."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest


@pytest.fixture(autouse=True)
def _app_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("DSTACK_INSPECTOR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DSTACK_INSPECTOR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DSTACK_INSPECTOR_CONFIG_DIR", str(tmp_path / "config"))  # settings, recent files


@pytest.fixture
def window(qtbot):
    """The main window, shown, offline (no test may touch the network), nothing loaded yet."""
    from dstack_inspector.gui.main_window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    win.offline_action.setChecked(True)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.pool.waitForDone(5000)
