"""The gateway's default transport (aiohttp) against real sockets: limits and failures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from exchange.errors import NetworkError, PayloadTooLarge, ServiceTimeout
from exchange.gateway.transport import AiohttpTransport
from tests.servers import free_port


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


async def test_a_peer_that_never_answers_times_out_at_the_session_limit(silent: int) -> None:
    transport = AiohttpTransport(timeout=0.5)  # the gateway's peer_timeout
    started = time.monotonic()
    try:
        with pytest.raises(ServiceTimeout, match="gateway X did not answer in time"):
            await transport.request(
                "GET", f"http://127.0.0.1:{silent}/", what="gateway X", headers={}, max_bytes=10
            )
    finally:
        await transport.close()
    assert time.monotonic() - started < 3


async def test_a_request_may_set_its_own_shorter_limit(silent: int) -> None:
    transport = AiohttpTransport(timeout=30)
    started = time.monotonic()
    try:
        with pytest.raises(ServiceTimeout):
            await transport.request(
                "GET", f"http://127.0.0.1:{silent}/", what="x", headers={}, timeout=0.3, max_bytes=1
            )
    finally:
        await transport.close()
    assert time.monotonic() - started < 3


async def test_a_refused_connection_is_a_network_error_naming_the_party() -> None:
    transport = AiohttpTransport(timeout=5)
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


async def test_an_answer_over_the_cap_is_refused(talkative: int) -> None:
    transport = AiohttpTransport(timeout=5)
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


async def test_only_the_headers_given_are_sent(echo: tuple[int, list[bytes]]) -> None:
    """The consumer signs the request it sends: the client adds no Accept, Content-Type or
    User-Agent of its own (a caller that sends none would otherwise fail its own signature)."""
    port, heads = echo
    transport = AiohttpTransport(timeout=5)
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
