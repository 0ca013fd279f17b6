"""Public figures of the instance, gathered from every provider and published by the portal.

Each provider gateway computes its own figures from its operational records and hands them
out already disclosure-controlled (:mod:`exchange.gateway.figures`); the portal asks every
provider in the global configuration's catalogue through its own gateway (as it asks their
usage services), adds the citizens' ratings (:mod:`exchange.portal.ratings`), and publishes the
lot as a page, JSON and CSV. Figures are keyed by service, so those of different providers are
shown side by side and never added up; the portal holds no raw small count to leak.

A gathering is kept for :data:`KEEP` per range, so that a public page cannot be used to make
every provider work on each request.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from exchange import web
from exchange.disclosure import BASE, SUPPRESSED, THRESHOLD, Months
from exchange.errors import Error, InvalidRequest, ServiceFailed
from exchange.faults import mapped
from exchange.portal.ratings import SCALE
from exchange.web.charts import bars
from exchange.web.languages import N_, gettext, localised, month
from exchange.web.pages import HEADERS

if TYPE_CHECKING:
    from exchange.portal.app import Portal

log = structlog.get_logger(__name__)
KEEP = timedelta(minutes=5)
MAX_KEPT = 64
# The provider-side tables and the columns that tell their cells apart, in the CSV's terms.
TABLES = {
    "exchanges": ("consumer", "purpose"),
    "basis": ("basis",),
    "refusals": ("reason",),
    "previews": ("kind",),
    "documents": (),
    "timing": (),
}
PARAMETERS = ("from", "to")
# The page's words for the codes of the figures (which stay codes in the JSON and the CSV).
GROUNDS = {"consent": N_("Consent"), "legal-basis": N_("Legal basis"), "public": N_("Public data")}
PREVIEWS = {
    "held-for-preview": N_("Held until the citizen looked"),
    "refused-after-preview": N_("Refused by the citizen after looking"),
}
CSV_COLUMNS = (
    "figure",
    "month",
    "service",
    "consumer",
    "purpose",
    "procedure",
    "category",
    "value",
)


class PublicFigures:
    def __init__(self, portal: Portal, *, clock: Callable[[], datetime]) -> None:
        self._portal = portal
        self._clock = clock
        self._kept: dict[Months, tuple[datetime, dict[str, Any]]] = {}

    async def gather(self, months: Months) -> dict[str, Any]:
        now = self._clock()
        kept = self._kept.get(months)
        if kept is not None and kept[0] > now:
            return kept[1]
        found = await self._gather(months)
        if len(self._kept) >= MAX_KEPT:
            self._kept.clear()
        self._kept[months] = (now + KEEP, found)
        return found

    async def _gather(self, months: Months) -> dict[str, Any]:
        portal = self._portal
        view = portal.trust.view()
        providers = portal.providers(view)
        answers = await asyncio.gather(
            *(self._ask(p, months) for p in providers), return_exceptions=True
        )
        shown: dict[str, Any] = {
            "instance": portal.settings.client.split("/", 1)[0],
            **months.query(),
            "rule": {"threshold": THRESHOLD, "rounding": BASE, "suppressed": SUPPRESSED},
            "providers": [],
            "unavailable": [],
            **{table: [] for table in TABLES},
        }
        for provider, answer in zip(providers, answers, strict=True):
            name = portal.provider_name(view, provider)
            if isinstance(answer, BaseException):
                reason = answer.message if isinstance(answer, Error) else type(answer).__name__
                log.warning("portal.figures_unavailable", provider=provider, reason=reason)
                shown["unavailable"].append(name)
                continue
            shown["providers"].append({"subsystem": provider, "name": name})
            for table in TABLES:
                shown[table].extend(c for c in answer.get(table, []) if isinstance(c, dict))
        shown.update(portal.ratings.published(months))
        return shown

    async def _ask(self, provider: str, months: Months) -> dict[str, Any]:
        portal = self._portal
        with mapped("the portal's gateway"):
            response = await portal.http.get(
                f"/r1/{provider}/figures/v1/months",
                params=months.query(),
                headers={"X-Road-Client": portal.settings.client, "Accept": "application/json"},
            )
        try:
            body = json.loads(response.content)
        except ValueError:
            body = None
        if response.status_code != 200 or not isinstance(body, dict):
            raise ServiceFailed(f"{provider} gave no figures (HTTP {response.status_code})")
        return body


def rows(figures: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every published figure as one flat row (the CSV's)."""
    for table, categories in TABLES.items():
        for cell in figures.get(table, []):
            row = {"figure": table, "month": cell.get("month"), "service": cell.get("service")}
            if table == "timing":
                yield {**row, "category": "released", "value": cell.get("released")}
                yield {**row, "category": "median_ms", "value": cell.get("median_ms")}
                continue
            if table == "exchanges":
                row.update(consumer=cell.get("consumer"), purpose=cell.get("purpose"))
            elif categories:
                row["category"] = cell.get(categories[0])
            yield {**row, "value": cell.get("count")}
    for table, category in (
        ("satisfaction", "score"),
        ("brought", "brought"),
        ("documents_brought", "document"),
    ):
        for cell in figures.get(table, []):
            yield {
                "figure": table,
                "month": cell.get("month"),
                "procedure": cell.get("procedure"),
                "category": cell.get(category),
                "value": cell.get("count"),
            }


