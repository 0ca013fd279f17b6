"""HTTP connector: forward a verified request to an agency's existing REST backend.

The backend URL is a template whose ``{name}`` placeholders take the declared parameters, each
percent-encoded as one path segment (a value can never add a segment or a query). A value for a
placeholder that any reader on the way could take for another path is refused before anything is
sent (:func:`exchange.paths.segment_problem`: ``.`` and ``..``, slashes and backslashes, raw or
percent-encoded at any depth, control characters); the other parameters go to the query,
encoded. Connect and read are bounded separately, the reply is capped in size, redirects are not
followed, and the reply must be a JSON object or an XML document (parsed with entities, DTDs and
network off).
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import yarl
from lxml import etree

from connectors.base import ConnectorRequest, Evidence, FieldMap, require_parameters
from exchange.errors import InvalidRequest, InvalidXml, NotFound, ServiceFailed
from exchange.evidence.xml import parse_untrusted
from exchange.faults import mapped
from exchange.paths import segment_problem

DEFAULT_MAX_BYTES = 1024 * 1024


class HttpConnector:
    def __init__(
        self,
        *,
        url: str,
        parameters: tuple[str, ...],
        fields: Mapping[str, str] | None = None,
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        placeholders = {name for _, name, _, _ in string.Formatter().parse(url) if name}
        unknown = placeholders - set(parameters)
        if unknown:
            raise ValueError(f"URL template uses undeclared parameters {sorted(unknown)}")
        self._url = url
        self._in_path = placeholders
        self._parameters = parameters
        self._field_map = FieldMap(fields)  # split once
        self._timeout = aiohttp.ClientTimeout(
            total=connect_timeout + read_timeout,
            sock_connect=connect_timeout,
            sock_read=read_timeout,
        )
        self._max_bytes = max_bytes
        self._session: aiohttp.ClientSession | None = None

    def check(self, request: ConnectorRequest) -> dict[str, str]:
        values = require_parameters(request, self._parameters)
        for name in sorted(self._in_path):
            problem = segment_problem(values[name])
            if problem is not None:  # the value is never quoted back: it may be a person's code
                raise InvalidRequest(
                    f"parameter {name!r} fills one path segment of the registry's address, and "
                    f"this value {problem} (perhaps percent-encoded)",
                    detail=name,
                )
        return values

    def _target(self, values: dict[str, str]) -> str:
        url = self._url.format(
            **{k: quote(v, safe="") for k, v in values.items() if k in self._in_path}
        )
        rest = {k: v for k, v in values.items() if k not in self._in_path}
        return f"{url}{'&' if '?' in url else '?'}{urlencode(rest)}" if rest else url

    async def fetch(self, request: ConnectorRequest) -> Evidence:
        values = self.check(request)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, auto_decompress=True)
        with mapped("the registry"):
            async with self._session.request(
                request.method,
                yarl.URL(self._target(values), encoded=True),
                data=request.body or None,
                headers={"Accept": "application/json, application/xml;q=0.9"},
                allow_redirects=False,
            ) as response:
                if response.status == 404:
                    raise NotFound("the registry holds no record for this request")
                if response.status != 200:
                    raise ServiceFailed(f"registry answered HTTP {response.status}")
                body = await _read_capped(response, self._max_bytes)
                content_type = response.content_type
        try:
            return self._field_map.map(_decode(body, content_type, self._max_bytes))
        except (RecursionError, TypeError, ValueError) as exc:  # hostile nesting, clashing keys
            raise ServiceFailed("registry reply has a shape that cannot be mapped") from exc

    async def probe(self) -> str:
        """A HEAD on the address before its first placeholder: the backend is reached and
        answers, with no parameter and so no record asked for."""
        base = self._url.split("{", 1)[0]
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, auto_decompress=True)
        with mapped("the backend"):
            async with self._session.head(base, allow_redirects=False) as response:
                status = response.status
        if status >= 500:
            raise ServiceFailed(f"the backend answered HTTP {status} at {base}")
        return f"the backend answered HTTP {status} at {base}"

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


async def _read_capped(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    if response.content_length is not None and response.content_length > max_bytes:
        raise ServiceFailed(f"registry reply is larger than {max_bytes} bytes")
    body = bytearray()
    async for chunk in response.content.iter_chunked(65536):
        body += chunk
        if len(body) > max_bytes:
            raise ServiceFailed(f"registry reply is larger than {max_bytes} bytes")
    return bytes(body)


def _decode(body: bytes, content_type: str, max_bytes: int) -> dict[str, Any]:
    if content_type.endswith("json"):
        try:
            value = json.loads(body)
        except ValueError as exc:
            raise ServiceFailed("registry reply is not valid JSON") from exc
        if not isinstance(value, dict):
            raise ServiceFailed("registry reply is not a JSON object")
        return _flatten(value)
    if content_type.endswith("xml"):
        try:
            root = parse_untrusted(body, max_bytes=max_bytes)
        except InvalidXml as exc:
            raise ServiceFailed("registry reply is not acceptable XML") from exc
        return _flatten(_element_to_dict(root))
    raise ServiceFailed(f"registry reply has unsupported content type {content_type!r}")


def _element_to_dict(element: Any) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for child in element:
        if not isinstance(child.tag, str):
            continue  # comments and processing instructions
        name = etree.QName(child).localname
        result[name] = _element_to_dict(child) if len(child) else (child.text or "")
    return result


def _flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects become dotted keys, so ``fields`` can name ``address.street``."""
    flat: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, Mapping):
            flat.update(_flatten(item, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = item
    return flat
