"""A say in the service: after a procedure, the citizen rates it and says what they had to bring.

When a procedure ends with the evidence obtained, the portal issues a ticket: a random token
kept in the citizen's (signed) session, and its SHA-256 in the database. The rating form spends
the ticket: it is deleted and the answers are added to a tally in the same transaction, so one
run of a procedure counts once. A second submission for the same run is refused (409), also
when an old copy of the session cookie is sent again: the ticket is gone from the database.

What is stored names no one: no person code, session, address or time of day; the month only,
and the answers as a tally (:mod:`exchange.portal.models`). "Which document" is a choice from a
fixed list (the documents the portal's procedures ask for, or "another document"), never free
text, which could carry a name.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from exchange import web
from exchange.disclosure import Month, Months, published
from exchange.errors import Conflict, Error, InvalidRequest, NotFound
from exchange.identity.login import signed_in
from exchange.portal import models
from exchange.portal.settings import PortalSettings, Procedure
from exchange.web.languages import N_, SOURCE, Text, gettext, localised

SESSION_KEY = "rating_tickets"  # procedure code -> token, in the citizen's session
# The score in plain words, marked for the catalogues and shown in the reader's language.
SCALE = {
    1: N_("Very hard"),
    2: N_("Hard"),
    3: N_("Neither easy nor hard"),
    4: N_("Easy"),
    5: N_("Very easy"),
}
OTHER = N_("another document")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Ratings:
    def __init__(
        self, engine: Engine, *, procedures: Sequence[Procedure], clock: Callable[[], datetime]
    ) -> None:
        self._engine = engine
        self._clock = clock
        # A document is kept by its English words (the settings' own language), whatever the
        # language of the form, so that one document is one row of the tally; it is shown in
        # the reader's language.
        self._names: dict[str, Text] = {
            localised(p.evidence, SOURCE): p.evidence for p in procedures
        }
        self.documents = [*sorted(self._names), OTHER]

    def document_name(self, document: str) -> str:
        """A document as the form stores it, in the reader's language."""
        if document == OTHER:
            return gettext(OTHER)
        text = self._names.get(document)
        return document if text is None else localised(text)

    def issue(self, session: dict[str, Any], procedure: Procedure) -> None:
        """A ticket to rate this run of ``procedure``, kept in ``session``."""
        token = secrets.token_urlsafe(32)
        month = Month.of(self._clock())
        with self._engine.begin() as connection:
            # Tickets left unspent for over a month are dropped.
            connection.execute(
                delete(models.tickets).where(models.tickets.c.month < str(month.minus(1)))
            )
            connection.execute(
                insert(models.tickets).values(ticket=_digest(token), month=str(month))
            )
        held = session.get(SESSION_KEY)
        held = dict(held) if isinstance(held, dict) else {}
        held[procedure.code] = token
        session[SESSION_KEY] = held

    def form_for(self, session: Mapping[str, Any], procedure: Procedure) -> dict[str, Any] | None:
        """What the rating form shows, if ``session`` holds a ticket to rate ``procedure``."""
        held = session.get(SESSION_KEY)
        if not (isinstance(held, dict) and isinstance(held.get(procedure.code), str)):
            return None
        return {
            "scale": SCALE,
            "documents": [(document, self.document_name(document)) for document in self.documents],
        }

    def record(
        self, session: dict[str, Any], procedure: Procedure, form: Mapping[str, Any]
    ) -> None:
        """Add the citizen's answers in ``form`` to the tally, spending the session's ticket."""
        score, brought, document = self.answers(form)
        held = session.get(SESSION_KEY)
        token = held.get(procedure.code) if isinstance(held, dict) else None
        if not isinstance(held, dict) or not isinstance(token, str):
            raise Conflict(N_("there is nothing to rate, or you rated this procedure already"))
        key = {
            "procedure": procedure.code,
            "month": str(Month.of(self._clock())),
            "score": score,
            "brought": brought,
            "document": document,
        }
        with self._engine.begin() as connection:
            spent = connection.execute(
                delete(models.tickets).where(models.tickets.c.ticket == _digest(token))
            )
            if spent.rowcount == 1:
                self._add(connection, key)
        # Spent now, or already through a copy of this session: either way the form is done.
        session[SESSION_KEY] = {k: v for k, v in held.items() if k != procedure.code}
        if spent.rowcount != 1:
            raise Conflict(N_("you rated this procedure already"))

    @staticmethod
    def _add(connection: Any, key: dict[str, Any]) -> None:
        table = models.ratings
        match = [table.c[name] == value for name, value in key.items()]
        added = connection.execute(update(table).where(*match).values(count=table.c.count + 1))
        if added.rowcount == 1:
            return
        try:
            with connection.begin_nested():
                connection.execute(insert(table).values(**key, count=1))
        except IntegrityError:  # another rating made the row first
            connection.execute(update(table).where(*match).values(count=table.c.count + 1))

    def answers(self, form: Mapping[str, Any]) -> tuple[int, str, str]:
        """The form's answers, checked: a precise 400 for each thing out of place."""
        score = str(form.get("score", ""))
        if score not in {str(s) for s in SCALE}:
            raise InvalidRequest(N_("choose how easy it was, from 1 to 5"), detail="score")
        brought = str(form.get("brought", ""))
        if brought not in ("yes", "no"):
            raise InvalidRequest(N_("say whether you had to bring a document"), detail="brought")
        document = str(form.get("document", ""))
        if document and (brought == "no" or document not in self.documents):
            raise InvalidRequest(N_("choose a document from the list"), detail="document")
        return int(score), brought, document

    def published(self, months: Months) -> dict[str, list[dict[str, Any]]]:
        """The tallies over ``months``, disclosure-controlled, per month and procedure: how
        easy, whether a document had to be brought, and which."""
        table = models.ratings
        query = select(
            table.c.procedure,
            table.c.month,
            table.c.score,
            table.c.brought,
            table.c.document,
            table.c.count,
        ).where(table.c.month >= str(months.first), table.c.month <= str(months.last))
        scores: dict[tuple[str, str, int], int] = {}
        brought: dict[tuple[str, str, str], int] = {}
        documents: dict[tuple[str, str, str], int] = {}
        with self._engine.connect() as connection:
            for procedure, month, score, said, document, count in connection.execute(query):
                scores[(month, procedure, score)] = scores.get((month, procedure, score), 0) + count
                brought[(month, procedure, said)] = brought.get((month, procedure, said), 0) + count
                if document:
                    key = (month, procedure, document)
                    documents[key] = documents.get(key, 0) + count
        return {
            "satisfaction": [
                {"month": m, "procedure": p, "score": s, "count": published(n)}
                for (m, p, s), n in sorted(scores.items())
            ],
            "brought": [
                {"month": m, "procedure": p, "brought": b, "count": published(n)}
                for (m, p, b), n in sorted(brought.items())
            ],
            "documents_brought": [
                {"month": m, "procedure": p, "document": d, "count": published(n)}
                for (m, p, d), n in sorted(documents.items())
            ],
        }


def rating_route(
    ratings: Ratings,
    *,
    settings: PortalSettings,
    pages: web.Pages,
    site: str,
    clock: Callable[[], datetime],
) -> Route:
    """``POST /procedures/{code}/rating``: the signed-in citizen's answers, with the CSRF token."""

    async def rate(request: Request) -> Response:
        code = request.path_params["code"]
        back = f"/procedures/{code}"
        if signed_in(request.session, at=clock()) is None:
            return RedirectResponse(f"/login?then={back}", status_code=303)
        try:
            form = await web.form(request)
            web.check_csrf(request.session, form)
            procedure = settings.procedure(code)
            if procedure is None:
                raise NotFound(N_("there is no such procedure"))
            ratings.record(request.session, procedure, form)
        except Error as error:
            return pages.failure(site, error, back=back)
        return pages.message(
            site,
            gettext(N_("Thank you")),
            gettext(N_("Your answer was added to the figures, without your name.")),
            kind="success",
            back=back,
        )

    return Route("/procedures/{code}/rating", rate, methods=["POST"])
