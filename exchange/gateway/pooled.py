"""A small HTTP/1.1 client on asyncio streams, for the gateway's few long-lived peers.

A gateway talks to a handful of parties (the peers' gateways over mutual TLS, consent
services), always with the same few headers, and keeps its connections to them open. For that
one pool a general client does much it does not need: aiohttp took about a quarter of the
consumer gateway's CPU per exchange (request objects, header multidicts, cookie jars, auto
headers, its own timer handles). :class:`PooledTransport` writes the request line and the
given headers as they are, and feeds the answer's bytes, as they arrive, to httptools'
``HttpResponseParser`` (llhttp, the parser of Node.js): framing an answer (its status line,
header lines, ``Content-Length``, chunked coding, a body to the end of the connection) is where
two readers can disagree and a peer could smuggle a second answer into one, so it is left to a
parser kept for that, strict by default. Whatever it refuses (a bare LF, a length with a sign
or two lengths, a length beside chunked coding, a folded header line, a malformed chunk size) is
a broken answer, and its connection is closed.

What it keeps of a client's duties, each as strict as before:

- TLS: the caller's :class:`ssl.SSLContext` is used as it is (for a peer gateway the pinned,
  CRL-checked context of :meth:`TrustView.pinned_context`: the peer's live certificate, host
  name checked, revocation checked at every handshake); without one, the default context
  (verified against the system's CAs) for ``https``.
- Time: the whole request (connecting, sending, the answer's head and a body read whole) within
  ``timeout``; connecting within 5 s of it; a streamed body within ``timeout`` between two
  reads. The requests' limits are watched with one timer for all (:class:`_Deadlines`), not
  one armed and disarmed per request.
- Limits: a body over ``max_bytes`` is refused as soon as its length says so, or as soon as the
  bytes read do (at most one read of 64 KiB beyond); a head larger than 64 KiB is a broken
  answer. Interim answers (``100 Continue``) are skipped; HEAD, 204 and 304 end at their head.
- Streaming: with ``stream_if``, a reply carrying that header comes back unread; the caller
  reads its chunks (each as the parser hands it over, none larger than one read of 64 KiB)
  and releases it (the connection goes back to the pool only if the body was read to its end,
  else it is closed).
- Reuse: an answer read to its end is kept alive when the parser says so (HTTP/1.1 without
  ``Connection: close``, its end framed by its length or chunks) and nothing followed it.
  Connections are kept per (scheme, host, port, TLS context) for ``keepalive`` seconds,
  at most ``limit_per_host`` at a time (further requests wait for one). A kept connection that
  the server closed while idle is detected when a request on it gets no byte back; that
  request is sent once more on a new connection (nothing of it was answered; a signed request
  that did reach the peer is refused there as a replay, by its message id).

Failures leave as errors of the project's tree through :mod:`exchange.faults` (a certificate
that does not verify, no connection, no answer in time, a broken answer).
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import SplitResult, urlsplit

import httptools

from exchange.errors import PayloadTooLarge, ServiceFailed
from exchange.faults import mapped
from exchange.gateway.transport import Reply

CHUNK = 65536
HEAD_LIMIT = 65536  # a longer answer head is a broken answer
CONNECT_WITHIN = 5.0
CLOCK_RESOLUTION = 0.001


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
        self._deadlines = _Deadlines()

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
        scheme, netloc, target = _parts(url)
        secure = scheme == "https"
        host, port = _address(scheme, netloc)
        context = (tls or self._default_context()) if secure else None
        head = _request_head(method, target, netloc, headers, body)
        pool = self._pool(scheme, host, port, context)
        with mapped(what, broken=broken), self._deadlines.within(total) as limit:
            await pool.take()
            connection: _Connection | None = None
            slot_held = True  # until a kept connection or a streamed reply takes it over
            try:
                connection = await self._connection(pool, host, port, context, total)
                try:
                    answer = await _exchange(connection, method, head, body)
                except ClosedBeforeAnswer:
                    if not connection.reused:
                        raise
                    connection.close()  # closed by the server while idle: once more, anew
                    connection = await self._open(host, port, context, total)
                    answer = await _exchange(connection, method, head, body)
                if stream_if is not None and stream_if in answer.headers:
                    # The caller reads it and lets it go; a streamed body is bounded
                    # between reads, not as a whole.
                    limit.forget()
                    held, connection, slot_held = connection, None, False
                    reading = _Reading(self, pool, held, answer, what, broken, total)
                    return Reply(
                        answer.status, answer.headers, b"", reading.chunks(), reading.release
                    )
                payload = await answer.read_whole(connection.reader, max_bytes)
                if answer.reusable():
                    self._keep(pool, connection)
                    connection, slot_held = None, False
                return Reply(answer.status, answer.headers, payload)
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


class _Deadlines:
    """The time limits of the requests under way, watched with one timer per event loop:
    ``asyncio.timeout`` arms and disarms a timer of the loop for every request (a sixth of this
    client's CPU per request). A loop's timer is set for its earliest limit; when it fires, the
    requests past their limit are cancelled and it is set again for the earliest left. Requests
    given the same limit end after it is set, so a timer serves many requests; one given a
    shorter limit sets it earlier. A request past its limit ends in ``TimeoutError`` as under
    ``asyncio.timeout`` (a cancellation from elsewhere stays a cancellation). A gateway runs one
    loop; the timers are kept per loop so that one left on a loop that has ended never stands
    in for another's."""

    def __init__(self) -> None:
        self._watched: dict[_Limit, None] = {}
        self._timers: dict[asyncio.AbstractEventLoop, tuple[asyncio.TimerHandle, float]] = {}

    def within(self, seconds: float) -> _Limit:
        return _Limit(self, seconds)

    def watch(self, limit: _Limit) -> None:
        self._watched[limit] = None
        armed = self._timers.get(limit.loop)
        if armed is None or limit.when < armed[1]:
            if armed is not None:
                armed[0].cancel()
            else:  # a new loop: forget the timers of loops that have ended
                for ended in [loop for loop in self._timers if loop.is_closed()]:
                    del self._timers[ended]
            self._arm(limit.loop, limit.when)

    def forget(self, limit: _Limit) -> None:
        self._watched.pop(limit, None)  # the timer is left: it finds nothing due, or others

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        self._timers[loop] = (loop.call_at(when, self._fire, loop), when)

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        del self._timers[loop]
        # A timer may fire up to the loop's clock resolution early (libuv counts milliseconds).
        now, earliest = loop.time() + CLOCK_RESOLUTION, None
        for limit in list(self._watched):
            if limit.loop is not loop:
                continue
            if limit.when <= now:
                del self._watched[limit]
                limit.expire()
            elif earliest is None or limit.when < earliest:
                earliest = limit.when
        if earliest is not None:
            self._arm(loop, earliest)


class _Limit:
    """One request's time limit (a context manager within its task; see :class:`_Deadlines`)."""

    __slots__ = ("_cancelling", "_deadlines", "_seconds", "_task", "expired", "loop", "when")

    def __init__(self, deadlines: _Deadlines, seconds: float) -> None:
        self._deadlines, self._seconds = deadlines, seconds
        self.expired = False

    def __enter__(self) -> _Limit:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a time limit is kept only within a task")
        self._task, self.loop = task, task.get_loop()
        self._cancelling = task.cancelling()
        self.when = self.loop.time() + self._seconds
        self._deadlines.watch(self)
        return self

    def forget(self) -> None:
        """No limit from here on (a streamed body: bounded between reads instead)."""
        self._deadlines.forget(self)

    def expire(self) -> None:
        self.expired = True
        self._task.cancel()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: object
    ) -> None:
        self._deadlines.forget(self)
        # As asyncio.timeout: the cancellation is ours to turn into a timeout only if no other
        # was pending for the task beyond those it had on entering.
        if (
            self.expired
            and self._task.uncancel() <= self._cancelling
            and kind is asyncio.CancelledError
        ):
            raise TimeoutError from error


