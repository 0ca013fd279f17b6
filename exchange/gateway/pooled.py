"""A small HTTP/1.1 client on asyncio streams, for the gateway's few long-lived peers.

A gateway talks to a handful of parties (the peers' gateways over mutual TLS, consent
services), always with the same few headers, and keeps its connections to them open. For that
one pool a general client does much it does not need: aiohttp took about a quarter of the
consumer gateway's CPU per exchange (request objects, header multidicts, cookie jars, auto
headers, its own timer handles). :class:`PooledTransport` writes the request line and the
given headers as they are, reads the answer's head with one ``readuntil``, and its body by its
``Content-Length`` (or chunked, or to the end of the connection when it declares neither).

What it keeps of a client's duties, each as strict as before:

- TLS: the caller's :class:`ssl.SSLContext` is used as it is (for a peer gateway the pinned,
  CRL-checked context of :meth:`TrustView.pinned_context`: the peer's live certificate, host
  name checked, revocation checked at every handshake); without one, the default context
  (verified against the system's CAs) for ``https``.
- Time: the whole request (connecting, sending, the answer's head and a body read whole) within
  ``timeout``; connecting within 5 s of it; a streamed body within ``timeout`` between two
  reads.
- Limits: a body over ``max_bytes`` is refused as soon as its length says so, or as soon as the
  bytes read do; a head larger than 64 KiB is a broken answer.
- Streaming: with ``stream_if``, a reply carrying that header comes back unread; the caller
  reads its chunks and releases it (the connection goes back to the pool only if the body was
  read to its end, else it is closed).
- Reuse: connections are kept per (scheme, host, port, TLS context) for ``keepalive`` seconds,
  at most ``limit_per_host`` at a time (further requests wait for one). A kept connection that
  the server closed while idle is detected when a request on it gets no byte back; that
  request is sent once more on a new connection (nothing of it was answered; a signed request
  that did reach the peer is refused there as a replay, by its message id).

Failures leave as errors of the project's tree through :mod:`exchange.faults` (a certificate
that does not verify, no connection, no answer in time, a broken answer).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from exchange.errors import PayloadTooLarge, ServiceFailed
from exchange.faults import mapped
from exchange.gateway.transport import Reply
from exchange.http import declared_length

CHUNK = 65536
HEAD_LIMIT = 65536  # a longer answer head (or chunk-size line) is a broken answer
CONNECT_WITHIN = 5.0
# Answers without a body whatever their headers say (RFC 9112, section 6.3).
_BODILESS = frozenset({204, 304})


class BrokenResponse(Exception):
    """The peer's bytes are not an HTTP/1.1 answer this client can read."""


class Unreachable(ConnectionError):
    """No connection to the party, or it was lost before the first byte of an answer."""


class ClosedBeforeAnswer(Unreachable):
    """A connection closed (or reset) before the first byte of an answer."""


@dataclass(eq=False)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = field(default_factory=time.monotonic)
    reused: bool = False

    def usable(self, keepalive: float) -> bool:
        return (
            not self.reader.at_eof()
            and not self.writer.is_closing()
            and time.monotonic() - self.idle_since < keepalive
        )

    def close(self) -> None:
        self.writer.close()


@dataclass(eq=False)
class _Pool:
    slots: asyncio.Semaphore
    idle: list[_Connection] = field(default_factory=list)
    active: int = 0  # connections taken from the pool and not yet given back

    async def take(self) -> None:
        await self.slots.acquire()
        self.active += 1

    def give_back(self) -> None:
        self.active -= 1
        self.slots.release()

    def unused(self, keepalive: float) -> bool:
        """Whether nothing is taken from the pool and nothing kept in it is still usable (those
        are closed)."""
        if self.active:
            return False
        for connection in self.idle:
            if not connection.usable(keepalive):
                connection.close()
        self.idle = [c for c in self.idle if not c.writer.is_closing()]
        return not self.idle


