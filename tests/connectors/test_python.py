from __future__ import annotations

import asyncio
import time

import pytest

from connectors.base import ConnectorRequest
from connectors.python import CallableConnector, resolve
from exchange.errors import NotFound, ServiceFailed, ServiceTimeout


def request(**parameters: str) -> ConnectorRequest:
    return ConnectorRequest(service="s", parameters=parameters)


async def test_plain_and_async_functions() -> None:
    def plain(person: str) -> dict[str, str]:
        return {"personCode": person}

    async def coroutine(person: str) -> dict[str, str]:
        return {"personCode": person.upper()}

    assert await CallableConnector(target=plain, parameters=("person",)).fetch(
        request(person="a")
    ) == {"personCode": "a"}
    assert await CallableConnector(target=coroutine, parameters=("person",)).fetch(
        request(person="a")
    ) == {"personCode": "A"}


async def test_outcomes_map_to_errors() -> None:
    def nothing(person: str) -> None:
        return None

    def crash(person: str) -> dict[str, str]:
        raise RuntimeError("database password is hunter2")

    def wrong(person: str) -> list[str]:
        return [person]

    with pytest.raises(NotFound):
        await CallableConnector(target=nothing, parameters=("person",)).fetch(request(person="a"))
    with pytest.raises(ServiceFailed) as failed:
        await CallableConnector(target=crash, parameters=("person",)).fetch(request(person="a"))
    assert "hunter2" not in failed.value.message
    with pytest.raises(ServiceFailed):
        await CallableConnector(target=wrong, parameters=("person",)).fetch(request(person="a"))


async def test_slow_function_times_out() -> None:
    async def slow(person: str) -> dict[str, str]:
        await asyncio.sleep(5)
        return {}

    started = time.perf_counter()
    with pytest.raises(ServiceTimeout):
        await CallableConnector(target=slow, parameters=("person",), timeout=0.2).fetch(
            request(person="a")
        )
    assert time.perf_counter() - started < 1


def test_targets_are_module_colon_function() -> None:
    assert resolve("exchange.sample.population:create") is not None
    with pytest.raises(ValueError, match="must look like"):
        resolve("exchange.sample.population.create")
