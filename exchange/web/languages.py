"""The languages of the pages: which one a reader gets, its catalogue, its dates and numbers.

A reader's language is, in order: the one chosen on a page (``?lang=``, remembered in the
``lang`` cookie), the cookie, the browser's ``Accept-Language`` (Babel's negotiation), the
instance's default. :func:`middleware` is the middleware that decides it once per request and
keeps it in a context variable for that request alone (each request runs in its own task, and
:func:`asyncio.to_thread` copies the context), so code that builds text for people, here or in a
role, asks :func:`gettext` without passing the request around.

Catalogues are the ``.po`` files in ``exchange/locale/<language>/LC_MESSAGES/messages.po``,
compiled in memory on first use (Babel's ``read_po`` and ``write_mo``): the repository and the
wheel carry the one source a translator edits, and nothing compiled can go stale.

Digits: Arabic pages write numbers with Latin digits (0-9). The region served first is North
Africa and the Middle East; the Maghreb writes Latin digits, the Mashreq reads them too, and the
numbers citizens compare with paper (person codes, registration numbers, dates) are printed with
them. CLDR's ``ar`` has changed its default numbering system between releases, so it is named here
(``numbering_system="latn"``) rather than left to the data. Times stay in UTC and say so.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.resources import files
from io import BytesIO
from typing import Annotated
from urllib.parse import parse_qsl, urlencode

from babel.core import Locale, negotiate_locale
from babel.dates import format_date, format_skeleton, get_datetime_format
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import Translations
from pydantic import AfterValidator
from starlette.middleware import Middleware
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Each language by its own name, as the switch on every page shows it.
LANGUAGES = {"en": "English", "fr": "Français", "ar": "العربية"}
SOURCE = "en"  # the language the text is written in: it needs no catalogue
COOKIE = "lang"
COOKIE_AGE = 365 * 24 * 3600
CATALOGUES = "exchange.locale"


def known(language: str) -> str:
    """``language`` if the pages speak it (a settings validator)."""
    if language not in LANGUAGES:
        raise ValueError(f"the pages speak {', '.join(LANGUAGES)}, not {language!r}")
    return language


Language = Annotated[str, AfterValidator(known)]
# Text that settings give to people: one string for every language, or one per language, e.g.
# ``{ en = "Apply for a passport", fr = "Demander un passeport", ar = "طلب جواز سفر" }``.
Text = str | dict[Language, str]


def N_(text: str) -> str:
    """``text`` unchanged: marked for the catalogues, translated where it is shown."""
    return text


@dataclass(frozen=True, slots=True)
class Reader:
    """Who a page is for: their language, and the address that shows this page again."""

    language: str
    here: str | None  # None after a form post: showing it again would post the form again


_reader: contextvars.ContextVar[Reader | None] = contextvars.ContextVar("reader", default=None)


def current() -> str:
    """The language of the request being answered (the source language outside one)."""
    reader = _reader.get()
    return reader.language if reader else SOURCE


def reader() -> Reader | None:
    return _reader.get()


@contextlib.contextmanager
def speaking(language: str) -> Iterator[None]:
    """Text built in the block is in ``language``: for what is written outside a request (an
    e-mail to a citizen, in the language they chose)."""
    token = _reader.set(Reader(known(language), None))
    try:
        yield
    finally:
        _reader.reset(token)


@functools.cache
def translations(language: str) -> Translations:
    """``language``'s catalogue, compiled from its ``.po`` on first use."""
    if language == SOURCE:
        return Translations()  # no catalogue: every message as written
    po = files(CATALOGUES).joinpath(language, "LC_MESSAGES", "messages.po")
    with po.open("rb") as source:
        catalogue = read_po(source, locale=language)
    compiled = BytesIO()
    write_mo(compiled, catalogue)
    compiled.seek(0)
    return Translations(compiled)


