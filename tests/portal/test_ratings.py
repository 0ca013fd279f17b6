"""Citizens' ratings on both backends: tallies without identity, one per ticket."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from exchange.db import migrate
from exchange.db.engine import build_engine
from exchange.disclosure import Months
from exchange.errors import Conflict, InvalidRequest
from exchange.portal import models
from exchange.portal.ratings import Ratings
from exchange.portal.settings import passport

AT = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
PASSPORT = passport("EE/GOV/1/registry/birth-certificate")


def ratings(database_url: str) -> Ratings:
    engine = build_engine(database_url)
    migrate.upgrade("portal", engine)
    return Ratings(engine, procedures=[PASSPORT], clock=lambda: AT)


def test_answers_add_up_in_a_tally_and_a_ticket_is_spent_once(database_url: str) -> None:
    store = ratings(database_url)
    for _ in range(6):
        session: dict[str, Any] = {}
        store.issue(session, PASSPORT)
        assert store.form_for(session, PASSPORT) is not None
        store.record(session, PASSPORT, {"score": "5", "brought": "no"})
        assert store.form_for(session, PASSPORT) is None
        with pytest.raises(Conflict):
            store.record(session, PASSPORT, {"score": "5", "brought": "no"})
    with store._engine.connect() as connection:
        rows = connection.execute(select(models.ratings)).mappings().all()
    assert [dict(r) for r in rows] == [
        {
            "procedure": "passport",
            "month": "2026-12",
            "score": 5,
            "brought": "no",
            "document": "",
            "count": 6,
        }
    ]
    shown = store.published(Months.parse("2026-12", "2026-12", now=AT))
    assert shown["satisfaction"] == [
        {"month": "2026-12", "procedure": "passport", "score": 5, "count": 5}
    ]


@pytest.mark.parametrize(
    ("form", "detail"),
    [
        ({"score": "0", "brought": "no"}, "score"),
        ({"score": "5"}, "brought"),
        ({"score": "5", "brought": "no", "document": "birth certificate"}, "document"),
        ({"score": "5", "brought": "yes", "document": "my name is Mari"}, "document"),
    ],
)
def test_answers_out_of_place_are_refused(
    database_url: str, form: dict[str, str], detail: str
) -> None:
    store = ratings(database_url)
    session: dict[str, Any] = {}
    store.issue(session, PASSPORT)
    with pytest.raises(InvalidRequest) as refused:
        store.record(session, PASSPORT, form)
    assert refused.value.detail == detail
    assert store.form_for(session, PASSPORT) is not None  # the ticket is still there