class PooledTransport:
    def __init__(
        self, *, timeout: float, keepalive: float = 30.0, limit_per_host: int = 128
    ) -> None:
        self._timeout = timeout
        self._keepalive = keepalive
        self._limit_per_host = limit_per_host
        # Keyed by the TLS context itself (held here, so that its identity is never reused): a
        # connection opened under one configuration's pinned context never serves another's.
        self._pools: dict[tuple[str, str, int, ssl.SSLContext | None], _Pool] = {}
        self._default_tls: ssl.SSLContext | None = None

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
        total = self._timeout if timeout is None else timeout
        parts = urlsplit(url)
        secure = parts.scheme == "https"
        host = parts.hostname or ""
        port = parts.port or (443 if secure else 80)
        context = (tls or self._default_context()) if secure else None
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = _request_head(method, target, parts.netloc, headers, body)
        pool = self._pool(parts.scheme, host, port, context)
        with mapped(what, broken=broken):
            async with asyncio.timeout(total) as limit:
                await pool.take()
                connection: _Connection | None = None
                slot_held = True  # until a kept connection or a streamed reply takes it over
                try:
                    connection = await self._connection(pool, host, port, context, total)
                    try:
                        status, answer = await _exchange(connection, head, body)
                    except ClosedBeforeAnswer:
                        if not connection.reused:
                            raise
                        connection.close()  # closed by the server while idle: once more, anew
                        connection = await self._open(host, port, context, total)
                        status, answer = await _exchange(connection, head, body)
                    length = _body_length(method, status, answer)
                    if stream_if is not None and stream_if in answer:
                        if length == _CHUNKED:  # a streamed answer declares its length
                            raise BrokenResponse("a streamed answer is chunked")
                        # The caller reads it and lets it go; a streamed body is bounded
                        # between reads, not as a whole.
                        limit.reschedule(None)
                        held, connection, slot_held = connection, None, False
                        reading = _Reading(self, pool, held, length, what, broken, total)
                        return Reply(status, answer, b"", reading.chunks(), reading.release)
                    if length is not None and length > max_bytes:
                        raise PayloadTooLarge(f"the answer is larger than {max_bytes} bytes")
                    payload = await _read_whole(connection.reader, length, max_bytes)
                    if _reusable(answer, length):
                        self._keep(pool, connection)
                        connection, slot_held = None, False
                    return Reply(status, answer, payload)
                finally:
                    if connection is not None:
                        connection.close()
                    if slot_held:  # also when no connection opened at all
                        pool.give_back()

    async def close(self) -> None:
        for pool in self._pools.values():
            for connection in pool.idle:
                connection.close()
            pool.idle.clear()

    def _default_context(self) -> ssl.SSLContext:
        if self._default_tls is None:
            self._default_tls = ssl.create_default_context()
        return self._default_tls

    def _pool(self, scheme: str, host: str, port: int, context: ssl.SSLContext | None) -> _Pool:
        key = (scheme, host, port, context)
        pool = self._pools.get(key)
        if pool is None:
            # A new context (a new configuration) or party: pools left with nothing go, with
            # the contexts of configurations gone by.
            for gone in [k for k, p in self._pools.items() if p.unused(self._keepalive)]:
                del self._pools[gone]
            pool = self._pools[key] = _Pool(asyncio.Semaphore(self._limit_per_host))
        return pool

    async def _connection(
        self, pool: _Pool, host: str, port: int, context: ssl.SSLContext | None, total: float
    ) -> _Connection:
        while pool.idle:
            kept = pool.idle.pop()
            if kept.usable(self._keepalive):
                kept.reused = True
                return kept
            kept.close()
        return await self._open(host, port, context, total)

    async def _open(
        self, host: str, port: int, context: ssl.SSLContext | None, total: float
    ) -> _Connection:
        try:
            async with asyncio.timeout(min(total, CONNECT_WITHIN)):
                reader, writer = await asyncio.open_connection(
                    host,
                    port,
                    ssl=context,
                    server_hostname=host if context else None,
                    limit=HEAD_LIMIT,
                )
        except (TimeoutError, ssl.SSLCertVerificationError):
            raise  # no answer in time; a certificate that does not verify
        except OSError as failed:  # refused, unreachable, no such host, a handshake refused
            raise Unreachable(f"cannot connect to {host}:{port}") from failed
        return _Connection(reader, writer)

    def _keep(self, pool: _Pool, connection: _Connection) -> None:
        connection.idle_since = time.monotonic()
        pool.idle.append(connection)
        pool.give_back()


class _Reading:
    """A streamed body: read once, in chunks, then released (see the module docstring)."""

    def __init__(
        self,
        transport: PooledTransport,
        pool: _Pool,
        connection: _Connection,
        length: int | None,
        what: str,
        broken: type[ServiceFailed],
        between_reads: float,
    ) -> None:
        self._transport, self._pool, self._connection = transport, pool, connection
        self._left, self._what, self._broken = length, what, broken
        self._between_reads = between_reads
        self._released = False

    async def chunks(self) -> AsyncIterator[bytes]:
        reader = self._connection.reader
        with mapped(self._what, broken=self._broken):
            while self._left is None or self._left > 0:
                want = CHUNK if self._left is None else min(CHUNK, self._left)
                try:
                    async with asyncio.timeout(self._between_reads):
                        chunk = await reader.read(want)
                except (ConnectionError, ssl.SSLError) as lost:
                    raise BrokenResponse("the connection was lost within the body") from lost
                if not chunk:
                    if self._left is None:
                        return
                    raise BrokenResponse("the connection closed before the body's end")
                if self._left is not None:
                    self._left -= len(chunk)
                yield chunk

    async def release(self) -> None:
        if self._released:
            return
        self._released = True
        if self._left == 0:
            self._transport._keep(self._pool, self._connection)
        else:  # unread or cut short: the connection's next bytes are not an answer's start
            self._connection.close()
            self._pool.give_back()


