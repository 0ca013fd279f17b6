"""Public figures of the instance, gathered from every provider and published by the portal.

Each provider gateway computes its own figures from its operational records and hands them
out already disclosure-controlled (:mod:`exchange.gateway.figures`); the portal asks every
provider in the global configuration's catalogue through its own gateway (as it asks their
usage services), adds the citizens' ratings (:mod:`exchange.portal.ratings`), and publishes the
lot as a page, JSON and CSV. Figures are keyed by service, so those of different providers are
shown side by side and never added up; the portal holds no raw small count to leak.

The portal does not take a provider's word for its cells (:func:`checked`): every count is put
through the disclosure rule again, a cell is kept only with the keys its table needs (strings,
a month of the range asked) and a service of the provider that answered, and at most
:data:`MAX_ANSWER` bytes of an answer are read.

A gathering is kept for :data:`KEEP` per range (the :data:`MAX_KEPT` most recently used
ranges), and one range is gathered once at a time, so that a public page cannot be used to make
every provider work on each request.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from exchange import web
from exchange.disclosure import BASE, SUPPRESSED, THRESHOLD, Months, published
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
MAX_ANSWER = 4 * 1024 * 1024  # bytes of one provider's answer read at most
MAX_TEXT = 300  # characters of one key of a cell
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
        self._kept: OrderedDict[Months, tuple[datetime, dict[str, Any]]] = OrderedDict()
        self._running: dict[Months, asyncio.Task[dict[str, Any]]] = {}

    async def gather(self, months: Months) -> dict[str, Any]:
        now = self._clock()
        kept = self._kept.get(months)
        if kept is not None and kept[0] > now:
            self._kept.move_to_end(months)
            return kept[1]
        running = self._running.get(months)
        if running is None:
            running = asyncio.ensure_future(self._gather(months))
            self._running[months] = running
            running.add_done_callback(lambda _: self._done(months, now))
        # Shielded: one asker going away does not cancel the others' gathering.
        return await asyncio.shield(running)

    def _done(self, months: Months, asked: datetime) -> None:
        task = self._running.pop(months)
        if task.cancelled() or task.exception() is not None:
            return
        self._kept[months] = (asked + KEEP, task.result())
        self._kept.move_to_end(months)
        while len(self._kept) > MAX_KEPT:
            self._kept.popitem(last=False)

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
            for table, cells in checked(answer, provider=provider, months=months).items():
                shown[table].extend(cells)
        shown.update(portal.ratings.published(months))
        return shown

    async def _ask(self, provider: str, months: Months) -> dict[str, Any]:
        portal = self._portal
        content = bytearray()
        with mapped("the portal's gateway"):
            async with portal.http.stream(
                "GET",
                f"/r1/{provider}/figures/v1/months",
                params=months.query(),
                headers={"X-Road-Client": portal.settings.client, "Accept": "application/json"},
            ) as response:
                status = response.status_code
                async for chunk in response.aiter_bytes():
                    content += chunk
                    if len(content) > MAX_ANSWER:
                        raise ServiceFailed(f"{provider} gave figures over {MAX_ANSWER} bytes")
        try:
            body = json.loads(bytes(content))
        except ValueError:
            body = None
        if status != 200 or not isinstance(body, dict):
            raise ServiceFailed(f"{provider} gave no figures (HTTP {status})")
        return body


def _count(value: object) -> object:
    """A provider's count put through the disclosure rule again; None if it is no count."""
    if value == SUPPRESSED:
        return SUPPRESSED
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return published(value)
    return None


def checked(answer: dict[str, Any], *, provider: str, months: Months) -> dict[str, list[Any]]:
    """The cells of a provider's ``answer`` the portal will publish, by table: each with every
    key its table needs (short strings), a month of ``months``, a service of ``provider``, and a
    count that the disclosure rule, applied again, leaves 0, ``"<5"`` or a multiple of 5. Other
    cells are dropped (and logged)."""
    asked = {str(m) for m in months}
    prefix = f"{provider}/"
    kept: dict[str, list[Any]] = {}
    dropped = 0
    for table, categories in TABLES.items():
        cells = answer.get(table, [])
        kept[table] = []
        for cell in cells if isinstance(cells, list) else []:
            found = _checked_cell(table, categories, cell, asked, prefix)
            if found is None:
                dropped += 1
            else:
                kept[table].append(found)
    if dropped:
        log.warning("portal.figures_cells_dropped", provider=provider, cells=dropped)
    return kept


def _checked_cell(
    table: str, categories: tuple[str, ...], cell: object, asked: set[str], prefix: str
) -> dict[str, Any] | None:
    if not isinstance(cell, dict):
        return None
    keys = ("month", "service", *categories)
    if not all(isinstance(cell.get(k), str) and len(cell[k]) <= MAX_TEXT for k in keys):
        return None
    if cell["month"] not in asked or not cell["service"].startswith(prefix):
        return None
    found: dict[str, Any] = {k: cell[k] for k in keys}
    if table != "timing":
        count = _count(cell.get("count"))
        if count is None:
            return None
        return {**found, "count": count}
    released, median = _count(cell.get("released")), cell.get("median_ms")
    if released is None:
        return None
    if (
        not isinstance(released, int)
        or released < THRESHOLD
        or not isinstance(median, int)
        or isinstance(median, bool)
    ):
        median = None  # no median over fewer than five, nor one that is no number
    return {**found, "released": released, "median_ms": median}


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
