from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from connectors.base import ConnectorRequest
from connectors.sql import SqlConnector
from exchange.errors import (
    InvalidRequest,
    NotFound,
    ServiceFailed,
    ServiceTimeout,
    ServiceUnavailable,
)
from exchange.sample import population

MARI = "EE38001085718"


@pytest.fixture
def register(tmp_path: Path) -> Path:
    return population.create(tmp_path / "population.db")


def births(register: Path, **kwargs: object) -> SqlConnector:
    return SqlConnector(
        url=f"sqlite:///{register}",
        query=population.BIRTH_QUERY,
        parameters=("person",),
        fields=population.BIRTH_FIELDS,
        **kwargs,  # type: ignore[arg-type]
    )


def ask(**parameters: str) -> ConnectorRequest:
    return ConnectorRequest(service="s", parameters=parameters)


async def test_row_becomes_nested_evidence(register: Path) -> None:
    evidence = await births(register).fetch(ask(person=MARI))
    assert evidence["placeOfBirth"] == {"municipality": "Tallinn", "country": "EE"}
    assert evidence["mother"] == {"givenName": "Anne", "familyName": "Tamm"}


async def test_missing_columns_leave_optional_elements_out(register: Path) -> None:
    evidence = await births(register).fetch(ask(person="EE46512240229"))
    assert "mother" not in evidence
    assert "father" not in evidence


@pytest.mark.parametrize(
    "hostile",
    [
        "x' OR '1'='1",
        f"{MARI}' --",
        f"{MARI}'; DROP TABLE births; --",
        "' UNION SELECT * FROM residences --",
    ],
)
async def test_values_are_only_ever_bound_parameters(register: Path, hostile: str) -> None:
    with pytest.raises(NotFound):
        await births(register).fetch(ask(person=hostile))
    with sqlite3.connect(register) as db:
        assert db.execute("SELECT count(*) FROM births").fetchone() == (4,)


async def test_parameters_must_match_the_declaration(register: Path) -> None:
    connector = births(register)
    with pytest.raises(InvalidRequest, match="missing query parameter: person"):
        await connector.fetch(ask())
    with pytest.raises(InvalidRequest, match="missing query parameter: person"):
        await connector.fetch(ask(person=""))
    with pytest.raises(InvalidRequest, match="missing query parameter: person"):
        await connector.fetch(ask(table="births"))
    with pytest.raises(InvalidRequest, match="unknown query parameter: table"):
        await connector.fetch(ask(person=MARI, table="births"))
    with pytest.raises(ValueError, match="declares"):
        SqlConnector(url=f"sqlite:///{register}", query="SELECT 1 WHERE :a = :b", parameters=("a",))


async def test_more_than_one_row_is_a_registry_fault(register: Path) -> None:
    connector = SqlConnector(
        url=f"sqlite:///{register}",
        query="SELECT * FROM births WHERE sex = :sex",
        parameters=("sex",),
    )
    with pytest.raises(ServiceFailed, match="more than one record"):
        await connector.fetch(ask(sex="F"))


async def test_broken_registry_is_unavailable(tmp_path: Path) -> None:
    connector = SqlConnector(
        url=f"sqlite:///{tmp_path / 'empty.db'}",
        query="SELECT * FROM nowhere WHERE a = :a",
        parameters=("a",),
    )
    with pytest.raises(ServiceUnavailable):
        await connector.fetch(ask(a="1"))


async def test_slow_query_is_stopped_at_the_timeout(register: Path) -> None:
    slow = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 500000000)"
        " SELECT count(*) AS n FROM c WHERE :person IS NOT NULL"
    )
    connector = SqlConnector(
        url=f"sqlite:///{register}", query=slow, parameters=("person",), timeout=0.3
    )
    started = time.perf_counter()
    with pytest.raises(ServiceTimeout):
        await connector.fetch(ask(person=MARI))
    assert time.perf_counter() - started < 2
    await connector.close()
    # The interrupted statement released its thread: a normal query still runs at once.
    assert (await births(register).fetch(ask(person=MARI)))["givenName"] == "Mari"


async def test_the_probe_plans_the_query_and_reads_no_record(register: Path) -> None:
    """The console's "test the connection": the query's tables and columns are resolved by the
    database, no row is read; what is wrong is said in the driver's words, without the URL."""
    connector = births(register)
    try:
        assert await connector.probe() == "the database answered and accepts the query"
    finally:
        await connector.close()
    wrong = SqlConnector(
        url=f"sqlite:///{register}",
        query="SELECT no_such_column FROM births WHERE person_code = :person",
        parameters=("person",),
    )
    try:
        with pytest.raises(ServiceFailed, match="no such column: no_such_column") as refused:
            await wrong.probe()
    finally:
        await wrong.close()
    assert str(register) not in refused.value.message


async def test_a_short_read_of_a_local_file_is_answered_without_a_thread(register: Path) -> None:
    """A point read of a local SQLite register costs less than the hand-off to a thread and back:
    after the first read (on a thread, which opens the loop's own connection) reads run on the
    event loop, bounded (see the next tests)."""
    connector = births(register)
    try:
        assert (await connector.fetch(ask(person=MARI)))["givenName"] == "Mari"
        connector._executor.shutdown()  # no thread left to run a query on
        for _ in range(3):
            assert (await connector.fetch(ask(person=MARI)))["givenName"] == "Mari"
        with pytest.raises(NotFound):
            await connector.fetch(ask(person="EE00000000000"))
    finally:
        await connector.close()


async def test_a_long_query_leaves_the_event_loop_free(register: Path) -> None:
    """Past a few thousand steps a read on the loop is interrupted and run again on a thread,
    under the timeout: the loop goes on serving others meanwhile."""
    counting = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300000)"
        " SELECT count(*) AS n FROM c WHERE :person IS NOT NULL"
    )
    connector = SqlConnector(url=f"sqlite:///{register}", query=counting, parameters=("person",))
    ticks = 0
    longest = 0.0

    async def tick() -> None:
        nonlocal ticks, longest
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.005)
            longest = max(longest, time.perf_counter() - started)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        await asyncio.sleep(0.02)
        for _ in range(2):  # the second is tried on the loop first
            assert await connector.fetch(ask(person=MARI)) == {"n": 300000}
    finally:
        ticker.cancel()
        await connector.close()
    assert ticks > 5
    assert longest < 0.1


async def test_a_locked_register_is_waited_for_off_the_loop(register: Path) -> None:
    """A register locked by its own writer is read on a thread once the lock is released, while
    the loop goes on (the loop's own connection is opened there too: opening may wait)."""
    first = births(register)
    await first.fetch(ask(person=MARI))  # the register is now in WAL mode
    await first.close()
    connector = births(register)
    writer = sqlite3.connect(register, check_same_thread=False)
    writer.execute("PRAGMA locking_mode=EXCLUSIVE")
    writer.execute("BEGIN EXCLUSIVE")
    writer.execute("UPDATE births SET given_name = given_name")
    released = threading.Timer(0.3, writer.close)  # an exclusive lock lasts until then
    released.start()
    try:
        started = time.perf_counter()
        loop_free = asyncio.create_task(asyncio.sleep(0.05))
        evidence = await connector.fetch(ask(person=MARI))
        assert loop_free.done()
        assert evidence["givenName"] == "Mari"
        assert time.perf_counter() - started >= 0.25
    finally:
        released.join()
        writer.close()
        await connector.close()
