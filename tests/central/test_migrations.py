from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from exchange.central.models import Base
from exchange.db import migrate
from exchange.db.engine import build_engine


def test_migrations_build_exactly_the_models(database_url: str) -> None:
    engine = build_engine(database_url)
    migrate.upgrade("central", engine)
    migrate.upgrade("central", engine)  # idempotent: a second start changes nothing
    with engine.connect() as connection:
        diff = compare_metadata(
            MigrationContext.configure(
                connection, opts={"version_table": "alembic_version_central"}
            ),
            Base.metadata,
        )
    assert diff == []
    tables = set(inspect(engine).get_table_names())
    assert "alembic_version_central" in tables
    assert {t for t in tables if not t.startswith("ca_")} == {"alembic_version_central"}


def test_downgrade_to_nothing_and_back(database_url: str) -> None:
    engine = build_engine(database_url)
    migrate.upgrade("central", engine)
    command.downgrade(migrate.alembic_config("central", engine), "base")
    assert [t for t in inspect(engine).get_table_names() if t.startswith("ca_")] == []
    migrate.upgrade("central", engine)
    assert "ca_members" in inspect(engine).get_table_names()
