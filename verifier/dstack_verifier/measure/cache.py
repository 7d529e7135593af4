"""On-disk caches of the measurement step: OS image folders and computed measurements.

:class:`ImageCache` keeps verified OS image folders under ``<folder>/images/<os_image_hash>/``, where
os_image_hash = sha256(sha256sum.txt) (dstack-measurement.md §8.1). A folder only enters the cache after every file
listed in its sha256sum.txt was checked, and is checked again each time it is handed out. Least recently used
images are evicted when the total size passes a cap; the order of use is kept in a small JSON index written
atomically, while sizes are always recomputed from disk.

:class:`MeasurementCache` keeps computed :class:`~.model.Measurement` values as JSON files keyed by the image hash
and the vm_config fields that change the result. Corrupted entries are treated as misses.

No globals: folders, the size cap and the clock are constructor parameters.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .model import Measurement

__all__ = [
    "MANIFEST",
    "MEASUREMENT_KEY_FIELDS",
    "CacheEntry",
    "ImageCache",
    "ImageError",
    "ImageHashMismatch",
    "ImageVerificationError",
    "MeasurementCache",
    "normalise_image_hash",
    "read_manifest",
    "verify_image_folder",
]

MANIFEST = "sha256sum.txt"
_MAX_MANIFEST_BYTES = 64 * 1024
_HASH = re.compile(r"[0-9a-f]{64}")
_INDEX = "index.json"
_INDEX_VERSION = 1


class ImageError(Exception):
    """An OS image could not be fetched, extracted or verified. ``str(err)`` is one line a person can act on."""


class ImageVerificationError(ImageError):
    """The image folder does not match its own sha256sum.txt (or has none, or a malformed one)."""


class ImageHashMismatch(ImageVerificationError):
    """sha256(sha256sum.txt) is not the expected os_image_hash."""

    def __init__(self, expected: str, actual: str, *, source: str = "") -> None:
        self.expected = expected
        self.actual = actual
        where = f"{source}: " if source else ""
        super().__init__(f"{where}os_image_hash mismatch: sha256(sha256sum.txt) is {actual}, expected {expected}")


def normalise_image_hash(value: str) -> str:
    """Lowercase 64-hex os_image_hash; anything else is a ValueError (the hash becomes a folder name)."""
    text = value.strip().lower()
    if text.startswith("0x"):
        text = text[2:]
    if not _HASH.fullmatch(text):
        raise ValueError(f"not an os_image_hash (64 hex digits): {value!r}")
    return text


def _sha256_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


def read_manifest(folder: Path) -> tuple[bytes, dict[str, str]]:
    """The raw bytes of ``folder/sha256sum.txt`` and its entries {file name: sha256 hex}.

    Every line must be ``<64 hex> <name>`` (exactly two fields), the name a plain file name in the folder, not
    sha256sum.txt itself, and listed once.
    """
    path = folder / MANIFEST
    if not path.is_file() or path.is_symlink():
        raise ImageVerificationError(f"the image has no {MANIFEST}, so it cannot be identified or checked")
    if path.stat().st_size > _MAX_MANIFEST_BYTES:
        raise ImageVerificationError(f"{MANIFEST} is larger than {_MAX_MANIFEST_BYTES} bytes")
    raw = path.read_bytes()
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise ImageVerificationError(f"{MANIFEST} is not ASCII text (byte {exc.start})") from None
    entries: dict[str, str] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2:
            raise ImageVerificationError(f"{MANIFEST} line {number}: expected '<sha256>  <file>', got {line[:80]!r}")
        digest, name = fields[0].lower(), fields[1]
        if not _HASH.fullmatch(digest):
            raise ImageVerificationError(f"{MANIFEST} line {number}: not a sha256: {fields[0][:80]!r}")
        if "/" in name or "\\" in name or name in (".", "..") or name.startswith("-"):
            raise ImageVerificationError(f"{MANIFEST} line {number}: not a plain file name: {name[:80]!r}")
        if name == MANIFEST:
            raise ImageVerificationError(f"{MANIFEST} line {number}: the manifest lists itself")
        if name in entries:
            raise ImageVerificationError(f"{MANIFEST} line {number}: {name} is listed twice")
        entries[name] = digest
    if not entries:
        raise ImageVerificationError(f"{MANIFEST} lists no files")
    return raw, entries


def verify_image_folder(folder: Path, expected_hash: str | None = None) -> str:
    """Check ``folder`` against its sha256sum.txt (like ``sha256sum -c``), and sha256(sha256sum.txt) against
    ``expected_hash`` when given. metadata.json must be listed. Returns the folder's os_image_hash."""
    raw, entries = read_manifest(folder)
    actual = hashlib.sha256(raw).hexdigest()
    if expected_hash is not None:
        expected = normalise_image_hash(expected_hash)
        if actual != expected:
            raise ImageHashMismatch(expected, actual)
    if "metadata.json" not in entries:
        raise ImageVerificationError(f"{MANIFEST} does not list metadata.json")
    for name, digest in entries.items():
        path = folder / name
        if path.is_symlink() or not path.is_file():
            raise ImageVerificationError(f"{name} is listed in {MANIFEST} but missing from the image")
        found = _sha256_file(path)
        if found != digest:
            raise ImageVerificationError(f"{name}: sha256 is {found}, {MANIFEST} says {digest}")
    return actual


