"""One error boundary for every app: each failing request answers as X-Road does.

Every role's app is built in this process from one sample federation laid out on disk (nothing
listens, except where the HTTP server itself is under test), and sent one failing request of
each kind: a refusal of the app's own, an unknown path and a method the path does not take.
API callers get the body ``{"type", "message", "detail"}``; browsers of the web pages get a page;
both get the type in ``X-Road-Error``.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp
from structlog.testing import capture_logs

from exchange import web
from exchange.central.app import create_app as central_app
from exchange.consent.app import create_app as consent_app
from exchange.consent.service import ConsentService
from exchange.consent.settings import ConsentSettings
from exchange.errors import Error, InvalidRequest
from exchange.gateway import files as gateway_files
from exchange.gateway.consumer import create_consumer_app
from exchange.gateway.node import Gateway
from exchange.gateway.preview import create_preview_app
from exchange.gateway.provider import create_provider_app
from exchange.gateway.settings import GatewaySettings
from exchange.http import install_error_handlers
from exchange.identity.login import OidcLogin
from exchange.idp import files as idp_files
from exchange.idp.app import create_app as idp_app
from exchange.portal.app import Portal
from exchange.portal.app import create_app as portal_app
from exchange.portal.settings import PortalSettings
from exchange.sample import federation
from exchange.trust.globalconf_client import utcnow
from exchange.tsa import files as tsa_files
from exchange.tsa.app import create_app as tsa_app
from tests.servers import free_port, in_thread

BIRTH = f"/r1/{federation.BIRTH_CERTIFICATE}"
BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, AppClient]]:
    ports = federation.Ports(*(free_port() for _ in range(10)))
    layout = federation.create(tmp_path_factory.mktemp("federation"), ports)
    consumer = Gateway(GatewaySettings.load(layout.consumer))
    provider_settings = GatewaySettings.load(layout.provider)
    provider = Gateway(provider_settings)
    consent = ConsentService(ConsentSettings.load(layout.consent))
    portal = Portal(PortalSettings.load(layout.portal))
    preview = create_preview_app(
        provider.previews,
        login=OidcLogin(issuer=f"http://127.0.0.1:{ports.idp}", client_id="p", redirect_uri="/"),
        site="Population Register",
        session_secret=gateway_files.session_key(provider_settings),
        clock=utcnow,
    )
    built: dict[str, Any] = {
        "central": central_app(layout.central),
        "consumer": create_consumer_app(consumer),
        "provider": create_provider_app(provider),
        "consent": consent_app(consent),
        "idp": idp_app(idp_files.load(layout.idp, clock=utcnow)),
        "portal": portal_app(portal),
        "tsa": tsa_app(tsa_files.load(layout.tsa), clock=utcnow),
        "preview": preview,
    }
    token = (layout.central.data_dir / "admin-token").read_text().strip()
    with start_blocking_portal() as loop:
        clients = {name: AppClient(loop, app) for name, app in built.items()}
        clients["central"].headers["Authorization"] = f"Bearer {token}"
        yield clients
        for closing in (consumer.close, provider.close, portal.close):
            loop.call(closing)
        consent.close()


class AppClient:
    """A client of an ASGI app in this process, on one event loop for the module (the loop a
    gateway's group commits live on)."""

    def __init__(self, loop: BlockingPortal, app: ASGIApp) -> None:
        self._loop = loop
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        self._client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        self.headers = self._client.headers

    def request(self, method: str, path: str, **options: Any) -> httpx.Response:
        return self._loop.call(functools.partial(self._client.request, method, path, **options))

    def get(self, path: str, **options: Any) -> httpx.Response:
        return self.request("GET", path, **options)


@dataclass(frozen=True)
class Case:
    app: str
    method: str
    path: str
    status: int
    type: str
    options: dict[str, Any] | None = None
    page: bool = False  # a page for a browser, not the JSON body

    def __str__(self) -> str:
        return f"{self.app} {self.method} {self.path} {'page' if self.page else ''}"


NOT_FOUND, WRONG_METHOD = "Client.NotFound", "Client.InvalidHttpMethod"
CASES = [
    # Central authority (FastAPI)
    Case("central", "POST", "/api/v1/members", 400, "Client.InvalidRequest", {"json": {}}),
    Case("central", "GET", "/api/v1/members", 401, "Client.Unauthenticated",
         {"headers": {"Authorization": "Bearer wrong"}}),
    Case("central", "GET", "/nope", 404, NOT_FOUND),
    Case("central", "DELETE", "/health", 405, WRONG_METHOD),
    # A gateway's consumer listener: its own systems' calls, metadata, the audit API
    Case("consumer", "GET", BIRTH, 403, "Client.AccessDenied",
         {"headers": {"X-Road-Client": "EE/GOV/70000310/population-registry"}}),
    Case("consumer", "GET", "/listClients?xRoadInstance=E%2FE", 400, "Client.InvalidIdentifier"),
    Case("consumer", "GET", "/audit/records/7/proof", 404, NOT_FOUND),
    Case("consumer", "GET", "/audit/consistency?from=1", 400, "Client.InvalidRequest"),
    Case("consumer", "GET", "/r2/EE/GOV/70000310/population-registry/x", 404, NOT_FOUND),
    Case("consumer", "GET", "/nope", 404, NOT_FOUND),
    Case("consumer", "POST", "/health", 405, WRONG_METHOD),
    Case("consumer", "TRACE", BIRTH, 405, WRONG_METHOD),
    # A gateway's provider listener: every answer is the provider gateway's
    Case("provider", "GET", BIRTH, 403, "Server.ServerProxy.AccessDenied"),
    Case("provider", "GET", "/nope", 404, "Server.ServerProxy.NotFound"),
    Case("provider", "PUT", "/health", 405, "Server.ServerProxy.InvalidHttpMethod"),
    # Consent service: API, pages
    Case("consent", "GET", "/api/v1/consents", 401, "Client.InvalidToken"),
    Case("consent", "GET", "/api/v1/revocations?after=x", 400, "Client.InvalidRequest"),
    Case("consent", "POST", "/api/v1/consents/c1/status", 413, "Client.PayloadTooLarge",
         {"headers": {"Content-Length": "99999"}, "content": b"x" * 99999}),
    Case("consent", "POST", "/grant", 401, "Client.InvalidToken",
         {"data": {"decision": "grant"}, "headers": BROWSER}, page=True),
    Case("consent", "GET", "/nope", 404, NOT_FOUND),
    Case("consent", "GET", "/nope", 404, NOT_FOUND, {"headers": BROWSER}, page=True),
    Case("consent", "DELETE", "/api/v1/consents", 405, WRONG_METHOD),
    # Identity provider
    Case("idp", "GET", "/authorize", 400, "Client.InvalidRequest"),
    Case("idp", "POST", "/token", 400, "Client.InvalidRequest", {"data": {"grant_type": "x"}}),
    Case("idp", "GET", "/nope", 404, NOT_FOUND),
    Case("idp", "DELETE", "/jwks", 405, WRONG_METHOD),
    # Citizen portal
    Case("portal", "POST", "/procedures/nosuch/consent", 404, NOT_FOUND,
         {"data": {"consent": "x"}, "headers": BROWSER}, page=True),
    Case("portal", "GET", "/nope", 404, NOT_FOUND),
    Case("portal", "GET", "/nope", 404, NOT_FOUND, {"headers": BROWSER}, page=True),
    Case("portal", "DELETE", "/usage", 405, WRONG_METHOD),
    # Timestamping authority
    Case("tsa", "POST", "/", 415, "Client.UnsupportedMediaType",
         {"content": b"x", "headers": {"Content-Type": "text/plain"}}),
    Case("tsa", "GET", "/", 405, WRONG_METHOD),
    Case("tsa", "GET", "/nope", 404, NOT_FOUND),
    # Preview pages at a provider gateway
    Case("preview", "POST", "/preview/p1", 401, "Client.InvalidToken",
         {"data": {"decision": "approved"}, "headers": BROWSER}, page=True),
    Case("preview", "GET", "/nope", 404, NOT_FOUND),
    Case("preview", "DELETE", "/preview/p1", 405, WRONG_METHOD),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=str)
def test_every_app_answers_errors_as_xroad(apps: dict[str, AppClient], case: Case) -> None:
    response = apps[case.app].request(case.method, case.path, **(case.options or {}))
    assert response.status_code == case.status, response.text
    assert response.headers["X-Road-Error"] == case.type
    if case.page:
        assert response.headers["content-type"].startswith("text/html")
        assert "That did not work" in response.text
        return
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"type", "message", "detail"}
    assert body["type"] == case.type
    assert isinstance(body["message"], str)
    assert body["message"]
    if case.status == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"
    if case.status == 405:
        assert response.headers.get("Allow")


