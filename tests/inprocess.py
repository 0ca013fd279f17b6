"""A whole sample federation inside the test's process, on a clock the test moves.

Every role is its real object and ASGI app (central authority, identity provider, timestamping
authority, consent service, both gateways); what would cross a socket is handed from app to app
by transports instead (:class:`Loopback`), in the manner of httpx's ``MockTransport``:

- the gateways' :class:`~exchange.gateway.transport.Transport` (peer gateways, consent
  services), which also puts the calling gateway's TLS fingerprint into the provider's scope, as
  the real TLS listener does;
- blocking httpx transports for the identity provider's keys, timestamps, and the test itself.

What this cannot show (TLS handshakes, processes killed and restarted, the command line,
several replicas) stays with the multi-process federation of ``tests/gateway/conftest.py``; see
``tests/README.md``.

The stateful roles run on one event loop in a thread of their own (``main``); the stateless
authorities (identity provider, TSA) on a second one (``side``), so that a blocking call made on
the main loop (a JWKS fetch inside token validation) never waits for its own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import uvicorn
from starlette.types import ASGIApp, Message

from exchange.central.app import create_app as create_central_app
from exchange.central.files import resolve
from exchange.central.service import build as build_central
from exchange.consent.app import create_app as create_consent_app
from exchange.consent.service import ConsentService
from exchange.consent.settings import ConsentSettings
from exchange.db import migrate
from exchange.db.engine import build_engine
from exchange.errors import (
    Error,
    NetworkError,
    PayloadTooLarge,
    ServiceFailed,
    ServiceTimeout,
)
from exchange.gateway import files as gateway_files
from exchange.gateway.consumer import create_consumer_app
from exchange.gateway.node import Gateway
from exchange.gateway.preview import create_preview_app
from exchange.gateway.provider import create_provider_app
from exchange.gateway.settings import GatewaySettings
from exchange.gateway.tls import PEER_FINGERPRINT, PeerCertificateProtocol, server_ssl_options
from exchange.gateway.transport import Reply
from exchange.identity.login import OidcLogin
from exchange.idp import files as idp_files
from exchange.idp.app import create_app as create_idp_app
from exchange.portal.app import Portal
from exchange.portal.app import create_app as create_portal_app
from exchange.portal.settings import PortalSettings
from exchange.sample import federation
from exchange.trust.globalconf import TrustAnchor
from exchange.trust.globalconf_client import GlobalConfClient, HttpFetch, utcnow
from exchange.trust.keys import fingerprint, load_certificate
from exchange.tsa import files as tsa_files
from exchange.tsa.app import create_app as create_tsa_app

T = TypeVar("T")


class LoopThread:
    """An event loop running in a daemon thread, for apps that must share one loop."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, work: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        """Run ``work`` on this loop from another thread and wait for its result."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("a blocking call on a loop cannot wait for that same loop")
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


async def asgi_call(
    app: ASGIApp,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | list[tuple[str, str]],
    body: bytes = b"",
    scope: Mapping[str, Any] | None = None,
) -> tuple[int, list[tuple[str, str]], bytes]:
    """One HTTP exchange with ``app``: the request as a server would hand it over."""
    parts = urlsplit(url)
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    if not any(name.lower() == "host" for name, _ in pairs):
        pairs.insert(0, ("host", parts.netloc))
    if body and not any(name.lower() == "content-length" for name, _ in pairs):
        pairs.append(("content-length", str(len(body))))
    request_scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": parts.scheme,
        "path": parts.path,  # raw_path carries the exact bytes; the gateways read only that
        "raw_path": parts.path.encode("ascii"),
        "root_path": "",
        "query_string": parts.query.encode("ascii"),
        "headers": [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in pairs],
        "client": ("127.0.0.1", 50000),
        "server": (parts.hostname or "127.0.0.1", parts.port or 80),
        **(scope or {}),
    }
    sent = False
    finished = asyncio.Event()
    status = 500
    answer: list[tuple[str, str]] = []
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await finished.wait()  # the client hangs up only once the answer is complete
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            answer.extend((n.decode("latin-1"), v.decode("latin-1")) for n, v in message["headers"])
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                finished.set()

    await app(request_scope, receive, send)
    finished.set()
    return status, answer, b"".join(chunks)


