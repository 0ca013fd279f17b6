"""The public pages where an agency applies: a form with a CSRF token of its own session, the
application stored pending as the API stores it, and a page saying how it stands to the holder
of its receipt alone."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from sqlalchemy import event, text

from exchange.central.app import create_app
from exchange.central.applications import Applications
from exchange.central.service import Central
from exchange.central.settings import CentralSettings
from exchange.errors import NotFound
from exchange.identifiers import GatewayId
from tests.browser import Browser
from tests.conftest import Clock
from tests.inprocess import Loopback, LoopThread

URL = "http://127.0.0.1:4401"


@pytest.fixture
def served(
    central: Central, central_settings: CentralSettings, clock: Clock
) -> Iterator[tuple[Browser, Central]]:
    app = create_app(central_settings, clock=clock)
    loop = LoopThread("central-apply")
    loopback = Loopback()
    loopback.serve(URL, app, loop)
    browser = Browser(loopback.blocking())
    yield browser, app.state.central
    browser.close()
    loop.stop()


def test_an_agency_applies_on_the_page_and_sees_how_it_stands(
    served: tuple[Browser, Central],
) -> None:
    browser, central = served
    form = browser.get(f"{URL}/apply/")
    assert form.status_code == 200
    assert form.headers["x-frame-options"] == "DENY"
    assert "script-src" not in form.headers["content-security-policy"]  # none at all
    assert 'name="csrf"' in form.text

    forged = browser.post(
        f"{URL}/apply/", {"csrf": "forged", "kind": "member", "id": "EE/GOV/70000777"}
    )
    assert forged.status_code == 403
    assert central.registry.events(limit=1000)[-1].action != "application.submitted"

    wrong = browser.submit(form, 'name="id"', kind="member", id="EE/GOV/a b", name="Land Board")
    assert wrong.status_code == 400
    assert wrong.headers["x-road-error"] == "Client.InvalidIdentifier"

    received = browser.submit(
        form, 'name="id"', kind="member", id="EE/GOV/70000777", name="Land Board", contact="it@x"
    )
    assert received.status_code == 200, received.text[:2000]
    assert "waits for the authority" in received.text
    [pending] = central.registry.events(limit=1000)[-1:]
    assert (pending.actor, pending.action, pending.subject) == (
        "applicant",
        "application.submitted",
        "EE/GOV/70000777",
    )
    private = received.text.split('id="receipt" href="')[1].split('"')[0]
    status = browser.get(f"{URL}{private}")
    assert 'data-status="pending"' in status.text
    assert browser.get(f"{URL}/apply/x").status_code == 404
    again = browser.submit(form, 'name="id"', kind="member", id="EE/GOV/70000777", name="Again")
    assert again.status_code == 409


def test_the_applicant_reads_its_gateways_code_with_its_receipt_alone(
    served: tuple[Browser, Central],
) -> None:
    browser, central = served
    form = browser.get(f"{URL}/apply/")
    received = browser.submit(
        form, 'name="id"', kind="member", id="EE/GOV/70000777", name="Commercial Register"
    )
    private = received.text.split('id="receipt" href="')[1].split('"')[0]
    number, receipt = private.split("/")[2:4]
    own = browser.get(f"{URL}{private}")
    assert 'data-status="pending"' in own.text
    assert 'id="codes"' not in own.text

    [pending] = central.registry.events(limit=1000)[-1:]
    central_app = Applications(registry=central.registry)
    central_app.approve(int(number), actor="console:olga")
    gateway = GatewayId.parse("EE/GOV/70000777/gw1")
    issued = central.enrolments.issue(gateway, "https://127.0.0.1:8443", actor="console:olga")

    shown = browser.get(f"{URL}{private}")
    assert 'data-status="approved"' in shown.text
    assert f'dir="ltr">{issued.code}</code>' in shown.text
    # Not without the receipt, not with another receipt, not in the database.
    assert issued.code not in browser.get(f"{URL}/apply/{number}").text
    assert browser.get(f"{URL}/apply/{number}/{receipt[:-2]}xx").status_code == 404
    with central.registry.session() as session:
        stored = session.execute(text("SELECT * FROM ca_enrolment_codes")).all()
        applications = session.execute(text("SELECT * FROM ca_applications")).all()
    assert issued.code.replace("-", "") not in repr(stored).replace("-", "")
    assert receipt not in repr(applications)
    # Used, it is gone from the page.
    with central.registry.session() as session:
        session.execute(text("UPDATE ca_enrolment_codes SET used_at = issued_at"))
        session.commit()
    assert issued.code not in browser.get(f"{URL}{private}").text
    assert pending.action == "application.submitted"


def test_the_api_answers_the_receipt_once(served: tuple[Browser, Central]) -> None:
    browser, _ = served
    answer = browser.http.post(
        f"{URL}/applications", json={"kind": "member", "id": "EE/GOV/70000778", "name": "X"}
    )
    assert answer.status_code == 201
    body = answer.json()
    assert len(body["receipt"]) >= 40
    holder = {"authorization": f"Receipt {body['receipt']}"}
    stands = browser.http.get(f"{URL}/applications/{body['id']}", headers=holder)
    assert stands.status_code == 200
    assert stands.json()["status"] == "pending"
    assert "receipt" not in stands.json()
    own = browser.get(f"{URL}/apply/{body['id']}/{body['receipt']}")
    assert 'data-status="pending"' in own.text


def test_an_application_is_shown_to_the_holder_of_its_receipt_alone(
    served: tuple[Browser, Central],
) -> None:
    """Numbers are sequential: whoever guesses one, without the receipt, learns nothing; the
    answer is the very one of a number that was never given, on the page and in the API."""
    browser, _ = served
    answer = browser.http.post(
        f"{URL}/applications", json={"kind": "member", "id": "EE/GOV/70000779", "name": "Y"}
    )
    number, receipt = answer.json()["id"], answer.json()["receipt"]
    other = "A" * len(receipt)
    page = {"accept": "text/html"}

    def shown(path: str, headers: dict[str, str]) -> tuple[int, str | None, str]:
        got = browser.http.get(f"{URL}{path}", headers=headers)
        # The language switch links back to the address asked for: the one difference.
        text = re.sub(r'<nav aria-label="Language">.*?</nav>', "", got.text, flags=re.S)
        return got.status_code, got.headers.get("x-road-error"), text

    missing = shown(f"/apply/99999/{other}", page)
    assert missing[:2] == (404, "Client.NotFound")
    assert "That did not work" in missing[2]
    for guessed in (f"/apply/{number}/{other}", f"/apply/{number}/{receipt[:-1]}"):
        assert shown(guessed, page) == missing
    assert shown(f"/apply/{number}", page)[:2] == (404, "Client.NotFound")
    assert "EE/GOV/70000779" not in shown(f"/apply/{number}", page)[2]

    unknown = shown("/applications/99999", {"authorization": f"Receipt {other}"})
    assert unknown[:2] == (404, "Client.NotFound")
    for headers in ({}, {"authorization": f"Receipt {other}"}, {"authorization": receipt}):
        assert shown(f"/applications/{number}", headers) == unknown
    own = shown(f"/applications/{number}", {"authorization": f"Receipt {receipt}"})
    assert own[0] == 200
    assert "EE/GOV/70000779" in own[2]


def test_a_lookup_does_the_same_work_for_a_number_given_and_one_never_given(
    central: Central,
) -> None:
    """What the database is asked, and what is built of the answer, does not depend on
    whether the number exists: only the receipt's key is read until the receipt opens it."""
    applications = Applications(registry=central.registry)
    given = applications.submit("member", "EE/GOV/70000780", name="Z")
    assert given.receipt is not None
    engine = central.registry.session().get_bind()
    asked: list[tuple[str, object]] = []

    def record(_conn: object, _cursor: object, sql: str, params: object, *_: object) -> None:
        asked.append((sql, params))

    def refused(number: int, receipt: str) -> list[str]:
        asked.clear()
        with pytest.raises(NotFound) as refusal:
            applications.for_applicant(number, receipt)
        assert (refusal.value.message, refusal.value.detail) == ("no such application", None)
        return [sql for sql, _ in asked]

    event.listen(engine, "before_cursor_execute", record)
    try:
        wrong = "A" * len(given.receipt)
        for_given, for_missing = refused(given.id, wrong), refused(given.id + 1000, wrong)
        assert for_given == for_missing
        assert all("receipt_key" in sql and "contact" not in sql for sql in for_given)
        asked.clear()
        assert applications.for_applicant(given.id, given.receipt).identifier == "EE/GOV/70000780"
        opened = [sql for sql, _ in asked]  # the row itself only once the receipt opens it
        assert opened[: len(for_given)] == for_given
        assert any("contact" in sql for sql in opened[len(for_given) :])
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_a_second_application_for_a_pending_id_files_nothing_and_shows_nothing_of_the_first(
    served: tuple[Browser, Central],
) -> None:
    """What it still tells, on purpose (docs/threat-model.md): that one is pending. Nothing
    else: not its number, receipt, name or contact, and nothing more is filed."""
    browser, central = served
    first = {"kind": "member", "id": "EE/GOV/70000781", "name": "First", "contact": "a@first"}
    filed = browser.http.post(f"{URL}/applications", json=first)
    assert filed.status_code == 201
    before = [e.id for e in central.registry.events(limit=1000)]
    again = browser.http.post(
        f"{URL}/applications", json={**first, "name": "Second", "contact": "b@second"}
    )
    assert again.status_code == 409
    assert again.headers["x-road-error"] == "Client.Conflict"
    assert again.json() == {
        "type": "Client.Conflict",
        "message": "an application for EE/GOV/70000781 is already pending",
        "detail": None,
    }
    assert [e.id for e in central.registry.events(limit=1000)] == before
    assert len(Applications(registry=central.registry).list("pending")) == 1
