"""A stand-in for an agency's REST backend, behind the HTTP connector: counts every call and
can be told to be slow, down, or to answer with garbage or hostile XML."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import Iterator

from aiohttp import web

from tests.servers import free_port

DIPLOMA = {
    "personCode": "EE38001085718",
    "givenName": "Mari",
    "familyName": "Tamm",
    "institution": {"name": "University of Tartu", "registryCode": "74001073"},
    "qualification": {"title": "Master of Science in Informatics", "level": "master"},
    "fieldOfStudy": "Informatics",
    "awardedOn": "2004-06-18",
    "diplomaNumber": "MA-2004-1187",
}

XML_BOMB = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i else b"&lol;") * 10)
        for i in range(1, 10)
    )
    + b"]><lolz>&lol9;</lolz>"
)


class RegistryServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.mode = "ok"
        self.calls = 0
        self.bait = socket.socket()  # a listener that hostile XML points at; nothing may connect
        self.bait.bind(("127.0.0.1", 0))
        self.bait.listen(8)
        self.bait.setblocking(False)
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def bait_connections(self) -> int:
        count = 0
        with contextlib.suppress(BlockingIOError):
            while True:
                connection, _ = self.bait.accept()
                connection.close()
                count += 1
        return count

    async def _diploma(self, request: web.Request) -> web.StreamResponse:
        self.calls += 1
        if self.mode == "slow":
            await asyncio.sleep(10)
        if self.mode == "garbage":
            return web.Response(body=b"\x00\xffnot json at all", content_type="application/json")
        if self.mode == "error":
            return web.Response(status=500, text="registry crashed")
        if self.mode == "redirect":
            raise web.HTTPFound(f"http://127.0.0.1:{self.bait.getsockname()[1]}/elsewhere")
        if self.mode == "bomb":
            return web.Response(body=XML_BOMB, content_type="application/xml")
        if self.mode == "schema-location":
            bait = f"http://127.0.0.1:{self.bait.getsockname()[1]}/evil.xsd"
            body = (
                '<d xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
                f'xsi:schemaLocation="urn:x {bait}"><personCode>EE38001085718</personCode></d>'
            )
            return web.Response(text=body, content_type="application/xml")
        if request.match_info["person"] != DIPLOMA["personCode"]:
            return web.Response(status=404)
        return web.Response(text=json.dumps(DIPLOMA), content_type="application/json")

    def start(self) -> None:
        self._thread.start()
        self.start_again()

    async def _start(self) -> None:
        assert self._runner is not None
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def start_again(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/diplomas/{person}", self._diploma)
        self._runner = web.AppRunner(app)
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._runner = None

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self.bait.close()


@contextlib.contextmanager
def running_registry() -> Iterator[RegistryServer]:
    server = RegistryServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


def diploma_service(
    url: str, *, code: str = "diploma", policy: str = "legal-basis", timeout: float = 1.0
) -> str:
    """A provider's diploma service, backed by this server through the HTTP connector, waiting
    ``timeout`` seconds for a connection and as long for the answer (short: the fault tests wait
    them out)."""
    return (
        "\n[[services]]\n"
        f'subsystem = "population-registry"\ncode = "{code}"\nevidence_type = "diploma"\n'
        f'consent_policy = "{policy}"\nparameters = ["person"]\nmethods = ["GET", "POST"]\n'
        "[services.connector]\n"
        f'type = "http"\nurl = "{url}/diplomas/{{person}}"\n'
        f"timeout = {timeout}\nconnect_timeout = {timeout}\n"
    )
