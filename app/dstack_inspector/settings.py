"""Where the app keeps its files (platformdirs), and the user's settings."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import platformdirs
from dstack_verifier.measure.image_check import os_image_hex
from dstack_verifier.onchain import CHAINS
from dstack_verifier.quote.pccs import PHALA_PCCS_URL
from dstack_verifier.quote.policy import TcbPolicy, advisory_id, mrseam_hex
from dstack_verifier.sources.cloud import DEFAULT_BASE_URL as CLOUD_API_URL
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

APP_NAME = "dstack-inspector"


def cache_dir() -> Path:
    override = os.environ.get("DSTACK_INSPECTOR_CACHE_DIR")
    return Path(override) if override else Path(platformdirs.user_cache_dir(APP_NAME))


def data_dir() -> Path:
    override = os.environ.get("DSTACK_INSPECTOR_DATA_DIR")
    return Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME))


def collateral_cache_dir() -> Path:
    return cache_dir() / "collateral"


# ------------------------------------------------------------------------------------------------ user settings

SETTINGS_FILE = "settings.json"
MAX_SETTINGS_BYTES = 1 << 20  # a settings file is a few hundred bytes; anything huge is not ours
Theme = Literal["system", "light", "dark"]


def config_dir() -> Path:
    override = os.environ.get("DSTACK_INSPECTOR_CONFIG_DIR")
    return Path(override) if override else Path(platformdirs.user_config_dir(APP_NAME))


def _http_url(value: str) -> str:
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be an http:// or https:// URL, not {value!r}")
    return value


HttpUrlText = Annotated[str, AfterValidator(_http_url)]


def signer_id(text: str) -> str:
    """A pack signer's key id as kept: 64 lower-case hex digits; the fingerprint form (groups of four) is accepted."""
    value = "".join(text.split()).lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"{text[:40]!r} is not a key id (the 64 hex digits of a fingerprint)")
    return value


# The lists of hex values the settings keep, each with the form it is kept in (ValueError names a bad entry).
_LIST_FORMS = {"allowed_mrseams": mrseam_hex, "blocked_advisories": advisory_id, "allowed_os_images": os_image_hex,
               "trusted_signers": signer_id}


class UserSettings(BaseModel):
    """What the user chooses in the settings dialog; every field has a working default."""

    model_config = ConfigDict(extra="ignore", validate_assignment=True)

    pccs_url: HttpUrlText = PHALA_PCCS_URL
    rpc_urls: dict[str, HttpUrlText] = Field(default_factory=lambda: {key: c.rpc_url for key, c in CHAINS.items()})
    cloud_api_url: HttpUrlText = CLOUD_API_URL
    offline: bool = False
    image_cache_dir: str = ""  # empty: the images folder under the app's cache dir
    image_cache_cap_gb: float = Field(default=8.0, gt=0, le=10_000)
    signing_key_path: str = ""  # empty: no signing key chosen yet
    theme: Theme = "system"
    recent_files: list[str] = Field(default_factory=list, max_length=50)  # newest first
    ita_api_key: str = Field(default="", repr=False, max_length=512)  # empty: no ITA appraisal (the default)
    # The TCB policy's two bounds on stale collateral (TcbPolicy); 0 is none.
    max_collateral_age_days: float = Field(default=0.0, ge=0, le=36500)
    min_tcb_evaluation_data_number: int = Field(default=0, ge=0, le=999_999_999)
    allowed_mrseams: list[str] = Field(default_factory=list, max_length=256)  # empty: any TDX module build
    blocked_advisories: list[str] = Field(default_factory=list, max_length=256)  # empty: none refused as such
    allowed_os_images: list[str] = Field(default_factory=list, max_length=256)  # empty: any OS image
    # Key ids (SHA-256 of the raw Ed25519 public key) of the pack signers the user trusts; their own key counts too.
    trusted_signers: list[str] = Field(default_factory=list, max_length=256)

    @field_validator(*_LIST_FORMS)
    @classmethod
    def _normalised(cls, v: list[str], info: ValidationInfo) -> list[str]:
        form = _LIST_FORMS[info.field_name or ""]
        return [form(item) for item in v]

    @field_validator("rpc_urls")
    @classmethod
    def _chain_names(cls, v: dict[str, str]) -> dict[str, str]:
        out = {chain.strip().lower(): url for chain, url in v.items()}
        if "" in out:
            raise ValueError("a JSON-RPC URL needs a chain name")
        return out

    def images_dir(self) -> Path:
        return Path(self.image_cache_dir).expanduser() if self.image_cache_dir else cache_dir() / "images"

    def image_cache_cap_bytes(self) -> int:
        return int(self.image_cache_cap_gb * 1024**3)

    def tcb_policy(self) -> TcbPolicy:
        age = round(self.max_collateral_age_days * 86400)
        return TcbPolicy(max_collateral_age_seconds=age or None,
                         min_tcb_evaluation_data_number=self.min_tcb_evaluation_data_number or None,
                         allowed_mrseams=self.allowed_mrseams or None,
                         blocked_advisories=self.blocked_advisories or None)


def settings_path() -> Path:
    return config_dir() / SETTINGS_FILE


def _validation_text(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(file)"
    return f"field {where}: {first['msg'].removeprefix('Value error, ')}"


def load_settings(path: Path | None = None) -> tuple[UserSettings, str | None]:
    """The saved settings, or the defaults with a one-line warning when the file is unreadable or invalid.

    A missing file is the first start: defaults, no warning. Never raises for the file's content."""
    path = path or settings_path()
    try:
        if not path.exists():
            return UserSettings(), None
        if path.stat().st_size > MAX_SETTINGS_BYTES:
            return UserSettings(), f"{path}: larger than {MAX_SETTINGS_BYTES} bytes; using the default settings"
        data = json.loads(path.read_bytes())
    except OSError as exc:
        return UserSettings(), f"{path}: cannot be read ({exc.strerror or exc}); using the default settings"
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f" at byte {exc.pos}" if isinstance(exc, json.JSONDecodeError) else ""
        return UserSettings(), f"{path}: not valid JSON{where}; using the default settings"
    if not isinstance(data, dict):
        return UserSettings(), f"{path}: expected a JSON object; using the default settings"
    try:
        return UserSettings.model_validate(data), None
    except ValidationError as exc:
        return UserSettings(), f"{path}: {_validation_text(exc)}; using the default settings"


def save_settings(settings: UserSettings, path: Path | None = None) -> Path:
    """Write the settings atomically: a crash never leaves half a file."""
    return write_atomic(path or settings_path(), settings.model_dump_json(indent=2))


def write_atomic(path: Path, text: str) -> Path:
    """Write `text` to a temporary file renamed over `path`, so that a reader sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
