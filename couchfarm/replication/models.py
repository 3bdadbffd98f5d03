"""A ``_replicator`` document as CouchDB 3.x accepts it, checked before it reaches a server.

CouchDB is a poor validator of these documents: it ignores unknown fields (a misspelled
``continuous`` quietly runs a one-shot job), answers bad types with raw Erlang terms, accepts
documents that can only crash later (``auth.basic`` without a password, a garbage ``since_seq``), and
treats a document that carries ``_replication_state`` as finished forever (recorded in 07d). This
model rejects all of those with a message naming the document and the field, and insists on an
explicit ``continuous`` so nothing relies on the silent one-shot default.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from couchfarm.redact import MASK, redact, redact_url
from couchfarm.replication.errors import SERVER_WRITTEN, ReplicationDocError, dotted
from couchfarm.replication.errors import describe as describe_error
from couchfarm.replication.mango import selector_problem

MARKER = "couchfarm"  #: top-level field that marks a document couchfarm created (CouchDB ignores it)
_FILTER = re.compile(r"^[^/\s]+/[^/\s]+$")
_SEQ = re.compile(r"^\d+(-\S+)?$")
STRICT = ConfigDict(extra="forbid", populate_by_name=True)


def check_url(url: str) -> str:
    """An http(s) URL with a host and a database path; the reason names CouchDB's behaviour."""
    parts = urlsplit(url)
    shown = redact_url(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(
            f"{shown!r} is not an http(s) URL: CouchDB 3 replicates between URLs only and refuses "
            "local database names and other schemes (local_endpoints_not_supported)"
        )
    if not parts.hostname:
        raise ValueError(f"{shown!r} has no host")
    if not parts.path.strip("/"):
        raise ValueError(f"{shown!r} names no database: the URL path must end with the database name")
    if parts.query or parts.fragment:
        raise ValueError(f"{shown!r} must not carry a query string or a fragment")
    return url


class BasicAuth(BaseModel):
    """``auth.basic``: without a password CouchDB accepts the document, then crashes unauthorized."""

    model_config = STRICT
    username: StrictStr = Field(min_length=1)
    password: StrictStr = Field(min_length=1)


class EndpointAuth(BaseModel):
    model_config = STRICT
    basic: BasicAuth


class Endpoint(BaseModel):
    """The 3.x object form ``{url, headers, auth}`` of ``source`` / ``target``."""

    model_config = STRICT
    url: StrictStr
    headers: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    auth: EndpointAuth | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value)

    @model_validator(mode="after")
    def _one_credential(self) -> Endpoint:
        if self.auth is not None and urlsplit(self.url).password is not None:
            raise ValueError("credentials are both in the URL and in auth: give them in one place")
        return self


def _endpoint_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "<url>"
    if isinstance(value, dict):
        return "<object>"
    return None


EndpointValue = Annotated[
    Annotated[StrictStr, Tag("<url>")] | Annotated[Endpoint, Tag("<object>")],
    Discriminator(
        _endpoint_kind,
        custom_error_type="endpoint_type",
        custom_error_message="must be a URL string or an object {url, headers, auth}",
    ),
]


class UserCtx(BaseModel):
    model_config = STRICT
    name: StrictStr | None = None
    roles: list[StrictStr] = Field(default_factory=list)


class Marker(BaseModel):
    """What couchfarm writes into its own documents, so ``--prune`` never touches anyone else's:
    the topology that declared it, and for the documents ``watch`` and ``sync`` write, why."""

    model_config = STRICT
    topology: StrictStr | None = Field(None, min_length=1)
    relay_for: StrictStr | None = Field(None, min_length=1)  #: the direct link a relay leg stands in for
    sync: StrictBool | None = None  #: written by ``replication sync``

    @model_validator(mode="after")
    def _says_whose(self) -> Marker:
        if self.topology is None and not self.sync:
            raise ValueError("names the topology that declared the document (or sync: true)")
        return self


def _ms(low: int, high: int) -> Any:
    return Field(None, ge=low, le=high)


