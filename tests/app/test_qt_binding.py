"""The Qt binding itself: PySide6 6.12.0 drops a reference to None on every call of a void method, so on Python 3.11
(where None is not immortal) a long session aborts with "none_dealloc". pyproject.toml keeps that release out; this
test fails on any binding that does it again, before a user's session does."""

from __future__ import annotations

import gc
import sys

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QTreeWidgetItem


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None is immortal from Python 3.12 on")
def test_void_calls_keep_none_alive(qtbot):
    label = QLabel()
    qtbot.addWidget(label)
    item = QTreeWidgetItem(["a", "b"])
    gc.collect()
    before = sys.getrefcount(None)
    for _ in range(1000):
        label.setText("x")
        item.setData(0, Qt.ItemDataRole.UserRole, "k")
    gc.collect()
    assert sys.getrefcount(None) - before > -100  # unrelated objects may come and go; 2000 lost refs may not
