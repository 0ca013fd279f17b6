"""A release about a subscribed citizen reaches the SMTP server as exactly one e-mail within a
minute, also when the portal is killed (SIGKILL) with the message still in its outbox and
started again: every role a process on loopback, the mail server an aiosmtpd on loopback."""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from exchange.db.engine import build_engine
from exchange.portal import models
from exchange.portal.settings import PortalSettings
from tests.browser import Browser
from tests.gateway.conftest import MARI, PURPOSE, RESIDENCE, Running, sample_layout
from tests.servers import serve_federation, serving
from tests.smtp import Inbox, confirmation_link

ADDRESS = "mari@example.org"
WITHIN = 60  # seconds from the release to the e-mail, as promised to citizens


def wait(check: object, *, what: str, within: float) -> None:
    deadline = time.monotonic() + within
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        time.sleep(0.1)


def test_one_e_mail_within_a_minute_though_the_portal_was_killed_before_sending(
    tmp_path: Path,
) -> None:
    inbox = Inbox()  # the mail server is down at the release: the message waits in the outbox
    with contextlib.ExitStack() as stack:
        layout, ports, registry = stack.enter_context(sample_layout(tmp_path, (None, None)))
        with layout.portal.open("a") as settings:
            settings.write(
                "\n[notifications]\n"
                f'smtp_host = "127.0.0.1"\nsmtp_port = {inbox.port}\nsmtp_security = "none"\n'
                'from_address = "State Portal <no-reply@portal.example>"\npoll_interval = 1\n'
            )
        processes = serve_federation(stack, layout, ports, logs=tmp_path)
        running = Running(layout, ports, registry, processes, tmp_path, stack)
        stack.callback(inbox.stop)
        engine = build_engine(PortalSettings.load(layout.portal).db_url)
        stack.callback(engine.dispose)

        def outbox() -> list[tuple[int, object]]:
            with engine.connect() as connection:
                query = select(models.notices.c.attempts, models.notices.c.sent_at)
                return [(row.attempts, row.sent_at) for row in connection.execute(query)]

        portal = f"http://127.0.0.1:{ports.portal}"
        browser = Browser()
        stack.callback(browser.close)
        browser.sign_in(browser.get(f"{portal}/login?then=/notifications"), MARI)
        inbox.start()  # up while the address is confirmed by the link it gets
        saved = browser.submit(
            browser.get(f"{portal}/notifications"), 'id="subscribe"', address=ADDRESS, mode="each"
        )
        assert 'id="saved"' in saved.text, saved.text[:3000]
        confirmed = browser.submit(browser.get(confirmation_link(inbox)), 'id="confirm"')
        assert confirmed.status_code == 200, confirmed.text[:3000]
        inbox.stop()
        inbox.clear()

        released = time.monotonic()
        answer = running.call(
            RESIDENCE,
            params={"person": MARI},
            headers={"X-Road-UserId": MARI, "X-Exchange-Purpose": PURPOSE},
        )
        assert answer.status_code == 200
        # Taken into the outbox and tried once against the server that is down.
        wait(lambda: any(tries >= 1 for tries, _ in outbox()), what="a try", within=20)
        processes["portal"].send_signal(signal.SIGKILL)
        assert processes["portal"].wait(10) == -signal.SIGKILL
        assert inbox.messages == []

        inbox.start()
        stack.enter_context(
            serving(
                ["portal", "serve", "-c", str(layout.portal)],
                health_url=f"{portal}/health",
                log=tmp_path / "portal-again.log",
            )
        )
        [mail] = inbox.wait_for(1, within=WITHIN - (time.monotonic() - released))
        assert time.monotonic() - released < WITHIN
        assert inbox.recipients == [[ADDRESS]]
        assert MARI not in str(mail)
        wait(lambda: all(sent is not None for _, sent in outbox()), what="sent", within=10)
        # Further passes of the restarted portal (one a second) send nothing more.
        with pytest.raises(AssertionError):
            inbox.wait_for(2, within=3)