class ReplicationOptions(BaseModel):
    """The fields a topology link may set; the same rules as in a document."""

    model_config = STRICT

    create_target: StrictBool | None = None
    create_target_params: dict[StrictStr, Any] | None = None
    doc_ids: list[StrictStr] | None = Field(None, min_length=1)
    filter: StrictStr | None = None
    query_params: dict[StrictStr, Any] | None = None
    selector: dict[StrictStr, Any] | None = Field(None, min_length=1)
    since_seq: StrictInt | StrictStr | None = None
    checkpoint_interval: StrictInt | None = _ms(1_000, 86_400_000)  #: ms between checkpoints
    connection_timeout: StrictInt | None = _ms(1_000, 3_600_000)  #: ms per request
    retries_per_request: StrictInt | None = _ms(0, 100)
    http_connections: StrictInt | None = _ms(1, 1_000)
    worker_processes: StrictInt | None = _ms(1, 64)
    worker_batch_size: StrictInt | None = _ms(1, 100_000)
    use_checkpoints: StrictBool | None = None
    use_bulk_get: StrictBool | None = None
    winning_revs_only: StrictBool | None = None
    source_proxy: StrictStr | None = None
    target_proxy: StrictStr | None = None
    user_ctx: UserCtx | None = None

    @field_validator("create_target_params")
    @classmethod
    def _needs_create(cls, value: Any, info: ValidationInfo) -> Any:
        if info.data.get("create_target") is not True:
            raise ValueError("only applies with create_target: true")
        return value

    @field_validator("filter")
    @classmethod
    def _filter_form(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("doc_ids") is not None:
            raise ValueError("doc_ids, filter and selector are mutually exclusive (CouchDB refuses both)")
        if value != "_view" and not _FILTER.match(value):
            raise ValueError(f"{value!r} must name a filter function as 'designdoc/name' (or be '_view')")
        return value

    @field_validator("query_params")
    @classmethod
    def _params_need_filter(cls, value: Any, info: ValidationInfo) -> Any:
        if info.data.get("filter") is None:
            raise ValueError("only applies with a filter (CouchDB ignores it otherwise)")
        return value

    @field_validator("selector")
    @classmethod
    def _selector_alone(cls, value: Any, info: ValidationInfo) -> Any:
        other = [k for k in ("doc_ids", "filter") if info.data.get(k) is not None]
        if other:
            raise ValueError(f"doc_ids, filter and selector are mutually exclusive (also set: {other[0]})")
        problem = selector_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("since_seq")
    @classmethod
    def _seq_shape(cls, value: int | str) -> int | str:
        if (isinstance(value, int) and value < 0) or (isinstance(value, str) and not _SEQ.match(value)):
            raise ValueError(
                f"{value!r} is not an update sequence (a number or 'N-opaque'): CouchDB accepts the "
                "document and the job then crashes with changes_req_failed 400"
            )
        return value

    @field_validator("source_proxy", "target_proxy")
    @classmethod
    def _proxy_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https", "socks5") or not urlsplit(value).hostname:
            raise ValueError(f"{redact_url(value)!r} is not an http(s) or socks5 proxy URL")
        return value

    @model_validator(mode="after")
    def _view_needs_name(self) -> ReplicationOptions:
        if self.filter == "_view" and "view" not in (self.query_params or {}):
            raise ValueError("filter '_view' needs query_params.view naming 'designdoc/view'")
        return self


class ReplicationDoc(ReplicationOptions):
    """One ``_replicator`` document."""

    doc_id: StrictStr | None = Field(None, alias="_id")
    rev: StrictStr | None = Field(None, alias="_rev")
    source: EndpointValue
    target: EndpointValue
    continuous: StrictBool
    couchfarm: Marker | None = None

    @field_validator("doc_id")
    @classmethod
    def _legal_id(cls, value: str) -> str:
        if not value or value.startswith("_"):
            raise ValueError(f"{value!r} is not a legal document id (empty, or starts with '_')")
        return value

    @field_validator("source", "target")
    @classmethod
    def _string_url(cls, value: str | Endpoint) -> str | Endpoint:
        return check_url(value) if isinstance(value, str) else value


OPTION_FIELDS = tuple(ReplicationOptions.model_fields)
DOC_FIELDS = ("_id", "_rev", "source", "target", "continuous", MARKER, *OPTION_FIELDS)


def parse_doc(body: dict[str, Any], doc_id: str | None = None) -> ReplicationDoc:
    """Validate one document body; ``ReplicationDocError`` names the document and every bad field."""
    name = doc_id or str(body.get("_id", "<no _id>"))
    try:
        return ReplicationDoc.model_validate(body)
    except ValidationError as exc:
        problems = [
            f"{dotted(e['loc']) or '(document)'}: {describe_error(e, DOC_FIELDS)}" for e in exc.errors()
        ]
        first = dotted(exc.errors()[0]["loc"])
        text = "; ".join(problems)
        raise ReplicationDocError(redact(f"_replicator/{name}: {text}"), field=first, source=name) from None


def strip_server_fields(doc: dict[str, Any]) -> dict[str, Any]:
    """The document as its author wrote it: no ``_id``/``_rev`` and nothing the server added."""
    drop = {"_id", "_rev", "_revisions", "_conflicts", "_deleted_conflicts", *SERVER_WRITTEN}
    return {k: v for k, v in doc.items() if k not in drop and not k.startswith("_replication_")}


def mask_endpoint(value: Any) -> Any:
    """An endpoint with every credential masked, whether or not its secret was registered."""
    if isinstance(value, str):
        return redact_url(value)
    if not isinstance(value, dict):
        return value
    out = dict(value)
    if isinstance(out.get("url"), str):
        out["url"] = redact_url(out["url"])
    if isinstance(out.get("headers"), dict):
        out["headers"] = {
            k: (MASK if k.lower() in ("authorization", "cookie") else v) for k, v in out["headers"].items()
        }
    basic = out.get("auth", {}).get("basic") if isinstance(out.get("auth"), dict) else None
    if isinstance(basic, dict) and "password" in basic:
        out["auth"] = {**out["auth"], "basic": {**basic, "password": MASK}}
    return out


def mask_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """A document safe to print: endpoints and proxies masked."""
    out = dict(doc)
    for key in ("source", "target"):
        if key in out:
            out[key] = mask_endpoint(out[key])
    for key in ("source_proxy", "target_proxy"):
        if isinstance(out.get(key), str):
            out[key] = redact_url(out[key])
    return out


def endpoint_url(value: Any) -> str:
    """The URL of an endpoint in either form ('' when the value is not an endpoint)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("url"), str):
        return str(value["url"])
    return ""