def _folder_size(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder, followlinks=False):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new content, never a torn file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _remove_tree(path: Path) -> None:
    """Rename away first, so that a half-deleted folder never looks like a valid entry, then delete."""
    trash = path.with_name(f".trash-{path.name}-{secrets.token_hex(4)}")
    try:
        os.replace(path, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


@dataclass(frozen=True)
class CacheEntry:
    os_image_hash: str
    path: Path
    size: int  # bytes on disk, recomputed
    last_used: float  # clock() at the last use, 0 when unknown
    names: tuple[str, ...]  # image names it was fetched as ("dstack-0.5.3"...)
    order: int  # use counter: higher = more recent


class ImageCache:
    """Verified OS image folders keyed by os_image_hash, with LRU eviction under ``cap_bytes``.

    Layout: ``images/<hash>/`` (the image files, flat), ``downloads/`` (archives being fetched, partial ones kept
    for a resume), ``staging/`` (extraction in progress), ``index.json`` (order of use and image names).
    """

    def __init__(self, folder: Path, cap_bytes: int, *, clock: Callable[[], float] = time.time) -> None:
        if cap_bytes < 0:
            raise ValueError("cap_bytes must not be negative")
        self.folder = Path(folder)
        self.cap_bytes = cap_bytes
        self._clock = clock
        self._held: Counter[str] = Counter()

    # -- layout ----------------------------------------------------------------------------------------------

    @property
    def images_dir(self) -> Path:
        return self.folder / "images"

    @property
    def downloads_dir(self) -> Path:
        return self.folder / "downloads"

    @property
    def staging_dir(self) -> Path:
        return self.folder / "staging"

    def path(self, os_image_hash: str) -> Path:
        """Where the image with this hash lives (whether or not it is cached)."""
        return self.images_dir / normalise_image_hash(os_image_hash)

    def new_staging_folder(self) -> Path:
        """A fresh empty folder on the cache's file system, for extracting an image before :meth:`put`."""
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=self.staging_dir, prefix="extract-"))

    # -- lookups ---------------------------------------------------------------------------------------------

    def get(self, os_image_hash: str, *, verify: bool = True, name: str | None = None) -> Path | None:
        """The image folder, or None. With ``verify`` (the default) every file is checked against sha256sum.txt
        and sha256(sha256sum.txt) against the hash; an entry that fails is removed and counts as a miss.
        A hit is recorded as the most recent use (and under ``name``, for :meth:`find`)."""
        key = normalise_image_hash(os_image_hash)
        folder = self.images_dir / key
        if not folder.is_dir() or folder.is_symlink():
            return None
        if verify:
            try:
                verify_image_folder(folder, key)
            except (ImageVerificationError, OSError):
                self.remove(key)
                return None
        self._touch(key, name)
        return folder

    def find(self, name: str) -> str | None:
        """The os_image_hash of the most recently used cached image fetched under ``name`` (e.g. dstack-0.5.3)."""
        index = self._load_index()
        best: tuple[int, str] | None = None
        for key, info in index["images"].items():
            if name in info["names"] and (self.images_dir / key).is_dir():
                if best is None or info["order"] > best[0]:
                    best = (info["order"], key)
        return best[1] if best else None

    def entries(self) -> list[CacheEntry]:
        """Cached images, least recently used first."""
        index = self._load_index()
        found = []
        if self.images_dir.is_dir():
            for child in self.images_dir.iterdir():
                if not _HASH.fullmatch(child.name) or not child.is_dir() or child.is_symlink():
                    continue
                info = index["images"].get(child.name, {})
                found.append(
                    CacheEntry(
                        os_image_hash=child.name,
                        path=child,
                        size=_folder_size(child),
                        last_used=float(info.get("last_used", 0.0)),
                        names=tuple(info.get("names", ())),
                        order=int(info.get("order", 0)),
                    )
                )
        found.sort(key=lambda e: (e.order, e.last_used, e.os_image_hash))
        return found

    def size(self) -> int:
        return sum(e.size for e in self.entries())

    # -- changes ---------------------------------------------------------------------------------------------

    def put(self, folder: Path, os_image_hash: str, *, name: str | None = None) -> Path:
        """Move the already verified image ``folder`` (on this file system, e.g. under :meth:`new_staging_folder`)
        into the cache atomically, record the use, and evict older images down to the cap (never this one)."""
        key = normalise_image_hash(os_image_hash)
        target = self.images_dir / key
        self.images_dir.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(folder, target)
        except OSError:
            if not target.is_dir():
                raise
            shutil.rmtree(folder, ignore_errors=True)  # another run cached the same image first: keep that one
        self._touch(key, name)
        self.evict(keep=(key,))
        return target

    @contextlib.contextmanager
    def hold(self, os_image_hash: str) -> Iterator[Path]:
        """Protect an image from eviction (by this process) while it is being used."""
        key = normalise_image_hash(os_image_hash)
        self._held[key] += 1
        try:
            yield self.images_dir / key
        finally:
            self._held[key] -= 1
            if self._held[key] <= 0:
                del self._held[key]

    def evict(self, keep: Iterable[str] = ()) -> list[str]:
        """Remove least recently used images until the total is within the cap. Images in ``keep`` and held ones
        stay even when that leaves the cache above the cap. Returns the evicted hashes."""
        protected = {normalise_image_hash(k) for k in keep} | set(self._held)
        entries = self.entries()
        total = sum(e.size for e in entries)
        evicted = []
        for entry in entries:
            if total <= self.cap_bytes:
                break
            if entry.os_image_hash in protected:
                continue
            _remove_tree(entry.path)
            total -= entry.size
            evicted.append(entry.os_image_hash)
        if evicted:
            self._forget(evicted)
        return evicted

    def remove(self, os_image_hash: str) -> None:
        key = normalise_image_hash(os_image_hash)
        _remove_tree(self.images_dir / key)
        self._forget([key])

    # -- index -----------------------------------------------------------------------------------------------

    def _load_index(self) -> dict[str, Any]:
        """The index, or an empty one when missing or damaged (it only orders eviction; sizes come from disk)."""
        empty: dict[str, Any] = {"version": _INDEX_VERSION, "counter": 0, "images": {}}
        try:
            data = json.loads((self.folder / _INDEX).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return empty
        if (
            not isinstance(data, dict)
            or data.get("version") != _INDEX_VERSION
            or not isinstance(data.get("images"), dict)
        ):
            return empty
        counter = data.get("counter")
        images: dict[str, Any] = {}
        for key, info in data["images"].items():
            if not isinstance(key, str) or not _HASH.fullmatch(key) or not isinstance(info, dict):
                continue
            order, last_used, names = info.get("order"), info.get("last_used"), info.get("names", [])
            if not isinstance(order, int) or not isinstance(last_used, int | float) or not isinstance(names, list):
                continue
            images[key] = {
                "order": order,
                "last_used": float(last_used),
                "names": [n for n in names if isinstance(n, str)],
            }
        top = max((i["order"] for i in images.values()), default=0)
        return {
            "version": _INDEX_VERSION,
            "counter": max(counter if isinstance(counter, int) else 0, top),
            "images": images,
        }

    def _save_index(self, index: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomically(self.folder / _INDEX, json.dumps(index, indent=1, sort_keys=True).encode())

    def _touch(self, key: str, name: str | None) -> None:
        index = self._load_index()
        index["counter"] += 1
        info = index["images"].setdefault(key, {"order": 0, "last_used": 0.0, "names": []})
        info["order"] = index["counter"]
        info["last_used"] = float(self._clock())
        if name and name not in info["names"]:
            info["names"].append(name)
        # Drop entries whose folder is gone, so the index stays small.
        index["images"] = {k: v for k, v in index["images"].items() if (self.images_dir / k).is_dir()}
        self._save_index(index)

    def _forget(self, keys: Iterable[str]) -> None:
        index = self._load_index()
        for key in keys:
            index["images"].pop(key, None)
        self._save_index(index)


# -- measurements ------------------------------------------------------------------------------------------------

# vm_config fields that change MRTD/RTMR0-2 (dstack-measurement.md §2.3, §3, §8.3). Absent fields are keyed as
# absent (null), not as their defaults, so two configs share an entry only when they say the same thing.
MEASUREMENT_KEY_FIELDS = (
    "cpu_count",
    "memory_size",
    "qemu_version",
    "qemu_single_pass_add_pages",
    "pic",
    "ovmf_variant",
    "image",  # the ovmf_variant fallback
    "hugepages",
    "num_gpus",
    "num_nvswitches",
    "hotplug_off",
    "pci_hole64_size",
    "num_nics",
    "num_verity_volumes",
    "swtpm",
    "host_share_mode",
    "tdx_attestation_variant",
)
# Bump when the measurement code changes what it computes, so that old entries stop matching.
MEASUREMENT_CACHE_VERSION = 2  # 2: events say what they vary with
_BYTES_FIELDS = ("mrtd", "rtmr0", "rtmr1", "rtmr2")


def _to_json_value(measurement: Measurement) -> dict[str, Any]:
    data = measurement.model_dump(mode="python")
    for name in _BYTES_FIELDS:
        data[name] = data[name].hex()
    for event in data["events"]:
        event["digest"] = event["digest"].hex()
    return data


def _from_json_value(data: Any) -> Measurement:
    if not isinstance(data, dict) or not isinstance(data.get("events"), list):
        raise ValueError("not a measurement object")
    data = dict(data)
    for name in _BYTES_FIELDS:
        data[name] = bytes.fromhex(data[name])
    events = []
    for event in data["events"]:
        if not isinstance(event, dict):
            raise ValueError("an event is not an object")
        events.append({**event, "digest": bytes.fromhex(event["digest"])})
    data["events"] = events
    return Measurement.model_validate(data)


def read_keyed_entry(path: Path, key: dict[str, Any], parse: Callable[[dict[str, Any]], Any]) -> Any:
    """A JSON cache entry `{"key": ..., ...}` parsed, or None; an unreadable, malformed or mismatching entry (one
    written for other inputs) is deleted and missed."""
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        path.unlink(missing_ok=True)
        return None
    try:
        if not isinstance(stored, dict) or stored.get("key") != key:
            raise ValueError("entry written for other inputs")
        return parse(stored)
    except (ValueError, TypeError, KeyError):  # pydantic's ValidationError is a ValueError
        path.unlink(missing_ok=True)
        return None


class MeasurementCache:
    """Computed measurements as ``<folder>/<key>.json``, key = sha256 over the os_image_hash and the vm_config
    fields in :data:`MEASUREMENT_KEY_FIELDS` (plus ``extra``, for choices the caller makes, such as the path)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    @staticmethod
    def key_fields(
        os_image_hash: str, vm_config: Mapping[str, Any], extra: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return {
            "cache_version": MEASUREMENT_CACHE_VERSION,
            "os_image_hash": normalise_image_hash(os_image_hash),
            "vm_config": {name: vm_config.get(name) for name in MEASUREMENT_KEY_FIELDS},
            "extra": dict(extra or {}),
        }

    @classmethod
    def key(cls, os_image_hash: str, vm_config: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> str:
        canonical = json.dumps(cls.key_fields(os_image_hash, vm_config, extra), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def path(self, os_image_hash: str, vm_config: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> Path:
        return self.folder / f"{self.key(os_image_hash, vm_config, extra)}.json"

    def get(
        self, os_image_hash: str, vm_config: Mapping[str, Any], extra: Mapping[str, Any] | None = None
    ) -> Measurement | None:
        """The cached measurement, or None. An unreadable, malformed or mismatching entry is deleted and missed."""
        return read_keyed_entry(self.path(os_image_hash, vm_config, extra),
                                self.key_fields(os_image_hash, vm_config, extra),
                                lambda stored: _from_json_value(stored.get("measurement")))

    def put(
        self,
        os_image_hash: str,
        vm_config: Mapping[str, Any],
        measurement: Measurement,
        extra: Mapping[str, Any] | None = None,
    ) -> bool:
        """Store ``measurement``; returns False when it must not be cached: a measurement with digests taken from
        a quote's own event log describes that quote, not the (image, vm_config) pair."""
        if measurement.acpi_source == "event-log-only" or any(e.source == "event-log-only" for e in measurement.events):
            return False
        try:
            body = json.dumps(
                {"key": self.key_fields(os_image_hash, vm_config, extra), "measurement": _to_json_value(measurement)},
                sort_keys=True,
                allow_nan=False,
            )
        except (TypeError, ValueError):  # inputs that are not plain JSON: not worth a lossy entry
            return False
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path(os_image_hash, vm_config, extra), body.encode())
        return True
