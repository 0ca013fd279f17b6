"""The gateways' transports against real sockets: limits, failures, reuse and streaming.

Each behaviour that both share is checked on both: the gateway's own HTTP/1.1 client
(:class:`PooledTransport`, the default) and aiohttp's (:class:`AiohttpTransport`)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ssl
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from exchange.errors import InvalidResponse, NetworkError, PayloadTooLarge, ServiceTimeout
from exchange.gateway import pooled
from exchange.gateway.pooled import PooledTransport, _Deadlines
from exchange.gateway.transport import AiohttpTransport, Transport
from exchange.trust import ca
from exchange.trust.keys import certificate_pem, generate_key, private_key_pem
from tests.servers import free_port

Client = Callable[..., Transport]


@pytest.fixture(params=[PooledTransport, AiohttpTransport], ids=["pooled", "aiohttp"])
def client(request: pytest.FixtureRequest) -> Client:
    kind: Client = request.param
    return kind


@pytest.fixture
async def silent() -> AsyncIterator[int]:
    """A port that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


@pytest.fixture
async def talkative() -> AsyncIterator[int]:
    """A port that answers every request with 1 MB."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = b"x" * 1_000_000
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def test_a_peer_that_never_answers_times_out_at_the_session_limit(
    silent: int, client: Client
) -> None:
    transport = client(timeout=0.5)  # the gateway's peer_timeout
    started = time.monotonic()
    try:
        with pytest.raises(ServiceTimeout, match="gateway X did not answer in time"):
            await transport.request(
                "GET", f"http://127.0.0.1:{silent}/", what="gateway X", headers={}, max_bytes=10
            )
    finally:
        await transport.close()
    assert time.monotonic() - started < 3


async def test_a_request_may_set_its_own_shorter_limit(silent: int, client: Client) -> None:
    transport = client(timeout=30)
    started = time.monotonic()
    try:
        with pytest.raises(ServiceTimeout):
            await transport.request(
                "GET", f"http://127.0.0.1:{silent}/", what="x", headers={}, timeout=0.3, max_bytes=1
            )
    finally:
        await transport.close()
    assert time.monotonic() - started < 3


async def test_a_refused_connection_is_a_network_error_naming_the_party(client: Client) -> None:
    transport = client(timeout=5)
    try:
        with pytest.raises(NetworkError, match="consent service c cannot be reached"):
            await transport.request(
                "GET",
                f"http://127.0.0.1:{free_port()}/",
                what="consent service c",
                headers={},
                max_bytes=10,
            )
    finally:
        await transport.close()


async def test_an_answer_over_the_cap_is_refused(talkative: int, client: Client) -> None:
    transport = client(timeout=5)
    try:
        with pytest.raises(PayloadTooLarge):
            await transport.request(
                "GET", f"http://127.0.0.1:{talkative}/", what="x", headers={}, max_bytes=1000
            )
    finally:
        await transport.close()


@pytest.fixture
async def echo() -> AsyncIterator[tuple[int, list[bytes]]]:
    """A port that answers 200 and keeps each request's head."""
    heads: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        heads.append(head)
        length = next(
            (
                int(v)
                for k, _, v in (h.partition(b":") for h in head.split(b"\r\n"))
                if k.lower() == b"content-length"
            ),
            0,
        )
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1], heads
    server.close()
    await server.wait_closed()


async def test_only_the_headers_given_are_sent(
    echo: tuple[int, list[bytes]], client: Client
) -> None:
    """The consumer signs the request it sends: the client adds no Accept, Content-Type or
    User-Agent of its own (a caller that sends none would otherwise fail its own signature)."""
    port, heads = echo
    transport = client(timeout=5)
    try:
        reply = await transport.request(
            "POST",
            f"http://127.0.0.1:{port}/r1/x",
            what="x",
            headers={"X-Road-Client": "EE/GOV/1/a"},
            body=b"{}",
            max_bytes=10,
        )
    finally:
        await transport.close()
    assert reply.status == 200
    names = {line.split(b":")[0].lower() for line in heads[0].split(b"\r\n")[1:] if line}
    assert b"x-road-client" in names
    assert not names & {b"accept", b"content-type", b"user-agent"}, names


