"""Quotas declared on access rights: the burst, the day and the distinct persons of one client
on one service, refused with 429 and Retry-After before the registry is asked, audited,
counted in the metrics, and shared by replicas of the provider on one database."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange.db import migrate
from exchange.db.engine import build_engine
from exchange.errors import QuotaExceeded, ServiceUnavailable
from exchange.gateway import models
from exchange.gateway.access import NO_LIMITS, Limits
from exchange.gateway.node import Gateway
from exchange.gateway.provider import create_provider_app
from exchange.gateway.quotas import Quotas
from exchange.sample import federation
from exchange.trust.keys import fingerprint, load_certificate
from tests.gateway.conftest import DIPLOMA, MARI, PORTAL_CLIENT, Roles
from tests.gateway.test_consent import audited
from tests.servers import exchange

SERVICE = f"{federation.POPULATION_REGISTRY}/diploma"
OTHERS = ["EE49002124277", "EE37605030299", "EE61001010001", "EE50001010002"]


@contextlib.contextmanager
def limited(roles: Roles, **limits: int) -> Iterator[None]:
    """The portal's access right to the diploma service with ``limits`` for the block."""
    access = roles.provider_access()
    access.limit(service=SERVICE, subject=PORTAL_CLIENT, limits=Limits(**limits), actor="test")
    try:
        yield
    finally:
        access.limit(service=SERVICE, subject=PORTAL_CLIENT, limits=NO_LIMITS, actor="test")


class Frozen:
    """The quota windows' clock of some gateways, held still and moved by the test (each test
    takes a day of its own: the counts stay in the module's database)."""

    def __init__(self, at: datetime, *gateways: Gateway) -> None:
        self.at = at
        for gateway in gateways:
            gateway.quotas.clock = lambda: self.at


@pytest.fixture
def frozen(roles: Roles) -> Iterator[type[Frozen]]:
    yield Frozen
    roles.provider.quotas.clock = roles.provider.clock


def ask(roles: Roles, person: str = MARI) -> httpx.Response:
    return roles.call(f"{DIPLOMA}?person={person}", headers={"X-Road-Id": str(uuid.uuid4())})


def refused(roles: Roles, response: httpx.Response, limit: str) -> None:
    """A signed, audited 429 naming ``limit``, with Retry-After."""
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["type"] == "Server.ServerProxy.QuotaExceeded", body
    assert body["detail"] == limit
    assert response.headers["X-Road-Error"] == "Server.ServerProxy.QuotaExceeded"
    assert int(response.headers["Retry-After"]) >= 1
    record = audited(roles, response.headers["X-Road-Id"])
    assert record["status"] == 429
    assert record["fault"] == "Server.ServerProxy.QuotaExceeded"


def test_a_burst_over_the_limit_is_refused_with_retry_after(
    roles: Roles, frozen: type[Frozen]
) -> None:
    clock = frozen(datetime(2031, 1, 1, 12, tzinfo=UTC), roles.provider)
    with limited(roles, per_second=3):
        for _ in range(3):
            assert ask(roles).status_code == 200
        before = roles.registry.calls
        response = ask(roles)
        refused(roles, response, "per-second")
        assert response.headers["Retry-After"] == "1"
        assert roles.registry.calls == before  # the registry was never asked
        clock.at += timedelta(seconds=1)
        assert ask(roles).status_code == 200


def test_a_day_over_the_limit_is_refused_until_midnight(roles: Roles, frozen: type[Frozen]) -> None:
    clock = frozen(datetime(2031, 1, 2, 18, tzinfo=UTC), roles.provider)
    with limited(roles, per_day=2, per_second=100):
        assert [ask(roles).status_code for _ in range(2)] == [200, 200]
        response = ask(roles)
        refused(roles, response, "per-day")
        assert response.headers["Retry-After"] == str(6 * 3600)
        clock.at += timedelta(hours=6)
        assert ask(roles).status_code == 200


def test_distinct_persons_per_day_stop_an_enumeration(roles: Roles, frozen: type[Frozen]) -> None:
    frozen(datetime(2031, 1, 3, 12, tzinfo=UTC), roles.provider)
    with limited(roles, persons_per_day=2):
        assert ask(roles, MARI).status_code == 200
        assert ask(roles, OTHERS[0]).status_code == 404  # unknown to the registry: still asked
        before = roles.registry.calls
        refused(roles, ask(roles, OTHERS[1]), "persons-per-day")
        assert roles.registry.calls == before
        assert ask(roles, MARI).status_code == 200  # asked about already today: no new person
    with Session(build_engine(roles.provider_settings().db_url)) as session:
        kept = set(session.scalars(select(models.QuotaPerson.subject)))
    assert roles.provider.audit.subject_hash(MARI) in kept
    assert not {MARI, *OTHERS} & kept  # only the audit log's keyed hash, never the code


def test_refusals_are_counted_by_client_service_and_limit(
    roles: Roles, frozen: type[Frozen]
) -> None:
    frozen(datetime(2031, 1, 4, 12, tzinfo=UTC), roles.provider)
    with limited(roles, per_day=1):
        ask(roles)
        refused(roles, ask(roles), "per-day")
    text = roles.provider.metrics.exposition().decode()
    assert (
        f'exchange_quota_refusals_total{{client="{PORTAL_CLIENT}",limit="per-day",'
        f'service="{SERVICE}"}}' in text
    )


