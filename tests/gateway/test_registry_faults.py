"""A registry that is down, slow, broken or hostile becomes a clean 5xx X-Road error, in time."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.gateway.conftest import DIPLOMA, MARI, Roles


@pytest.fixture
def mode(roles: Roles) -> Iterator[Roles]:
    yield roles
    roles.registry.mode = "ok"


@pytest.mark.parametrize(
    ("registry_mode", "status", "error"),
    [
        ("garbage", 502, "Server.ServerProxy.ServiceFailed"),
        ("error", 502, "Server.ServerProxy.ServiceFailed"),
        ("redirect", 502, "Server.ServerProxy.ServiceFailed"),
        ("bomb", 502, "Server.ServerProxy.ServiceFailed"),
        ("slow", 504, "Server.ServerProxy.ServiceTimeout"),
    ],
)
def test_registry_faults(mode: Roles, registry_mode: str, status: int, error: str) -> None:
    mode.registry.mode = registry_mode
    started = time.perf_counter()
    response = mode.call(f"{DIPLOMA}?person={MARI}")
    elapsed = time.perf_counter() - started
    assert response.status_code == status, response.text
    assert response.json()["type"] == error
    assert response.headers["X-Road-Error"] == error
    assert elapsed < 3  # the connector's timeout is 1 s
    assert mode.registry.bait_connections() == 0  # a redirect is never followed


def test_remote_schema_location_is_never_fetched(mode: Roles) -> None:
    mode.registry.mode = "schema-location"
    response = mode.call(f"{DIPLOMA}?person={MARI}")
    assert response.status_code == 502  # not a diploma; and nothing was fetched to find out
    assert response.json()["type"] == "Server.ServerProxy.InvalidEvidence"
    assert mode.registry.bait_connections() == 0


def test_registry_down(mode: Roles) -> None:
    mode.registry.stop()
    try:
        started = time.perf_counter()
        response = mode.call(f"{DIPLOMA}?person={MARI}")
        assert time.perf_counter() - started < 3
        assert response.status_code == 503
        assert response.json()["type"] == "Server.ServerProxy.NetworkError"
    finally:
        mode.registry.start_again()
    assert mode.call(f"{DIPLOMA}?person={MARI}").status_code == 200