@dataclass
class Loopback:
    """Origins (``scheme://host:port``) served by in-process apps, each on its loop."""

    routes: dict[str, tuple[ASGIApp, LoopThread]] = field(default_factory=dict)
    unplugged: set[str] = field(default_factory=set)

    def serve(self, url: str, app: ASGIApp, loop: LoopThread) -> None:
        self.routes[_origin(url)] = (app, loop)

    @contextlib.contextmanager
    def down(self, url: str) -> Iterator[None]:
        """``url``'s server cannot be reached for the block (connection refused)."""
        self.unplugged.add(_origin(url))
        try:
            yield
        finally:
            self.unplugged.discard(_origin(url))

    def route(self, url: str) -> tuple[ASGIApp, LoopThread]:
        origin = _origin(url)
        if origin in self.unplugged or origin not in self.routes:
            raise NetworkError(f"{origin} cannot be reached")
        return self.routes[origin]

    async def call(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | list[tuple[str, str]],
        body: bytes = b"",
        scope: Mapping[str, Any] | None = None,
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """From any loop: the app's answer, run on the app's own loop."""
        app, loop = self.route(url)
        work = asgi_call(app, method, url, headers=headers, body=body, scope=scope)
        if asyncio.get_running_loop() is loop.loop:
            return await work
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, loop.loop))

    def gateway_transport(self, tls_fingerprint: str) -> GatewayTransport:
        return GatewayTransport(self, tls_fingerprint)

    def asynchronous(self) -> httpx.AsyncBaseTransport:
        return AsyncTransport(self)

    def blocking(self, scope: Mapping[str, Any] | None = None) -> httpx.BaseTransport:
        """For httpx's blocking client; ``scope`` adds to each request's ASGI scope."""
        return BlockingTransport(self, scope)


class GatewayTransport:
    """What a gateway's outbound HTTP becomes in process; see :mod:`exchange.gateway.transport`."""

    def __init__(self, loopback: Loopback, tls_fingerprint: str) -> None:
        self._loopback = loopback
        self._scope = {PEER_FINGERPRINT: tls_fingerprint}

    async def request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        headers: Mapping[str, str],
        body: bytes = b"",
        tls: Any = None,
        timeout: float | None = None,
        max_bytes: int,
        broken: type[ServiceFailed] = ServiceFailed,
        stream_if: str | None = None,  # in process every reply is read whole
    ) -> Reply:
        scope = self._scope if url.startswith("https:") else None
        try:
            async with asyncio.timeout(timeout):
                status, answer, payload = await self._loopback.call(
                    method, url, headers=headers, body=body, scope=scope
                )
        except TimeoutError as exc:
            raise ServiceTimeout(f"{what} did not answer in time") from exc
        except NetworkError as exc:  # as the table words it for a refused connection
            raise NetworkError(f"{what} cannot be reached") from exc
        if len(payload) > max_bytes:
            raise PayloadTooLarge(f"the answer is larger than {max_bytes} bytes")
        return Reply(status, {n.lower(): v for n, v in answer}, payload)

    async def close(self) -> None:
        return None


class AsyncTransport(httpx.AsyncBaseTransport):
    """httpx's async client onto the in-process apps (the portal, sign-in at the issuer)."""

    def __init__(self, loopback: Loopback) -> None:
        self._loopback = loopback

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        sent = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        try:
            status, headers, body = await self._loopback.call(
                request.method, str(request.url), headers=sent, body=await request.aread()
            )
        except NetworkError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        return httpx.Response(status, headers=headers, content=body, request=request)


class BlockingTransport(httpx.BaseTransport):
    """httpx's blocking client onto the in-process apps (tests, JWKS and timestamp fetches)."""

    def __init__(self, loopback: Loopback, scope: Mapping[str, Any] | None = None) -> None:
        self._loopback = loopback
        self._scope = scope

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        try:
            _, loop = self._loopback.route(url)
        except NetworkError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        status, headers, body = loop.run(
            self._loopback.call(
                request.method,
                url,
                headers=[
                    (k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw
                ],
                body=request.read(),
                scope=self._scope,
            )
        )
        return httpx.Response(status, headers=headers, content=body, request=request)


class LiveClock:
    """Real time, moved ahead by the test at will (tokens made with ``time.time()`` stay
    valid while a module runs; expiry is reached by :meth:`advance`, not by waiting)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta


class Listener:
    def __init__(self, server: uvicorn.Server, task: asyncio.Task[None]) -> None:
        self.server, self.task = server, task

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task


async def listen(app: ASGIApp, port: int, **options: Any) -> Listener:
    """``app`` served by uvicorn on 127.0.0.1:``port`` on this loop, until stopped; ``options``
    go to uvicorn (TLS, the protocol class)."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **options)
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises what stopped it
            raise OSError(f"could not listen on port {port}")
        await asyncio.sleep(0.01)
    return Listener(server, task)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port}"


