"""How a gateway reaches other parties: peer gateways over mutual TLS, and consent services.

A :class:`Transport` sends one request and returns one whole :class:`Reply`, its body capped;
asked with ``stream_if``, a reply that carries that header (a peer's answer streaming a large
document, :mod:`exchange.gateway.parts`) is returned before its body is read, for the caller to
read in chunks and release.
Failures leave it as errors of the project's tree, translated by the one table of
:mod:`exchange.faults` and naming the other party as the caller calls it (``what``): a refused
certificate is ``SslAuthenticationFailed``, no connection ``NetworkError``, no answer in time
``ServiceTimeout``, a broken answer the caller's ``broken`` class; a body over the cap is
:class:`PayloadTooLarge` (the caller decides whose fault that is).

A gateway's default is its own HTTP/1.1 client, :class:`exchange.gateway.pooled.PooledTransport`
(about a quarter of aiohttp's CPU per request on this path). :class:`AiohttpTransport` (one
pooled aiohttp session: 5-10x the rate of other general Python clients here) meets the same
contract and the same tests. Tests inject a transport that calls other roles' ASGI apps in
process, in the manner of httpx's ``MockTransport``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import yarl

from exchange.errors import ServiceFailed
from exchange.faults import mapped
from exchange.http import read_body


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: Mapping[str, str]  # names in lower case
    body: bytes
    # A reply returned unread (``stream_if``): its body, to be read once, and how to let the
    # connection go whether or not it was read to its end.
    chunks: AsyncIterator[bytes] | None = None
    release: Callable[[], Awaitable[None]] | None = None


class Transport(Protocol):
    async def request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        headers: Mapping[str, str],
        body: bytes = b"",
        tls: ssl.SSLContext | None = None,
        timeout: float | None = None,
        max_bytes: int,
        broken: type[ServiceFailed] = ServiceFailed,
        stream_if: str | None = None,
    ) -> Reply:
        """Send one request to ``url`` (already percent-encoded, sent as it is) of ``what``;
        a reply with the header ``stream_if`` (lower case) comes back unread."""

    async def close(self) -> None: ...


class AiohttpTransport:
    def __init__(self, *, timeout: float) -> None:
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # made on first use: it belongs to the running event loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256, limit_per_host=128, keepalive_timeout=30),
                timeout=aiohttp.ClientTimeout(total=self._timeout, sock_connect=5),
                auto_decompress=False,
                # The consumer signs exactly the headers it sends: the client adds none of these.
                skip_auto_headers=("User-Agent", "Accept", "Content-Type"),
            )
        return self._session

    async def request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        headers: Mapping[str, str],
        body: bytes = b"",
        tls: ssl.SSLContext | None = None,
        timeout: float | None = None,
        max_bytes: int,
        broken: type[ServiceFailed] = ServiceFailed,
        stream_if: str | None = None,
    ) -> Reply:
        session = self._client()
        # Without a timeout of its own a request keeps the session's (peer_timeout, and 5 s to
        # connect): passing None to aiohttp would lift every limit.
        total = session.timeout.total if timeout is None else timeout
        limit = (
            session.timeout
            if timeout is None
            else aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 5))
        )
        if stream_if is not None:
            # aiohttp's total would also cut a long stream short: the reply's head and a small
            # body keep the total (below), a streamed body is bounded between reads.
            limit = aiohttp.ClientTimeout(
                total=None, sock_connect=limit.sock_connect, sock_read=total
            )
        with mapped(what, broken=broken):
            async with asyncio.timeout(total if stream_if is not None else None):
                response = await session.request(
                    method,
                    yarl.URL(url, encoded=True),
                    data=body or None,
                    headers=dict(headers),
                    ssl=tls if tls is not None else True,
                    allow_redirects=False,
                    timeout=limit,
                )
                streamed = False
                try:
                    answer = {k.lower(): v for k, v in response.headers.items()}
                    if stream_if is not None and stream_if in answer:
                        streamed = True  # the caller reads it and lets it go
                        return Reply(
                            response.status,
                            answer,
                            b"",
                            _chunks(response, what, broken),
                            _releaser(response),
                        )
                    payload = await read_body(
                        response.content.iter_chunked(65536),
                        content_length=response.headers.get("Content-Length"),
                        max_bytes=max_bytes,
                    )
                    return Reply(response.status, answer, payload)
                finally:
                    if not streamed:
                        response.release()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


async def _chunks(
    response: aiohttp.ClientResponse, what: str, broken: type[ServiceFailed]
) -> AsyncIterator[bytes]:
    with mapped(what, broken=broken):
        async for chunk in response.content.iter_chunked(65536):
            yield chunk


def _releaser(response: aiohttp.ClientResponse) -> Callable[[], Awaitable[None]]:
    async def release() -> None:
        response.release()

    return release
