"""The sample federation for gateway tests: central authority, the population register's gateway
(provider), the state portal's gateway (consumer), consent service, identity provider, portal,
plus a REST registry that counts every call it gets.

``roles`` (one per module and backend) and ``fresh_roles`` (one per test) build it in the test's
process (:mod:`tests.inprocess`); ``fresh`` runs it as processes on loopback ports, for what
only processes can show (see tests/README.md)."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from exchange.db.engine import build_engine
from exchange.gateway.access import AccessRights
from exchange.gateway.node import Gateway
from exchange.gateway.settings import GatewaySettings
from exchange.gateway.tls import PEER_FINGERPRINT
from exchange.sample import federation
from exchange.trust.globalconf_client import utcnow
from exchange.trust.keys import fingerprint, load_certificate
from tests.conftest import _postgres_database
from tests.gateway.registry_server import RegistryServer, diploma_service, running_registry
from tests.inprocess import InProcess, LiveClock
from tests.servers import citizen_token, free_port, serve_federation, serving

PORTAL_CLIENT = str(federation.CITIZEN_PORTAL)
BIRTH = f"/r1/{federation.BIRTH_CERTIFICATE}"
RESIDENCE = f"/r1/{federation.RESIDENCE_RECORD}"
DIPLOMA = f"/r1/{federation.POPULATION_REGISTRY}/diploma"  # legal-basis policy
CONSENTED_DIPLOMA = f"/r1/{federation.POPULATION_REGISTRY}/consented-diploma"  # consent policy
PURPOSE = "service-check"
DIPLOMA_LEGAL_BASIS = "Education Act § 12: verifying qualifications"
MARI = "EE38001085718"


def residence_apart(consumer_url: str, message_id: str) -> int:
    """Ask for MARI's residence record (a public service) on a connection of its own, so that
    whatever spreads connections (a proxy, the kernel between workers) spreads these too."""
    with httpx.Client(timeout=60) as client:
        return client.get(
            f"{consumer_url}{RESIDENCE}?person={MARI}",
            headers={
                "X-Road-Client": PORTAL_CLIENT,
                "X-Road-Id": message_id,
                "X-Road-UserId": MARI,
                "X-Exchange-Purpose": PURPOSE,
            },
        ).status_code


class Calls:
    """What tests ask of a federation, whether its roles run in processes or in this one."""

    layout: federation.Federation
    ports: federation.Ports
    registry: RegistryServer
    http: httpx.Client
    _consents: dict[str, str]

    @property
    def consumer_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.consumer_consumer}"

    @property
    def consent_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.consent}"

    def call(
        self,
        path: str,
        *,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        sent = {"X-Road-Client": PORTAL_CLIENT, "X-Exchange-Purpose": PURPOSE, **(headers or {})}
        return self.http.request(method, f"{self.consumer_url}{path}", headers=sent, **kwargs)

    def id_token(self, citizen: str, client: str = federation.PORTAL_CLIENT_ID) -> str:
        raise NotImplementedError

    def grant(self, citizen: str = MARI, **fields: Any) -> httpx.Response:
        """Grant a consent through the consent service's API, as the citizen's own program."""
        request = {
            "consumer": PORTAL_CLIENT,
            "service": federation.BIRTH_CERTIFICATE,
            "purpose": PURPOSE,
            "purpose_text": "to test the exchange",
            "max_uses": "unlimited",
            **fields,
        }
        token = self.id_token(citizen, federation.CONSENT_CLIENT_ID)
        return self.http.post(
            f"{self.consent_url}/api/v1/consents",
            json=request,
            headers={"Authorization": f"Bearer {token}"},
        )

    def artefact(self, citizen: str = MARI, **fields: Any) -> str:
        granted = self.grant(citizen, **fields)
        assert granted.status_code == 201, granted.text
        return str(granted.json()["artefact"])

    def consented(self, citizen: str = MARI) -> dict[str, str]:
        """Headers of a request for ``citizen``'s birth certificate under a lasting consent."""
        if citizen not in self._consents:
            self._consents[citizen] = self.artefact(citizen)
        return {
            "X-Road-UserId": citizen,
            "X-Exchange-Purpose": PURPOSE,
            "X-Exchange-Consent": self._consents[citizen],
        }

    def provider_settings(self) -> GatewaySettings:
        return GatewaySettings.load(self.layout.provider)

    def consumer_settings(self) -> GatewaySettings:
        return GatewaySettings.load(self.layout.consumer)

    def provider_access(self) -> AccessRights:
        return AccessRights(
            build_engine(self.provider_settings().db_url), cache_ttl=0, clock=utcnow
        )


