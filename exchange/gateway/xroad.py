"""X-Road REST (PR-REST) on the wire: the service path, the headers, and what is dropped.

The path is read *raw* (``scope["raw_path"]``): identifier segments must be valid as they stand,
so a percent-encoded look-alike is refused rather than decoded, and the REST path after the
service code is passed on and signed byte for byte.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote_plus

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from exchange.errors import InvalidIdentifier, InvalidRequest, NotAcceptable
from exchange.http import install_error_handlers
from exchange.identifiers import ClientId, MemberId, ServiceId, SubsystemId, parse_client
from exchange.paths import segment_problem

PREFIX = "/r1/"
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
METASERVICES = frozenset({"listMethods", "allowedMethods", "getOpenAPI"})
MAX_CONSENT = 16 * 1024
# Paths read before, kept by their exact text: a gateway is asked for the same few services,
# and reading one again gives the same immutable value (clients are kept the same way, by
# exchange.identifiers). Bounded; a refused one is not kept (it is refused again every time).
KEPT_READINGS = 1024
KEPT_PATH_BYTES = 1024  # longer paths (a REST path may be long) are read every time


@dataclass(frozen=True, slots=True)
class _Rule:
    """What a header value must be, and the words that tell a caller who broke it."""

    pattern: re.Pattern[str]
    max_len: int
    says: str


# Header values are read as Latin-1 by the server; non-ASCII text must arrive percent-encoded.
_MESSAGE_ID = _Rule(re.compile(r"[\x21-\x7e]+"), 255, "printable ASCII without spaces, at most 255")
_PURPOSE = _Rule(
    re.compile(r"[A-Za-z0-9._:\-]+"), 100, "letters, digits and ._:- only, at most 100"
)
_USER = _Rule(re.compile(r"[\x20-\x7e]+"), 255, "printable ASCII, at most 255 characters")
_TEXT = _Rule(
    re.compile(r"[\x20-\x7e]+"),
    1000,
    "printable ASCII, at most 1000 characters; percent-encode other text as UTF-8",
)
_JWS = _Rule(  # a JWS or an id
    re.compile(r"[\x21-\x7e]+"),
    MAX_CONSENT,
    f"printable ASCII without spaces, at most {MAX_CONSENT}",
)
_KEY = _Rule(  # the draft's sf-string value, quotes included, e.g. "8e03978e-40d5"
    re.compile(r"[\x20-\x7e]+"), 255, "printable ASCII, at most 255 characters"
)
_CANONICAL = {
    "idempotency-key": "Idempotency-Key",
    "x-road-id": "X-Road-Id",
    "x-road-userid": "X-Road-UserId",
    "x-road-issue": "X-Road-Issue",
    "x-exchange-purpose": "X-Exchange-Purpose",
    "x-exchange-consent": "X-Exchange-Consent",
    "x-exchange-identity": "X-Exchange-Identity",
}


def exchanges_first(
    app: Starlette, handle: Callable[[Request], Awaitable[ASGIApp]], *, side: str
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """An ASGI app that hands exchanges (``/r1/...``, X-Road's methods) straight to ``handle``
    and everything else to ``app``, whose errors are this ``side``'s X-Road errors.

    Starlette's routing and middleware cost about a tenth of a gateway's time per exchange;
    ``handle`` answers every outcome itself (refusals are signed and audited), so they add
    nothing there. Its answer is any ASGI app (:class:`exchange.gateway.outcome.Released`:
    the two messages of an answer, its head built once).
    """
    install_error_handlers(app, side=side)

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"].startswith(PREFIX)
            and scope["method"] in ALL_METHODS
        ):
            response = await handle(Request(scope, receive))
            await response(scope, receive, send)
        else:
            await app(scope, receive, send)

    return asgi


@dataclass(frozen=True, slots=True)
class Target:
    service: ServiceId
    rest_path: str  # raw, starts with "/" or is empty


def request_headers(scope: Scope) -> dict[str, str]:
    """A request's headers as the server handed them over, names lower-cased, values read as
    Latin-1 (as Starlette reads them); of a header given twice, the last value."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def parse_target(raw_path: bytes) -> Target:
    """The service asked for and the REST path after it, from the raw request path (refused
    with :class:`InvalidIdentifier` or :class:`InvalidRequest`)."""
    if len(raw_path) > KEPT_PATH_BYTES:  # read, not kept: the memory kept stays small
        return _target.__wrapped__(raw_path)
    return _target(raw_path)


@functools.lru_cache(maxsize=KEPT_READINGS)
def _target(raw_path: bytes) -> Target:
    try:
        path = raw_path.decode("ascii")
    except UnicodeDecodeError as exc:
        raise InvalidIdentifier("request path must be ASCII (percent-encoded)") from exc
    if not path.startswith(PREFIX):
        raise InvalidRequest(f"X-Road REST requests start with {PREFIX}", detail="path")
    parts = path[len(PREFIX) :].split("/", 5)
    if len(parts) < 5:
        raise InvalidIdentifier(
            "service identifier needs INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICE", detail="service"
        )
    instance, member_class, member_code, subsystem, code = parts[:5]
    service = ServiceId(SubsystemId(MemberId(instance, member_class, member_code), subsystem), code)
    rest = "/" + parts[5] if len(parts) == 6 else ""
    for segment in rest.split("/")[1:]:
        # Access rules match paths; a path that a backend (or a proxy before it that decodes
        # once more) would read differently is refused. Empty segments (a trailing /) are fine.
        problem = segment_problem(segment) if segment else None
        if problem is not None:
            raise InvalidRequest(f"a request path segment {problem}", detail="path")
    return Target(service=service, rest_path=rest)


@dataclass(frozen=True, slots=True)
class XRoadHeaders:
    client: ClientId
    message_id: str
    user_id: str | None
    issue: str | None
    purpose: str | None
    consent: str | None
    identity: str | None
    idempotency_key: str | None = None


def _optional(headers: Mapping[str, str], name: str, rule: _Rule) -> str | None:
    value = headers.get(name)
    if value is None:
        return None
    if len(value) > rule.max_len or rule.pattern.fullmatch(value) is None:
        shown = _CANONICAL.get(name, name)
        raise InvalidRequest(f"{shown} header is malformed: {rule.says}", detail=shown)
    return value


def read_headers(headers: Mapping[str, str], *, generate_id: bool) -> XRoadHeaders:
    """The X-Road and exchange headers of a request (``headers`` keys lower-case)."""
    raw_client = headers.get("x-road-client")
    if not raw_client:
        raise InvalidRequest("X-Road-Client header is required", detail="X-Road-Client")
    client = parse_client(raw_client)  # kept by its exact text (exchange.identifiers)
    message_id = _optional(headers, "x-road-id", _MESSAGE_ID)
    if message_id is None:
        if not generate_id:
            raise InvalidRequest("X-Road-Id header is required", detail="X-Road-Id")
        message_id = str(uuid.uuid4())
    return XRoadHeaders(
        client=client,
        message_id=message_id,
        user_id=_optional(headers, "x-road-userid", _USER),
        issue=_optional(headers, "x-road-issue", _TEXT),
        purpose=_optional(headers, "x-exchange-purpose", _PURPOSE),
        consent=_optional(headers, "x-exchange-consent", _JWS),
        identity=_optional(headers, "x-exchange-identity", _JWS),
        idempotency_key=_optional(headers, "idempotency-key", _KEY),
    )


def negotiate(accept: str | None) -> str:
    """``"json"`` or ``"xml"``, by the caller's ``Accept`` (JSON when it does not say)."""
    if not accept:
        return "json"
    best: tuple[float, int, str] | None = None
    for index, item in enumerate(accept.split(",")):
        media, _, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        kind = _MEDIA.get(media.strip().lower())
        if kind is None or quality <= 0:
            continue
        candidate = (quality, -index, kind)
        if best is None or candidate > best:
            best = candidate
    if best is None:
        raise NotAcceptable("evidence is available as application/json or application/xml")
    return best[2]


_MEDIA = {
    "application/json": "json",
    "application/*": "json",
    "*/*": "json",
    "application/xml": "xml",
    "text/xml": "xml",
}
MEDIA_TYPES = {"json": "application/json", "xml": "application/xml"}


def query_parameters(query: str) -> dict[str, str]:
    """The query's parameters, read as ``urllib.parse.parse_qsl(query, keep_blank_values=True)``
    reads them (fields split at ``&``, ``+`` a space, percent-decoded as UTF-8 with
    replacement), each given at most once. Fields with nothing to decode are taken as they
    stand: most queries are a parameter or two of plain characters."""
    values: dict[str, str] = {}
    for field in query.split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        if "%" in field or "+" in field:
            name, value = unquote_plus(name), unquote_plus(value)
        if name in values:
            raise InvalidRequest(f"query parameter {name!r} is given more than once", detail=name)
        values[name] = value
    return values
