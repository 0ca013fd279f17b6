from __future__ import annotations

import sqlite3
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
