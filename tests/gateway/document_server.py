"""Large evidence on loopback: an agency backend serving a large PDF scan, and a federation of
real processes (central authority and both gateways) whose provider streams it.

:class:`DocumentServer` makes its document up block by block, never holding it whole, and can be
told to promise one thing and send another (``mode``). :func:`document_federation` starts the
processes; :func:`rss` and :func:`peak_rss` read a process's resident memory from /proc. The
test (tests/gateway/test_large_evidence.py) and the benchmark (bench/large.py) share them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from exchange.db.engine import build_engine
from exchange.gateway.access import AccessRights
from exchange.gateway.settings import GatewaySettings
from exchange.sample import federation
from exchange.trust.globalconf_client import utcnow
from tests.servers import free_port, serving

MB = 1024 * 1024
BLOCK = MB
SCAN = f"/r1/{federation.POPULATION_REGISTRY}/diploma-scan"
LEGAL_BASIS = "Education Act § 12: verifying qualifications"
CLIENT = str(federation.CITIZEN_PORTAL)
PERSON = "EE38001085718"
HEADERS = {
    "X-Road-Client": CLIENT,
    "X-Exchange-Purpose": "service-check",
    "Accept": "application/pdf",
}


class DocumentServer:
    """A REST backend with one PDF of ``size`` bytes per person. ``mode``: ``ok``; ``forged``
    (promises the SHA-256 of other bytes); ``cut`` (promises the length, sends half, hangs up);
    ``undeclared`` (no Repr-Digest); ``down`` (503, as a store in an outage behind its proxy);
    ``gone`` (404 for everyone, as if the document had been withdrawn)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.mode = "ok"
        self.size = MB
        self._block = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + os.urandom(BLOCK - 15)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._digests: dict[int, str] = {}
        self.sent = 0  # bytes of the last answer written so far
        self.calls = 0
        self.done = threading.Event()  # set when the last answer has ended, whole or not

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def blocks(self, size: int | None = None) -> Iterator[bytes]:
        """The document, block by block (the same bytes every time)."""
        left = self.size if size is None else size
        while left > 0:
            block = self._block[: min(left, BLOCK)]
            left -= len(block)
            yield block

    def digest(self, size: int | None = None) -> str:
        """The document's SHA-256, base64url as the gateways bind it (worked out once per size:
        not on the clock of a transfer that is measured)."""
        size = self.size if size is None else size
        if size not in self._digests:
            hashed = hashlib.sha256()
            for block in self.blocks(size):
                hashed.update(block)
            self._digests[size] = base64.urlsafe_b64encode(hashed.digest()).rstrip(b"=").decode()
        return self._digests[size]

    async def _scan(self, request: web.Request) -> web.StreamResponse:
        self.calls += 1
        if self.mode == "down":
            return web.Response(status=503)
        if request.match_info["person"] != PERSON or self.mode == "gone":
            return web.Response(status=404)
        response = web.StreamResponse(headers={"Content-Type": "application/pdf"})
        response.content_length = self.size
        promised = self.digest(self.size - 1 if self.mode == "forged" else None)
        if self.mode != "undeclared":
            standard = base64.b64encode(base64.urlsafe_b64decode(promised + "=")).decode()
            response.headers["Repr-Digest"] = f"sha-256=:{standard}:"
        self.sent = 0
        self.done.clear()
        try:
            await response.prepare(request)
            for block in self.blocks():
                if self.mode == "cut" and self.sent >= self.size // 2:
                    assert request.transport is not None
                    request.transport.close()  # hang up, short of the length promised
                    return response
                await response.write(block)
                self.sent += len(block)
            await response.write_eof()
            return response
        finally:
            self.done.set()

    def start(self) -> None:
        self._thread.start()
        app = web.Application()
        app.router.add_get("/scans/{person}", self._scan)
        self._runner = web.AppRunner(app)

        async def start() -> None:
            assert self._runner is not None
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

        asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)

    def close(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def scan_service(url: str, *, code: str = "diploma-scan", policy: str = "legal-basis") -> str:
    """The provider's document service: a diploma scan, streamed from ``url``."""
    return (
        "\n[[services]]\n"
        f'subsystem = "population-registry"\ncode = "{code}"\nevidence_type = "diploma"\n'
        f'consent_policy = "{policy}"\nparameters = ["person"]\n'
        "[services.connector]\n"
        f'type = "http"\nurl = "{url}/scans/{{person}}"\ndocument = "application/pdf"\n'
        "timeout = 10.0\nconnect_timeout = 2.0\n"
    )


@dataclass
class DocumentFederation:
    layout: federation.Federation
    ports: federation.Ports
    backend: DocumentServer
    processes: dict[str, subprocess.Popen[bytes]]

    @property
    def consumer_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.consumer_consumer}"

    def audit_bodies(self, gateway: str) -> list[bytes]:
        return audit_bodies(self.layout, gateway)


