"""On-chain governance reads: DstackApp / DstackKms contracts, at one pinned block per verification.

Every JSON-RPC request goes through :class:`~dstack_verifier.net.NetClient` (``post_json``), so it is bounded,
refused when offline, and recorded; an offline re-run with a :class:`~dstack_verifier.net.ReplayClient` over the
recording gets the same answers. The request bodies are deterministic (constant JSON-RPC id, sorted keys), which
is what lets a replay find them.

web3 (its contract/ABI machinery) is imported lazily inside functions: importing this module stays fast.

Everything a node says is untrusted: answers are size-bounded and shape-checked here, and every web3 / ABI
decoding exception is turned into an :class:`OnchainError` with a one-line reason; :func:`check_onchain_registry`
turns those into a check ``error`` (never a traceback).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .model import Anchor, Check, CheckStatus, Entity, onchain_anchor
from .net import NetClient, NetError, OfflineError
from .resources import resource_path

__all__ = [
    "BASE",
    "CHAINS",
    "CHECK_ID",
    "ETHEREUM",
    "BootInfo",
    "CallRecord",
    "CallReverted",
    "Chain",
    "EmptyResult",
    "KmsInfo",
    "OnchainError",
    "OnchainInputError",
    "OnchainOffline",
    "OnchainReader",
    "RpcTransport",
    "WrongChainError",
    "chain_config",
    "check_onchain_registry",
    "load_abi",
    "net_provider",
    "pin_block",
]

CHECK_ID = "source.onchain_registry"

# Bounds on what a node may send back (the NetClient's own body limit applies first).
DEFAULT_MAX_RESPONSE = 8 * 1024 * 1024
MAX_KMS_FIELD = 2 * 1024 * 1024  # quote / event log bytes of kmsInfo()
MAX_STRING = 4096  # revert reasons, gatewayAppId()
MAX_ERROR_DATA = 64 * 1024  # hex chars of a revert's data
_DISPLAY_BYTES = 128  # longer byte strings are shown as size + SHA-256 in the details

_HEX_QUANTITY = re.compile(r"0x[0-9a-fA-F]{1,64}")
_HEX_DATA = re.compile(r"0x(?:[0-9a-fA-F]{2})*")
_ERROR_STRING_SELECTOR = "0x08c379a0"  # Error(string)
_ZERO32 = bytes(32)
_ZERO_ADDRESS = "0x" + "00" * 20


# -- chains -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chain:
    """A chain we read governance contracts from. ``key`` is what the anchor names (``onchain@<key>:<block>``)."""

    key: str
    name: str
    chain_id: int
    rpc_url: str
    explorer: str = ""

    def with_rpc(self, rpc_url: str) -> Chain:
        return dataclasses.replace(self, rpc_url=rpc_url)

    def label(self) -> str:
        return f"{self.name} (chain id {self.chain_id})"


BASE = Chain("base", "Base", 8453, "https://mainnet.base.org", "https://basescan.org")
ETHEREUM = Chain("ethereum", "Ethereum", 1, "https://ethereum-rpc.publicnode.com", "https://etherscan.io")
# The testnets dstack deploys test governance on (the Trust Center's UI names them, its verifier threw on them).
BASE_SEPOLIA = Chain("base-sepolia", "Base Sepolia", 84532, "https://sepolia.base.org", "https://sepolia.basescan.org")
SEPOLIA = Chain("sepolia", "Sepolia", 11155111, "https://ethereum-sepolia-rpc.publicnode.com",
                "https://sepolia.etherscan.io")
CHAINS: Mapping[str, Chain] = {c.key: c for c in (BASE, ETHEREUM, BASE_SEPOLIA, SEPOLIA)}


def chain_config(chain: Chain | str | int, rpc_url: str | None = None) -> Chain:
    """The chain for a key, a display name ("Base"), or a chain id; ``rpc_url`` overrides its default RPC URL.

    Raises :class:`OnchainInputError` for a chain we do not support.
    """
    if isinstance(chain, Chain):
        found: Chain | None = chain
    else:
        text = str(chain).strip().lower()
        found = CHAINS.get(text)
        if found is None:
            found = next((c for c in CHAINS.values() if c.name.lower() == text or str(c.chain_id) == text), None)
    if found is None:
        supported = ", ".join(f"{c.key} {c.chain_id}" for c in CHAINS.values())
        raise OnchainInputError(f"unsupported chain {_clean(chain, 40)!r} (supported: {supported})")
    return found.with_rpc(rpc_url) if rpc_url else found


# -- errors -----------------------------------------------------------------------------------------------------


def _clean(text: object, limit: int = 300) -> str:
    """One line, no control characters, bounded: for anything that came from the network or the input."""
    flat = " ".join("".join(ch if ch.isprintable() else " " for ch in str(text)).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class OnchainError(Exception):
    """A chain read failed: node down, malformed answer, revert, wrong chain. ``str()`` is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(_clean(message, 400))