def gettext(message: str) -> str:
    """``message`` in the reader's language (as written if the catalogue lacks it)."""
    return translations(current()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(current()).ngettext(singular, plural, n)


def localised(text: Text, language: str | None = None, *, otherwise: str | None = None) -> str:
    """Text from settings in ``language`` (the reader's), else in English, else ``otherwise``,
    else in any language it is given in."""
    if isinstance(text, str):
        return text
    found = text.get(language or current()) or text.get(SOURCE) or otherwise
    return found if found is not None else next(iter(text.values()), "")


def direction(language: str) -> str:
    return "rtl" if Locale.parse(language).character_order == "right-to-left" else "ltr"


def date_time(moment: datetime | float | str, language: str | None = None) -> str:
    """A moment as the reader's language writes a date and time, in UTC and saying so."""
    when = _moment(moment)
    locale = language or current()
    pattern = str(get_datetime_format("medium", locale=locale))  # "{1}, {0}": date, time
    shown = pattern.replace("{1}", format_date(when, "long", locale=locale)).replace(
        "{0}", format_skeleton("Hm", when, tzinfo=UTC, locale=locale)
    )
    return f"{shown} UTC"


def time_of_day(moment: datetime | float | str, language: str | None = None) -> str:
    locale = language or current()
    return f"{format_skeleton('Hm', _moment(moment), tzinfo=UTC, locale=locale)} UTC"


def month(value: str, language: str | None = None) -> str:
    """A month given as ``YYYY-MM`` as the reader's language names it ("décembre 2026"), or
    ``value`` unchanged if it is not one."""
    try:
        year, number_of_month = (int(part) for part in value.split("-"))
        first = datetime(year, number_of_month, 1, tzinfo=UTC)
    except ValueError:
        return value
    return format_skeleton("yMMMM", first, tzinfo=UTC, locale=language or current())


def number(value: int | float, language: str | None = None) -> str:
    """A number in the reader's language, always in Latin digits (see the module's text)."""
    return format_decimal(value, locale=language or current(), numbering_system="latn")


def _moment(moment: datetime | float | str) -> datetime:
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    if isinstance(moment, int | float):
        return datetime.fromtimestamp(moment, UTC)
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def accepted(header: str) -> list[str]:
    """The languages of an ``Accept-Language`` header, most wanted first (q=0 left out)."""
    ranked = []
    for position, item in enumerate(header.split(",")[:32]):
        tag, *parameters = (p.strip() for p in item.split(";"))
        weight = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if tag and tag != "*" and weight > 0:
            ranked.append((-weight, position, tag))
    return [tag for _, _, tag in sorted(ranked)]


def negotiate(
    *, chosen: str | None, remembered: str | None, accept: str, default: str
) -> tuple[str, bool]:
    """The reader's language, and whether it was chosen just now (to be remembered)."""
    if chosen in LANGUAGES:
        return str(chosen), True
    if remembered in LANGUAGES:
        return str(remembered), False
    wanted = negotiate_locale(accepted(accept), list(LANGUAGES), sep="-")
    return (wanted if wanted in LANGUAGES else default), False


def switch(here: str, language: str) -> str:
    """``here`` (a path and query on this site) shown in ``language``."""
    path, _, query = here.partition("?")
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "lang"]
    return f"{path}?{urlencode([*kept, ('lang', language)])}"


class _Languages:
    def __init__(self, app: ASGIApp, *, default: str, https: bool) -> None:
        self.app, self.default, self.https = app, known(default), https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        remembered = cookie_parser(headers.get("cookie", "")).get(COOKIE)
        language, chose = negotiate(
            chosen=query.get("lang"),
            remembered=remembered,
            accept=headers.get("accept-language", ""),
            default=self.default,
        )
        here = None
        if scope["method"] in ("GET", "HEAD"):
            raw = scope.get("query_string", b"").decode("latin-1")
            here = scope["path"] + (f"?{raw}" if raw else "")
        token = _reader.set(Reader(language, here))

        async def remember(message: Message) -> None:
            if message["type"] == "http.response.start" and chose and language != remembered:
                cookie = (
                    f"{COOKIE}={language}; Path=/; Max-Age={COOKIE_AGE}; HttpOnly; SameSite=Lax"
                    + ("; Secure" if self.https else "")
                )
                message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie.encode())]
            await send(message)

        try:
            await self.app(scope, receive, remember)
        finally:
            _reader.reset(token)


def middleware(*, default: str = SOURCE, https: bool = False) -> Middleware:
    """The middleware that gives each request its reader's language (see the module's text)."""
    return Middleware(_Languages, default=default, https=https)


def choices(context: Mapping[str, object]) -> list[tuple[str, str, str, bool]]:
    """The language switch of a page: (code, name, address, is it this page's language)."""
    shown = reader()
    here = str(context.get("here") or (shown.here if shown else None) or "/")
    if not here.startswith("/") or here.startswith("//") or "\\" in here:
        here = "/"  # only ever a path on this site
    language = current()
    return [(code, name, switch(here, code), code == language) for code, name in LANGUAGES.items()]