def to_csv(figures: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for row in rows(figures):
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return out.getvalue()


def _cell(value: object) -> object:
    """A CSV cell that no spreadsheet runs as a formula."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def months_asked(request: Request, now: datetime) -> Months:
    """The range a request asks for; unknown or repeated parameters are refused (400)."""
    for name in request.query_params:
        if name not in PARAMETERS:
            raise InvalidRequest(f"unknown parameter {name}; use from and to", detail=name)
        if len(request.query_params.getlist(name)) > 1:
            raise InvalidRequest(f"{name} is given more than once", detail=name)
    query = request.query_params
    return Months.parse(query.get("from"), query.get("to"), now=now)


def page_context(figures: dict[str, Any], portal: Portal) -> dict[str, Any]:
    """What the page needs beyond the figures: labels in the reader's language, and the charts'
    rows (months as the reader's language names them)."""
    names = {p["subsystem"]: p["name"] for p in figures["providers"]}
    titles = {p.code: p.title for p in portal.settings.procedures}

    def label(service: str) -> str:
        subsystem, _, code = str(service).rpartition("/")
        return f"{names.get(subsystem, subsystem)}: {code}"

    def procedure_title(code: str) -> str:
        title = titles.get(code)
        return code if title is None else localised(title)

    def score(value: int) -> str:
        words = SCALE.get(value)
        return f"{value} · {gettext(words)}" if words else str(value)

    return {
        "label": label,
        "procedure_title": procedure_title,
        "score": score,
        "document_name": portal.ratings.document_name,
        "grounds": GROUNDS,
        "previews": PREVIEWS,
        "bars": bars,
        "charts": {
            "documents": [
                (f"{month(c['month'])} · {label(c['service'])}", c["count"])
                for c in figures["documents"]
            ],
            "refusals": [
                (f"{month(c['month'])} · {c['reason']}", c["count"]) for c in figures["refusals"]
            ],
            "satisfaction": [
                (
                    " · ".join(
                        (month(c["month"]), procedure_title(c["procedure"]), score(c["score"]))
                    ),
                    c["count"],
                )
                for c in figures["satisfaction"]
            ],
        },
    }


def figure_routes(
    figures: PublicFigures, *, portal: Portal, pages: web.Pages, site: str
) -> list[Route]:
    """``/figures`` (a page), ``/figures.json`` and ``/figures.csv``: public, no sign-in."""

    async def page(request: Request) -> Response:
        try:
            found = await figures.gather(months_asked(request, portal.clock()))
        except Error as error:
            return pages.failure(site, error, back="/figures")
        return pages.page("figures.html", site=site, figures=found, **page_context(found, portal))

    async def as_json(request: Request) -> Response:
        found = await figures.gather(months_asked(request, portal.clock()))
        return JSONResponse(found, headers=HEADERS)

    async def as_csv(request: Request) -> Response:
        months = months_asked(request, portal.clock())
        found = await figures.gather(months)
        name = f"figures-{months.first}-{months.last}.csv"
        return Response(
            to_csv(found),
            media_type="text/csv; charset=utf-8",
            headers={**HEADERS, "Content-Disposition": f'attachment; filename="{name}"'},
        )

    return [
        Route("/figures", page, methods=["GET"]),
        Route("/figures.json", as_json, methods=["GET"]),
        Route("/figures.csv", as_csv, methods=["GET"]),
    ]
