"""The project's HTTP server settings on a real socket: how an answer leaves.

Each answer's head leaves together with its body, not in a write of its own: a reader finds
nothing of an answer until its body is sent, then head and body at once; an answer to HEAD, an
empty answer and an answer broken off after its head still reach the reader as before.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest
from starlette.types import Receive, Scope, Send

from tests.servers import in_thread

BODY = b'{"answer":42}'


class Gate:
    """An app that sends its answer's head, says so, and sends the body only when let."""

    def __init__(self) -> None:
        self.head_sent = threading.Event()
        self.send_body = threading.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        length = b"0" if scope["path"] == "/empty" else str(len(BODY)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", length)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        self.head_sent.set()
        if scope["path"] == "/broken":
            return  # broken off after the head: the server closes the connection
        if scope["path"] != "/empty" and scope["method"] != "HEAD":
            await asyncio.to_thread(self.send_body.wait, 10)
            await send({"type": "http.response.body", "body": BODY})
            return
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture
def served() -> Iterator[tuple[int, Gate]]:
    gate = Gate()
    with in_thread(gate) as port:
        yield port, gate
        gate.send_body.set()


def ask(port: int, method: str, path: str) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", port), timeout=10)
    connection.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return connection


def test_an_answers_head_leaves_only_with_its_body(served: tuple[int, Gate]) -> None:
    port, gate = served
    with ask(port, "GET", "/") as connection:
        assert gate.head_sent.wait(10)
        connection.setblocking(False)
        # The head was handed to the server (and, written alone, would be here already).
        with pytest.raises(BlockingIOError):
            connection.recv(65536)
        connection.setblocking(True)
        gate.send_body.set()
        first = connection.recv(65536)  # head and body arrive in one piece
    assert first.startswith(b"HTTP/1.1 200 OK\r\n")
    assert first.endswith(b"\r\n\r\n" + BODY)


@pytest.mark.parametrize(("method", "path"), [("HEAD", "/"), ("GET", "/empty")])
def test_answers_without_a_body_still_leave_whole(
    served: tuple[int, Gate], method: str, path: str
) -> None:
    port, _ = served
    with ask(port, method, path) as connection:
        answer = b""
        while not answer.endswith(b"\r\n\r\n"):
            answer += connection.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"content-type: application/json" in answer


def test_an_answer_broken_off_after_its_head_sends_the_head_then_closes(
    served: tuple[int, Gate],
) -> None:
    port, _ = served
    with ask(port, "GET", "/broken") as connection:
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"\r\n\r\n")  # the head alone, then the connection closed