def crashing_app(
    side: str | None = None, page: Callable[[Error], Response] | None = None
) -> Starlette:
    async def crash(_: Request) -> Response:
        raise RuntimeError("secret internals: password=hunter2")

    async def database_gone(_: Request) -> Response:
        raise OperationalError("SELECT secret", {}, Exception("server closed the connection"))

    async def refuse(_: Request) -> Response:
        raise InvalidRequest("the name is missing", detail="name")

    app = Starlette(
        routes=[Route("/crash", crash), Route("/db", database_gone), Route("/refuse", refuse)]
    )
    install_error_handlers(app, side=side, page=page)
    return app


def test_an_unexpected_exception_leaves_opaque_and_is_logged_with_its_traceback() -> None:
    with capture_logs() as logs, start_blocking_portal() as loop:
        response = AppClient(loop, crashing_app()).get("/crash")
    assert response.status_code == 500
    assert response.headers["X-Road-Error"] == "Server.InternalError"
    assert response.json()["type"] == "Server.InternalError"
    assert "hunter2" not in response.text
    assert "RuntimeError" not in response.text
    assert any(isinstance(entry.get("exc_info"), RuntimeError) for entry in logs), logs


def test_a_gateway_keeps_its_side_in_the_type() -> None:
    with start_blocking_portal() as loop:
        client = AppClient(loop, crashing_app("ClientProxy"))
        crashed = client.get("/crash")
        refused = client.get("/refuse")
        gone = client.get("/db")
    assert crashed.headers["X-Road-Error"] == "Server.ClientProxy.InternalError"
    assert refused.headers["X-Road-Error"] == "Client.InvalidRequest"  # the caller's own fault
    assert refused.json() == {
        "type": "Client.InvalidRequest",
        "message": "the name is missing",
        "detail": "name",
    }
    # A library failure escaping to the boundary still gets its place in the tree.
    assert gone.status_code == 503
    assert gone.headers["X-Road-Error"] == "Server.ClientProxy.ServiceUnavailable"
    assert "SELECT" not in gone.text


