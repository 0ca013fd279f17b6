"""Watches: a portal told of each release about a citizen who asked it to be, through the usage
service and X-Road; events derived from the audit log, naming no person."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest

from exchange.gateway import watches
from exchange.sample import federation
from tests.gateway.conftest import MARI, RESIDENCE, Roles

JAAN = "EE39107156021"
USAGE = f"/r1/{federation.POPULATION_REGISTRY}/usage"


def register(roles: Roles, watch: str, *, token: str | None, user: str = MARI) -> httpx.Response:
    headers = {"X-Road-UserId": user}
    if token is not None:
        headers["X-Exchange-Identity"] = token
    return roles.call(
        f"{USAGE}/v1/watches",
        method="POST",
        headers=headers,
        params={"userCode": user, "watch": watch},
    )


def events(roles: Roles, cursor: str) -> dict[str, Any]:
    answer = roles.call(f"{USAGE}/v1/events", params={"cursor": cursor})
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def release(roles: Roles, person: str) -> None:
    answer = roles.call(f"{RESIDENCE}?person={person}", headers={"X-Road-UserId": person})
    assert answer.status_code == 200, answer.text


def test_a_watched_citizens_releases_become_events_that_name_no_one(roles: Roles) -> None:
    watch = secrets.token_urlsafe(16)
    registered = register(roles, watch, token=roles.id_token(MARI))
    assert registered.status_code == 200, registered.text
    cursor = registered.json()["cursor"]
    release(roles, MARI)
    release(roles, JAAN)  # not watched
    refused = roles.call(f"/r1/{federation.BIRTH_CERTIFICATE}", params={"person": MARI})
    assert refused.status_code != 200  # an attempt, not a release: no event

    found = events(roles, cursor)
    assert [e["watch"] for e in found["events"]] == [watch]
    [event] = found["events"]
    assert set(event) == {
        "watch", "chain", "seq", "logtime", "action", "service", "receiverCode",
        "receiverName", "receiverSystem", "purpose", "legalBasis",
    }  # fmt: skip
    assert event["receiverName"] == "State Portal"
    assert event["service"].startswith(federation.RESIDENCE_RECORD)
    assert MARI not in str(found)
    assert JAAN not in str(found)
    assert found["more"] is False

    # Asked again with the same cursor: the same events; with the new one: nothing new.
    assert events(roles, cursor)["events"] == found["events"]
    assert events(roles, found["cursor"])["events"] == []


def test_only_the_citizen_can_start_a_watch_and_the_portal_can_end_it(roles: Roles) -> None:
    watch = secrets.token_urlsafe(16)
    assert register(roles, watch, token=None).status_code == 401
    assert register(roles, watch, token=roles.id_token(JAAN)).status_code == 403
    assert register(roles, "short", token=roles.id_token(MARI)).status_code == 400
    registered = register(roles, watch, token=roles.id_token(MARI))
    assert registered.status_code == 200
    again = register(roles, watch, token=roles.id_token(JAAN), user=JAAN)
    assert again.status_code == 403  # a watch id names one person for good

    cancelled = roles.call(f"{USAGE}/v1/watches", method="DELETE", params={"watch": watch})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json() == {"watch": watch, "cancelled": True}
    release(roles, MARI)
    assert all(e["watch"] != watch for e in events(roles, registered.json()["cursor"])["events"])


def test_a_first_question_starts_now_and_a_bad_cursor_is_refused(roles: Roles) -> None:
    first = roles.call(f"{USAGE}/v1/events")
    assert first.status_code == 200
    assert first.json()["events"] == []
    assert roles.call(f"{USAGE}/v1/events", params={"cursor": "%%%"}).status_code == 400
    assert roles.call(f"{USAGE}/v1/events", method="POST").status_code == 405


def test_an_old_cursor_reads_the_log_a_stretch_at_a_time(
    roles: Roles, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However far back a portal's cursor points, one question reads a bounded stretch of
    the log; the rest comes with ``more`` and the next cursor."""
    watch = secrets.token_urlsafe(16)
    registered = register(roles, watch, token=roles.id_token(MARI))
    assert registered.status_code == 200, registered.text
    cursor = registered.json()["cursor"]
    for _ in range(3):
        release(roles, MARI)
        release(roles, JAAN)
    monkeypatch.setattr(watches, "SCAN", 2)
    seen: list[int] = []
    for _ in range(20):
        found = events(roles, cursor)
        seen += [e["seq"] for e in found["events"] if e["watch"] == watch]
        cursor = found["cursor"]
        if not found["more"]:
            break
        assert len(found["events"]) <= 2
    assert len(seen) == 3
    assert seen == sorted(set(seen))