class OnchainOffline(OnchainError):
    """The read was refused because we are offline (or the recording does not hold it)."""


class OnchainInputError(OnchainError, ValueError):
    """A caller-supplied value (address, hash, chain) is malformed."""


class WrongChainError(OnchainError):
    """The RPC node serves another chain than the configured one."""


class CallReverted(OnchainError):
    """An eth_call reverted. ``reason`` is the decoded reason ("" when the revert carried none)."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = _clean(reason)


class EmptyResult(OnchainError):
    """An eth_call returned no data (no such function, or no contract at the address)."""


# -- JSON-RPC over NetClient ----------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
        return value
    if isinstance(value, int):
        return hex(value)
    return str(value)


class RpcTransport:
    """Ethereum JSON-RPC through a :class:`NetClient`: one POST per request, answers shape-checked.

    ``request`` returns a sanitised JSON-RPC response dict (``result`` or ``error``); transport and format
    problems raise :class:`OnchainError` (:class:`OnchainOffline` when offline / not recorded).
    """

    def __init__(self, net: NetClient, url: str, *, max_response: int = DEFAULT_MAX_RESPONSE) -> None:
        self.net = net
        self.url = url
        self.max_response = max_response
        self.log: list[tuple[str, Any]] = []  # (method, params) of every request sent, in order

    def request(self, method: str, params: Any) -> dict[str, Any]:
        params = _jsonable(params if params is not None else [])
        # A constant id keeps equal requests byte-identical, which is how a replay finds the recorded answer.
        payload = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        self.log.append((method, params))
        try:
            response = self.net.post_json(self.url, payload)
        except OfflineError as exc:
            raise OnchainOffline(f"{method}: {exc}") from None
        except NetError as exc:
            raise OnchainError(f"RPC node unreachable ({method}): {exc}") from None
        where = f"RPC node {self.url} ({method})"
        if not response.ok:
            raise OnchainError(f"{where} answered {response.status_problem()}")
        if len(response.content) > self.max_response:
            raise OnchainError(f"{where}: answer too large ({len(response.content)} bytes)")
        try:
            answer = json.loads(response.content)
        except (ValueError, RecursionError) as exc:
            raise OnchainError(f"{where}: malformed JSON-RPC answer ({type(exc).__name__})") from None
        return _sanitise_response(answer, where)

    def call(self, method: str, params: Any) -> Any:
        """``request`` for callers outside web3: the result, or OnchainError for a JSON-RPC error."""
        answer = self.request(method, params)
        if "error" in answer:
            err = answer["error"]
            raise OnchainError(f"RPC node {self.url} ({method}) returned error {err['code']}: {err['message']}")
        return answer["result"]


def _sanitise_response(answer: Any, where: str) -> dict[str, Any]:
    if not isinstance(answer, dict):
        raise OnchainError(f"{where}: malformed JSON-RPC answer (not an object)")
    if answer.get("jsonrpc") != "2.0" or answer.get("id") != 1:
        raise OnchainError(f"{where}: malformed JSON-RPC answer (jsonrpc/id missing or wrong)")
    if ("result" in answer) == ("error" in answer):
        raise OnchainError(f"{where}: malformed JSON-RPC answer (needs exactly one of result and error)")
    if "error" in answer:
        err = answer["error"]
        if not isinstance(err, dict) or type(err.get("code")) is not int or not isinstance(err.get("message"), str):
            raise OnchainError(f"{where}: malformed JSON-RPC error object")
        clean: dict[str, Any] = {"code": err["code"], "message": _clean(err["message"], MAX_STRING)}
        data = err.get("data")
        if isinstance(data, str) and len(data) <= MAX_ERROR_DATA and _HEX_DATA.fullmatch(data):
            clean["data"] = data
        return {"jsonrpc": "2.0", "id": 1, "error": clean}
    result = answer["result"]
    # eth_chainId, eth_blockNumber (quantities), eth_call, eth_getCode (data): all hex strings.
    if not isinstance(result, str) or not (_HEX_QUANTITY.fullmatch(result) or _HEX_DATA.fullmatch(result)):
        raise OnchainError(f"{where}: malformed JSON-RPC result (not a hex string: {_clean(result, 60)!r})")
    return {"jsonrpc": "2.0", "id": 1, "result": result}


@functools.cache
def _import_web3() -> None:
    """Import web3 once, keeping the interpreter's recursion limit.

    web3 imports eth_account, which imports py_ecc, which raises ``sys.setrecursionlimit`` to 100000 for the
    whole process. With that limit, deeply nested hostile input (JSON, CBOR…) parsed anywhere in the verifier
    overflows the C stack and kills the process instead of raising RecursionError. So restore it.
    """
    limit = sys.getrecursionlimit()
    try:
        import web3  # noqa: F401
    finally:
        sys.setrecursionlimit(limit)


@functools.cache
def _provider_class() -> type:
    _import_web3()
    from web3.providers.base import BaseProvider

    class NetClientProvider(BaseProvider):
        """A web3 provider that sends every request through our :class:`RpcTransport` (hence NetClient)."""

        # Never follow EIP-3668 OffchainLookup reverts: that would fetch URLs chosen by the contract, outside
        # NetClient and its recording.
        global_ccip_read_enabled = False

        def __init__(self, transport: RpcTransport) -> None:
            super().__init__()
            self.transport = transport

        def make_request(self, method: Any, params: Any) -> Any:
            return self.transport.request(str(method), params)

        def is_connected(self, show_traceback: bool = False) -> bool:
            try:
                self.transport.call("eth_chainId", [])
            except OnchainError:
                if show_traceback:
                    raise
                return False
            return True

    return NetClientProvider


def net_provider(transport: RpcTransport) -> Any:
    """A web3 ``BaseProvider`` over ``transport`` (web3 is imported here, on first use)."""
    return _provider_class()(transport)


def _quantity(value: Any, what: str) -> int:
    if not isinstance(value, str) or not _HEX_QUANTITY.fullmatch(value):
        raise OnchainError(f"malformed {what} from the RPC node: {_clean(value, 60)!r}")
    number = int(value, 16)
    if number >= 2**63:
        raise OnchainError(f"implausible {what} from the RPC node: {number}")
    return number


def pin_block(transport: RpcTransport, chain: Chain, block: int | None = None) -> int:
    """Check that the node serves ``chain`` (eth_chainId) and fix the block every later read uses.

    ``block`` None: the node's current block (one eth_blockNumber). Raises WrongChainError / OnchainError.
    """
    chain_id = _quantity(transport.call("eth_chainId", []), "chain id")
    if chain_id != chain.chain_id:
        raise WrongChainError(
            f"wrong chain: RPC node {transport.url} reports chain id {chain_id}, expected {chain.label()}"
        )
    if block is None:
        block = _quantity(transport.call("eth_blockNumber", []), "block number")
    if block < 0:
        raise OnchainInputError(f"block number must not be negative: {block}")
    return block


# -- values -----------------------------------------------------------------------------------------------------


def _hex_body(value: str) -> str:
    text = value.strip()
    return text[2:] if text[:2].lower() == "0x" else text


def _bytes32(value: str | bytes, what: str) -> bytes:
    if isinstance(value, bytes):
        if len(value) != 32:
            raise OnchainInputError(f"malformed {what}: {len(value)} bytes, expected 32")
        return value
    body = _hex_body(str(value))
    if len(body) != 64 or not re.fullmatch(r"[0-9a-fA-F]{64}", body):
        raise OnchainInputError(f"malformed {what}: {_clean(value, 80)!r} is not 32 bytes of hex")
    return bytes.fromhex(body)


def _address(value: str, what: str) -> str:
    body = _hex_body(str(value))
    if len(body) != 40 or not re.fullmatch(r"[0-9a-fA-F]{40}", body):
        raise OnchainInputError(f"malformed {what}: {_clean(value, 80)!r} is not a 20-byte address")
    from eth_utils import to_checksum_address

    return str(to_checksum_address("0x" + body.lower()))


def contract_address(value: str) -> str:
    """A contract address as given on a command line: 20 bytes of hex (0x optional), returned checksummed."""
    return _address(value, "contract address")


def _hex32(value: bytes) -> str:
    return "0x" + value.hex()


def _display(value: Any) -> Any:
    """A JSON-friendly, bounded rendering of a decoded ABI value for the check details."""
    if isinstance(value, bytes | bytearray):
        data = bytes(value)
        if len(data) <= _DISPLAY_BYTES:
            return "0x" + data.hex()
        return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if isinstance(value, str):
        return _clean(value, 300) if len(value) > 300 else value
    if isinstance(value, list | tuple):
        return [_display(v) for v in value]
    if isinstance(value, bool | int) or value is None:
        return value
    return _clean(value, 300)


@dataclass(frozen=True)
class KmsInfo:
    """``DstackKms.kmsInfo()``: the KMS's public keys and its (quote, event log) as registered on-chain."""

    k256_pubkey: bytes
    ca_pubkey: bytes
    quote: bytes
    eventlog: bytes

    def summary(self) -> dict[str, Any]:
        return {
            "k256_pubkey": "0x" + self.k256_pubkey.hex(),
            "ca_pubkey": "0x" + self.ca_pubkey.hex(),
            "quote": _display(self.quote),
            "eventlog": _display(self.eventlog),
        }


