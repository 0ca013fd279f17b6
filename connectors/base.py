"""What every connector is: an async ``fetch`` from request parameters to an evidence dict.

A connector's ``check`` refuses (``InvalidRequest``) a request it could not pass on as it is; the
provider calls it with its other request checks, before any release policy (a consent's use, a
preview) is involved, and ``fetch`` checks again. A connector raises only :mod:`exchange.errors`
types: ``NotFound`` when the registry has no such record, ``ServiceFailed`` when it answers with
an error or garbage, ``ServiceUnavailable`` when it cannot be reached and ``ServiceTimeout`` when
it does not answer in time. Nothing a connector raises may hang a request: every call is bounded
by the connector's timeout.

A connector's ``probe`` is the console's "test the connection": a check that reads no record and
changes nothing (the SQL query planned against the database, a HEAD on the backend's base
address). It says what it found in plain words, or raises one of the errors above.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from exchange.errors import InvalidRequest

Evidence = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Document:
    """A document a registry serves whole (a PDF scan), opened but not read: too large to hold,
    it is passed on chunk by chunk. ``length`` and ``digest`` (base64url SHA-256) are what the
    registry declared before sending it; whoever reads ``chunks`` checks them, and ``close``
    releases the connection whether or not it was read to its end."""

    media_type: str
    length: int
    digest: str
    chunks: AsyncIterator[bytes]
    close: Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ConnectorRequest:
    """The parts of a verified, authorised request that a connector may use."""

    service: str
    parameters: Mapping[str, str]
    method: str = "GET"
    path: str = ""
    body: bytes = b""
    content_type: str | None = None


class Connector(Protocol):
    def check(self, request: ConnectorRequest) -> dict[str, str]:
        """The declared parameters, fit for where this connector puts them; or InvalidRequest."""
        ...

    async def fetch(self, request: ConnectorRequest) -> Evidence: ...

    async def probe(self) -> str:
        """Reach the registry without reading a record; what was found, in plain words."""
        ...

    async def close(self) -> None: ...


def require_parameters(request: ConnectorRequest, names: tuple[str, ...]) -> dict[str, str]:
    """The declared parameters, all present; anything undeclared is refused, not ignored."""
    given = request.parameters
    missing = [name for name in names if not given.get(name)]
    if missing:
        raise InvalidRequest(f"missing query parameter: {', '.join(missing)}", detail=missing[0])
    if len(given) != len(names):  # every declared one is there, so the rest are unknown
        unknown = sorted(set(given) - set(names))
        raise InvalidRequest(f"unknown query parameter: {', '.join(unknown)}", detail=unknown[0])
    return {name: given[name] for name in names}


class FieldMap:
    """How a flat registry row becomes evidence: ``fields`` maps dotted evidence paths to
    columns, split once for a connector that maps a row of every answer; without ``fields`` the
    row's own keys are used as they are. ``None`` values are left out, so optional elements of
    the schema simply do not appear."""

    __slots__ = ("_pairs",)

    def __init__(self, fields: Mapping[str, str] | None) -> None:
        self._pairs = None if fields is None else _split(fields)

    def map(self, row: Mapping[str, Any]) -> Evidence:
        pairs = self._pairs if self._pairs is not None else _split({key: key for key in row})
        evidence: Evidence = {}
        for column, parents, leaf in pairs:
            value = row.get(column)
            if value is None:
                continue
            target = evidence
            for part in parents:
                target = target.setdefault(part, {})
            target[leaf] = value
        return evidence


def _split(fields: Mapping[str, str]) -> tuple[tuple[str, tuple[str, ...], str], ...]:
    pairs = []
    for path, column in fields.items():
        *parents, leaf = path.split(".")
        pairs.append((column, tuple(parents), leaf))
    return tuple(pairs)