@pytest.fixture(scope="module")
def listening() -> Iterator[int]:
    """A real HTTP server (the project's uvicorn settings) in a thread: requests it cannot
    parse never reach an app."""
    app = Starlette(routes=[Route("/", lambda _: Response("ok"))])
    install_error_handlers(app)
    with in_thread(app) as port:
        yield port


@pytest.mark.parametrize(
    "request_line",
    [
        b"GET /caf\xc3\xa9 HTTP/1.1",  # not ASCII
        b"GET /" + b"a" * 100_000 + b" HTTP/1.1",  # longer than any server takes
        b"NOT HTTP AT ALL",
    ],
    ids=["non-ascii", "oversized", "garbage"],
)
def test_requests_the_server_cannot_parse_get_an_xroad_answer(
    listening: int, request_line: bytes
) -> None:
    with socket.create_connection(("127.0.0.1", listening), timeout=10) as connection:
        connection.sendall(request_line + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("ascii").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert lines[0] == "HTTP/1.1 400 Bad Request"
    assert headers["x-road-error"] == "Client.InvalidRequest"
    assert headers["content-type"] == "application/json"
    assert body.startswith(b'{"type":"Client.InvalidRequest","message":')
    assert body.endswith(b',"detail":null}')


def test_pages_show_the_same_error_to_people() -> None:
    """The boundary's page for browsers is the site's own error page."""
    pages = web.Pages("exchange.portal")
    app = crashing_app(page=lambda error: pages.failure("Site", error))
    with start_blocking_portal() as loop:
        client = AppClient(loop, app)
        refused = client.get("/refuse", headers=BROWSER)
        crashed = client.get("/crash", headers=BROWSER)
    assert refused.status_code == 400
    assert refused.headers["X-Road-Error"] == "Client.InvalidRequest"
    assert "the name is missing" in refused.text
    assert crashed.status_code == 500
    assert crashed.headers["X-Road-Error"] == "Server.InternalError"
    assert "hunter2" not in crashed.text
