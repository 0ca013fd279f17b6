"""A running federation: central authority, the population register's gateway (provider) and
the state portal's gateway (consumer), each its own process on loopback, plus a REST registry
that counts every call it gets."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from exchange.db.engine import build_engine
from exchange.gateway.access import AccessRights
from exchange.gateway.settings import GatewaySettings
from exchange.sample import federation
from exchange.trust.globalconf_client import utcnow
from tests.conftest import _postgres_database
from tests.gateway.registry_server import RegistryServer, diploma_service, running_registry
from tests.servers import citizen_token, free_port, serve_federation, serving

PORTAL_CLIENT = str(federation.CITIZEN_PORTAL)
BIRTH = f"/r1/{federation.BIRTH_CERTIFICATE}"
RESIDENCE = f"/r1/{federation.RESIDENCE_RECORD}"
DIPLOMA = f"/r1/{federation.POPULATION_REGISTRY}/diploma"  # legal-basis policy
CONSENTED_DIPLOMA = f"/r1/{federation.POPULATION_REGISTRY}/consented-diploma"  # consent policy
PURPOSE = "service-check"
DIPLOMA_LEGAL_BASIS = "Education Act § 12: verifying qualifications"
MARI = "EE38001085718"


@dataclass
class Running:
    layout: federation.Federation
    ports: federation.Ports
    registry: RegistryServer
    processes: dict[str, subprocess.Popen[bytes]]
    logs: Path
    stack: contextlib.ExitStack
    _consents: dict[str, str] = field(default_factory=dict)

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

    @property
    def consumer_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.consumer_consumer}"

    def call(
        self,
        path: str,
        *,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        sent = {"X-Road-Client": PORTAL_CLIENT, "X-Exchange-Purpose": PURPOSE, **(headers or {})}
        return httpx.request(
            method, f"{self.consumer_url}{path}", headers=sent, timeout=30, **kwargs
        )

    def id_token(self, citizen: str, client: str = federation.PORTAL_CLIENT_ID) -> str:
        return citizen_token(self.ports, citizen, client)

    @property
    def consent_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.consent}"

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
        return httpx.post(
            f"{self.consent_url}/api/v1/consents",
            json=request,
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
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

    def globalconf_version(self, side: str) -> int:
        port = self.ports.consumer_consumer if side == "consumer" else self.ports.provider_consumer
        return int(
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()["globalconf_version"]
        )

    def wait_for_version(self, version: int) -> None:
        deadline = time.monotonic() + 20
        while (
            min(self.globalconf_version("consumer"), self.globalconf_version("provider")) < version
        ):
            if time.monotonic() > deadline:
                raise AssertionError(f"gateways did not pick up configuration version {version}")
            time.sleep(0.1)

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
def run_federation(
    base: Path,
    database_urls: tuple[str | None, str | None] = (None, None),
    *,
    configuration_validity: str = "PT1H",
) -> Iterator[Running]:
    ports = federation.Ports(*(free_port() for _ in range(10)))
    with running_registry() as registry:
        layout = federation.create(
            base,
            ports,
            gateway_extra=GATEWAY_EXTRA,
            extra_services=diploma_service(registry.url)
            + diploma_service(registry.url, code="consented-diploma", policy="consent"),
            database_urls=database_urls,
        )
        access = AccessRights(
            build_engine(GatewaySettings.load(layout.provider).db_url), cache_ttl=0, clock=utcnow
        )
        access.grant(
            service=f"{federation.POPULATION_REGISTRY}/diploma",
            subject=PORTAL_CLIENT,
            legal_basis=DIPLOMA_LEGAL_BASIS,
        )
        access.grant(
            service=f"{federation.POPULATION_REGISTRY}/consented-diploma", subject=PORTAL_CLIENT
        )
        env = {"EXCHANGE_CENTRAL_CONFIGURATION_VALIDITY": configuration_validity}
        with contextlib.ExitStack() as stack:
            processes = serve_federation(stack, layout, ports, logs=base, central_env=env)
            yield Running(layout, ports, registry, processes, base, stack)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def running(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """One federation per test module and backend of the gateways' own databases."""
    with contextlib.ExitStack() as stack:
        if request.param == "postgresql":
            urls = (
                stack.enter_context(contextlib.contextmanager(_postgres_database)()),
                stack.enter_context(contextlib.contextmanager(_postgres_database)()),
            )
        else:
            urls = (None, None)
        yield stack.enter_context(run_federation(tmp_path_factory.mktemp("federation"), urls))


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Running]:
    """A federation of its own, for tests that change trust (revocations, restarts)."""
    with run_federation(tmp_path) as made:
        yield made
