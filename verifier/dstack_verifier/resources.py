"""Locate files of `resources/`: inside the wheel (force-included) or, in a checkout, beside the package."""

from __future__ import annotations

from importlib import resources as _res
from pathlib import Path

INTEL_ROOT_CA_SHA256 = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"


def resource_dir() -> Path:
    packaged = Path(str(_res.files("dstack_verifier"))) / "resources"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "resources"


def resource_path(*parts: str) -> Path:
    return resource_dir().joinpath(*parts)


def app_icon_path() -> Path:
    """The 256 px application icon (rendered from packaging/icons/dstack-inspector.svg by packaging/make_icons.py)."""
    return resource_path("icons", "dstack-inspector.png")


def intel_root_ca_der() -> bytes:
    """The pinned Intel SGX Root CA; refuses a file whose digest is not the pinned one."""
    import hashlib

    data = resource_path("intel_sgx_root_ca.der").read_bytes()
    if hashlib.sha256(data).hexdigest() != INTEL_ROOT_CA_SHA256:
        raise RuntimeError("resources/intel_sgx_root_ca.der does not have the pinned SHA-256 of the Intel SGX Root CA")
    return data
