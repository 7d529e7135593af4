#!/usr/bin/env bash
# Debian packages Qt needs at run time (the PySide6 wheels bundle Qt itself, not these system libraries).
# Installs only what is missing, and only where apt-get is usable (root on Debian/Ubuntu); elsewhere it says so.
set -u
pkgs="libegl1 libgl1 libxkbcommon0 libfontconfig1 libdbus-1-3 libglib2.0-0 libxcb-cursor0 libxkbcommon-x11-0 fonts-dejavu-core"
missing=""
if command -v dpkg-query >/dev/null 2>&1; then
  for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
  done
fi
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Qt runtime libraries:$missing"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
else
  echo "note: Qt may need these packages:$missing (install them with your package manager)" >&2
fi