@pytest.fixture
async def keeping() -> AsyncIterator[tuple[int, list[int], asyncio.Event]]:
    """A port that answers each request on a connection with its number on that connection,
    keeps the connection open, and notes each connection it accepts; a request for
    ``/close`` is answered and then the connection is closed, as an idle server would (the
    event is set once it is)."""
    accepted: list[int] = []
    closed = asyncio.Event()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(len(accepted) + 1)
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                served += 1
                body = str(served).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                await writer.drain()
                if head.startswith(b"GET /close "):
                    break
        except asyncio.IncompleteReadError:
            pass
        writer.close()
        await writer.wait_closed()
        closed.set()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1], accepted, closed
    server.close()


async def test_requests_in_turn_share_one_kept_connection(
    keeping: tuple[int, list[int], asyncio.Event], client: Client
) -> None:
    port, accepted, _ = keeping
    transport = client(timeout=5)
    try:
        bodies = [
            (
                await transport.request(
                    "GET", f"http://127.0.0.1:{port}/", what="x", headers={}, max_bytes=10
                )
            ).body
            for _ in range(3)
        ]
    finally:
        await transport.close()
    assert bodies == [b"1", b"2", b"3"]
    assert accepted == [1]


async def test_an_answer_read_to_its_end_leaves_nothing_for_the_garbage_collector(
    keeping: tuple[int, list[int], asyncio.Event],
) -> None:
    """Read whole, streamed or ended by the connection's close, an answer is freed when its
    last reference goes, not left in a reference cycle with its parser for the collector."""
    port, _, _ = keeping
    transport = PooledTransport(timeout=5)
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for path in ("/", "/", "/close"):
            reply = await transport.request(
                "GET", f"http://127.0.0.1:{port}{path}", what="x", headers={}, max_bytes=10
            )
            assert reply.status == 200
        del reply
        gc.collect()
        left = [o for o in gc.garbage if isinstance(o, pooled._Answer)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
        await transport.close()
    assert left == []


async def test_a_kept_connection_the_server_closed_is_replaced_without_an_error(
    keeping: tuple[int, list[int], asyncio.Event],
) -> None:
    port, accepted, closed = keeping
    transport = PooledTransport(timeout=5)
    try:
        first = await transport.request(
            "GET", f"http://127.0.0.1:{port}/close", what="x", headers={}, max_bytes=10
        )
        await asyncio.wait_for(closed.wait(), 5)  # closed by the server while kept idle
        second = await transport.request(
            "GET", f"http://127.0.0.1:{port}/", what="x", headers={}, max_bytes=10
        )
    finally:
        await transport.close()
    assert (first.body, second.body) == (b"1", b"1")
    assert accepted == [1, 2]


async def serve_once(answer: bytes) -> tuple[asyncio.Server, int]:
    """A port that answers one request with ``answer`` (bytes as they are) and closes."""

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(reply, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def refused_as_broken(transport: Transport, answer: bytes) -> None:
    """``answer``, served once, is refused as a broken answer of the party, in plain words."""
    server, port = await serve_once(answer)
    try:
        with pytest.raises(InvalidResponse) as refused:
            await transport.request(
                "GET",
                f"http://127.0.0.1:{port}/",
                what="gateway X",
                headers={},
                max_bytes=1000,
                broken=InvalidResponse,
            )
    finally:
        await transport.close()
        server.close()
    assert str(refused.value) == "gateway X sent a broken HTTP response"


async def test_a_chunked_answer_is_read_whole(client: Client) -> None:
    server, port = await serve_once(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n"
    )
    transport = client(timeout=5)
    try:
        reply = await transport.request(
            "GET", f"http://127.0.0.1:{port}/", what="x", headers={}, max_bytes=100
        )
    finally:
        await transport.close()
        server.close()
    assert (reply.status, reply.body) == (200, b"hello world")


async def test_an_answer_cut_short_is_a_broken_answer_of_the_party(client: Client) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"
    await refused_as_broken(client(timeout=5), answer)


async def test_a_streamed_answer_is_returned_unread_and_read_in_chunks(client: Client) -> None:
    body = bytes(range(256)) * 1024  # 256 KiB, more than one chunk
    server, port = await serve_once(
        b"HTTP/1.1 200 OK\r\nX-Parts: 1\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    )
    transport = client(timeout=5)
    try:
        reply = await transport.request(
            "GET",
            f"http://127.0.0.1:{port}/",
            what="x",
            headers={},
            max_bytes=10,  # the whole body is over the cap: a streamed one is not held whole
            stream_if="x-parts",
        )
        assert reply.body == b""
        assert reply.chunks is not None
        assert reply.release is not None
        received = [chunk async for chunk in reply.chunks]
        await reply.release()
    finally:
        await transport.close()
        server.close()
    assert b"".join(received) == body
    assert max(len(chunk) for chunk in received) <= 65536


async def test_failed_connections_do_not_use_up_the_peers_connections() -> None:
    """A peer that cannot be reached, asked more often than it may have connections, is
    reported unreachable each time (not made to wait for connections that never opened)."""
    transport = PooledTransport(timeout=2, limit_per_host=1)
    port = free_port()
    try:
        for _ in range(3):
            with pytest.raises(NetworkError, match="gateway X cannot be reached"):
                await transport.request(
                    "GET", f"http://127.0.0.1:{port}/", what="gateway X", headers={}, max_bytes=1
                )
    finally:
        await transport.close()


async def test_a_released_unread_stream_frees_its_connection() -> None:
    """A streamed answer let go before its end closes its connection and frees its place: the
    next request to the peer is answered on a new connection."""
    body = b"x" * 200_000
    answer = b"HTTP/1.1 200 OK\r\nX-Parts: 1\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    accepted: list[int] = []

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(reply, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = PooledTransport(timeout=2, limit_per_host=1)
    try:
        for _ in range(2):
            streamed = await transport.request(
                "GET",
                f"http://127.0.0.1:{port}/",
                what="x",
                headers={},
                max_bytes=10,
                stream_if="x-parts",
            )
            assert streamed.release is not None
            await streamed.release()
    finally:
        await transport.close()
        server.close()
    assert len(accepted) == 2


@pytest.fixture
async def tls_keeping(tmp_path: Path) -> AsyncIterator[tuple[int, list[int], Path]]:
    """A TLS port (a certificate for 127.0.0.1 from a CA of its own) that keeps connections
    open and notes each it accepts; with the CA's file for clients to trust."""
    at = datetime.now(UTC)
    root_key = generate_key()
    authority = ca.CertificateAuthority(
        key=root_key,
        certificate=ca.create_root(root_key, instance="EE", at=at, validity=timedelta(days=1)),
    )
    key = generate_key()
    certificate = authority.issue(
        public_key=key.public_key(),
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gateway")]),
        profile=ca.Profile.TLS,
        at=at,
        validity=timedelta(days=1),
        hosts=["127.0.0.1"],
    )
    (tmp_path / "ca.pem").write_text(certificate_pem(authority.certificate))
    (tmp_path / "tls.pem").write_text(certificate_pem(certificate))
    (tmp_path / "tls.key").write_bytes(private_key_pem(key))
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(tmp_path / "tls.pem", tmp_path / "tls.key")
    accepted: list[int] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(len(accepted) + 1)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_tls)
    yield server.sockets[0].getsockname()[1], accepted, tmp_path / "ca.pem"
    server.close()


async def test_a_connection_kept_under_one_tls_context_never_serves_another(
    tls_keeping: tuple[int, list[int], Path],
) -> None:
    """Each configuration has its own pinned contexts: a connection verified under one (an
    older configuration's pins) is not reused for a request made under another."""
    port, accepted, authority = tls_keeping
    first, second = (ssl.create_default_context(cafile=str(authority)) for _ in range(2))
    transport = PooledTransport(timeout=5)
    try:
        for context in (first, first, second, second):
            reply = await transport.request(
                "GET",
                f"https://127.0.0.1:{port}/",
                what="x",
                headers={},
                tls=context,
                max_bytes=10,
            )
            assert reply.body == b"ok"
    finally:
        await transport.close()
    assert accepted == [1, 2]


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nX-A: 1\nContent-Length: 2\r\n\r\nok", id="bare-lf"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", id="signed-length"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\nok", id="spaced-length"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
            id="two-lengths",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nok\r\n0\r\n\r\n",
            id="length-and-chunked",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok", id="obs-fold"
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2x\r\nok\r\n0\r\n\r\n",
            id="chunk-size",
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\nX-A : 1\r\nContent-Length: 2\r\n\r\nok", id="name-space"),
    ],
)
async def test_an_answer_that_could_desync_the_connection_is_a_broken_answer(
    answer: bytes,
) -> None:
    """Answers that two readers could frame differently (a smuggled answer's way in) are
    refused whole, with a plain message, and their connection is not kept."""
    await refused_as_broken(PooledTransport(timeout=5), answer)


async def test_an_interim_answer_is_skipped_and_bodiless_answers_end_at_their_head() -> None:
    """A 100 Continue is not the answer; a 204 or the answer to a HEAD has no body whatever
    its Content-Length says, and its connection is kept for the next request."""
    answers = [
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nend",
    ]
    accepted: list[int] = []

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            for answer in answers:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(answer)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(reply, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = PooledTransport(timeout=5)
    try:
        replies = [
            await transport.request(
                method, f"http://127.0.0.1:{port}/", what="x", headers={}, max_bytes=100
            )
            for method in ("GET", "GET", "HEAD", "GET")
        ]
    finally:
        await transport.close()
        server.close()
    assert [(r.status, r.body) for r in replies] == [
        (200, b"ok"),
        (204, b""),
        (200, b""),
        (200, b"end"),
    ]
    assert accepted == [1]


async def test_an_answer_to_the_end_of_the_connection_is_read_and_not_kept() -> None:
    server, port = await serve_once(b"HTTP/1.1 200 OK\r\n\r\nall of it")
    transport = PooledTransport(timeout=5)
    try:
        reply = await transport.request(
            "GET", f"http://127.0.0.1:{port}/", what="x", headers={}, max_bytes=100
        )
        with pytest.raises(PayloadTooLarge):
            await transport.request(
                "GET", f"http://127.0.0.1:{port}/", what="x", headers={}, max_bytes=3
            )
    finally:
        await transport.close()
        server.close()
    assert reply.body == b"all of it"


async def test_a_chunked_answer_over_the_cap_is_refused_as_its_bytes_arrive() -> None:
    chunk = b"x" * 4096
    server, port = await serve_once(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"1000\r\n"
        + chunk
        + b"\r\n"
        + b"1000\r\n"
        + chunk
        + b"\r\n0\r\n\r\n"
    )
    transport = PooledTransport(timeout=5)
    try:
        with pytest.raises(PayloadTooLarge):
            await transport.request(
                "GET", f"http://127.0.0.1:{port}/", what="x", headers={}, max_bytes=5000
            )
    finally:
        await transport.close()
        server.close()


async def test_bytes_after_an_answer_with_a_long_head_end_its_connection_not_the_answer() -> None:
    """An answer whose head fills the rest of a read's head allowance, with more bytes behind
    it in that read: the answer is returned, the connection is not kept. The reads are fed by
    hand, so that the head's first line comes in a read of its own on every run."""
    first, rest = b"HTTP/1.1 200 OK\r\n", b"Content-Length: 2\r\n\r\nok"
    # The answer ends where the head's allowance does: what follows comes after the parser.
    padding = b"X-Pad: " + b"p" * (pooled.HEAD_LIMIT - len(first) - len(rest) - 9) + b"\r\n"
    forged = b"HTTP/1.1 404 Not Found\r\nContent-Length: 900\r\n\r\n" + b"f" * 900
    reader = asyncio.StreamReader()
    answer = pooled._Answer("GET")
    reader.feed_data(first)
    await answer.read(reader)
    reader.feed_data(padding + rest + forged)
    assert (await answer.read_whole(reader, max_bytes=100), answer.status) == (b"ok", 200)
    assert not answer.reusable()


async def test_a_connection_with_bytes_after_its_answer_is_not_kept() -> None:
    """A second answer sent after the first (a smuggled one) is not taken for the answer to
    the next request: the connection it came on is closed, and the next opens anew."""
    accepted: list[int] = []

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nforge"
                )
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(reply, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = PooledTransport(timeout=5)
    try:
        replies = [
            await transport.request(
                "GET", f"http://127.0.0.1:{port}/", what="x", headers={}, max_bytes=100
            )
            for _ in range(2)
        ]
    finally:
        await transport.close()
        server.close()
    assert [(r.status, r.body) for r in replies] == [(200, b"ok"), (200, b"ok")]
    assert accepted == [1, 1]


async def test_an_answer_head_over_64_kib_is_a_broken_answer() -> None:
    answer = b"HTTP/1.1 200 OK\r\nX-A: " + b"a" * 70_000 + b"\r\nContent-Length: 2\r\n\r\nok"
    await refused_as_broken(PooledTransport(timeout=5), answer)


async def test_a_streamed_answer_read_to_its_end_gives_its_connection_back() -> None:
    """Read to its last chunk (here chunked, its pieces handed over as they come), a streamed
    answer's connection serves the next request."""
    accepted: list[int] = []

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(
                    b"HTTP/1.1 200 OK\r\nX-Parts: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"3\r\nabc\r\n"
                )
                await writer.drain()
                await asyncio.sleep(0.05)
                writer.write(b"2\r\nde\r\n0\r\n\r\n")
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(reply, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = PooledTransport(timeout=5, limit_per_host=1)
    received: list[list[bytes]] = []
    try:
        for _ in range(2):
            streamed = await transport.request(
                "GET",
                f"http://127.0.0.1:{port}/",
                what="x",
                headers={},
                max_bytes=1,
                stream_if="x-parts",
            )
            assert streamed.chunks is not None
            assert streamed.release is not None
            received.append([chunk async for chunk in streamed.chunks])
            await streamed.release()
    finally:
        await transport.close()
        server.close()
    assert received == [[b"abc", b"de"], [b"abc", b"de"]]
    assert accepted == [1]


async def test_requests_under_way_each_time_out_at_their_own_limit(silent: int) -> None:
    """The pooled client watches all its requests' limits with one timer: a shorter limit
    given while a longer one is under way is still kept, and each ends as a timeout."""
    transport = PooledTransport(timeout=5)
    url = f"http://127.0.0.1:{silent}/"
    ended: dict[str, float] = {}

    async def ask(name: str, limit: float) -> None:
        started = time.monotonic()
        with pytest.raises(ServiceTimeout):
            await transport.request("GET", url, what=name, headers={}, timeout=limit, max_bytes=1)
        ended[name] = time.monotonic() - started

    try:
        await asyncio.gather(ask("long", 1.5), ask("short", 0.2))
        await ask("again", 0.2)  # after the watched ones ended, a new limit is watched anew
    finally:
        await transport.close()
    assert ended["short"] < 1.0
    assert 1.5 <= ended["long"] < 4
    assert ended["again"] < 1.0


def test_a_limit_is_kept_on_a_new_loop_whatever_a_loop_that_ended_left_armed() -> None:
    """A timer left armed on an event loop that has ended never stands in for the next loop's:
    a request there still times out at its own limit."""
    deadlines = _Deadlines()

    async def quick() -> None:
        with deadlines.within(0.5):
            pass  # ends at once; the loop's timer for +0.5 s stays armed as the loop ends

    async def slow() -> float:
        started = time.monotonic()
        with pytest.raises(TimeoutError), deadlines.within(0.8):  # later than the one left
            await asyncio.sleep(4)
        return time.monotonic() - started

    asyncio.run(quick())
    assert asyncio.run(slow()) < 2.5


async def test_a_request_cancelled_by_its_caller_is_cancelled_not_timed_out(silent: int) -> None:
    transport = PooledTransport(timeout=0.5)
    url = f"http://127.0.0.1:{silent}/"
    try:
        asking = asyncio.ensure_future(
            transport.request("GET", url, what="x", headers={}, max_bytes=1)
        )
        await asyncio.sleep(0.1)
        asking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asking
        assert transport._deadlines._watched == {}  # its limit went with it: fires at nobody
        with pytest.raises(ServiceTimeout):  # and the client still keeps limits
            await transport.request("GET", url, what="x", headers={}, timeout=0.2, max_bytes=1)
    finally:
        await transport.close()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/r1/EE/GOV/1/sub/code?person=EE1",
        "https://gw.example.ee/r1/EE/GOV/1/sub/code/a%20b/c",
        "https://gw.example.ee:8443",
        "https://gw.example.ee?x=1",
        "https://gw.example.ee/p?",
        "https://gw.example.ee/p#part?x=1",
        "https://gw.example.ee/p?x=1#part",
        "http://user@host:1/p?a=1?b=2",
        "https://[::1]:8443/r1/x",
        "HTTPS://gw.example.ee/p",
        "https://gw.example.ee/p q\tr\r\n",
        "https://gw.example.ee/caf\u00e9",
        " https://gw.example.ee/p",
    ],
)
def test_a_url_is_read_as_the_standard_library_reads_it(url: str) -> None:
    """The pooled client reads its URLs without urlsplit where that is plainly the same; the
    scheme, authority and request target are always urlsplit's."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    assert pooled._parts(url) == (parts.scheme, parts.netloc, target)


@pytest.mark.parametrize("url", ["https://[::1:8443/p", "https://::1]:8443/p", "http://h:99999/p"])
async def test_a_malformed_authority_is_refused_as_before(url: str) -> None:
    transport = PooledTransport(timeout=1)
    with pytest.raises(ValueError, match=r"IPv6|[Pp]ort"):
        await transport.request("GET", url, what="x", headers={}, max_bytes=1)
