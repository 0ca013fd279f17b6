"""A request's body read with its cap, straight from the server's messages."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from starlette.requests import ClientDisconnect
from starlette.types import Message

from exchange.errors import PayloadTooLarge
from exchange.http import receive_body


def messages(*sent: Message) -> Callable[[], Awaitable[Message]]:
    queue = list(sent)

    async def receive() -> Message:
        return queue.pop(0)

    return receive


def piece(body: bytes, more: bool) -> Message:
    return {"type": "http.request", "body": body, "more_body": more}


def read(receive: Callable[[], Awaitable[Message]], length: str | None, cap: int) -> bytes:
    return asyncio.run(receive_body(receive, content_length=length, max_bytes=cap))


def test_a_body_in_one_message_or_in_pieces_is_read_whole() -> None:
    assert read(messages(piece(b"abc", False)), "3", 10) == b"abc"
    assert read(messages(piece(b"ab", True), piece(b"", True), piece(b"c", False)), None, 3) == (
        b"abc"
    )
    assert read(messages({"type": "http.request"}), None, 10) == b""


def test_a_body_over_the_cap_is_refused_before_or_as_it_is_read() -> None:
    with pytest.raises(PayloadTooLarge):  # declared too long: nothing is read
        read(messages(), "11", 10)
    with pytest.raises(PayloadTooLarge):  # declared short (or not at all), sent longer
        read(messages(piece(b"x" * 6, True), piece(b"x" * 5, True)), "5", 10)
    with pytest.raises(PayloadTooLarge):
        read(messages(piece(b"x" * 11, False)), None, 10)


def test_a_client_that_hangs_up_is_told_apart() -> None:
    with pytest.raises(ClientDisconnect):
        read(messages(piece(b"ab", True), {"type": "http.disconnect"}), None, 10)