class _Answer:
    """One answer as llhttp reads it: its callbacks note the head and hold the body's pieces
    until they are taken. They only take note (an exception raised in one would come back
    wrapped as llhttp's own error); the limits are checked between two reads."""

    def __init__(self, method: str) -> None:
        # The parser holds this answer's callbacks and this answer the parser: a cycle, which
        # only the garbage collector would free (its collections took 3.7% of a consumer
        # gateway's CPU under load, 2.5% without). Cut once the answer is read to its end.
        self._parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self._head_only = method == "HEAD"  # a response parser cannot know it: no body follows
        self._head_bytes = 0
        self.status = 0
        self.headers: dict[str, str] = {}  # names in lower case
        self.pieces: list[bytes] = []  # of the body, not yet taken
        self.received = 0  # bytes of body, taken or not
        self.head_read = self.done = self.keep_alive = self.trailing = False

    def on_message_begin(self) -> None:
        if self.done:  # a second answer to one request: its connection is not kept
            self.trailing = True

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.head_read:  # a chunked body's trailers: not read
            return
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_headers_complete(self) -> None:
        if self.head_read:  # the head of a second answer: ours stays as it was
            return
        parser = cast(httptools.HttpResponseParser, self._parser)  # it is the one calling
        status = parser.get_status_code()
        if status < 200:  # an interim answer (100 Continue): the next head is ours
            self.headers = {}
            return
        self.status, self.head_read = status, True
        self.keep_alive = parser.should_keep_alive()
        self.done = self._head_only

    def on_body(self, piece: bytes) -> None:
        if self.done:  # bytes after the answer to a HEAD
            self.trailing = True
            return
        self.pieces.append(piece)
        self.received += len(piece)

    def on_message_complete(self) -> None:
        if self.head_read:
            self.done = True

    async def read(self, reader: asyncio.StreamReader) -> None:
        """Feed the parser one read; at the connection's end, end the answer or refuse it."""
        try:
            data = await reader.read(CHUNK)
        except (ConnectionError, ssl.SSLError) as lost:
            if not self._head_bytes:
                raise ClosedBeforeAnswer("the connection was lost before an answer") from lost
            raise BrokenResponse("the connection was lost within the answer") from lost
        if not data:
            self._end()
            return
        room = HEAD_LIMIT - self._head_bytes
        self._head_bytes += len(data)
        if self.head_read or len(data) <= room:
            self._feed(data)
        else:  # the head must end within the bytes it may have
            self._feed(data[:room])
            if not self.head_read:
                raise BrokenResponse("the answer's head is too large")
            self._feed(data[room:])

    def _feed(self, data: bytes) -> None:
        if self._parser is None:  # bytes after the answer, in the same read: not kept alive
            self.trailing = True
            return
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as refused:
            raise BrokenResponse("the answer is not an HTTP/1.1 answer") from refused
        if self.done:
            self._parser = None

    def _end(self) -> None:
        if self.done:
            return
        if not self._head_bytes:
            raise ClosedBeforeAnswer("the connection closed before an answer")
        if not self.head_read:
            raise BrokenResponse("the answer's head was cut short")
        if "content-length" in self.headers or "transfer-encoding" in self.headers:
            raise BrokenResponse("the connection closed before the body's end")
        self.done = True  # a body delimited by the connection's end (never kept alive)
        self._parser = None

    async def read_whole(self, reader: asyncio.StreamReader, max_bytes: int) -> bytes:
        declared = self.headers.get("content-length")  # digits only: llhttp checked it
        while True:
            if self.received > max_bytes or (
                not self.done and declared is not None and int(declared) > max_bytes
            ):
                raise PayloadTooLarge(f"the answer is larger than {max_bytes} bytes")
            if self.done:
                return b"".join(self.pieces)
            await self.read(reader)

    def reusable(self) -> bool:
        return (
            self.done
            and self.keep_alive
            and not self.trailing
            and "close" not in self.headers.get("connection", "").lower()
        )


