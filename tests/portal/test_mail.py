"""The portal's SMTP client: TLS as the settings say, the password from a file or the
environment, and never in what a failure says."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from exchange.errors import ServiceUnavailable
from exchange.portal.mail import Mailer
from exchange.portal.settings import Notifications

SECRET = "correct horse battery staple"


def settings(**more: Any) -> Notifications:
    return Notifications.model_validate(
        {"smtp_host": "smtp.example.org", "from_address": "portal@example.org", **more}
    )


@pytest.mark.parametrize(
    ("security", "use_tls", "start_tls"),
    [("starttls", False, True), ("tls", True, False), ("none", False, False)],
)
def test_tls_is_what_the_settings_say(security: str, use_tls: bool, start_tls: bool) -> None:
    seen: dict[str, Any] = {}

    async def send(message: EmailMessage, **options: Any) -> None:
        seen.update(options)

    mailer = Mailer(settings(smtp_security=security, smtp_password=SECRET), send=send)
    asyncio.run(mailer.send(EmailMessage()))
    assert seen["use_tls"] is use_tls
    assert seen["start_tls"] is start_tls
    assert seen["password"] == SECRET


def test_the_password_comes_from_a_file_and_never_into_a_failure(tmp_path: Path) -> None:
    secret_file = tmp_path / "smtp-password"
    secret_file.write_text(SECRET + "\n")

    async def refuse(message: EmailMessage, **options: Any) -> None:
        assert options["password"] == SECRET
        raise aiosmtplib.SMTPAuthenticationError(535, f"bad password {options['password']}")

    mailer = Mailer(settings(smtp_username="portal", smtp_password_file=secret_file), send=refuse)
    with pytest.raises(ServiceUnavailable) as refused:
        asyncio.run(mailer.send(EmailMessage()))
    assert SECRET not in str(refused.value)
    assert SECRET not in str(refused.value.body())
    assert "535" in str(refused.value.detail)
    assert SECRET not in repr(settings(smtp_password=SECRET))
    with pytest.raises(ValueError, match="not both"):
        settings(smtp_password=SECRET, smtp_password_file=secret_file)
