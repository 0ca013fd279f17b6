"""A word at each access, every role in process: a citizen opts in on the portal (a form with
its CSRF token), a register releases data about them, and one e-mail in their language reaches
the SMTP server on loopback, saying who, what, why and when, without their personal code;
repeats are not sent twice, a mail server that is down is tried again, a digest comes once a
day, and opting out stops it all."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from exchange.identity.login import SignedIn
from exchange.portal import models
from exchange.portal.app import Portal
from exchange.portal.notices import CONFIRM_WITHIN, RESEND_AFTER, Subscription
from exchange.portal.settings import PortalSettings
from tests.browser import Browser
from tests.gateway.conftest import MARI, RESIDENCE, Roles
from tests.smtp import Inbox, confirmation_link, text_of

JAAN = "EE39107156021"
ADDRESS = "mari@example.org"


@pytest.fixture(scope="module")
def inbox() -> Iterator[Inbox]:
    started = Inbox().start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def portal(roles: Roles, inbox: Inbox) -> Portal:
    """The sample portal with notifications on, sending to ``inbox``."""
    settings = PortalSettings.load(
        roles.layout.portal,
        overrides={
            "notifications": {
                "smtp_host": "127.0.0.1",
                "smtp_port": inbox.port,
                "smtp_security": "none",
                "from_address": "State Portal <no-reply@portal.example>",
                "digest_hour": (roles.clock().hour + 1) % 24,  # within the hour
            }
        },
    )
    return roles.roles.portal_with(settings)


@pytest.fixture
def browser(roles: Roles, portal: Portal, inbox: Inbox) -> Iterator[Browser]:
    signed = Browser(roles.roles.loopback.blocking())
    signed.sign_in(signed.get(f"{portal.settings.public_url}/login?then=/"), MARI)
    inbox.clear()
    yield signed
    signed.close()
    # Each test starts with no one subscribed.
    assert portal.notices is not None
    roles.roles.run(portal.notices.unsubscribe(SignedIn(MARI, "", "", 0)))


def opt_in(
    browser: Browser,
    portal: Portal,
    inbox: Inbox,
    mode: str = "each",
    lang: str = "en",
    *,
    confirm: bool = True,
) -> str:
    """Save the citizen's choice; unless told not to, confirm the address by the link it got."""
    page = browser.get(f"{portal.settings.public_url}/notifications?lang={lang}")
    assert page.status_code == 200, page.text
    saved = browser.submit(page, 'id="subscribe"', address=ADDRESS, mode=mode)
    assert 'id="saved"' in saved.text, saved.text[:3000]
    if confirm:
        confirmed = browser.submit(browser.get(confirmation_link(inbox)), 'id="confirm"')
        assert confirmed.status_code == 200, confirmed.text[:3000]
        inbox.clear()
    return saved.text


def release(roles: Roles, person: str = MARI, purpose: str = "passport-application") -> None:
    answer = roles.call(
        RESIDENCE,
        params={"person": person},
        headers={"X-Road-UserId": person, "X-Exchange-Purpose": purpose},
    )
    assert answer.status_code == 200, answer.text


def deliver(roles: Roles, portal: Portal) -> int:
    """One pass of the portal's job: ask the registers, then send what is due."""
    assert portal.notices is not None
    roles.roles.run(portal.notices.poll())
    return roles.roles.run(portal.notices.send_due())


def test_opting_in_needs_signing_in_and_the_forms_csrf_token(roles: Roles, portal: Portal) -> None:
    url = f"{portal.settings.public_url}/notifications"
    anonymous = Browser(roles.roles.loopback.blocking())
    try:
        assert "Choose a test citizen" in anonymous.get(url).text  # sent to sign in
    finally:
        anonymous.close()
    browser = Browser(roles.roles.loopback.blocking())
    try:
        browser.sign_in(browser.get(f"{portal.settings.public_url}/login?then=/"), MARI)
        forged = browser.post(url, {"address": ADDRESS, "mode": "each", "csrf": "guess"})
        assert forged.status_code == 403
        page = browser.get(url)
        bad = browser.submit(page, 'id="subscribe"', address="not an address", mode="each")
        assert 'id="problem"' in bad.text
        assert portal.notices is not None
        assert portal.notices.subscription(MARI) is None
    finally:
        browser.close()


