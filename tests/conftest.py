"""Shared fixtures: databases on both backends, test PKI factories, a frozen clock."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import structlog
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from exchange.logging import configure

# Roles built in the test's process log as the command line sets them up (plain tracebacks;
# structlog's default would render each failure's traceback with its locals, seconds apiece),
# and loggers are not cached, so that structlog.testing.capture_logs sees them all.
configure(level="DEBUG")  # failures log their traceback at DEBUG; tests read them
structlog.configure(cache_logger_on_first_use=False)

POSTGRES_URL = os.environ.get("EXCHANGE_TEST_POSTGRES_URL")
REQUIRE_POSTGRES = os.environ.get("EXCHANGE_REQUIRE_POSTGRES") == "1"
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, at: datetime = NOW) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, delta: timedelta) -> None:
        self.at += delta


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _postgres_database() -> Iterator[str]:
    if POSTGRES_URL is None:
        if REQUIRE_POSTGRES:
            pytest.fail("EXCHANGE_REQUIRE_POSTGRES=1 but EXCHANGE_TEST_POSTGRES_URL is not set")
        pytest.skip("no PostgreSQL server (install it, or set EXCHANGE_TEST_POSTGRES_URL)")
    name = f"test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def database_down(url: str) -> Iterator[None]:
    """The PostgreSQL database of ``url`` goes away for the block, as in an outage: every
    connection to it is cut and new ones are refused until the block ends."""
    assert POSTGRES_URL is not None
    name = make_url(url).database
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false'))
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
        yield
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true'))
        admin.dispose()


def terminate_connections(url: str) -> None:
    """Cut every connection to the PostgreSQL database of ``url``, as a server restart does."""
    assert POSTGRES_URL is not None
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = :name AND pid <> pg_backend_pid()"
            ),
            {"name": make_url(url).database},
        )
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A fresh, empty database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    else:
        yield from _postgres_database()
