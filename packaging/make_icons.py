"""Render the app icon PNGs from the hand-written SVG (packaging/icons/dstack-inspector.svg).

Writes packaging/icons/dstack-inspector-{32,64,128,256}.png (the Linux desktop entry's icon theme sizes), the
256 px image as dstack-inspector.ico (Windows executable) and dstack-inspector.icns (macOS app bundle) with Qt's own
image writers, and copies the 256 px PNG to resources/icons/dstack-inspector.png, where the GUI finds its window icon.
Run it after editing the SVG: ``.venv/bin/python packaging/make_icons.py``.
"""

from __future__ import annotations

import os
import shutil
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SVG = HERE / "icons" / "dstack-inspector.svg"
SIZES = (32, 64, 128, 256)
RESOURCE_ICON = HERE.parent / "resources" / "icons" / "dstack-inspector.png"


def png_path(size: int) -> Path:
    return HERE / "icons" / f"dstack-inspector-{size}.png"


def render(svg: Path, size: int, out: Path, fmt: str = "PNG") -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"make_icons: {svg} is not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    if not image.save(str(out), fmt):
        raise SystemExit(f"make_icons: could not write {out}")


def ico_of_pngs(images: list[tuple[int, bytes]]) -> bytes:
    """An ICO file whose entries are PNG streams (Windows Vista and later): 16 times smaller than Qt's BMP entries."""
    header = struct.pack("<HHH", 0, 1, len(images))  # reserved, type 1 = icon, count
    offset = len(header) + 16 * len(images)
    entries, blobs = b"", b""
    for size, png in images:
        # width/height 0 means 256; colour count 0, reserved 0, one plane, 32 bits per pixel
        entries += struct.pack("<BBBBHHII", size % 256, size % 256, 0, 0, 1, 32, len(png), offset + len(blobs))
        blobs += png
    return header + entries + blobs


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # no display needed to rasterise
    from PySide6.QtGui import QGuiApplication

    app = QGuiApplication(sys.argv[:1])  # QPainter's raster engine wants an application object
    for size in SIZES:
        render(SVG, size, png_path(size))
        print(png_path(size))
    ico = HERE / "icons" / "dstack-inspector.ico"
    ico.write_bytes(ico_of_pngs([(size, png_path(size).read_bytes()) for size in SIZES]))
    print(ico)
    icns = HERE / "icons" / "dstack-inspector.icns"
    render(SVG, 256, icns, "icns")
    print(icns)
    RESOURCE_ICON.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(png_path(256), RESOURCE_ICON)
    print(RESOURCE_ICON)
    del app
    return 0


if __name__ == "__main__":
    sys.exit(main())
