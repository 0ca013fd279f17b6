"""Public figures and the citizen's say, every role in process: the figures the portal publishes
(page, JSON, CSV) are the provider's operational records counted independently here, never
show a count under 5, and a rating counts once and names no one."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx
from babel.messages.extract import extract
from sqlalchemy import text

import exchange.portal as portal_templates
from exchange.db.engine import build_engine
from exchange.disclosure import Month, Months, published
from exchange.gateway.figures import MAX_CELLS, OTHER, Figures, Tally
from exchange.portal.figures import MAX_KEPT, PublicFigures, checked
from exchange.portal.settings import PortalSettings
from exchange.sample import federation
from exchange.web import languages
from tests.browser import Browser
from tests.gateway.conftest import BIRTH, MARI, RESIDENCE, Roles
from tests.gateway.test_portal import link

NOT_COUNTED = {"usage", "figures", "listMethods", "allowedMethods", "getOpenAPI"}


def portal_url(roles: Roles) -> str:
    return f"http://127.0.0.1:{roles.ports.portal}"


def this_month(roles: Roles) -> str:
    return str(Month.of(roles.clock()))


def expected(roles: Roles) -> dict[str, Counter[tuple[str, ...]]]:
    """The provider's operational records, read with plain SQL and counted here."""
    roles.roles.run(roles.provider.exchanges.drain())
    with build_engine(roles.provider_settings().db_url).connect() as connection:
        found = connection.execute(
            text(
                "SELECT service, client, purpose, succeeded, fault_code, consent, legal_basis "
                "FROM gw_exchanges WHERE side = 'producer'"
            )
        ).all()
    counts: dict[str, Counter[tuple[str, ...]]] = {
        name: Counter() for name in ("exchanges", "basis", "refusals", "documents")
    }
    for service_id, client, purpose, succeeded, fault, consent, legal_basis in found:
        parts = service_id.split("/")
        if len(parts) < 5 or parts[4] in NOT_COUNTED:
            continue
        service = "/".join(parts[:5])
        if succeeded:
            # A purpose is shown only when it was checked against a consent.
            counts["exchanges"][(service, client, purpose if consent else "")] += 1
            ground = "consent" if consent else "legal-basis" if legal_basis else "public"
            counts["basis"][(service, ground)] += 1
            counts["documents"][(service,)] += 1
        else:
            counts["refusals"][(service, fault.rsplit(".", 1)[-1])] += 1
    return counts


def published_cells(figures: dict[str, Any], month: str) -> dict[str, dict[tuple[str, ...], Any]]:
    keys = {
        "exchanges": ("service", "consumer", "purpose"),
        "basis": ("service", "basis"),
        "refusals": ("service", "reason"),
        "documents": ("service",),
    }
    return {
        table: {
            tuple(cell[k] for k in names): cell["count"]
            for cell in figures[table]
            if cell["month"] == month
        }
        for table, names in keys.items()
    }


