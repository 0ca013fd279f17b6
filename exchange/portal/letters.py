"""The e-mails a citizen gets about releases of their data, in the language they chose.

Each says who obtained what, why and when, and links to the record on the portal, where its
receipt is checked against the register's signed audit log. None carries the person's code or
name: an e-mail crosses servers the state does not run, and the address may be shared.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from urllib.parse import urlencode, urlsplit

from exchange.web.languages import date_time, gettext, ngettext, speaking

# What the outbox keeps of a register's event: who, what, why, when; never a person code.
EVENT_FIELDS = (
    "logtime",
    "action",
    "service",
    "receiverCode",
    "receiverName",
    "receiverSystem",
    "purpose",
    "legalBasis",
)


@dataclass(frozen=True, slots=True)
class Release:
    """One release, as a letter tells it (every field already in words)."""

    provider: str  # the register's subsystem, for the link
    chain: str
    seq: int
    logtime: str
    register: str  # the register's name
    who: str  # the member that obtained it, and its system
    what: str
    why: str | None
    legal_basis: str | None


@dataclass(frozen=True, slots=True)
class Letterhead:
    site: str  # the portal's name
    public_url: str
    sender: str  # From:

    def link(self, release: Release) -> str:
        query = urlencode(
            {"provider": release.provider, "chain": release.chain, "seq": str(release.seq)}
        )
        return f"{self.public_url.rstrip('/')}/usage/receipt?{query}"

    @property
    def settings_link(self) -> str:
        return f"{self.public_url.rstrip('/')}/notifications"

    def message_id(self, releases: list[Release]) -> str:
        """The same for the same releases: a mail system that got it twice can tell."""
        keys = "\n".join(f"{r.provider}\n{r.chain}\n{r.seq}" for r in releases)
        domain = urlsplit(self.public_url).hostname or "portal.invalid"
        return f"<{hashlib.sha256(keys.encode()).hexdigest()[:40]}@{domain}>"


def _block(release: Release, head: Letterhead, language: str) -> list[str]:
    lines = [
        gettext("When: %(when)s") % {"when": date_time(release.logtime, language)},
        gettext("Who: %(who)s") % {"who": release.who},
        gettext("What: %(what)s, from %(register)s")
        % {"what": release.what, "register": release.register},
        gettext("Why: %(why)s") % {"why": release.why or gettext("not given")},
    ]
    if release.legal_basis:
        lines.append(gettext("Legal basis: %(basis)s") % {"basis": release.legal_basis})
    lines += [
        gettext("The record and its receipt in the register's signed audit log:"),
        head.link(release),
    ]
    return lines


def _footer(head: Letterhead) -> list[str]:
    return [
        "",
        "-- ",
        gettext(
            "You get this e-mail because you asked %(site)s to tell you when a register "
            "releases data about you. To stop, or to change how often, go to:"
        )
        % {"site": head.site},
        head.settings_link,
    ]


def _letter(
    subject: str,
    body: list[str],
    *,
    to: str,
    head: Letterhead,
    releases: list[Release],
    at: datetime,
) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = head.sender
    message["To"] = to
    message["Date"] = format_datetime(at)
    message["Message-ID"] = (
        head.message_id(releases)
        if releases
        else make_msgid(domain=urlsplit(head.public_url).hostname or "portal.invalid")
    )
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
    message.set_content("\n".join(body) + "\n")
    return message


def confirmation(
    link: str, *, to: str, language: str, head: Letterhead, at: datetime, within: timedelta
) -> EmailMessage:
    """The e-mail that asks the owner of an address to confirm it before any news is sent."""
    days = max(1, within.days)
    with speaking(language):
        subject = gettext("Confirm your e-mail address for %(site)s") % {"site": head.site}
        body = [
            gettext(
                "Someone, we hope you, asked %(site)s to send news of the use of their data "
                "to this address. To confirm that it is yours, open this link:"
            )
            % {"site": head.site},
            link,
            "",
            ngettext(
                "The link works for %(days)d day. If you did not ask for this, do nothing: no "
                "other e-mail will come.",
                "The link works for %(days)d days. If you did not ask for this, do nothing: no "
                "other e-mail will come.",
                days,
            )
            % {"days": days},
        ]
        return _letter(subject, body, to=to, head=head, releases=[], at=at)


def each(
    release: Release, *, to: str, language: str, head: Letterhead, at: datetime
) -> EmailMessage:
    """The e-mail about one release."""
    with speaking(language):
        subject = gettext("%(who)s obtained data about you from %(register)s") % {
            "who": release.who,
            "register": release.register,
        }
        body = [subject + ".", "", *_block(release, head, language), *_footer(head)]
        return _letter(subject, body, to=to, head=head, releases=[release], at=at)


def digest(
    releases: list[Release], *, to: str, language: str, head: Letterhead, at: datetime
) -> EmailMessage:
    """The day's e-mail: every release since the last one, oldest first."""
    count = len(releases)
    with speaking(language):
        subject = ngettext(
            "%(count)d release of data about you", "%(count)d releases of data about you", count
        ) % {"count": count}
        body = [
            ngettext(
                "Since the last e-mail, a register released data about you %(count)d time.",
                "Since the last e-mail, registers released data about you %(count)d times.",
                count,
            )
            % {"count": count}
        ]
        for release in releases:
            body += ["", *_block(release, head, language)]
        body += _footer(head)
        return _letter(subject, body, to=to, head=head, releases=releases, at=at)
