"""Write the demo evidence pack (resources/demo/): a synthetic dstack app quote, its collateral, its root CA.

    .venv/bin/python packaging/make_demo.py [OUT_DIR]      (default: resources/demo beside this folder)

Deterministic: the same seed and instant give byte-identical files (RFC 6979 signatures, seed-derived keys).
The root CA is self-made ("Demo SGX Root CA — not Intel"); the pack verifies only against it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from datetime import datetime
from pathlib import Path

from dstack_verifier.demo import DEMO_FILES, DEMO_LABEL, DEMO_SCHEMA
from dstack_verifier.synth import PkiOptions, make_evidence

SEED = "dstack-inspector-demo"
INSTANT = "2026-06-01T00:00:00Z"
ROOT_CN = "Demo SGX Root CA — not Intel"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "resources" / "demo"

# The app-compose of the demo app: its sha256 is the compose hash, which dstack puts in mr_config_id and RTMR3.
DEMO_COMPOSE = json.dumps(
    {
        "manifest_version": 2,
        "name": "demo-app",
        "runner": "docker-compose",
        "docker_compose_file": "services:\n  web:\n    image: nginx@sha256:" + "0" * 64 + "\n",
        "kms_enabled": True,
        "gateway_enabled": True,
        "public_logs": True,
        "public_sysinfo": True,
    },
    separators=(",", ":"),
)


def _measure(label: str) -> bytes:
    """A 48-byte SHA-384 value standing for a measurement, derived from the seed (looks like a real MR)."""
    return hashlib.sha384(f"{SEED}/{label}".encode()).digest()


def _rtmr3(compose_hash: bytes) -> bytes:
    """RTMR3 as a replay of dstack-like runtime events (extend: mr = sha384(mr || digest))."""
    mr = bytes(48)
    events = [
        ("system-preparing", b""),
        ("app-id", hashlib.sha256(f"{SEED}/app-id".encode()).digest()[:20]),
        ("compose-hash", compose_hash),
        ("instance-id", hashlib.sha256(f"{SEED}/instance-id".encode()).digest()[:20]),
        ("boot-mr-done", b""),
    ]
    for name, payload in events:
        digest = hashlib.sha384(name.encode() + b":" + payload).digest()
        mr = hashlib.sha384(mr + digest).digest()
    return mr


def build(out: Path) -> dict[str, str]:
    """Write the pack into `out`; returns each file's sha256."""
    now = int(datetime.fromisoformat(INSTANT.replace("Z", "+00:00")).timestamp())
    compose_hash = hashlib.sha256(DEMO_COMPOSE.encode()).digest()
    ra_tls_key = hashlib.sha256(f"{SEED}/ra-tls-public-key".encode()).digest()
    evidence = make_evidence(
        SEED,
        now=now,
        tee="tdx",
        version=4,
        pki_options=PkiOptions(name_prefix="Demo SGX", root_cn=ROOT_CN),
        report={
            "mr_seam": _measure("mr-seam"),
            "mr_td": _measure("mr-td"),
            "mr_config_id": b"\x01" + compose_hash + bytes(15),
            "rt_mr0": _measure("rtmr0"),
            "rt_mr1": _measure("rtmr1"),
            "rt_mr2": _measure("rtmr2"),
            "rt_mr3": _rtmr3(compose_hash),
            "report_data": hashlib.sha512(b"app-data:" + ra_tls_key).digest(),
        },
    )
    files = {
        "quote.hex": evidence.quote.hex().encode() + b"\n",
        "collateral.json": (json.dumps(evidence.collateral, indent=2) + "\n").encode(),
        "demo_root_ca.der": evidence.root_ca_der,
    }
    assert set(files) == set(DEMO_FILES)
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    manifest = {
        "schema": DEMO_SCHEMA,
        "label": DEMO_LABEL,
        "now": now,
        "verified_at": INSTANT,
        "description": (
            "Synthetic dstack app evidence (TDX quote v4 and DCAP collateral) made by packaging/make_demo.py "
            f"from seed {SEED!r}. It verifies only against its own root CA ({ROOT_CN}), at {INSTANT}: it shows "
            "what the inspector does and proves nothing about any real machine."
        ),
        "seed": SEED,
        "compose_hash": compose_hash.hex(),
        "files": digests,
    }
    files["demo.json"] = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode()
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (out / name).write_bytes(data)
    return digests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the dstack-inspector demo evidence pack.")
    parser.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    digests = build(args.out)
    for name, digest in digests.items():
        print(f"{digest}  {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
