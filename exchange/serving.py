"""Run one or more ASGI apps with uvicorn in one event loop, stopping all on SIGINT/SIGTERM.

uvicorn's own signal capture assumes one server per process; a gateway has two listeners and
the demo has many, so signals are handled here once and passed to every server. A request that
uvicorn cannot parse never reaches an app's error boundary; :class:`HttpProtocol` answers it in
the same X-Road form, and writes each answer's head together with its body (uvicorn writes
them apart: two TLS records and two sends for every small answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import signal
import socket
from collections.abc import Callable, Coroutine, Generator, Sequence
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from exchange.errors import InvalidRequest
from exchange.http import error_body


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # signals are handled by serve_all


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol, answering a request it cannot parse (a request line that is
    not ASCII or is too long, or no HTTP at all) with X-Road's error body, not plain text; each
    answer's head leaves with its first piece of body (:class:`_HeadWithBody`)."""

    def on_headers_complete(self) -> None:
        before = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        # A new cycle for this request (none on an upgrade), whose answer will carry a body
        # write: uvicorn writes none after the head of an answer to HEAD.
        if cycle is not None and cycle is not before and cycle.scope["method"] != "HEAD":
            cycle.transport = _HeadWithBody(self.transport)  # type: ignore[assignment]

    def send_400_response(self, msg: str) -> None:
        error = InvalidRequest("the request is not valid HTTP/1.1 (request line or headers)")
        body = json.dumps(error_body(error), separators=(",", ":")).encode()
        head = [b"HTTP/1.1 400 Bad Request"]
        head += [name + b": " + value for name, value in self.server_state.default_headers]
        head += [
            b"content-type: application/json",
            b"x-road-error: " + error.xroad_type.encode(),
            b"content-length: " + str(len(body)).encode(),
            b"connection: close",
        ]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        self.transport.close()


class _HeadWithBody:
    """The connection's transport as one answer's cycle sees it: the answer's head is held and
    written with the body write that follows it (uvicorn makes one for every answer not to
    ``HEAD``, if only of nothing), so a small answer leaves in one write, one TLS record and
    one send. A cycle that closes the connection after the head (an answer broken off) sends
    the head first, as before. An interim ``100 Continue`` is not held."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head: bytes | None = None
        self._held = False

    def write(self, data: bytes) -> None:
        if not self._held and not data.startswith(b"HTTP/1.1 100 "):
            self._held = True  # the first write of an answer is its head
            self._head = data
            return
        if self._head is not None:
            data, self._head = self._head + data, None
        self._transport.write(data)

    def close(self) -> None:
        if self._head is not None:
            self._transport.write(self._head)
            self._head = None
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def config(app: Any, *, host: str, port: int, **options: Any) -> uvicorn.Config:
    options.setdefault("http", HttpProtocol)
    # X-Forwarded-* believed only from the proxies a role is told it sits behind
    # (``forwarded_allow_ips``: the authority's trusted proxies); none by default, so a client
    # is its TCP peer whatever it sends. Not looking at them at all also saves time.
    options.setdefault("proxy_headers", bool(options.get("forwarded_allow_ips")))
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        server_header=False,
        loop="uvloop",
        **options,
    )


async def serve_all(
    configs: Sequence[uvicorn.Config],
    *,
    background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
    on_started: Callable[[], None] | None = None,
    sockets: Sequence[socket.socket] | None = None,
    until: asyncio.Event | None = None,
) -> None:
    """Serve every config until a signal arrives, one server stops, or ``until`` is set; then
    stop them all.

    ``sockets`` (one per config, in order) are listening sockets bound already, served instead
    of binding each config's host and port (a gateway's workers)."""
    servers = [_Server(c) for c in configs]
    loop = asyncio.get_running_loop()
    helpers: list[asyncio.Task[None]] = []

    def stop() -> None:
        # Background jobs stop first: they may be calling servers that are going down (in the
        # demo, every role is in this one process), and would only log failures.
        for helper in helpers:
            helper.cancel()
        for server in servers:
            if server.should_exit:
                server.force_exit = True
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop)
    bound = [None] * len(configs) if sockets is None else [[sock] for sock in sockets]
    tasks = [
        asyncio.create_task(s.serve(sockets=b), name=f"serve:{c.port}")
        for s, c, b in zip(servers, configs, bound, strict=True)
    ]
    helpers += [asyncio.create_task(job()) for job in background]
    try:
        while not all(s.started for s in servers):
            if any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.01)
        if all(s.started for s in servers):
            # Everything loaded so far (modules, settings, keys, an audit tree) lives as long as
            # the process: keep it out of the collector's full passes, which otherwise walk it
            # all and stall requests for tens of milliseconds.
            gc.collect()
            gc.freeze()
            if on_started is not None:
                on_started()
        watched: list[asyncio.Task[Any]] = list(tasks)
        if until is not None:
            helpers.append(asyncio.create_task(until.wait()))  # type: ignore[arg-type]
            watched.append(helpers[-1])
        done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            if task in tasks and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        failed = [c.port for s, c in zip(servers, configs, strict=True) if not s.started]
        if failed:
            raise OSError(f"could not listen on port(s) {', '.join(map(str, failed))}")
    finally:
        for helper in helpers:
            helper.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on uvloop (about twice asyncio's HTTP throughput here)."""
    import uvloop

    uvloop.run(main)
