"""An SMTP server on loopback (aiosmtpd) that keeps what it is given, for the portal's e-mails;
it can be stopped and started again on the same port, as a mail server that goes down."""

from __future__ import annotations

import email
import email.policy
import re
import threading
import time
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from tests.servers import free_port


class _Keep:
    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.inbox.lock:
            self.inbox.messages.append(message)
            self.inbox.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"


class Inbox:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.messages: list[EmailMessage] = []
        self.recipients: list[list[str]] = []
        self.lock = threading.Lock()
        self._controller: Controller | None = None

    def start(self) -> Inbox:
        self._controller = Controller(_Keep(self), hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()
            self.recipients.clear()

    def wait_for(self, count: int, *, within: float) -> list[EmailMessage]:
        """Until ``count`` messages arrived (a deadline, not a sleep for timing)."""
        deadline = time.monotonic() + within
        while True:
            with self.lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.messages)} e-mails arrived, not {count}")
            time.sleep(0.05)


def text_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def confirmation_link(inbox: Inbox) -> str:
    """The link in the one e-mail that asks to confirm an address."""
    [letter] = inbox.wait_for(1, within=5)
    found = re.search(r"(http://\S+/notifications/confirm\?token=\S+)", text_of(letter))
    assert found, text_of(letter)
    return found.group(1)