def _request_head(
    method: str, target: str, netloc: str, headers: Mapping[str, str], body: bytes
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {netloc}"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
            raise ValueError(f"header {name!r} cannot be sent as it is")
        lines.append(f"{name}: {value}")
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")


async def _exchange(
    connection: _Connection, head: bytes, body: bytes
) -> tuple[int, dict[str, str]]:
    """Send the request; read the answer's status and headers (names in lower case)."""
    writer, reader = connection.writer, connection.reader
    try:
        writer.write(head + body if len(body) < CHUNK else head)
        if len(body) >= CHUNK:
            writer.write(body)
        await writer.drain()
        raw = await reader.readuntil(b"\r\n\r\n")
    except (ConnectionError, ssl.SSLError) as lost:
        raise ClosedBeforeAnswer("the connection was lost before an answer") from lost
    except asyncio.IncompleteReadError as cut:
        if not cut.partial:
            raise ClosedBeforeAnswer("the connection closed before an answer") from cut
        raise BrokenResponse("the answer's head was cut short") from cut
    except asyncio.LimitOverrunError as large:
        raise BrokenResponse("the answer's head is too large") from large
    while raw.startswith(b"HTTP/1.1 1"):  # an interim answer (100 Continue): the next is ours
        raw = await reader.readuntil(b"\r\n\r\n")
    return _parse_head(raw)


def _parse_head(raw: bytes) -> tuple[int, dict[str, str]]:
    lines = raw.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if version not in ("HTTP/1.1", "HTTP/1.0") or len(code) != 3 or not code.isdigit():
        raise BrokenResponse("the answer's status line is not HTTP/1.1")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise BrokenResponse("an answer's header line is malformed")
        name = name.lower()
        value = value.strip(" \t")
        if name in headers:
            if name == "content-length" and headers[name] != value:
                raise BrokenResponse("the answer declares two lengths")
            headers[name] = value if name == "content-length" else f"{headers[name]}, {value}"
        else:
            headers[name] = value
    if version == "HTTP/1.0":
        headers.setdefault("connection", "close")
    return int(code), headers


_CHUNKED = -1  # as a body length: chunked transfer coding


def _body_length(method: str, status: int, headers: Mapping[str, str]) -> int | None:
    """Bytes of body to read; ``_CHUNKED``; or ``None``: to the end of the connection."""
    if method == "HEAD" or status in _BODILESS or 100 <= status < 200:
        return 0
    coding = headers.get("transfer-encoding")
    if coding is not None:
        if coding.lower() != "chunked":
            raise BrokenResponse(f"transfer coding {coding!r} is not read here")
        return _CHUNKED
    declared = headers.get("content-length")
    if declared is None:
        return None
    length = declared_length(declared)
    if length is None:
        raise BrokenResponse("the answer's Content-Length is not a number")
    return length


async def _read_whole(reader: asyncio.StreamReader, length: int | None, max_bytes: int) -> bytes:
    try:
        return await _read_body(reader, length, max_bytes)
    except (ConnectionError, ssl.SSLError) as lost:
        raise BrokenResponse("the connection was lost within the body") from lost


async def _read_body(reader: asyncio.StreamReader, length: int | None, max_bytes: int) -> bytes:
    if length == _CHUNKED:
        return await _read_chunked(reader, max_bytes)
    if length is not None:
        try:
            return await reader.readexactly(length)
        except asyncio.IncompleteReadError as cut:
            raise BrokenResponse("the connection closed before the body's end") from cut
    body = bytearray()
    while chunk := await reader.read(CHUNK):
        body += chunk
        if len(body) > max_bytes:
            raise PayloadTooLarge(f"the answer is larger than {max_bytes} bytes")
    return bytes(body)


async def _read_chunked(reader: asyncio.StreamReader, max_bytes: int) -> bytes:
    body = bytearray()
    try:
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = size_line.split(b";", 1)[0].strip()
            if not size or len(size) > 16 or size.strip(b"0123456789abcdefABCDEF"):
                raise BrokenResponse("a chunk's size is malformed")
            count = int(size, 16)
            if count == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, if any
                    pass
                return bytes(body)
            if len(body) + count > max_bytes:
                raise PayloadTooLarge(f"the answer is larger than {max_bytes} bytes")
            body += await reader.readexactly(count)
            if await reader.readexactly(2) != b"\r\n":
                raise BrokenResponse("a chunk does not end where its size says")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as cut:
        raise BrokenResponse("the chunked body was cut short") from cut


def _reusable(headers: Mapping[str, str], length: int | None) -> bool:
    return length is not None and "close" not in headers.get("connection", "").lower()