@dataclass(frozen=True)
class BootInfo:
    """``IAppAuth.AppBootInfo``: what the KMS checks before giving keys. Hex strings, 0x optional."""

    app_id: str
    compose_hash: str | None = None
    instance_id: str | None = None
    device_id: str | None = None
    mr_aggregated: str | None = None
    mr_system: str | None = None
    os_image_hash: str | None = None
    tcb_status: str = ""
    advisory_ids: tuple[str, ...] = ()

    def abi_tuple(self) -> tuple[Any, ...]:
        def b32(value: str | None, what: str) -> bytes:
            return _ZERO32 if value is None else _bytes32(value, what)

        return (
            _address(self.app_id, "app id"),
            b32(self.compose_hash, "compose hash"),
            _address(self.instance_id or _ZERO_ADDRESS, "instance id"),
            b32(self.device_id, "device id"),
            b32(self.mr_aggregated, "mr_aggregated"),
            b32(self.mr_system, "mr_system"),
            b32(self.os_image_hash, "os image hash"),
            self.tcb_status,
            list(self.advisory_ids),
        )

    def display(self) -> dict[str, Any]:
        """The values as sent (0x-hex, zero for unknown), by their Solidity names."""
        names = ("appId", "composeHash", "instanceId", "deviceId", "mrAggregated", "mrSystem", "osImageHash")
        names += ("tcbStatus", "advisoryIds")
        return dict(zip(names, (_display(v) for v in self.abi_tuple()), strict=True))


