"""The public pages where an agency applies: a form with a CSRF token of its own session, the
application stored pending as the API stores it, and a page saying how it stands."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from exchange.central.app import create_app
from exchange.central.service import Central
from exchange.central.settings import CentralSettings
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
    number = received.text.split('href="/apply/')[1].split('"')[0]
    status = browser.get(f"{URL}/apply/{number}")
    assert 'data-status="pending"' in status.text
    assert browser.get(f"{URL}/apply/99999").status_code == 404
    assert browser.get(f"{URL}/apply/x").status_code == 404
    again = browser.submit(form, 'name="id"', kind="member", id="EE/GOV/70000777", name="Again")
    assert again.status_code == 409
