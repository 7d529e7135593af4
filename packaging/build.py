"""Build the one-folder app with PyInstaller: ``python packaging/build.py [--dist DIR] [--work DIR]``.

Runs PyInstaller on packaging/dstack-inspector.spec with the running interpreter (so the venv's packages are the
ones bundled), then prints the bundle's path, its size and the build time. Exit status: PyInstaller's, or 2 when
PyInstaller is not installed (``pip install -e '.[packaging]'``).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SPEC = HERE / "dstack-inspector.spec"
APP_NAME = "dstack-inspector"


def bundle_size(folder: Path) -> int:
    """Bytes of the regular files under ``folder`` (links are not followed, so nothing counts twice)."""
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def executable(dist: Path) -> Path:
    """The bundled executable inside ``dist``."""
    suffix = ".exe" if sys.platform == "win32" else ""
    return dist / APP_NAME / f"{APP_NAME}{suffix}"


def build(dist: Path, work: Path, log_level: str = "WARN") -> int:
    """Run PyInstaller; its own output goes to the caller's streams."""
    command = [sys.executable, "-m", "PyInstaller", "--noconfirm", f"--log-level={log_level}",
               "--distpath", str(dist), "--workpath", str(work), str(SPEC)]
    return subprocess.run(command, cwd=ROOT, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the dstack-inspector one-folder app with PyInstaller.")
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="output folder (default: ./dist)")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "pyinstaller",
                        help="PyInstaller's work folder (default: ./build/pyinstaller)")
    parser.add_argument("--log-level", default="WARN", help="PyInstaller's log level (default: WARN)")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("PyInstaller") is None:
        print("build: PyInstaller is not installed in this environment (pip install -e '.[packaging]')",
              file=sys.stderr)
        return 2
    dist, work = args.dist.resolve(), args.work.resolve()
    started = time.monotonic()
    status = build(dist, work, args.log_level)
    elapsed = time.monotonic() - started
    if status != 0:
        print(f"build: PyInstaller failed with exit status {status} after {elapsed:.0f} s", file=sys.stderr)
        return status
    exe = executable(dist)
    if not exe.is_file():
        print(f"build: PyInstaller finished but {exe} is missing", file=sys.stderr)
        return 1
    size = bundle_size(exe.parent)
    print(f"bundle: {exe.parent}")
    print(f"executable: {exe}")
    print(f"size: {size / 1e6:.1f} MB ({size} bytes)")
    print(f"build time: {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