@dataclass
class Running(Calls):
    """The federation as separate processes on loopback: real TLS, real restarts."""

    layout: federation.Federation
    ports: federation.Ports
    registry: RegistryServer
    processes: dict[str, subprocess.Popen[bytes]]
    logs: Path
    stack: contextlib.ExitStack
    _consents: dict[str, str] = field(default_factory=dict)
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    @contextlib.contextmanager
    def stopped(self, name: str) -> Iterator[None]:
        """Stop role ``name`` for the block, then start it again for the rest of the module."""
        process = self.processes[name]
        args = [str(a) for a in list(process.args)[3:]]  # type: ignore[arg-type]  # after: python -m exchange.cli
        port = {"consent": self.ports.consent, "portal": self.ports.portal}[name]
        process.terminate()
        process.wait(15)
        try:
            yield
        finally:
            self.processes[name] = self.stack.enter_context(
                serving(
                    args,
                    health_url=f"http://127.0.0.1:{port}/health",
                    log=self.logs / f"{name}-again.log",
                )
            )

    def id_token(self, citizen: str, client: str = federation.PORTAL_CLIENT_ID) -> str:
        return citizen_token(self.ports, citizen, client)

    @contextlib.contextmanager
    def restarted(self, name: str) -> Iterator[None]:
        """Stop gateway ``name`` ("provider"/"consumer") and bring it back for the block."""
        process = self.processes[name]
        process.terminate()
        process.wait(15)
        config = self.layout.provider if name == "provider" else self.layout.consumer
        port = self.ports.provider_consumer if name == "provider" else self.ports.consumer_consumer
        with serving(
            ["gateway", "serve", "-c", str(config)],
            health_url=f"http://127.0.0.1:{port}/health",
            log=self.logs / f"{name}-again.log",
        ) as again:
            self.processes[name] = again
            yield


FEED_MAX_AGE = 5  # seconds a provider trusts its copy of the revocation feed

GATEWAY_EXTRA = (
    "globalconf_refresh = 0.3\naccess_cache_ttl = 0\nclock_skew = 30\nmax_body_bytes = 65536\n"
    f"consent_feed_max_age = {FEED_MAX_AGE}\n"
)


@contextlib.contextmanager
def sample_layout(
    base: Path, database_urls: tuple[str | None, str | None]
) -> Iterator[tuple[federation.Federation, federation.Ports, RegistryServer]]:
    """The sample federation's folders and databases, with the tests' REST registry."""
    ports = federation.Ports(*(free_port() for _ in range(10)))
    with running_registry() as registry:
        layout = federation.create(
            base,
            ports,
            gateway_extra=GATEWAY_EXTRA,
            extra_services=diploma_service(registry.url)
            # The consent tests send 20 requests at once: on a busy machine, a connection
            # to this in-process registry can take more than the fault tests' second.
            + diploma_service(
                registry.url, code="consented-diploma", policy="consent", timeout=5.0
            ),
            database_urls=database_urls,
        )
        access = AccessRights(
            build_engine(GatewaySettings.load(layout.provider).db_url), cache_ttl=0, clock=utcnow
        )
        access.grant(
            service=f"{federation.POPULATION_REGISTRY}/diploma",
            subject=PORTAL_CLIENT,
            legal_basis=DIPLOMA_LEGAL_BASIS,
            actor="test",
        )
        access.grant(
            service=f"{federation.POPULATION_REGISTRY}/consented-diploma",
            subject=PORTAL_CLIENT,
            actor="test",
        )
        yield layout, ports, registry