@dataclass
class CallRecord:
    """One contract read as it goes into the details: what was asked, at which block, and what came back."""

    contract: str  # "DstackApp" | "DstackKms" | "code"
    address: str
    function: str
    args: list[Any]
    block: int
    result: Any = None
    error: str | None = None
    cached: bool = False

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        if not self.cached:
            out.pop("cached")
        return out


@functools.cache
def load_abi(name: str) -> tuple[dict[str, Any], ...]:
    """The bundled minimal ABI ``resources/abi/<name>.json`` (``DstackApp`` or ``DstackKms``)."""
    abi = json.loads(resource_path("abi", f"{name}.json").read_text(encoding="utf-8"))
    if not isinstance(abi, list) or not all(isinstance(item, dict) for item in abi):
        raise RuntimeError(f"resources/abi/{name}.json is not an ABI (a list of objects)")
    return tuple(abi)


# -- the reader -------------------------------------------------------------------------------------------------


class OnchainReader:
    """Reads DstackApp / DstackKms state on one chain at one pinned block.

    Make one per verification and share it between the entities: the first read checks the chain id and pins
    the block (``pin``); every read after that is an eth_call at that block. Reads are cached, so a value asked
    for twice is fetched once. ``calls`` lists every read (with its decoded result or error).
    """

    def __init__(
        self,
        net: NetClient,
        chain: Chain | str | int = BASE,
        *,
        rpc_url: str | None = None,
        block: int | None = None,
        max_response: int = DEFAULT_MAX_RESPONSE,
    ) -> None:
        self.chain = chain_config(chain, rpc_url)
        self.transport = RpcTransport(net, self.chain.rpc_url, max_response=max_response)
        self._requested_block = block
        self._block: int | None = None
        self._w3: Any = None
        self._contracts: dict[tuple[str, str], Any] = {}
        self._cache: dict[tuple[str, str, str], Any] = {}
        self.calls: list[CallRecord] = []

    @property
    def block(self) -> int | None:
        """The pinned block, or None before the first read."""
        return self._block

    def pin(self) -> int:
        if self._block is None:
            self._block = pin_block(self.transport, self.chain, self._requested_block)
        return self._block

    def anchor(self) -> str:
        return onchain_anchor(self.chain.key, self.pin())

    # -- DstackApp ----------------------------------------------------------------------------------------------

    def compose_hash_allowed(self, app: str, compose_hash: str | bytes) -> bool:
        value = _bytes32(compose_hash, "compose hash")
        return self._bool("DstackApp", app, "allowedComposeHashes", value)

    def allow_any_device(self, app: str) -> bool:
        return self._bool("DstackApp", app, "allowAnyDevice")

    def device_allowed(self, app: str, device_id: str | bytes) -> bool:
        return self._bool("DstackApp", app, "allowedDeviceIds", _bytes32(device_id, "device id"))

    def owner(self, contract: str, kind: str = "DstackApp") -> str:
        return str(self._read(kind, contract, "owner"))

    def is_app_allowed(self, contract: str, boot: BootInfo, kind: str = "DstackApp") -> tuple[bool, str] | None:
        """``isAppAllowed(bootInfo)`` on a DstackApp or the DstackKms; None when the contract does not have it
        (the call reverts without a reason or returns nothing)."""
        return self._allowed_pair(kind, contract, "isAppAllowed", boot)

    # -- DstackKms ----------------------------------------------------------------------------------------------

    def kms_info(self, kms: str) -> KmsInfo:
        raw = self._read("DstackKms", kms, "kmsInfo")
        if not isinstance(raw, list | tuple) or len(raw) != 4 or not all(isinstance(x, bytes) for x in raw):
            raise OnchainError(f"kmsInfo() of {kms}: unexpected result shape")
        if any(len(x) > MAX_KMS_FIELD for x in raw):
            raise OnchainError(f"kmsInfo() of {kms}: a field is larger than {MAX_KMS_FIELD} bytes")
        return KmsInfo(*raw)

    def gateway_app_id(self, kms: str) -> str:
        value = self._read("DstackKms", kms, "gatewayAppId")
        if not isinstance(value, str) or len(value) > 256:
            raise OnchainError(f"gatewayAppId() of {kms}: not a short string")
        return value

    def app_registered(self, kms: str, app: str) -> bool:
        return self._bool("DstackKms", kms, "registeredApps", _address(app, "app id"))

    def os_image_allowed(self, kms: str, os_image_hash: str | bytes) -> bool:
        return self._bool("DstackKms", kms, "allowedOsImages", _bytes32(os_image_hash, "os image hash"))

    def kms_aggregated_mr_allowed(self, kms: str, mr_aggregated: str | bytes) -> bool:
        value = _bytes32(mr_aggregated, "mr_aggregated")
        return self._bool("DstackKms", kms, "kmsAllowedAggregatedMrs", value)

    def kms_device_allowed(self, kms: str, device_id: str | bytes) -> bool:
        return self._bool("DstackKms", kms, "kmsAllowedDeviceIds", _bytes32(device_id, "device id"))

    def app_implementation(self, kms: str) -> str:
        return str(self._read("DstackKms", kms, "appImplementation"))

    def is_kms_allowed(self, kms: str, boot: BootInfo) -> tuple[bool, str] | None:
        return self._allowed_pair("DstackKms", kms, "isKmsAllowed", boot)

    # -- plain state --------------------------------------------------------------------------------------------

    def has_code(self, address: str) -> bool:
        """Whether a contract is deployed at ``address`` (eth_getCode at the pinned block)."""
        checksum = _address(address, "contract address")
        block = self.pin()
        key = ("code", checksum, "")
        if key in self._cache:
            size = self._cache[key]
            self.calls.append(CallRecord("code", checksum, "eth_getCode", [], block, {"size": size}, cached=True))
            return bool(size)
        record = CallRecord("code", checksum, "eth_getCode", [], block)
        self.calls.append(record)
        try:
            code = self.transport.call("eth_getCode", [checksum, hex(block)])
            if not _HEX_DATA.fullmatch(code):
                raise OnchainError(f"eth_getCode of {checksum}: malformed code {_clean(code, 40)!r}")
        except OnchainError as exc:
            record.error = str(exc)
            raise
        size = (len(code) - 2) // 2
        self._cache[key] = size
        record.result = {"size": size}
        return size > 0

    # -- internals ----------------------------------------------------------------------------------------------

    def _web3(self) -> Any:
        if self._w3 is None:
            _import_web3()
            from web3 import Web3

            # No middleware: no ENS lookups, no extra requests behind our back.
            self._w3 = Web3(net_provider(self.transport), middleware=[])
        return self._w3

    def _contract(self, kind: str, address: str) -> Any:
        key = (kind, address)
        if key not in self._contracts:
            self._contracts[key] = self._web3().eth.contract(address=address, abi=list(load_abi(kind)))
        return self._contracts[key]

    def _bool(self, kind: str, contract: str, function: str, *args: Any) -> bool:
        value = self._read(kind, contract, function, *args)
        if not isinstance(value, bool):
            raise OnchainError(f"{function} of {kind} {contract}: expected a bool, got {type(value).__name__}")
        return value

    def _allowed_pair(self, kind: str, contract: str, function: str, boot: BootInfo) -> tuple[bool, str] | None:
        try:
            value = self._read(kind, contract, function, boot.abi_tuple(), shown=[boot.display()])
        except EmptyResult:
            return None
        except CallReverted as exc:
            if exc.reason:
                raise
            return None
        if (
            not isinstance(value, list | tuple)
            or len(value) != 2
            or not isinstance(value[0], bool)
            or not isinstance(value[1], str)
        ):
            raise OnchainError(f"{function} of {kind} {contract}: unexpected result shape")
        return value[0], _clean(value[1], MAX_STRING)

    def _read(self, kind: str, contract: str, function: str, *args: Any, shown: list[Any] | None = None) -> Any:
        address = _address(contract, f"{kind} contract address")
        block = self.pin()
        shown_args = shown if shown is not None else [_display(a) for a in args]
        key = (address, function, json.dumps(_jsonable(list(args)), sort_keys=True))
        if key in self._cache:
            value = self._cache[key]
            self.calls.append(CallRecord(kind, address, function, shown_args, block, _display(value), cached=True))
            return value
        record = CallRecord(kind, address, function, shown_args, block)
        self.calls.append(record)
        try:
            value = self._eth_call(kind, address, function, args, block)
        except OnchainError as exc:
            record.error = str(exc)
            raise
        self._cache[key] = value
        record.result = _display(value)
        return value

    def _eth_call(self, kind: str, address: str, function: str, args: tuple[Any, ...], block: int) -> Any:
        # web3 encodes the call and sends it (through our provider) at the pinned block; the answer is decoded
        # here rather than by web3's contract ``call``, which on an empty answer asks eth_getCode at "latest"
        # behind our back.
        _import_web3()
        from eth_utils import get_abi_output_types
        from web3.exceptions import ContractLogicError, Web3RPCError

        what = f"{function}() of {kind} {address} at block {block}"
        contract = self._contract(kind, address)
        fn = contract.get_function_by_name(function)
        data = contract.encode_abi(function, args=list(args))
        try:
            raw = bytes(self._web3().eth.call({"to": address, "data": data}, block, ccip_read_enabled=False))
        except OnchainError:
            raise
        except ContractLogicError as exc:
            reason = _revert_reason(exc)
            suffix = f": {reason}" if reason else " (no reason given)"
            raise CallReverted(f"{what} reverted{suffix}", reason) from None
        except Web3RPCError as exc:
            error = (exc.rpc_response or {}).get("error") or {}
            message = error.get("message", "") if isinstance(error, dict) else ""
            raise OnchainError(f"{what}: the RPC node returned an error: {message or _clean(exc, 160)}") from None
        except Exception as exc:  # anything web3 makes of an untrusted answer
            raise OnchainError(f"{what}: malformed answer ({type(exc).__name__}: {_clean(exc, 160)})") from None
        if not raw:
            raise EmptyResult(f"{what}: empty answer (no such function, or no contract at the address)")
        try:
            values = self._web3().codec.decode(get_abi_output_types(fn.abi), raw)
        except Exception as exc:  # eth_abi on untrusted bytes: any failure is "malformed"
            raise OnchainError(f"{what}: malformed answer ({type(exc).__name__}: {_clean(exc, 160)})") from None
        return values[0] if len(values) == 1 else tuple(values)


