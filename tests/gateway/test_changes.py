"""Every change to access rights and groups is in the change log with its actor, written in
the same transaction: a change that fails leaves no entry."""

from __future__ import annotations

import pytest

from exchange.db import migrate
from exchange.db.engine import build_engine
from exchange.errors import Conflict, NotFound
from exchange.gateway.access import AccessRights
from exchange.gateway.changes import ChangeLog
from exchange.trust.globalconf_client import utcnow

SERVICE = "EE/GOV/70000310/population-registry/birth-certificate"
CLIENT = "EE/GOV/70000001/citizen-portal"


def test_changes_name_their_actor_and_failed_ones_leave_nothing(database_url: str) -> None:
    engine = build_engine(database_url)
    migrate.upgrade("gateway", engine)
    access = AccessRights(engine, cache_ttl=0, clock=utcnow)
    log = ChangeLog(engine)

    access.grant(service=SERVICE, subject=CLIENT, legal_basis="Act § 1", actor="console:olga")
    with pytest.raises(Conflict):
        access.grant(service=SERVICE, subject=CLIENT, actor="console:olga")
    with pytest.raises(NotFound):
        access.revoke(service=SERVICE, subject=CLIENT, method="POST", actor="cli:root")
    access.add_group("portals", actor="cli:root")
    access.add_to_group("portals", CLIENT, actor="cli:root")
    access.remove_from_group("portals", CLIENT, actor="cli:root")
    access.revoke(service=SERVICE, subject=CLIENT, actor="console:olga")

    shown, total = log.newest()
    assert total == 5
    assert [(c.actor, c.action, c.target) for c in reversed(shown)] == [
        ("console:olga", "access.grant", SERVICE),
        ("cli:root", "group.add", "portals"),
        ("cli:root", "group.add-member", "portals"),
        ("cli:root", "group.remove-member", "portals"),
        ("console:olga", "access.revoke", SERVICE),
    ]
    assert shown[-1].detail == {
        "subject": CLIENT,
        "method": "",
        "path": "",
        "legal_basis": "Act § 1",
    }
    page, _ = log.newest(limit=2, offset=1)
    assert [c.action for c in page] == ["group.remove-member", "group.add-member"]
    engine.dispose()
