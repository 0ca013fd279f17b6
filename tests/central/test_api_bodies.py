"""The authority's API asks who is calling before it reads a body, and reads a capped one.

The app is driven as its HTTP server drives it (ASGI): the client's body is handed over only when
the app asks for it, so the test sees how much the app took before it answered.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

from starlette.types import Message

from exchange.central.app import MAX_API_BODY, create_app
from exchange.central.files import read_admin_token
from exchange.central.service import Central
from tests.conftest import Clock

HUGE = 200_000_000
CHUNK = 64 * 1024


@dataclass
class Client:
    """A client sending a ``size``-byte body (``content``, else filler) in chunks, as far as the
    app reads it; it gives up (disconnects) after ``patience`` bytes, so that a test that fails
    does not stream 200 MB."""

    size: int
    content: bytes = b""
    patience: int = 1024 * 1024
    taken: int = 0
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def chunks(self) -> Iterator[bytes]:
        while self.taken < min(self.size, self.patience):
            end = min(self.taken + CHUNK, self.size)
            chunk = self.content[self.taken : end] if self.content else b"x" * (end - self.taken)
            self.taken = end
            yield chunk

    async def call(self, central: Central, clock: Clock, headers: dict[str, str]) -> None:
        app = create_app(central.settings, clock=clock)
        chunks = self.chunks()

        async def receive() -> Message:
            chunk = next(chunks, None)
            if chunk is None:
                return {"type": "http.disconnect"}
            return {"type": "http.request", "body": chunk, "more_body": self.taken < self.size}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
                self.headers = {k.decode(): v.decode() for k, v in message["headers"]}
            elif message["type"] == "http.response.body":
                self.body += message.get("body", b"")

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/api/v1/members",
            "raw_path": b"/api/v1/members",
            "root_path": "",
            "query_string": b"",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 4401),
        }
        await app(scope, receive, send)

    def error(self) -> str:
        assert self.headers["x-road-error"] == json.loads(self.body)["type"]
        return self.headers["x-road-error"]


def admin(central: Central) -> dict[str, str]:
    return {"Authorization": f"Bearer {read_admin_token(central.settings)}"}


async def test_unauthenticated_huge_body_is_refused_unread(central: Central, clock: Clock) -> None:
    for credentials in ({}, {"Authorization": "Bearer wrong"}):
        client = Client(HUGE)
        await client.call(
            central,
            clock,
            {"Content-Type": "application/json", "Content-Length": str(HUGE), **credentials},
        )
        assert (client.status, client.error()) == (401, "Client.Unauthenticated")
        assert client.taken == 0


async def test_unauthenticated_chunked_body_is_refused_unread(
    central: Central, clock: Clock
) -> None:
    client = Client(HUGE)
    await client.call(central, clock, {"Content-Type": "application/json"})
    assert (client.status, client.error()) == (401, "Client.Unauthenticated")
    assert client.taken == 0


async def test_declared_oversize_body_is_refused_unread(central: Central, clock: Clock) -> None:
    client = Client(HUGE)
    headers = {"Content-Type": "application/json", "Content-Length": str(HUGE)}
    await client.call(central, clock, {**headers, **admin(central)})
    assert (client.status, client.error()) == (413, "Client.PayloadTooLarge")
    assert client.taken == 0


async def test_streamed_oversize_body_is_cut_off_before_parsing(
    central: Central, clock: Clock
) -> None:
    client = Client(2 * MAX_API_BODY, patience=HUGE)
    await client.call(central, clock, {"Content-Type": "application/json", **admin(central)})
    # 413, not the parser's 400 for a body that is not JSON: it was never parsed
    assert (client.status, client.error()) == (413, "Client.PayloadTooLarge")
    assert client.taken <= MAX_API_BODY + CHUNK
    assert central.registry.members() == []


async def test_body_within_the_cap_is_read_whole(central: Central, clock: Clock) -> None:
    document = json.dumps({"id": "EE/GOV/70000310", "name": "Population Register"}).encode()
    padded = document.ljust(MAX_API_BODY)  # JSON may end in white space
    statuses = []
    for headers in ({}, {"Content-Length": str(MAX_API_BODY)}):  # streamed, then declared
        client = Client(MAX_API_BODY, content=padded, patience=HUGE)
        await client.call(
            central, clock, {"Content-Type": "application/json", **headers, **admin(central)}
        )
        statuses.append(client.status)
    assert statuses == [201, 409]  # registered, then the same member again
    assert [m.name for m in central.registry.members()] == ["Population Register"]