def _revert_reason(exc: Exception) -> str:
    """The Error(string) reason of a revert, from its data if decodable, else from the node's message."""
    data = getattr(exc, "data", None)
    if isinstance(data, str) and data.lower().startswith(_ERROR_STRING_SELECTOR) and len(data) <= MAX_ERROR_DATA:
        try:
            from eth_abi import decode

            (reason,) = decode(["string"], bytes.fromhex(data[10:]))
            return _clean(reason, MAX_STRING)
        except Exception:  # hostile revert data: fall back to the message
            pass
    message = _clean(getattr(exc, "message", None) or (exc.args[0] if exc.args else ""), MAX_STRING)
    if message.lower().startswith("execution reverted"):
        message = message[len("execution reverted") :].lstrip(":").strip()
    return message


# -- the check --------------------------------------------------------------------------------------------------


@dataclass
class _Run:
    """What one check collects while it reads: failures (fail), notes (details only) and what passed."""

    failures: list[str] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _short(value: str) -> str:
    text = value if value.startswith("0x") else "0x" + value
    return text if len(text) <= 14 else f"{text[:10]}…"


def _same_id(a: str, b: str) -> bool:
    return _hex_body(a).lower() == _hex_body(b).lower()


def check_onchain_registry(
    reader: OnchainReader | None,
    entity: Entity,
    *,
    app_contract: str | None = None,
    kms_contract: str | None = None,
    compose_hash: str | None = None,
    os_image_hash: str | None = None,
    device_id: str | None = None,
    mr_aggregated: str | None = None,
    instance_id: str | None = None,
    mr_system: str | None = None,
    tcb_status: str | None = None,
    advisory_ids: Sequence[str] = (),
) -> Check:
    """``source.onchain_registry`` for one entity, read at the reader's pinned block.

    app / gateway: ``app_contract`` is the DstackApp (the app id; for the gateway, the KMS's gateway app id).
      Checked: contract code present; ``allowedComposeHashes(compose_hash)``; with ``device_id``:
      ``allowAnyDevice()`` / ``allowedDeviceIds(device_id)``; with ``kms_contract``: ``registeredApps(app)``,
      ``allowedOsImages(os_image_hash)`` and, for the gateway, ``gatewayAppId()`` == ``app_contract``; then
      ``isAppAllowed(bootInfo)`` (the KMS's when it and the OS image hash are known, else the app's) when the
      contract has it and the device id is known or any device is allowed.
    kms: ``kms_contract`` is the DstackKms. Read: ``kmsInfo()``; checked: ``allowedOsImages``,
      ``kmsAllowedAggregatedMrs``, ``kmsAllowedDeviceIds`` for whichever of ``os_image_hash``, ``mr_aggregated``,
      ``device_id`` is given, and ``isKmsAllowed(bootInfo)`` when all three and ``tcb_status`` are.

    pass: every read gate allows; fail: one does not (the summary names the value and contract); error: the node is
    down, answers malformed, reverts, or serves another chain; skip: not governed on-chain (no contract address),
    nothing to check, no reader, or offline without a recording.
    """
    details: dict[str, Any] = {}
    contracts: dict[str, str] = {}

    def make(status: CheckStatus, summary: str, anchor: str = Anchor.NONE) -> Check:
        if reader is not None:
            details.update(
                chain=reader.chain.key,
                chain_id=reader.chain.chain_id,
                rpc_url=reader.chain.rpc_url,
                block=reader.block,
                contracts=contracts,
                calls=[c.as_dict() for c in reader.calls[first_call:]],
            )
        return Check(
            id=CHECK_ID, entity=entity, phase="source", status=status, anchor=anchor, summary=summary, details=details
        )

    first_call = len(reader.calls) if reader is not None else 0
    role = {"app": "the app", "gateway": "the gateway", "kms": "the KMS"}[entity]
    if entity == "kms":
        if not kms_contract:
            return make(CheckStatus.SKIP, f"{role} is not governed on-chain (no DstackKms contract address)")
    elif not app_contract:
        return make(CheckStatus.SKIP, f"{role} is not governed on-chain (no DstackApp contract address)")
    if reader is None:
        return make(CheckStatus.SKIP, "no blockchain access configured: on-chain registry not read")

    run = _Run()
    try:
        if entity == "kms":
            assert kms_contract is not None
            contracts["DstackKms"] = _address(kms_contract, "DstackKms contract address")
            skip = _kms_gates(
                reader,
                run,
                details,
                contracts["DstackKms"],
                os_image_hash,
                mr_aggregated,
                device_id,
                tcb_status,
                instance_id,
                mr_system,
                advisory_ids,
            )
        else:
            assert app_contract is not None
            contracts["DstackApp"] = _address(app_contract, "DstackApp contract address")
            if kms_contract:
                contracts["DstackKms"] = _address(kms_contract, "DstackKms contract address")
            boot = BootInfo(
                app_id=contracts["DstackApp"],
                compose_hash=compose_hash,
                instance_id=instance_id,
                device_id=device_id,
                mr_aggregated=mr_aggregated,
                mr_system=mr_system,
                os_image_hash=os_image_hash,
                tcb_status=tcb_status or "",
                advisory_ids=tuple(advisory_ids),
            )
            skip = _app_gates(reader, run, entity, contracts, boot)
    except OnchainOffline as exc:
        return make(CheckStatus.SKIP, f"offline: on-chain registry not read ({exc})")
    except WrongChainError as exc:
        return make(CheckStatus.ERROR, str(exc))
    except OnchainInputError as exc:
        return make(CheckStatus.ERROR, f"on-chain registry not read: {exc}")
    except OnchainError as exc:
        return make(CheckStatus.ERROR, f"on-chain registry read failed: {exc}", _anchor_if_pinned(reader))
    except Exception as exc:  # a bug here must still give a check, never a traceback
        return make(CheckStatus.ERROR, f"on-chain registry check failed: {type(exc).__name__}: {_clean(exc, 200)}")

    if skip:
        return make(CheckStatus.SKIP, skip)
    details["passed"] = run.passed
    details["failures"] = run.failures
    if run.notes:
        details["notes"] = run.notes
    anchor = reader.anchor()
    if run.failures:
        more = f" (and {len(run.failures) - 1} more)" if len(run.failures) > 1 else ""
        return make(CheckStatus.FAIL, run.failures[0] + more, anchor)
    where = f"on {reader.chain.name} at block {reader.block}"
    return make(CheckStatus.PASS, f"allowed {where}: " + "; ".join(run.passed), anchor)