class InProcess:
    """The sample federation's roles, built in process on ``clock``; see the module docstring.

    ``call`` and ``http`` reach the apps as a consumer system and other clients would.
    """

    def __init__(self, layout: federation.Federation, ports: federation.Ports, clock: Any):
        self.layout, self.ports, self.clock = layout, ports, clock
        self.main, self.side = LoopThread("federation-main"), LoopThread("federation-side")
        self.loopback = Loopback()
        self.http = httpx.Client(transport=self.loopback.blocking(), timeout=30)
        central_settings = resolve(layout.central)
        migrate.upgrade("central", build_engine(central_settings.db_url))
        self.central = build_central(central_settings, clock=clock)
        self.idp = idp_files.load(layout.idp, clock=clock)
        local = f"http://127.0.0.1:{ports.idp}"
        self.loopback.serve(local, create_idp_app(self.idp), self.side)
        tsa_app = create_tsa_app(tsa_files.load(layout.tsa), clock=clock)
        self.loopback.serve(f"http://127.0.0.1:{ports.tsa}", tsa_app, self.side)
        # The command line (exchange audit head, gateway exchanges, ...) runs as a process of its
        # own: the authorities it asks also listen on their real loopback ports.
        central_app = create_central_app(central_settings, clock=clock)
        self.loopback.serve(central_settings.url, central_app, self.side)
        # What listens on a real port, with the loop it runs on: stopped first at close.
        self._listeners: list[tuple[LoopThread, Listener]] = [
            (self.side, self.side.run(listen(tsa_app, ports.tsa))),
            (self.side, self.side.run(listen(central_app, ports.central))),
        ]
        blocking, asynchronous = self.loopback.blocking(), self.loopback.asynchronous()
        self._blocking = blocking
        self.consent = ConsentService(
            ConsentSettings.load(layout.consent),
            clock=clock,
            globalconf=self._globalconf(ConsentSettings.load(layout.consent).anchor),
            http=asynchronous,
            blocking_http=blocking,
        )
        self.loopback.serve(self.consent_url, create_consent_app(self.consent), self.main)
        self.gateways: dict[str, Gateway] = {}
        for name, config in (("provider", layout.provider), ("consumer", layout.consumer)):
            settings = GatewaySettings.load(config)
            gateway = self.main.run(self._gateway(settings, blocking))
            self.gateways[name] = gateway
        self.consent.trust.start("consent service")
        portal_settings = PortalSettings.load(layout.portal)
        self.portal = Portal(
            portal_settings,
            clock=clock,
            globalconf=self._globalconf(portal_settings.anchor),
            http=asynchronous,
            blocking_http=blocking,
        )
        self.portal.trust.start("citizen portal")
        self.loopback.serve(portal_settings.public_url, create_portal_app(self.portal), self.main)

    async def _gateway(self, settings: GatewaySettings, blocking: httpx.BaseTransport) -> Gateway:
        """Built on the main loop: its stores' batch writers belong to that loop."""
        tls = f"https://127.0.0.1:{settings.provider.port}"
        local = f"http://127.0.0.1:{settings.consumer.port}"
        presented = fingerprint(load_certificate(gateway_files.load(settings).tls_certificate_path))
        gateway = Gateway(
            settings,
            clock=self.clock,
            globalconf=self._globalconf(settings.anchor),
            transport=self.loopback.gateway_transport(presented),
            blocking_http=blocking,
        )
        # The feed's freshness runs on the test's clock too; and the consent service holds an
        # idle poll only briefly, so that a follower that lost the feed reads it again at once.
        gateway.revocations.monotonic = lambda: self.clock().timestamp()
        gateway.revocations.wait = 0.1
        view = gateway.trust.start(f"gateway {settings.id}")
        gateway.start_crl()
        gateway.refresh_status()
        gateway.started = True
        console = settings.console
        console_login = None
        if console.enabled and console.issuer and console.client_id and console.public_url:
            console_login = OidcLogin(
                issuer=console.issuer,
                client_id=console.client_id,
                redirect_uri=f"{console.public_url.rstrip('/')}/console/callback",
                transport=self.loopback.asynchronous(),
                keys_transport=blocking,
            )
        self.loopback.serve(
            local, create_consumer_app(gateway, console_login=console_login), self.main
        )
        self.loopback.serve(tls, create_provider_app(gateway), self.main)
        preview, identity = settings.preview, settings.identity
        if preview is not None and identity is not None:
            login = OidcLogin(
                issuer=identity.issuer,
                client_id=preview.client_id,
                client_secret=preview.client_secret,
                redirect_uri=f"{preview.public_url.rstrip('/')}/callback",
                transport=self.loopback.asynchronous(),
                keys_transport=blocking,
            )
            member = view.configuration.member(str(gateway.member))
            app = create_preview_app(
                gateway.previews,
                login=login,
                site=member.name if member else str(gateway.member),
                session_secret=gateway_files.session_key(settings),
                clock=self.clock,
            )
            self.loopback.serve(preview.public_url, app, self.main)
        return gateway

    def _globalconf(self, anchor: Path) -> GlobalConfClient:
        """A role's configuration client, fetching from the authority's app in process."""
        trusted = TrustAnchor.load(anchor)
        fetch = HttpFetch(trusted.configuration_url, transport=self.loopback.blocking())
        return GlobalConfClient(anchor=trusted, fetch=fetch, clock=self.clock)

    @property
    def consent_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.consent}"

    @property
    def consumer_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.consumer_consumer}"

    @property
    def provider(self) -> Gateway:
        return self.gateways["provider"]

    @property
    def consumer(self) -> Gateway:
        return self.gateways["consumer"]

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` on the roles' loop (e.g. a gateway's ``heads.sign_now()``)."""
        return self.main.run(work)

    def id_token(self, citizen: str, client: str) -> str:
        return self.idp.id_token(self.idp.citizens[citizen], audience=client)

    def listen_tls(self, name: str = "provider") -> None:
        """Gateway ``name``'s provider listener also on its real port, with mutual TLS as
        ``exchange gateway serve`` runs it (for the handshake tests)."""
        gateway = self.gateways[name]
        ca_file = gateway.settings.data_dir / "ca.pem"
        ca_file.write_text("".join(gateway.trust.view().configuration.ca_certificates))
        tls = server_ssl_options(
            certificate=gateway.keys.tls_certificate_path, key=gateway.keys.tls_key_path, ca=ca_file
        )
        app = create_provider_app(gateway)
        port = gateway.settings.provider.port
        listener = self.main.run(listen(app, port, http=PeerCertificateProtocol, **tls))
        assert listener.server.config.ssl is not None
        gateway.crl.protect(listener.server.config.ssl)  # the CRL, as the runner loads it
        self._listeners.append((self.main, listener))

    def listen_for_browser(self, *urls: str) -> None:
        """The apps serving ``urls`` (the identity provider, a preview site) also on their real
        loopback ports, over plain HTTP, for a real browser to walk."""
        for url in urls:
            app, loop = self.loopback.route(url)
            port = urlsplit(url).port
            assert port is not None, url
            self._listeners.append((loop, loop.run(listen(app, port))))

    def restart(self, name: str, settings: GatewaySettings | None = None) -> Gateway:
        """Gateway ``name`` ("provider", "consumer") stopped and built again from its files and
        database, as after a restart of its process (with other ``settings`` if given)."""
        settings = settings or self.gateways[name].settings
        self.main.run(self.gateways[name].close())
        self.gateways[name] = self.main.run(self._gateway(settings, self._blocking))
        return self.gateways[name]

    def portal_with(self, settings: PortalSettings) -> Portal:
        """The portal built again with ``settings`` (its folder and database kept), served at
        its public address in place of the one before."""
        self.main.run(self.portal.close())
        self.portal = Portal(
            settings,
            clock=self.clock,
            globalconf=self._globalconf(settings.anchor),
            http=self.loopback.asynchronous(),
            blocking_http=self._blocking,
        )
        self.portal.trust.start("citizen portal")
        self.loopback.serve(settings.public_url, create_portal_app(self.portal), self.main)
        return self.portal

    def refresh(self) -> None:
        """Every role asks the authority for its configuration (gateways: and the CRL), as its
        timer would: a failed
        fetch keeps the copy held (the timer logs it and tries again later)."""
        clients = [g.globalconf for g in self.gateways.values()]
        for client in [*clients, self.consent.globalconf, self.portal.globalconf]:
            with contextlib.suppress(Error):
                client.refresh()
        for gateway in self.gateways.values():  # and the CRL, as the gateway's timer would
            with contextlib.suppress(Error):
                gateway.refresh_crl()
            with contextlib.suppress(Error):
                gateway.refresh_status()

    def close(self) -> None:
        for loop, listener in self._listeners:
            loop.run(listener.stop())
        for gateway in self.gateways.values():
            self.main.run(gateway.close())
        self.main.run(self.portal.close())
        self.consent.close()
        self.http.close()
        self.main.stop()
        self.side.stop()
