"""The gateway's, the consent service's and the portal's migrations build exactly their
models, on both backends, and carry the data of an older database forward."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, text

from audit.models import Base as AuditBase
from exchange.consent.models import Base as ConsentBase
from exchange.db import migrate
from exchange.db.engine import build_engine
from exchange.errors import ServiceUnavailable
from exchange.gateway.models import Base as GatewayBase
from exchange.portal.models import metadata as portal_metadata

AT = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("role", "metadata"),
    [
        ("gateway", [GatewayBase.metadata, AuditBase.metadata]),
        ("consent", [ConsentBase.metadata]),
        ("portal", [portal_metadata]),
    ],
)
def test_migrations_build_exactly_the_models(
    database_url: str, role: str, metadata: list[MetaData]
) -> None:
    engine = build_engine(database_url)
    migrate.upgrade(role, engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"version_table": f"alembic_version_{role}"}
        )
        assert compare_metadata(context, metadata) == []  # type: ignore[arg-type]


@pytest.mark.parametrize("role", ["central", "gateway", "consent", "portal"])
def test_the_newest_revisions_read_without_alembic_are_alembics(role: str) -> None:
    config = migrate.alembic_config(role, build_engine("sqlite://"))
    newest = ScriptDirectory.from_config(config).get_heads()
    assert migrate.newest_revisions(role) == frozenset(newest)


def test_a_process_that_must_not_migrate_refuses_an_older_schema(database_url: str) -> None:
    engine = build_engine(database_url)
    migrate.upgrade("gateway", engine, "0005")
    with pytest.raises(ServiceUnavailable, match="restart the whole gateway"):
        migrate.require_head("gateway", engine)
    migrate.upgrade("gateway", engine)
    migrate.require_head("gateway", engine)  # at the newest schema: nothing to say
    engine.dispose()


def test_records_kept_before_are_listed_and_released_as_their_bodies_say(database_url: str) -> None:
    engine = build_engine(database_url)
    migrate.upgrade("gateway", engine, "0003")
    records = [  # side, service, subject, status; listed, released
        ("provider", "EE/GOV/1/registry/birth-certificate", "s1", 200, True, True),
        ("provider", "EE/GOV/1/registry/usage", "s1", 200, False, False),  # reading their usage
        ("provider", "EE/GOV/1/registry/usage/v2", "s1", 200, False, False),
        ("provider", "EE/GOV/1/registry/birth-certificate/v1", "s2", 200, True, True),
        ("provider", "EE/GOV/1/registry/birth-certificate/v1", "s2", 403, True, False),  # refused
        ("consumer", "EE/GOV/1/registry/birth-certificate", "s1", 200, False, False),
        ("provider", "EE/GOV/1/registry/birth-certificate", None, 200, False, False),  # nobody
    ]
    with engine.begin() as connection:
        for seq, (side, service, subject, status, *_) in enumerate(records):
            connection.execute(
                text(
                    "INSERT INTO audit_records (chain, seq, at, subject, body) "
                    "VALUES ('c', :seq, :at, :subject, :body)"
                ),
                {
                    "seq": seq,
                    "at": AT,
                    "subject": subject,
                    "body": json.dumps(
                        {"side": side, "service": service, "status": status}
                    ).encode(),
                },
            )
    migrate.upgrade("gateway", engine)
    with engine.connect() as connection:
        found = connection.execute(text("SELECT listed, released FROM audit_records ORDER BY seq"))
        assert [(bool(a), bool(b)) for a, b in found] == [r[4:] for r in records]


def test_consents_revoked_before_the_feed_are_its_first_entries(database_url: str) -> None:
    engine = build_engine(database_url)
    migrate.upgrade("consent", engine, "0001")
    with engine.begin() as connection:
        for n, revoked in enumerate([AT + timedelta(hours=2), None, AT + timedelta(hours=1)]):
            connection.execute(
                text(
                    "INSERT INTO consent_consents (id, subject, consumer, service, purpose, "
                    "granted_at, valid_from, valid_until, max_uses, uses, preview, artefact, "
                    "revoked_at) VALUES (:id, 's', 'c', 'sv', 'p', :at, :at, :until, NULL, 0, "
                    ":no, 'a', :revoked)"
                ),
                {
                    "id": f"consent-{n}",
                    "at": AT,
                    "until": AT + timedelta(days=30),
                    "no": False,
                    "revoked": revoked,
                },
            )
    migrate.upgrade("consent", engine)
    with engine.connect() as connection:
        feed = connection.execute(text("SELECT consent_id FROM consent_revocations ORDER BY seq"))
        assert list(feed.scalars()) == ["consent-2", "consent-0"]  # in the order they were revoked
