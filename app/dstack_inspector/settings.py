"""Where the app keeps its files (platformdirs), and the user's settings."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "dstack-inspector"


def cache_dir() -> Path:
    override = os.environ.get("DSTACK_INSPECTOR_CACHE_DIR")
    return Path(override) if override else Path(platformdirs.user_cache_dir(APP_NAME))


def data_dir() -> Path:
    override = os.environ.get("DSTACK_INSPECTOR_DATA_DIR")
    return Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME))


def collateral_cache_dir() -> Path:
    return cache_dir() / "collateral"
