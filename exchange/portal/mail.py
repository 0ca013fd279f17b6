"""The portal's client of its SMTP server: one message handed over, or an error saying why not.

TLS is as the settings say: ``starttls`` upgrades the connection and refuses a server that cannot
(never falls back to plain text), ``tls`` speaks TLS from the first byte, ``none`` is for a relay
on the same host. Certificates are verified against the system's trust store. The password is
read once, at start, and goes nowhere but the SMTP ``AUTH`` command: never into a log line or an
error message (errors name the server and the SMTP reply code only).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from typing import Any

import aiosmtplib

from exchange.errors import ServiceUnavailable
from exchange.portal.settings import Notifications

Send = Callable[..., Awaitable[Any]]


class Mailer:
    def __init__(self, settings: Notifications, *, send: Send = aiosmtplib.send) -> None:
        """``send`` is aiosmtplib's unless a test injects another."""
        self._settings = settings
        self._password = settings.password()
        self._send = send

    @property
    def sender(self) -> str:
        return self._settings.from_address

    async def send(self, message: EmailMessage) -> None:
        """Hand ``message`` to the SMTP server; :class:`ServiceUnavailable` if it was not taken
        (the caller keeps it in its outbox for a later try)."""
        settings = self._settings
        try:
            await self._send(
                message,
                hostname=settings.smtp_host,
                port=settings.smtp_port,
                username=settings.smtp_username,
                password=self._password,
                use_tls=settings.smtp_security == "tls",
                start_tls=settings.smtp_security == "starttls",
                timeout=settings.smtp_timeout,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            code = getattr(exc, "code", None)
            where = f"{settings.smtp_host}:{settings.smtp_port}"
            raise ServiceUnavailable(
                f"the SMTP server {where} did not take the message",
                detail=type(exc).__name__ + (f" {code}" if code else ""),
            ) from exc
