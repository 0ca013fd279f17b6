"""An exchange's answer as the gateway's HTTP server writes it on a real socket: the head as
Starlette wrote it, and a header value that would split the answer refused, never written
(the connection is closed instead)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from starlette.types import Receive, Scope, Send

from exchange.gateway.outcome import Released
from tests.servers import in_thread

BODY = b'{"answer":42}'


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "http"
    headers = {"X-Road-Id": "m-1", "Content-Type": "application/json"}
    if scope["path"] == "/split":  # as if relayed from a peer's answer
        headers["X-Road-Error"] = "Server.X\r\nX-Injected: yes"
    if scope["path"] == "/none":
        answer = Released(204, headers, b"")
    else:
        answer = Released(200, headers, b"" if scope["method"] == "HEAD" else BODY)
    await answer(scope, receive, send)


@pytest.fixture
def port() -> Iterator[int]:
    with in_thread(app) as chosen:
        yield chosen


def answer_to(port: int, method: str, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    return received


def test_the_answer_leaves_with_its_headers_and_length(port: int) -> None:
    head, _, body = answer_to(port, "GET", "/ok").partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    assert lines[1].startswith(b"date: ")  # the server's own
    assert lines[2:5] == [
        b"x-road-id: m-1",
        b"content-type: application/json",
        b"content-length: %d" % len(BODY),
    ]
    assert body == BODY
    head, _, body = answer_to(port, "HEAD", "/ok").partition(b"\r\n\r\n")
    assert b"content-length: 0" in head.split(b"\r\n")
    assert body == b""
    head, _, body = answer_to(port, "GET", "/none").partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 204 ")
    assert b"content-length" not in head
    assert body == b""


def test_a_header_value_that_would_split_the_answer_is_never_written(port: int) -> None:
    # uvicorn refuses the value as it writes the head, and closes the connection: the reader
    # gets no answer at all rather than one with a header of the peer's making.
    assert answer_to(port, "GET", "/split") == b""
    assert answer_to(port, "GET", "/ok").startswith(b"HTTP/1.1 200 ")  # still serving