def assert_nothing_under_five(value: object) -> None:
    """No count in ``value`` (JSON) is 1 to 4, and every shown count is rounded to 5."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if key in ("count", "released"):
                assert inner in (0, "<5") or (isinstance(inner, int) and inner % 5 == 0), value
            else:
                assert_nothing_under_five(inner)
    elif isinstance(value, list):
        for inner in value:
            assert_nothing_under_five(inner)


def table_rows(page: str, table_id: str) -> list[list[str]]:
    body = page.split(f'<table id="{table_id}">', 1)[1].split("</table>", 1)[0]
    body = body.split("<tbody>", 1)[1]
    return [
        [
            unescape(re.sub(r"<[^>]+>", "", cell)).strip()
            for cell in re.findall(r"<td>(.*?)</td>", r)
        ]
        for r in re.findall(r"<tr>(.*?)</tr>", body, flags=re.S)
    ]


def test_published_figures_are_the_records_counted_and_withhold_small_counts(
    roles: Roles,
) -> None:
    mari = {"X-Road-UserId": MARI}
    for _ in range(7):
        assert roles.call(f"{RESIDENCE}?person={MARI}", headers=mari).status_code == 200
    study = {**mari, "X-Exchange-Purpose": "study-grant"}
    for _ in range(10):
        assert roles.call(f"{RESIDENCE}?person={MARI}", headers=study).status_code == 200
    for _ in range(2):  # under a consent
        answer = roles.call(f"{BIRTH}?person={MARI}", headers=roles.consented())
        assert answer.status_code == 200
    for _ in range(3):  # no consent: refused
        assert roles.call(f"{BIRTH}?person={MARI}", headers=mari).status_code == 403
    counts = expected(roles)
    residence, birth = federation.RESIDENCE_RECORD, federation.BIRTH_CERTIFICATE
    portal_client = str(federation.CITIZEN_PORTAL)
    # What this test made is among what the records hold (other tests may add more).
    assert counts["exchanges"][(residence, portal_client, "")] >= 17
    assert counts["basis"][(birth, "consent")] >= 2
    assert counts["refusals"][(birth, "ConsentRequired")] >= 3

    month = this_month(roles)
    query = {"from": month, "to": month}
    answer = roles.http.get(f"{portal_url(roles)}/figures.json", params=query)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-security-policy"].startswith("default-src 'none'")
    figures = answer.json()
    assert figures["from"] == figures["to"] == month
    assert figures["unavailable"] == []
    assert_nothing_under_five(figures)
    shown = published_cells(figures, month)
    for table, counted in counts.items():
        assert shown[table] == {key: published(n) for key, n in counted.items()}, table
    # The same figures, shown as they must be: 17 residence records under a legal basis, whose
    # purposes (the caller's word, checked against nothing) are not shown.
    assert shown["exchanges"][(residence, portal_client, "")] == published(
        counts["exchanges"][(residence, portal_client, "")]
    )
    assert all(c["purpose"] != "study-grant" for c in figures["exchanges"])
    assert shown["refusals"][(birth, "ConsentRequired")] in ("<5", 5, 10)
    assert {c["kind"] for c in figures["previews"]} <= {
        "held-for-preview",
        "refused-after-preview",
    }
    timing = [t for t in figures["timing"] if t["service"] == residence]
    assert timing
    assert isinstance(timing[0]["median_ms"], int)

    sheet = roles.http.get(f"{portal_url(roles)}/figures.csv", params=query)
    assert sheet.status_code == 200
    assert sheet.headers["content-type"].startswith("text/csv")
    assert "attachment" in sheet.headers["content-disposition"]
    assert sheet.headers["content-security-policy"].startswith("default-src 'none'")
    read = list(csv.DictReader(io.StringIO(sheet.text)))
    from_csv = {
        (r["service"], r["consumer"], r["purpose"]): r["value"]
        for r in read
        if r["figure"] == "exchanges" and r["month"] == month
    }
    assert from_csv == {k: str(v) for k, v in shown["exchanges"].items()}
    for row in read:
        if row["category"] != "median_ms":
            assert row["value"] not in ("1", "2", "3", "4"), row

    page = roles.http.get(f"{portal_url(roles)}/figures", params=query)
    assert page.status_code == 200
    assert "<script" not in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="documents-chart"' in page.text
    documents = table_rows(page.text, "documents")
    assert [row[2] for row in documents] == [str(c["count"]) for c in figures["documents"]]
    refusals = table_rows(page.text, "refusals")
    assert [(row[2], row[3]) for row in refusals] == [
        (c["reason"], str(c["count"])) for c in figures["refusals"]
    ]
    for table in ("exchanges", "basis", "refusals", "documents", "previews"):
        if f'<table id="{table}">' in page.text:
            assert all(row[-1] not in ("1", "2", "3", "4") for row in table_rows(page.text, table))


def rate(browser: Browser, roles: Roles) -> httpx.Response:
    """Through the passport procedure to the fetched certificate, with the rating form."""
    portal = portal_url(roles)
    browser.sign_in(browser.get(f"{portal}/login?then=/"), MARI)
    procedure = browser.get(f"{portal}/procedures/passport")
    if 'id="needs-consent"' in procedure.text:
        consent_page = browser.sign_in(browser.get(link(procedure, "give-consent")), MARI)
        granted = browser.submit(consent_page, 'value="grant"', decision="grant")
        procedure = browser.submit(granted, 'name="consent"')
    fetched = browser.submit(procedure, 'id="fetch"')
    assert 'id="evidence"' in fetched.text, fetched.text[:3000]
    return fetched


def test_a_rating_counts_once_and_names_no_one(roles: Roles) -> None:
    browser = Browser(roles.roles.loopback.blocking())
    try:
        fetched = rate(browser, roles)
        assert 'id="rating"' in fetched.text
        assert "Very easy" in fetched.text
        wrong = browser.submit(fetched, 'id="rate"', score="9", brought="no")
        assert wrong.status_code == 400
        assert "from 1 to 5" in wrong.text
        kept = dict(browser.http.cookies)
        thanked = browser.submit(
            fetched, 'id="rate"', score="4", brought="yes", document="birth certificate"
        )
        assert thanked.status_code == 200, thanked.text[:2000]
        assert "Thank you" in thanked.text
        again = browser.submit(fetched, 'id="rate"', score="1", brought="no")
        assert again.status_code == 409
        browser.http.cookies.clear()
        browser.http.cookies.update(kept)  # the session as it was, ticket and all
        replayed = browser.submit(fetched, 'id="rate"', score="1", brought="no")
        assert replayed.status_code == 409
        assert 'id="rating"' not in browser.get(f"{portal_url(roles)}/procedures/passport").text
    finally:
        browser.close()

    settings = PortalSettings.load(roles.layout.portal)
    with build_engine(settings.db_url).connect() as connection:
        tallies = connection.execute(text("SELECT * FROM portal_ratings")).mappings().all()
        tickets = connection.execute(text("SELECT count(*) FROM portal_rating_tickets")).scalar()
    assert [dict(t) for t in tallies] == [
        {
            "procedure": "passport",
            "month": this_month(roles),
            "score": 4,
            "brought": "yes",
            "document": "birth certificate",
            "count": 1,
        }
    ]
    assert tickets == 0
    figures = roles.http.get(f"{portal_url(roles)}/figures.json").json()
    assert {"month": this_month(roles), "procedure": "passport", "score": 4, "count": "<5"} in (
        figures["satisfaction"]
    )
    assert MARI not in json.dumps(figures)


def test_a_rating_needs_the_sites_form(roles: Roles) -> None:
    browser = Browser(roles.roles.loopback.blocking())
    try:
        browser.sign_in(browser.get(f"{portal_url(roles)}/login?then=/"), MARI)
        forged = browser.post(
            f"{portal_url(roles)}/procedures/passport/rating", {"score": "5", "brought": "no"}
        )
        assert forged.status_code == 403
    finally:
        browser.close()


def test_bad_ranges_are_refused_precisely(roles: Roles) -> None:
    url = f"{portal_url(roles)}/figures.json"
    for query, detail, says in (
        ({"from": "2026-13"}, "from", "YYYY-MM"),
        ({"to": "26-01"}, "to", "YYYY-MM"),
        ({"from": "2026-05", "to": "2026-01"}, "from", "not be after"),
        ({"from": "2020-01", "to": "2026-12"}, "from", "at most 24"),
        ({"month": "2026-01"}, "month", "unknown parameter"),
        ({"to": "9999-12"}, "to", "after the current month"),
        ({"from": "1999-12", "to": "2000-01"}, "from", "YYYY-MM"),
    ):
        refused = roles.http.get(url, params=query)
        assert refused.status_code == 400, query
        assert refused.json()["type"] == "Client.InvalidRequest"
        assert refused.json()["detail"] == detail
        assert says in refused.json()["message"]
        assert refused.headers["X-Road-Error"] == "Client.InvalidRequest"
    page = roles.http.get(
        f"{portal_url(roles)}/figures", params={"from": "x"}, headers={"Accept": "text/html"}
    )
    assert page.status_code == 400
    assert "YYYY-MM" in page.text


def test_the_figures_service_answers_only_its_path_and_reading(roles: Roles) -> None:
    service = f"/r1/{federation.POPULATION_REGISTRY}/figures"
    assert roles.call(f"{service}/v1/nothing").status_code == 404
    assert roles.call(f"{service}/v1/months", method="POST").status_code == 405
    bad = roles.call(f"{service}/v1/months?from=2026-00")
    assert bad.status_code == 400
    assert bad.json()["detail"] == "from"
    future = roles.call(f"{service}/v1/months?from=9999-11&to=9999-12")
    assert future.status_code == 400
    assert future.json()["detail"] == "to"


def marked_in(*templates: str) -> list[str]:
    """The longer messages marked in the portal's ``templates`` (short ones, "to", "Yes", could
    be part of other words)."""
    found = []
    for name in templates:
        path = Path(portal_templates.__file__).parent / "templates" / name
        with path.open("rb") as source:
            for _, message, _, _ in extract(
                "jinja2", source, keywords={"_": None}, options={"trimmed": "true"}
            ):
                if isinstance(message, str) and len(message) > 12 and "%(" not in message:
                    found.append(unescape(message))
    assert found
    return found


def forget_language(browser: Browser) -> None:
    """Drop the language remembered on the way (the sites share 127.0.0.1, and so the cookie)."""
    for cookie in list(browser.http.cookies.jar):
        if cookie.name == "lang":
            browser.http.cookies.jar.clear(cookie.domain, cookie.path, cookie.name)


def english_left(page: str, messages: list[str]) -> list[str]:
    return [m for m in messages if m in unescape(page)]


def test_the_figures_and_the_rating_form_speak_arabic_right_to_left(roles: Roles) -> None:
    """Arabic from the browser: the rating form, its thanks and the figures page in Arabic, right
    to left, with the charts mirrored and months, counts and scores in Latin digits."""
    rtl = '<html lang="ar" dir="rtl">'
    browser = Browser(roles.roles.loopback.blocking())
    try:
        rate(browser, roles)  # in English: the sign-in helpers read English pages
        forget_language(browser)
        browser.http.headers["Accept-Language"] = "ar-MA,ar;q=0.9"
        fetched = browser.get(f"{portal_url(roles)}/procedures/passport")
        assert rtl in fetched.text
        form = fetched.text.split('id="rating"', 1)[1].split("</form>", 1)[0]
        for words in ("كيف كانت تجربتك؟", "5 · سهل جدًا", "1 · صعب جدًا", "أرسل إجابتي"):
            assert words in form
        # The documents are offered in Arabic and sent by their English words, as kept.
        assert '<option value="birth certificate">شهادة الميلاد</option>' in form
        assert '<option value="another document">وثيقة أخرى</option>' in form
        assert not english_left(form, marked_in("rating.html"))
        for words in ("Very easy", "Neither easy nor hard", ">another document<"):
            assert words not in form
        wrong = browser.submit(fetched, 'id="rate"', score="9", brought="no")
        assert wrong.status_code == 400
        assert "اختر مدى السهولة، من 1 إلى 5" in wrong.text
        thanked = browser.submit(
            fetched, 'id="rate"', score="5", brought="yes", document="another document"
        )
        assert thanked.status_code == 200, thanked.text[:2000]
        assert rtl in thanked.text
        assert "شكرًا لك" in thanked.text
        assert "Thank you" not in thanked.text

        month = this_month(roles)
        # A range no other test asks for: the portal keeps each range's figures for minutes.
        before = str(Month.of(roles.clock()).minus(1))
        page = browser.get(f"{portal_url(roles)}/figures?from={before}&to={month}")
    finally:
        browser.close()
    assert page.status_code == 200
    assert rtl in page.text
    assert "<h1>الأرقام العامة</h1>" in page.text
    named = languages.month(month, "ar")
    assert re.search("[\u0600-\u06ff]", named)  # the month's Arabic name
    assert f"<td>{named}</td>" in page.text
    assert f"من {languages.month(before, 'ar')} إلى {named}" in page.text
    satisfaction = table_rows(page.text, "satisfaction")
    assert [named, "طلب جواز سفر", "5 · سهل جدًا", "<5"] in satisfaction
    assert [named, "طلب جواز سفر", "نعم: وثيقة أخرى", "<5"] in table_rows(page.text, "brought")
    assert not english_left(page.text, marked_in("figures.html"))
    for words in ("Very easy", "Public figures", "another document", "Consent<"):
        assert words not in page.text
    assert not re.search("[٠-٩]", page.text)  # Latin digits, deliberately
    # The charts are mirrored: labels read right to left from the right, counts left to right.
    chart = page.text.split('id="satisfaction-chart"', 1)[1].split("</svg>", 1)[0]
    assert 'direction="rtl"' in chart
    assert 'text-anchor="end" direction="rtl"' in chart
    assert 'direction="ltr"' in chart
    assert "الأرقام نفسها واردة في الجدول أدناه." in chart  # its description


def test_the_figures_and_the_rating_form_speak_french(roles: Roles) -> None:
    browser = Browser(roles.roles.loopback.blocking())
    try:
        rate(browser, roles)
        forget_language(browser)
        browser.http.headers["Accept-Language"] = "fr-FR,fr;q=0.9"
        fetched = browser.get(f"{portal_url(roles)}/procedures/passport")
        assert '<html lang="fr" dir="ltr">' in fetched.text
        form = fetched.text.split('id="rating"', 1)[1].split("</form>", 1)[0]
        for words in (
            "Comment cela s'est-il passé\u00a0?",
            "5 · Très facile",
            "Envoyer ma réponse",
        ):
            assert words in unescape(form)
        assert '<option value="birth certificate">acte de naissance</option>' in form
        assert not english_left(form, marked_in("rating.html"))
        thanked = browser.submit(fetched, 'id="rate"', score="3", brought="no")
        assert "Merci" in thanked.text
        assert "sans votre nom" in thanked.text
        month = this_month(roles)
        before = str(Month.of(roles.clock()).minus(1))
        page = browser.get(f"{portal_url(roles)}/figures?from={before}&to={month}")
    finally:
        browser.close()
    assert '<html lang="fr" dir="ltr">' in page.text
    assert "<h1>Chiffres publics</h1>" in page.text
    named = languages.month(month, "fr")
    assert f"<td>{named}</td>" in page.text
    # Figures are kept for minutes, so this rating may not be among them yet; any shown is French.
    words = "(Très difficile|Difficile|Ni facile ni difficile|Facile|Très facile)"
    for row in table_rows(page.text, "satisfaction") if 'id="satisfaction"' in page.text else []:
        assert row[0] == named
        assert re.fullmatch(rf"[1-5] · {words}", row[2]), row
    assert not english_left(page.text, marked_in("figures.html"))
    chart = page.text.split('id="documents-chart"', 1)[1].split("</svg>", 1)[0]
    assert 'direction="ltr"' in chart
    assert "Les mêmes chiffres figurent dans le tableau ci-dessous." in chart


# Unit checks, no roles: what the gateway keeps, what the portal accepts and keeps.

PROVIDER = "EE/GOV/70000310/population-registry"
SERVICE = f"{PROVIDER}/birth-certificate"


class _Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_the_current_months_figures_are_kept_a_minute() -> None:
    clock = _Clock()
    service = Figures(cast(Any, SimpleNamespace(clock=clock)))
    counted: list[Month] = []

    def count(subsystem: str, month: Month) -> Tally:
        counted.append(month)
        return Tally()

    service._count = count  # type: ignore[method-assign]
    current = Month.of(clock.now)
    service.tally(PROVIDER, current)
    service.tally(PROVIDER, current)
    assert counted == [current]
    clock.now += timedelta(seconds=61)
    service.tally(PROVIDER, current)
    assert counted == [current, current]


def test_non_consent_purposes_share_one_cell_and_keys_are_capped() -> None:
    clock = _Clock()
    service = Figures(cast(Any, SimpleNamespace(clock=clock)))
    tally = Tally()
    tally.exchanges[(SERVICE, "EE/GOV/1/portal", "study-grant")] = 7
    for n in range(MAX_CELLS + 50):
        tally.exchanges[(SERVICE, "EE/GOV/1/portal", f"case-{n}")] = 1
    service._count = lambda subsystem, month: tally  # type: ignore[method-assign]
    month = Month.of(clock.now)
    found = service.publish(PROVIDER, Months(month, month))
    assert len(found["exchanges"]) <= MAX_CELLS
    assert sum(1 for c in found["exchanges"] if c["purpose"] == OTHER) == 1


def test_the_portal_keeps_only_checked_cells() -> None:
    month = Month(2026, 6)
    months = Months(month, month)
    ok = {"month": "2026-06", "service": SERVICE, "consumer": "EE/GOV/1/p", "purpose": ""}
    answer = {
        "exchanges": [
            {**ok, "count": 7},  # rounded again: 5
            {**ok, "consumer": "EE/GOV/1/q", "count": 3},  # withheld again
            {**ok, "consumer": "EE/GOV/1/r", "count": "<5"},
            {**ok, "consumer": "EE/GOV/1/s", "count": -1},
            {**ok, "consumer": "EE/GOV/1/t", "count": "7"},
            {**ok, "consumer": "EE/GOV/1/u", "count": True},
            {k: v for k, v in ok.items() if k != "month"} | {"count": 5},
            {**ok, "service": "EE/GOV/9/other-registry/x", "count": 5},
            {**ok, "service": PROVIDER + "x/y", "count": 5},
            {**ok, "month": "2020-01", "count": 5},
            {**ok, "purpose": {"nested": 1}, "count": 5},
        ],
        "timing": [
            {"month": "2026-06", "service": SERVICE, "released": 3, "median_ms": 12},
            {"month": "2026-06", "service": SERVICE, "released": 6, "median_ms": 12},
        ],
    }
    kept = checked(answer, provider=PROVIDER, months=months)
    assert [(c["consumer"], c["count"]) for c in kept["exchanges"]] == [
        ("EE/GOV/1/p", 5),
        ("EE/GOV/1/q", "<5"),
        ("EE/GOV/1/r", "<5"),
    ]
    assert kept["timing"] == [
        {"month": "2026-06", "service": SERVICE, "released": "<5", "median_ms": None},
        {"month": "2026-06", "service": SERVICE, "released": 5, "median_ms": 12},
    ]


def test_the_portal_coalesces_gatherings_and_forgets_the_least_recently_used() -> None:
    clock = _Clock()
    figures = PublicFigures(cast(Any, None), clock=clock)
    asked: list[Months] = []

    async def gather(months: Months) -> dict[str, Any]:
        asked.append(months)
        await asyncio.sleep(0)
        return {"from": str(months.first)}

    figures._gather = gather  # type: ignore[method-assign]

    async def run() -> None:
        first = Months(Month(2026, 1), Month(2026, 1))
        await asyncio.gather(*(figures.gather(first) for _ in range(5)))
        assert asked == [first]
        for n in range(1, MAX_KEPT):  # fills the cache, first the oldest
            await figures.gather(Months(Month(2020, 1).minus(-n), Month(2020, 1).minus(-n)))
        await figures.gather(first)  # used again: now the most recent
        await figures.gather(Months(Month(2010, 1), Month(2010, 1)))  # one more: evicts one
        asked.clear()
        await figures.gather(first)
        assert asked == []

    asyncio.run(run())
