"""Preview: the citizen sees exactly the evidence that would be sent, then approves or refuses.

As in the EU once-only system's explicit request and preview. A request for a service (or under a
consent) that requires preview is answered the first time with ``PreviewRequired`` whose
``detail`` is a page on this gateway's preview listener; the registry's answer is fetched once,
checked against the evidence schema, and held here. The citizen signs in at the identity
provider, must be the person the evidence is about, and approves or refuses. The consumer's
retry with the same consent, client, service and parameters then receives that very evidence
(released once, then deleted) or ``PreviewRefused``. Unanswered previews expire.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from exchange import web
from exchange.errors import Conflict, Error, InternalError, InvalidToken, NotFound
from exchange.evidence.rows import flatten
from exchange.gateway import models
from exchange.gateway.settings import PreviewSpec
from exchange.http import install_error_handlers
from exchange.identity.login import OidcLogin, signed_in
from exchange.web.languages import N_, gettext, localised, number

SITE_SUFFIX = "preview"
DECISIONS = ("approved", "refused")


def query_digest(parameters: dict[str, str]) -> str:
    canonical = json.dumps(sorted(parameters.items()), separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class PreviewedDocument:
    """A document distribution of the evidence (an EDM PDF) as the person approves it: what the
    registry declared of it. The document itself is never held, so never shown; the one
    released must be this one (:mod:`exchange.gateway.edm`)."""

    media_type: str
    length: int
    digest: str  # base64url SHA-256

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | None) -> PreviewedDocument | None:
        return None if text is None else cls(**json.loads(text))


class Previews:
    def __init__(
        self,
        engine: Engine,
        *,
        spec: PreviewSpec | None,
        subject_hash: Callable[[str | None], str | None],
        clock: Callable[[], datetime],
    ) -> None:
        self._engine = engine
        self.spec = spec
        self._subject_hash = subject_hash
        self._clock = clock

    def label(self, field: str) -> str:
        """An evidence field's name in the reader's language (its own name if none is given)."""
        text = self.spec.labels.get(field) if self.spec else None
        return field if text is None else localised(text)

    def _pages(self) -> PreviewSpec:
        if self.spec is None:
            raise InternalError("this gateway has no preview pages ([preview] settings)")
        return self.spec

    def url(self, preview_id: str) -> str:
        return f"{self._pages().public_url.rstrip('/')}/preview/{preview_id}"

    def find(
        self, *, consent_id: str, client: str, service: str, query: str
    ) -> models.Preview | None:
        """The newest unexpired preview of exactly this request."""
        with Session(self._engine) as session:
            return session.scalars(
                select(models.Preview)
                .where(
                    models.Preview.consent_id == consent_id,
                    models.Preview.client == client,
                    models.Preview.service == service,
                    models.Preview.query == query,
                    models.Preview.expires_at > self._clock(),
                )
                .order_by(models.Preview.created_at.desc())
                .limit(1)
            ).first()

    def hold(
        self,
        *,
        consent_id: str,
        client: str,
        service: str,
        query: str,
        subject: str,
        evidence: dict[str, Any],
        document: PreviewedDocument | None = None,
    ) -> str:
        spec = self._pages()
        preview_id = secrets.token_urlsafe(32)
        at = self._clock()
        with Session(self._engine) as session:
            session.add(
                models.Preview(
                    id=preview_id,
                    consent_id=consent_id,
                    client=client,
                    service=service,
                    query=query,
                    subject=self._subject_hash(subject) or "",
                    evidence=json.dumps(evidence, default=str),
                    document=None if document is None else document.to_json(),
                    created_at=at,
                    expires_at=at + timedelta(seconds=spec.lifetime),
                )
            )
            session.commit()
        return preview_id

    def shown_to(self, preview_id: str, subject: str) -> models.Preview:
        """The preview, if it is about ``subject`` and has not expired."""
        with Session(self._engine) as session:
            row = session.get(models.Preview, preview_id)
        if (
            row is None
            or row.subject != self._subject_hash(subject)
            or row.expires_at <= self._clock()
        ):
            raise NotFound("there is no such preview of your data, or it has expired")
        return row

    def decide(self, preview_id: str, subject: str, decision: str) -> None:
        if decision not in DECISIONS:
            raise NotFound("unknown decision")
        self.shown_to(preview_id, subject)
        with Session(self._engine) as session:
            changed = session.execute(
                update(models.Preview)
                .where(models.Preview.id == preview_id, models.Preview.decision.is_(None))
                .values(decision=decision, decided_at=self._clock())
            )
            session.commit()
        if changed.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict("you have decided on this preview already")

    def release(self, preview_id: str) -> dict[str, Any]:
        """The approved evidence, once: the row is deleted as it is taken."""
        with Session(self._engine) as session:
            row = session.get(models.Preview, preview_id)
            taken = session.execute(
                delete(models.Preview).where(
                    models.Preview.id == preview_id, models.Preview.decision == "approved"
                )
            )
            session.commit()
        if row is None or taken.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict("this preview's evidence was released already; ask again")
        evidence: dict[str, Any] = json.loads(row.evidence)
        return evidence

    def prune(self) -> int:
        with Session(self._engine) as session:
            gone = session.execute(
                delete(models.Preview).where(models.Preview.expires_at <= self._clock())
            )
            session.commit()
        return int(gone.rowcount)  # type: ignore[attr-defined]


def create_preview_app(
    previews: Previews,
    *,
    login: OidcLogin,
    site: str,
    session_secret: bytes,
    clock: Callable[[], datetime],
) -> Starlette:
    pages = web.Pages("exchange.gateway")
    https = previews.spec is not None and previews.spec.public_url.startswith("https://")

    async def show(request: Request) -> Response:
        preview_id = request.path_params["preview_id"]
        citizen = signed_in(request.session, at=clock())
        if citizen is None:
            return RedirectResponse(f"/login?then=/preview/{preview_id}", status_code=303)
        try:
            row = previews.shown_to(preview_id, citizen.subject)
        except Error as error:
            return pages.failure(site, error, back=None)
        return pages.page(
            "preview.html",
            site=site,
            citizen=citizen,
            preview=row,
            rows=flatten(json.loads(row.evidence), label=previews.label),
            document=PreviewedDocument.from_json(row.document),
            size=_size(row.document),
            csrf=web.csrf_token(request.session),
        )

    async def decide(request: Request) -> Response:
        preview_id = request.path_params["preview_id"]
        citizen = signed_in(request.session, at=clock())
        try:
            form = await web.form(request)
            if citizen is None:
                raise InvalidToken(N_("your sign-in has ended; please open the preview again"))
            web.check_csrf(request.session, form)
            decision = str(form.get("decision", ""))
            previews.decide(preview_id, citizen.subject, decision)
        except Error as error:
            return pages.failure(site, error, back=None)
        approved = decision == "approved"
        return pages.message(
            site,
            gettext(N_("Approved") if approved else N_("Refused")),
            gettext(
                N_(
                    "The data will be sent when the service asks again. You can close this page "
                    "and continue where you started."
                )
                if approved
                else N_("Nothing will be sent. You can close this page.")
            ),
            kind="success" if approved else "notice",
            here=f"/preview/{preview_id}",
        )

    app = Starlette(
        routes=[
            *web.sign_in_routes(login, pages=pages, site=site, clock=clock),
            Route("/preview/{preview_id}", show, methods=["GET"]),
            Route("/preview/{preview_id}", decide, methods=["POST"]),
            Route("/health", lambda _: Response('{"status":"ok"}', media_type="application/json")),
        ],
        middleware=[
            web.sessions(
                session_secret,
                cookie="preview_session",
                https=https,
            ),
            web.languages.middleware(
                default=previews.spec.default_language if previews.spec else "en", https=https
            ),
        ],
    )
    install_error_handlers(app, page=lambda error: pages.failure(site, error, back=None))
    return app


def _size(document: str | None) -> str | None:
    """The previewed document's size as a person reads it (kB below 100 kB, else MB)."""
    found = PreviewedDocument.from_json(document)
    if found is None:
        return None
    if found.length < 100_000:
        return gettext(N_("%(size)s kB")) % {"size": number(round(found.length / 1000, 1))}
    return gettext(N_("%(size)s MB")) % {"size": number(round(found.length / 1_000_000, 1))}