def audit_bodies(layout: federation.Federation, gateway: str) -> list[bytes]:
    """Every audit record body of ``gateway`` ("provider" or "consumer")."""
    settings = GatewaySettings.load(getattr(layout, gateway))
    with build_engine(settings.db_url).connect() as connection:
        rows = connection.exec_driver_sql("SELECT body FROM audit_records ORDER BY seq")
        return [bytes(body) for body in rows.scalars()]


@contextlib.contextmanager
def running_backend() -> Iterator[DocumentServer]:
    backend = DocumentServer()
    backend.start()
    try:
        yield backend
    finally:
        backend.close()


def document_layout(
    base: Path,
    backend: DocumentServer,
    *,
    gateway_extra: str = "",
    services: Callable[[str], str] | None = None,
    on_legal_basis: tuple[str, ...] = (),
) -> tuple[federation.Federation, federation.Ports]:
    """The sample federation's folders, the provider offering ``diploma-scan`` from
    ``backend`` on a legal basis the portal holds, and ``consented-scan`` under the person's
    consent; and the ``services`` blocks made for the backend's address too, the codes
    ``on_legal_basis`` granted as ``diploma-scan`` is."""
    ports = federation.Ports(*(free_port() for _ in range(10)))
    layout = federation.create(
        base,
        ports,
        gateway_extra="globalconf_refresh = 0.3\nmax_body_bytes = 65536\n" + gateway_extra,
        extra_services=scan_service(backend.url)
        + scan_service(backend.url, code="consented-scan", policy="consent")
        + (services(backend.url) if services is not None else ""),
    )
    access = AccessRights(
        build_engine(GatewaySettings.load(layout.provider).db_url), cache_ttl=0, clock=utcnow
    )
    for code in ("diploma-scan", *on_legal_basis):
        access.grant(
            service=f"{federation.POPULATION_REGISTRY}/{code}",
            subject=CLIENT,
            legal_basis=LEGAL_BASIS,
            actor="test",
        )
    access.grant(
        service=f"{federation.POPULATION_REGISTRY}/consented-scan", subject=CLIENT, actor="test"
    )
    return layout, ports


@contextlib.contextmanager
def document_federation(
    base: Path,
    *,
    gateway_extra: str = "",
    services: Callable[[str], str] | None = None,
    on_legal_basis: tuple[str, ...] = (),
) -> Iterator[DocumentFederation]:
    """The central authority and both gateways as processes (:func:`document_layout`)."""
    with running_backend() as backend:
        layout, ports = document_layout(
            base,
            backend,
            gateway_extra=gateway_extra,
            services=services,
            on_legal_basis=on_legal_basis,
        )
        central = [
            *("central", "serve", "--data-dir", str(layout.central.data_dir)),
            *("--port", str(ports.central)),
        ]
        gateways = {
            "provider": (["gateway", "serve", "-c", str(layout.provider)], ports.provider_consumer),
            "consumer": (["gateway", "serve", "-c", str(layout.consumer)], ports.consumer_consumer),
        }
        with contextlib.ExitStack() as stack:
            processes = {"central": stack.enter_context(started(central, ports.central, base))}
            # The gateways start side by side: on a busy machine each takes many seconds.
            managers = {name: started(a, port, base, name) for name, (a, port) in gateways.items()}
            with ThreadPoolExecutor(max_workers=len(managers)) as pool:
                entering = {name: pool.submit(m.__enter__) for name, m in managers.items()}
                wait(entering.values())
            for name, manager in managers.items():
                if entering[name].exception() is None:
                    stack.push(manager.__exit__)
            for name, future in entering.items():
                processes[name] = future.result()  # raises if it did not start
            yield DocumentFederation(layout, ports, backend, processes)


def started(
    args: list[str], port: int, logs: Path, name: str = "central"
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    health = f"http://127.0.0.1:{port}/health"
    return serving(args, health_url=health, log=logs / f"{name}.log", ready_within=120)


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(f"{field} of process {pid}")


def rss(pid: int) -> int:
    """Resident memory of ``pid`` now, in bytes."""
    return _status_kb(pid, "VmRSS") * 1024


def peak_rss(pid: int) -> int:
    """The most resident memory ``pid`` has had since it started, in bytes."""
    return _status_kb(pid, "VmHWM") * 1024


def reset_peak(pid: int) -> None:
    """Start ``pid``'s high-water mark (:func:`peak_rss`) again from its memory now."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
