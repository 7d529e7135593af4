"""The window's layout kept between sessions: its geometry, the docks and toolbars, and the splitters' sizes, in
`window.json` of the config folder. A missing, unreadable or hand-edited file only means the default layout."""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path

from PySide6.QtCore import QByteArray
from PySide6.QtWidgets import QMainWindow, QSplitter

from ..settings import config_dir, write_atomic

LAYOUT_FILE = "window.json"
MAX_LAYOUT_BYTES = 64 * 1024


def layout_path() -> Path:
    return config_dir() / LAYOUT_FILE


def save_layout(window: QMainWindow, splitters: dict[str, QSplitter], path: Path | None = None) -> None:
    doc = {
        "geometry": base64.b64encode(bytes(window.saveGeometry().data())).decode(),
        "state": base64.b64encode(bytes(window.saveState().data())).decode(),
        "splitters": {name: splitter.sizes() for name, splitter in splitters.items()},
    }
    try:
        write_atomic(path or layout_path(), json.dumps(doc))
    except OSError:  # a read-only config folder: the next start takes the default layout
        pass


def restore_layout(window: QMainWindow, splitters: dict[str, QSplitter], path: Path | None = None) -> bool:
    """True when a saved layout was applied; False (nothing changed) when there is none that reads."""
    try:
        data = (path or layout_path()).read_bytes()[:MAX_LAYOUT_BYTES + 1]
        doc = json.loads(data) if len(data) <= MAX_LAYOUT_BYTES else None
        geometry = base64.b64decode(doc["geometry"], validate=True)
        state = base64.b64decode(doc["state"], validate=True)
        sizes = doc["splitters"]
    except (OSError, ValueError, TypeError, KeyError, binascii.Error, RecursionError):
        return False
    if not window.restoreGeometry(QByteArray(geometry)):
        return False
    window.restoreState(QByteArray(state))
    for name, splitter in splitters.items():
        wanted = sizes.get(name) if isinstance(sizes, dict) else None
        if isinstance(wanted, list) and len(wanted) == splitter.count() \
                and all(isinstance(n, int) and 0 <= n < 100_000 for n in wanted):
            splitter.setSizes(wanted)
    return True