def _anchor_if_pinned(reader: OnchainReader) -> str:
    return onchain_anchor(reader.chain.key, reader.block) if reader.block is not None else Anchor.NONE


def _require_code(reader: OnchainReader, run: _Run, kind: str, address: str) -> bool:
    if reader.has_code(address):
        return True
    run.failures.append(f"no contract code at {kind} {address} on {reader.chain.name} at block {reader.block}")
    return False


def _app_gates(reader: OnchainReader, run: _Run, entity: Entity, contracts: dict[str, str], boot: BootInfo) -> str:
    app = contracts["DstackApp"]
    kms = contracts.get("DstackKms")
    if boot.compose_hash is None:
        return f"no compose hash for {entity}: nothing to check against DstackApp {app}"
    compose = _hex32(_bytes32(boot.compose_hash, "compose hash"))
    reader.pin()
    block = reader.block
    if not _require_code(reader, run, "DstackApp", app):
        return ""

    if reader.compose_hash_allowed(app, compose):
        run.passed.append(f"compose hash {_short(compose)} in allowedComposeHashes of DstackApp {_short(app)}")
    else:
        run.failures.append(
            f"compose hash {compose} is not in allowedComposeHashes of DstackApp {app} at block {block}"
        )

    any_device = _optional(run, lambda: reader.allow_any_device(app), "allowAnyDevice() of DstackApp")
    if any_device:
        run.passed.append("any device allowed")
    elif boot.device_id is not None and any_device is False:
        device = _hex32(_bytes32(boot.device_id, "device id"))
        if reader.device_allowed(app, device):
            run.passed.append(f"device id {_short(device)} in allowedDeviceIds")
        else:
            run.failures.append(
                f"device id {device} is not in allowedDeviceIds of DstackApp {app} at block {block}"
                " (allowAnyDevice is false)"
            )
    elif any_device is False:
        run.notes.append("the app restricts devices (allowAnyDevice is false) but the device id is unknown")

    os_known = boot.os_image_hash is not None
    if kms is not None and _require_code(reader, run, "DstackKms", kms):
        if reader.app_registered(kms, app):
            run.passed.append(f"registered in DstackKms {_short(kms)}")
        else:
            run.failures.append(f"DstackApp {app} is not in registeredApps of DstackKms {kms} at block {block}")
        if os_known:
            assert boot.os_image_hash is not None
            image = _hex32(_bytes32(boot.os_image_hash, "os image hash"))
            if reader.os_image_allowed(kms, image):
                run.passed.append(f"OS image {_short(image)} in allowedOsImages")
            else:
                run.failures.append(
                    f"OS image hash {image} is not in allowedOsImages of DstackKms {kms} at block {block}"
                )
        if entity == "gateway":
            expected = reader.gateway_app_id(kms)
            if _same_id(expected, app):
                run.passed.append("gatewayAppId() of the KMS")
            else:
                run.failures.append(
                    f"gateway app id {app} is not the gatewayAppId() {_clean(expected, 80)!r} of DstackKms {kms}"
                    f" at block {block}"
                )

    if boot.device_id is None and not any_device:
        run.notes.append("isAppAllowed not asked: the device id is unknown")
        return ""
    # The KMS's isAppAllowed is the whole gate (registration, OS image, then the app's own isAppAllowed);
    # without the OS image hash it would refuse for that reason alone, so ask the app's instead.
    kind, contract = ("DstackKms", kms) if kms is not None and os_known else ("DstackApp", app)
    answer = reader.is_app_allowed(contract, boot, kind=kind)
    if answer is None:
        run.notes.append(f"{kind} {contract} has no isAppAllowed (call reverted without a reason or was empty)")
    elif answer[0]:
        run.passed.append(f"isAppAllowed of {kind} {_short(contract)}")
    else:
        run.failures.append(f"isAppAllowed of {kind} {contract} refused at block {block}: {answer[1] or 'no reason'}")
    return ""