class _Reading:
    """A streamed body: read once, in chunks, then released (see the module docstring)."""

    def __init__(
        self,
        transport: PooledTransport,
        pool: _Pool,
        connection: _Connection,
        answer: _Answer,
        what: str,
        broken: type[ServiceFailed],
        between_reads: float,
    ) -> None:
        self._transport, self._pool, self._connection = transport, pool, connection
        self._answer, self._what, self._broken = answer, what, broken
        self._between_reads = between_reads
        self._released = False

    async def chunks(self) -> AsyncIterator[bytes]:
        answer = self._answer
        with mapped(self._what, broken=self._broken):
            while True:
                pieces, answer.pieces = answer.pieces, []
                for piece in pieces:
                    yield piece
                if answer.done:
                    return
                async with asyncio.timeout(self._between_reads):
                    await answer.read(self._connection.reader)

    async def release(self) -> None:
        if self._released:
            return
        self._released = True
        if self._answer.reusable() and not self._answer.pieces:
            self._transport._keep(self._pool, self._connection)
        else:  # unread or cut short: the connection's next bytes are not an answer's start
            self._connection.close()
            self._pool.give_back()


def _parts(url: str) -> tuple[str, str, str]:
    """The scheme, authority and request target of ``url``, as ``urlsplit`` reads them.

    Every request's URL is new (its query names the person), so urlsplit's own cache never
    serves it (~9 us a call). A plain ``http``/``https`` URL of printable ASCII without spaces
    or brackets, which urlsplit would neither strip, clean nor check further, is split here
    the same way; anything else goes to urlsplit."""
    scheme = "https" if url.startswith("https://") else "http" if url.startswith("http://") else ""
    if scheme and url.isascii() and url.isprintable() and " " not in url:
        rest = url[len(scheme) + 3 :]
        end = len(rest)
        for mark in "/?#":  # the authority ends at the first of them
            at = rest.find(mark, 0, end)
            if at >= 0:
                end = at
        netloc = rest[:end]
        if "[" not in netloc and "]" not in netloc:  # an IPv6 literal: urlsplit checks it
            path, _, query = rest[end:].partition("#")[0].partition("?")
            return scheme, netloc, (path or "/") + (f"?{query}" if query else "")
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.netloc, target


@functools.lru_cache(maxsize=256)
def _address(scheme: str, netloc: str) -> tuple[str, int]:
    """The host and port of a URL's authority, read once per party (``SplitResult.hostname``
    and ``.port`` parse the authority again at every call)."""
    parts = SplitResult(scheme, netloc, "", "", "")
    return parts.hostname or "", parts.port or (443 if scheme == "https" else 80)


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


async def _exchange(connection: _Connection, method: str, head: bytes, body: bytes) -> _Answer:
    """Send the request; read the answer up to the end of its head."""
    writer = connection.writer
    try:
        writer.write(head + body if len(body) < CHUNK else head)
        if len(body) >= CHUNK:
            writer.write(body)
        await writer.drain()
    except (ConnectionError, ssl.SSLError) as lost:
        raise ClosedBeforeAnswer("the connection was lost before an answer") from lost
    answer = _Answer(method)
    while not answer.head_read:
        await answer.read(connection.reader)
    return answer
