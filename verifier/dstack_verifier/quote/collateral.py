"""DCAP collateral: the dcap-qvl QuoteCollateralV3 JSON shape and the typed TCB Info / QE Identity inside it.

The `tcb_info` and `qe_identity` strings are kept verbatim: Intel's signatures cover those exact bytes.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal, NotRequired, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from typing_extensions import TypedDict  # pydantic needs this TypedDict before Python 3.12

from ..errors import InputError
from ..jsontext import load_json

TcbStatusName = Literal[
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "Revoked",
]
TCB_STATUSES: tuple[str, ...] = get_args(TcbStatusName)  # Intel's seven classic statuses, in severity order

COLLATERAL_KEYS = (
    "pck_crl_issuer_chain",
    "root_ca_crl",
    "pck_crl",
    "tcb_info_issuer_chain",
    "tcb_info",
    "tcb_info_signature",
    "qe_identity_issuer_chain",
    "qe_identity",
    "qe_identity_signature",
)
HEX_KEYS = ("root_ca_crl", "pck_crl", "tcb_info_signature", "qe_identity_signature")


def parse_time(value: str) -> int:
    """RFC 3339 → unix seconds; dates before 1970 are refused as dcap-qvl 0.7.0 does."""
    ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if ts.tzinfo is None:
        raise ValueError(f"date {value!r} has no time zone")
    seconds = int(ts.timestamp())
    if seconds < 0:
        raise ValueError(f"date {value!r} is before 1970")
    return seconds


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Svn(TypedDict):
    """One TCB component: a plain dict (`c["svn"]`, `c.get("category")`), as a TCB Info holds 32 per level."""

    svn: Annotated[int, Field(ge=0, le=255)]
    category: NotRequired[str | None]
    type: NotRequired[str | None]


class PlatformTcb(_Model):
    sgxtcbcomponents: list[Svn]
    pcesvn: int = Field(ge=0, le=0xFFFF)
    tdxtcbcomponents: list[Svn] | None = None


class PlatformTcbLevel(_Model):
    tcb: PlatformTcb
    tcbDate: str
    tcbStatus: TcbStatusName
    advisoryIDs: list[str] = Field(default_factory=list)


class IsvTcb(_Model):
    isvsvn: int = Field(ge=0, le=0xFFFF)


class IsvTcbLevel(_Model):
    tcb: IsvTcb
    tcbDate: str
    tcbStatus: TcbStatusName
    advisoryIDs: list[str] = Field(default_factory=list)


class TdxModule(_Model):
    mrsigner: str
    attributes: str
    attributesMask: str


class TdxModuleIdentity(TdxModule):
    id: str
    tcbLevels: list[IsvTcbLevel]


class _Dated(_Model):
    issueDate: str
    nextUpdate: str

    @field_validator("issueDate", "nextUpdate")
    @classmethod
    def _valid_date(cls, v: str) -> str:
        parse_time(v)
        return v

    @property
    def issue_ts(self) -> int:
        return parse_time(self.issueDate)

    @property
    def next_update_ts(self) -> int:
        return parse_time(self.nextUpdate)


class TcbInfo(_Dated):
    id: str = "SGX"
    version: int
    fmspc: str
    pceId: str
    tcbType: int
    tcbEvaluationDataNumber: int
    tcbLevels: list[PlatformTcbLevel]
    tdxModule: TdxModule | None = None
    tdxModuleIdentities: list[TdxModuleIdentity] | None = None


class _SvnModel(_Model):
    svn: int = Field(ge=0, le=255)
    category: str | None = None
    type: str | None = None


class _PlatformTcbModel(PlatformTcb):
    sgxtcbcomponents: list[_SvnModel]  # type: ignore[assignment]
    tdxtcbcomponents: list[_SvnModel] | None = None  # type: ignore[assignment]


class _PlatformTcbLevelModel(PlatformTcbLevel):
    tcb: _PlatformTcbModel


class _TcbInfoModel(TcbInfo):
    """TcbInfo with its components as models: it accepts exactly what TcbInfo accepts, and is used only to word
    a rejection as it has always been worded (a component that is not an object is "not a valid dictionary or
    instance of Svn")."""

    tcbLevels: list[_PlatformTcbLevelModel]  # type: ignore[assignment]


class QeIdentity(_Dated):
    id: str
    version: int
    tcbEvaluationDataNumber: int
    miscselect: str
    miscselectMask: str
    attributes: str
    attributesMask: str
    mrsigner: str
    isvprodid: int
    tcbLevels: list[IsvTcbLevel]


class Collateral(BaseModel):
    """The QuoteCollateralV3 JSON shape (dcap-qvl): PEM chains, hex DER CRLs, verbatim JSON texts, hex signatures."""

    model_config = ConfigDict(frozen=True)

    pck_crl_issuer_chain: str
    root_ca_crl: bytes
    pck_crl: bytes
    tcb_info_issuer_chain: str
    tcb_info: str
    tcb_info_signature: bytes
    qe_identity_issuer_chain: str
    qe_identity: str
    qe_identity_signature: bytes
    pck_certificate_chain: str | None = None

    @classmethod
    def from_dict(cls, data: Any, source: str = "collateral") -> Collateral:
        if not isinstance(data, dict):
            raise InputError("collateral must be a JSON object", source=source)
        values: dict[str, Any] = {}
        for key in COLLATERAL_KEYS:
            if key not in data:
                raise InputError("missing key", source=source, field=key)
            value = data[key]
            if not isinstance(value, str):
                raise InputError(f"expected a string, got {type(value).__name__}", source=source, field=key)
            if key in HEX_KEYS:
                try:
                    value = bytes.fromhex(value)
                except ValueError as exc:
                    raise InputError(f"not hex: {exc}", source=source, field=key) from None
            values[key] = value
        chain = data.get("pck_certificate_chain")
        if chain is not None and not isinstance(chain, str):
            raise InputError("expected a PEM string", source=source, field="pck_certificate_chain")
        values["pck_certificate_chain"] = chain
        return cls(**values)

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "collateral") -> Collateral:
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError("JSON is not UTF-8", source=source, offset=exc.start) from None
        return cls.from_dict(load_json(text, source), source)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in COLLATERAL_KEYS:
            value = getattr(self, key)
            out[key] = value.hex() if isinstance(value, bytes) else value
        if self.pck_certificate_chain is not None:
            out["pck_certificate_chain"] = self.pck_certificate_chain
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def parsed_tcb_info(self) -> TcbInfo:
        return _parse_json_model(TcbInfo, self.tcb_info, "tcb_info", _TcbInfoModel)

    def parsed_qe_identity(self) -> QeIdentity:
        return _parse_json_model(QeIdentity, self.qe_identity, "qe_identity")


class CollateralFormatError(ValueError):
    pass


def _parse_json_model(model: type[_Model], text: str, name: str, wording: type[_Model] | None = None) -> Any:
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        errors = exc.errors()
    if wording is not None:
        try:
            wording.model_validate_json(text)
        except ValidationError as exc:
            errors = exc.errors()
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"])
    raise CollateralFormatError(f"{name}: {where}: {first['msg']}")