def _kms_gates(
    reader: OnchainReader,
    run: _Run,
    details: dict[str, Any],
    kms: str,
    os_image_hash: str | None,
    mr_aggregated: str | None,
    device_id: str | None,
    tcb_status: str | None,
    instance_id: str | None,
    mr_system: str | None,
    advisory_ids: Sequence[str],
) -> str:
    if os_image_hash is None and mr_aggregated is None and device_id is None:
        return f"no OS image hash, mr_aggregated or device id for the KMS: nothing to check against DstackKms {kms}"
    # Validate inputs before any request.
    image = _hex32(_bytes32(os_image_hash, "os image hash")) if os_image_hash is not None else None
    mr = _hex32(_bytes32(mr_aggregated, "mr_aggregated")) if mr_aggregated is not None else None
    device = _hex32(_bytes32(device_id, "device id")) if device_id is not None else None
    block = reader.pin()
    if not _require_code(reader, run, "DstackKms", kms):
        return ""
    details["kms_info"] = reader.kms_info(kms).summary()
    gates = (
        (image, "OS image hash", "allowedOsImages", reader.os_image_allowed),
        (mr, "mr_aggregated", "kmsAllowedAggregatedMrs", reader.kms_aggregated_mr_allowed),
        (device, "device id", "kmsAllowedDeviceIds", reader.kms_device_allowed),
    )
    for value, what, function, read in gates:
        if value is None:
            continue
        if read(kms, value):
            run.passed.append(f"{what} {_short(value)} in {function}")
        else:
            run.failures.append(f"{what} {value} is not in {function} of DstackKms {kms} at block {block}")
    if image is None or mr is None or device is None or tcb_status is None:
        run.notes.append("isKmsAllowed not asked: needs OS image hash, mr_aggregated, device id and TCB status")
        return ""
    boot = BootInfo(
        app_id=_ZERO_ADDRESS,
        instance_id=instance_id,
        device_id=device,
        mr_aggregated=mr,
        mr_system=mr_system,
        os_image_hash=image,
        tcb_status=tcb_status,
        advisory_ids=tuple(advisory_ids),
    )
    answer = reader.is_kms_allowed(kms, boot)
    if answer is None:
        run.notes.append(f"DstackKms {kms} has no isKmsAllowed (call reverted without a reason or was empty)")
    elif answer[0]:
        run.passed.append("isKmsAllowed")
    else:
        run.failures.append(f"isKmsAllowed of DstackKms {kms} refused at block {block}: {answer[1] or 'no reason'}")
    return ""


def _optional(run: _Run, read: Callable[[], bool], what: str) -> bool | None:
    """A read the contract may lack (older versions): None, with a note, when it is absent."""
    try:
        return read()
    except EmptyResult:
        run.notes.append(f"{what} is absent (empty answer)")
    except CallReverted as exc:
        if exc.reason:
            raise
        run.notes.append(f"{what} is absent (reverted without a reason)")
    return None