def test_no_quota_declared_means_no_limit_and_no_counts(roles: Roles, frozen: type[Frozen]) -> None:
    day = datetime(2031, 1, 5, tzinfo=UTC)
    frozen(day + timedelta(hours=12), roles.provider)
    assert [ask(roles).status_code for _ in range(5)] == [200] * 5
    with Session(build_engine(roles.provider_settings().db_url)) as session:
        counted = session.scalars(
            select(models.QuotaCount).where(
                models.QuotaCount.expires_at > day,
                models.QuotaCount.expires_at <= day + timedelta(days=1),
            )
        ).all()
    assert counted == []


@contextlib.contextmanager
def second_replica(roles: Roles) -> Iterator[Gateway]:
    """Another replica of the provider on its database (replica "b", its own audit chain)."""
    inprocess = roles.roles
    settings = roles.provider.settings.model_copy(update={"replica": "b"})
    presented = fingerprint(load_certificate(roles.provider.keys.tls_certificate_path))

    async def build() -> Gateway:
        return Gateway(
            settings,
            clock=inprocess.clock,
            globalconf=inprocess._globalconf(settings.anchor),
            transport=inprocess.loopback.gateway_transport(presented),
            blocking_http=inprocess._blocking,
        )

    replica = inprocess.run(build())
    replica.trust.start("gateway replica b")
    replica.start_crl()  # as a started gateway holds them: the CRL and signers' OCSP status
    replica.refresh_status()
    replica.started = True
    try:
        yield replica
    finally:
        inprocess.run(replica.close())


def test_replicas_on_one_database_share_every_limit(roles: Roles, frozen: type[Frozen]) -> None:
    inprocess = roles.roles
    url = f"https://127.0.0.1:{roles.provider.settings.provider.port}"
    with second_replica(roles) as replica:
        frozen(datetime(2031, 1, 6, 12, tzinfo=UTC), roles.provider, replica)
        apps = [create_provider_app(roles.provider), create_provider_app(replica)]

        def by(turn: int, person: str = MARI) -> httpx.Response:
            """Ask through replica ``turn % 2``, as a round-robin proxy would send it."""
            inprocess.loopback.serve(url, apps[turn % 2], inprocess.main)
            return ask(roles, person)

        try:
            with limited(roles, per_day=4):
                answers = [by(turn).status_code for turn in range(6)]
                assert answers == [200, 200, 200, 200, 429, 429]  # 4 in all, not 4 each
            with limited(roles, persons_per_day=2):
                assert by(0, MARI).status_code == 200
                assert by(1, OTHERS[2]).status_code == 404
                refused(roles, by(0, OTHERS[3]), "persons-per-day")
                assert by(1, MARI).status_code == 200  # counted once, through the other
        finally:
            inprocess.loopback.serve(url, apps[0], inprocess.main)


def test_leases_never_admit_more_than_the_limit_across_processes(database_url: str) -> None:
    """Three processes' worth of quota stores on one database, each leasing ahead: never more
    than the limit in all, and refused early by at most the others' unspent leases."""
    engine = build_engine(database_url)
    migrate.upgrade("gateway", engine)
    at = datetime(2031, 2, 1, 12, tzinfo=UTC)
    limits = Limits(per_day=1000)  # a lease of 10

    async def run() -> list[int]:
        stores = [
            Quotas(engine, clock=lambda: at, subject_hash=lambda person: person) for _ in range(3)
        ]

        async def flood(store: Quotas) -> int:
            admitted = 0
            for _ in range(600):
                try:
                    await store.admit(
                        client="EE/COM/1/app", service="EE/GOV/2/r/s", limits=limits, person=None
                    )
                except QuotaExceeded:
                    continue
                admitted += 1
            return admitted

        try:
            return list(await asyncio.gather(*(flood(store) for store in stores)))
        finally:
            for store in stores:
                await store.close()

    admitted = asyncio.run(run())
    assert sum(admitted) <= 1000
    assert sum(admitted) >= 1000 - 2 * 10
    engine.dispose()


def test_quotas_are_declared_and_listed_from_the_command_line(roles: Roles) -> None:
    config = str(roles.layout.provider)
    try:
        limited = exchange(
            "gateway", "access", "limit", "-c", config, SERVICE, PORTAL_CLIENT,
            "--per-second", "5", "--persons-per-day", "100",
        )  # fmt: skip
        assert limited.returncode == 0, limited.stderr
        assert "5/s, 100/persons/day" in limited.stdout
        listed = exchange("gateway", "access", "list", "-c", config)
        [row] = [line for line in listed.stdout.splitlines() if line.startswith(SERVICE + " ")]
        assert row.rstrip().endswith("5/s, 100/persons/day")
        wrong = exchange(
            "gateway", "access", "limit", "-c", config, SERVICE, PORTAL_CLIENT, "--per-day", "0"
        )
        assert wrong.returncode == 2  # a usage mistake
    finally:
        roles.provider_access().limit(
            service=SERVICE, subject=PORTAL_CLIENT, limits=NO_LIMITS, actor="test"
        )


def test_a_persons_limit_on_a_service_that_names_no_person_refuses_rather_than_ignores(
    database_url: str,
) -> None:
    """A limit that cannot be counted (the service has no subject parameter) is not silently
    skipped: nothing is released under it, and the refusal says why."""
    engine = build_engine(database_url)
    migrate.upgrade("gateway", engine)
    at = datetime(2031, 2, 1, 12, tzinfo=UTC)

    async def run() -> None:
        store = Quotas(engine, clock=lambda: at, subject_hash=lambda person: person)
        try:
            await store.admit(
                client="EE/COM/1/app",
                service="EE/GOV/2/r/s",
                limits=Limits(persons_per_day=5),
                person=None,
            )
        finally:
            await store.close()

    with pytest.raises(ServiceUnavailable, match="names no person") as refused:
        asyncio.run(run())
    assert refused.value.detail == "persons-per-day"