def test_a_release_is_told_once_by_e_mail_naming_no_personal_code(
    roles: Roles, portal: Portal, inbox: Inbox, browser: Browser
) -> None:
    usage = browser.get(f"{portal.settings.public_url}/usage")
    assert 'id="notifications"' in usage.text
    opt_in(browser, portal, inbox)
    with portal.engine.connect() as connection:
        before = connection.execute(select(models.cursors.c.cursor)).scalar_one()
    release(roles)
    release(roles, JAAN)  # someone else: no e-mail to Mari
    assert deliver(roles, portal) == 1
    [mail] = inbox.wait_for(1, within=5)
    assert inbox.recipients == [[ADDRESS]]
    assert mail["Subject"] == (
        "State Portal (citizen-portal) obtained data about you from Population Register"
    )
    body = text_of(mail)
    for words in ("When:", "UTC", "Who: State Portal (citizen-portal)", "What:", "Why:"):
        assert words in body, body
    assert "to check your identity and citizenship" in body  # the procedure's purpose, in words
    link = re.search(r"(http://\S+/usage/receipt\?\S+)", body)
    assert link, body
    assert MARI not in str(mail)
    assert JAAN not in str(mail)

    # The record the link names, its receipt checked once the register signed a head.
    roles.roles.run(roles.provider.heads.sign_now())
    checked = browser.get(link.group(1))
    assert 'id="verification"' in checked.text, checked.text[:3000]
    assert "Verified:" in checked.text

    # Nothing new: nothing sent. The register's same events again (a lost reply, a restart
    # before the cursor was kept): nothing sent either.
    assert deliver(roles, portal) == 0
    with portal.engine.begin() as connection:
        connection.execute(update(models.cursors).values(cursor=before))
    assert deliver(roles, portal) == 0
    assert len(inbox.messages) == 1


@pytest.mark.parametrize(
    ("lang", "subject", "words"),
    [
        ("fr", "a obtenu des données vous concernant", ("Quand\xa0:", "Qui\xa0:", "Pourquoi\xa0:")),
        ("ar", "حصل", ("متى:", "مَن:", "لماذا:")),
    ],
)
def test_the_e_mail_speaks_the_language_the_citizen_chose(
    roles: Roles,
    portal: Portal,
    inbox: Inbox,
    browser: Browser,
    lang: str,
    subject: str,
    words: tuple[str, ...],
) -> None:
    opt_in(browser, portal, inbox, lang=lang)
    release(roles)
    assert deliver(roles, portal) == 1
    [mail] = inbox.wait_for(1, within=5)
    assert subject in mail["Subject"]
    body = text_of(mail)
    for word in words:
        assert word in body, body
    assert MARI not in str(mail)


def test_a_mail_server_that_is_down_gets_the_message_later(
    roles: Roles, portal: Portal, inbox: Inbox, browser: Browser
) -> None:
    opt_in(browser, portal, inbox)
    inbox.stop()
    try:
        release(roles)
        assert deliver(roles, portal) == 0
        with portal.engine.connect() as connection:
            [row] = connection.execute(select(models.notices)).all()
        assert row.sent_at is None
        assert row.attempts == 1
    finally:
        inbox.start()
    assert deliver(roles, portal) == 0  # not yet: it waits before trying again
    roles.clock.advance(timedelta(seconds=30))
    assert deliver(roles, portal) == 1
    assert len(inbox.wait_for(1, within=5)) == 1


def test_opting_out_stops_the_e_mails_and_the_registers_watches(
    roles: Roles, portal: Portal, inbox: Inbox, browser: Browser
) -> None:
    page = opt_in(browser, portal, inbox)
    assert 'id="unsubscribe"' in page
    settings = browser.get(f"{portal.settings.public_url}/notifications")
    stopped = browser.submit(settings, 'id="unsubscribe"')
    assert 'id="stopped"' in stopped.text
    assert portal.notices is not None
    assert portal.notices.subscription(MARI) is None
    with portal.engine.connect() as connection:
        assert connection.execute(select(models.watches)).all() == []  # cancelled there too
    release(roles)
    assert deliver(roles, portal) == 0
    assert inbox.messages == []


def test_a_daily_digest_tells_the_days_releases_in_one_e_mail(
    roles: Roles, portal: Portal, inbox: Inbox, browser: Browser
) -> None:
    opt_in(browser, portal, inbox, mode="daily")
    release(roles)
    release(roles, purpose="study-grant")
    assert deliver(roles, portal) == 0  # not before the digest's hour
    with portal.engine.connect() as connection:
        due = connection.execute(select(models.subscriptions.c.digest_due)).scalar_one()
    while roles.clock() < due:  # there, in steps the configuration outlives
        roles.clock.advance(min(timedelta(minutes=20), due - roles.clock() + timedelta(seconds=1)))
        roles.roles.refresh()
    assert deliver(roles, portal) == 1
    [mail] = inbox.wait_for(1, within=5)
    assert mail["Subject"] == "2 releases of data about you"
    body = text_of(mail)
    assert body.count("/usage/receipt?") == 2
    assert "study-grant" in body
    assert MARI not in str(mail)
    assert deliver(roles, portal) == 0