@contextlib.contextmanager
def run_federation(
    base: Path,
    database_urls: tuple[str | None, str | None] = (None, None),
    *,
    configuration_validity: str = "PT1H",
) -> Iterator[Running]:
    with sample_layout(base, database_urls) as (layout, ports, registry):
        env = {"EXCHANGE_CENTRAL_CONFIGURATION_VALIDITY": configuration_validity}
        with contextlib.ExitStack() as stack:
            processes = serve_federation(stack, layout, ports, logs=base, central_env=env)
            yield Running(layout, ports, registry, processes, base, stack)


class Roles(Calls):
    """The federation built in this process (:mod:`tests.inprocess`) on a clock the test
    moves: the same questions as :class:`Running`, answered without sockets or processes."""

    def __init__(
        self,
        layout: federation.Federation,
        ports: federation.Ports,
        registry: RegistryServer,
        clock: LiveClock,
    ) -> None:
        self.layout, self.ports, self.registry, self.clock = layout, ports, registry, clock
        self.roles = InProcess(layout, ports, clock)
        self.http = self.roles.http
        self._consents: dict[str, str] = {}

    def eventually(self, check: Callable[[], bool], *, what: str, within: float = 10) -> None:
        """Until ``check`` holds, for work the roles do on their own (a feed follower's poll);
        never for anything the clock decides."""
        deadline = time.monotonic() + within
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"never: {what}")
            time.sleep(0.01)

    def id_token(self, citizen: str, client: str = federation.PORTAL_CLIENT_ID) -> str:
        return self.roles.id_token(citizen, client)

    @property
    def provider(self) -> Gateway:
        return self.roles.provider

    def as_gateway(self, settings: GatewaySettings) -> httpx.Client:
        """A client presenting the TLS certificate of the gateway of ``settings``, as the
        provider's listener sees it once the handshake is done."""
        presented = fingerprint(load_certificate(settings.data_dir / "tls.pem"))
        return httpx.Client(
            transport=self.roles.loopback.blocking(scope={PEER_FINGERPRINT: presented}),
            timeout=30,
        )

    @contextlib.contextmanager
    def stopped(self, name: str) -> Iterator[None]:
        """Role ``name`` cannot be reached for the block."""
        url = {"consent": self.consent_url}[name]
        with self.roles.loopback.down(url):
            yield


def _databases(stack: contextlib.ExitStack, backend: str) -> tuple[str | None, str | None]:
    if backend == "sqlite":
        return None, None
    return (
        stack.enter_context(contextlib.contextmanager(_postgres_database)()),
        stack.enter_context(contextlib.contextmanager(_postgres_database)()),
    )


@contextlib.contextmanager
def build_roles(base: Path, backend: str = "sqlite") -> Iterator[Roles]:
    with contextlib.ExitStack() as stack:
        urls = _databases(stack, backend)
        layout, ports, registry = stack.enter_context(sample_layout(base, urls))
        made = Roles(layout, ports, registry, LiveClock())
        stack.callback(made.roles.close)
        yield made


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def roles(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Roles]:
    """One in-process federation per test module and backend of the gateways' databases."""
    with build_roles(tmp_path_factory.mktemp("federation"), request.param) as made:
        yield made


@pytest.fixture
def fresh_roles(tmp_path: Path) -> Iterator[Roles]:
    """An in-process federation of its own, for tests that change trust or restart roles."""
    with build_roles(tmp_path / "federation") as made:
        yield made


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Running]:
    """A federation of its own, for tests that change trust (revocations, restarts)."""
    with run_federation(tmp_path) as made:
        yield made
