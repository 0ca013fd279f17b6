"""HTTP document connector: open a large document (a PDF scan) at an agency's REST backend.

The address is built and checked as :class:`~connectors.http.HttpConnector` builds it. The
backend must answer 200 with the declared media type, uncompressed, and say before the body
what it is sending: its length (``Content-Length``) and its SHA-256 (RFC 9530 ``Repr-Digest``
or ``Content-Digest``, ``sha-256=:BASE64:``). The gateway signs these promises before the first
byte passes and checks them as the bytes pass (:mod:`exchange.gateway.parts`); a backend that
cannot promise them is refused, since a digest known only at the end cannot be signed first.

The connection is bounded by the connect timeout and by the read timeout between any two
reads, not in total: a 100 MB scan may take longer than any one registry answer should.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator, Mapping

import aiohttp
import yarl

from connectors.base import ConnectorRequest, Document, Evidence
from connectors.http import HttpConnector
from exchange.errors import InternalError, NotFound, ServiceFailed
from exchange.faults import mapped

CHUNK = 65536
DIGEST_HEADERS = ("Repr-Digest", "Content-Digest")


class HttpDocumentConnector(HttpConnector):
    def __init__(
        self,
        *,
        url: str,
        parameters: tuple[str, ...],
        media_type: str,
        max_bytes: int,
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
    ) -> None:
        super().__init__(
            url=url,
            parameters=parameters,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_bytes=max_bytes,
        )
        self.media_type = media_type
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )

    async def fetch(self, request: ConnectorRequest) -> Evidence:
        raise InternalError("a document service is opened, not fetched")

    async def open(self, request: ConnectorRequest) -> Document:
        """The document the request names, its promises checked, its body not yet read."""
        values = self.check(request)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, auto_decompress=False)
        with mapped("the registry"):
            response = await self._session.get(
                yarl.URL(self._target(values), encoded=True),
                headers={"Accept": self.media_type, "Accept-Encoding": "identity"},
                allow_redirects=False,
            )
        try:
            length, digest = self._promised(response)
        except BaseException:
            response.release()
            raise

        async def close() -> None:
            response.release()

        return Document(self.media_type, length, digest, _chunks(response), close)

    def _promised(self, response: aiohttp.ClientResponse) -> tuple[int, str]:
        if response.status == 404:
            raise NotFound("the registry holds no record for this request")
        if response.status != 200:
            raise ServiceFailed(f"registry answered HTTP {response.status}")
        if response.content_type != self.media_type:
            raise ServiceFailed(f"registry sent {response.content_type!r}, not {self.media_type}")
        if response.headers.get("Content-Encoding", "identity") != "identity":
            raise ServiceFailed("registry sent the document compressed")
        length = response.content_length
        if length is None:
            raise ServiceFailed("registry did not declare the document's length")
        if length > self._max_bytes:
            raise ServiceFailed(f"registry's document is larger than {self._max_bytes} bytes")
        digest = sha256_of(response.headers)
        if digest is None:
            raise ServiceFailed("registry did not declare the document's SHA-256 (Repr-Digest)")
        return length, digest


def sha256_of(headers: Mapping[str, str]) -> str | None:
    """The SHA-256 a response declares (RFC 9530), base64url; None when it declares none."""
    for name in DIGEST_HEADERS:
        for item in headers.get(name, "").split(","):
            algorithm, _, value = item.strip().partition("=")
            if algorithm.lower() != "sha-256":
                continue
            if not (len(value) > 2 and value.startswith(":") and value.endswith(":")):
                raise ServiceFailed(f"registry's {name} is not sha-256=:BASE64:")
            try:
                raw = base64.b64decode(value[1:-1], validate=True)
            except binascii.Error as exc:
                raise ServiceFailed(f"registry's {name} is not valid base64") from exc
            if len(raw) != 32:
                raise ServiceFailed(f"registry's {name} is not a SHA-256")
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
    return None


async def _chunks(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    with mapped("the registry"):
        async for chunk in response.content.iter_chunked(CHUNK):
            yield chunk