def test_nothing_goes_to_an_address_until_its_owner_confirms_it(
    roles: Roles, portal: Portal, inbox: Inbox, browser: Browser
) -> None:
    page = opt_in(browser, portal, inbox, confirm=False)
    assert 'id="pending"' in page
    [letter] = inbox.wait_for(1, within=5)
    assert letter["Subject"] == "Confirm your e-mail address for State Portal"
    assert MARI not in str(letter)
    link = confirmation_link(inbox)
    release(roles)
    assert deliver(roles, portal) == 0  # the news waits for the confirmation
    assert len(inbox.messages) == 1

    # Opening the link shows a button (a mail scanner fetching links confirms nothing).
    shown = browser.get(link)
    assert 'id="confirm"' in shown.text
    assert portal.notices is not None
    assert portal.notices.subscription(MARI) == Subscription(ADDRESS, "en", "each", False)
    forged = browser.submit(browser.get(link + "x"), 'id="confirm"')
    assert forged.status_code == 400
    assert "This link is not valid" in forged.text
    confirmed = browser.submit(shown, 'id="confirm"')
    assert "Your address is confirmed" in confirmed.text
    assert deliver(roles, portal) == 1  # what waited goes now
    assert browser.submit(browser.get(link), 'id="confirm"').status_code == 400  # once only

    # Saving again with the same address asks nothing more; a new address is confirmed anew.
    inbox.clear()
    again = browser.submit(
        browser.get(f"{portal.settings.public_url}/notifications"),
        'id="subscribe"',
        address=ADDRESS,
        mode="each",
    )
    assert 'id="pending"' not in again.text
    assert inbox.messages == []
    other = browser.submit(again, 'id="subscribe"', address="mari@example.net", mode="each")
    assert 'id="pending"' in other.text
    assert "mari@example.net" in inbox.wait_for(1, within=5)[0]["To"]


def test_a_confirmation_link_expires(
    roles: Roles, portal: Portal, inbox: Inbox, browser: Browser
) -> None:
    opt_in(browser, portal, inbox, confirm=False)
    link = confirmation_link(inbox)
    with portal.engine.begin() as connection:
        connection.execute(
            update(models.subscriptions).values(
                confirm_sent_at=roles.clock() - CONFIRM_WITHIN - timedelta(seconds=1)
            )
        )
    expired = browser.submit(browser.get(link), 'id="confirm"')
    assert expired.status_code == 400
    assert portal.notices is not None
    subscription = portal.notices.subscription(MARI)
    assert subscription is not None
    assert not subscription.confirmed


def test_a_mail_server_that_is_down_when_the_link_is_sent_is_said(
    roles: Roles, portal: Portal, inbox: Inbox, browser: Browser
) -> None:
    inbox.stop()
    try:
        page = opt_in(browser, portal, inbox, confirm=False)
    finally:
        inbox.start()
    assert 'id="confirm-failed"' in page
    again = browser.submit(
        browser.get(f"{portal.settings.public_url}/notifications"),
        'id="subscribe"',
        address=ADDRESS,
        mode="each",
    )
    assert 'id="pending"' in again.text
    assert len(inbox.wait_for(1, within=5)) == 1


def test_saving_again_soon_sends_no_second_link(
    roles: Roles, portal: Portal, inbox: Inbox, browser: Browser
) -> None:
    url = f"{portal.settings.public_url}/notifications"
    opt_in(browser, portal, inbox, confirm=False)
    first = confirmation_link(inbox)
    for _ in range(3):  # a citizen pressing Save again, or a script doing it
        again = browser.submit(browser.get(url), 'id="subscribe"', address=ADDRESS, mode="each")
        assert 'id="pending"' in again.text
    assert len(inbox.messages) == 1
    roles.clock.advance(RESEND_AFTER + timedelta(seconds=1))
    later = browser.submit(browser.get(url), 'id="subscribe"', address=ADDRESS, mode="each")
    assert 'id="pending"' in later.text
    second = inbox.wait_for(2, within=5)[1]
    assert first not in text_of(second)  # a new link; the first one no longer works
    assert browser.submit(browser.get(first), 'id="confirm"').status_code == 400
