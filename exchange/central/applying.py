"""The authority's public pages where an agency applies, without signing in (it has no identity
in the instance yet): ``GET /apply/`` is the form, ``POST /apply/`` submits it
(:class:`~exchange.central.applications.Applications`, validated and capped as
``POST /applications`` is). ``GET /apply/<number>/<receipt>`` is the applicant's own page, the
only one that shows an application: with the receipt shown once at submission, it says how the
application stands and shows the enrolment code of the member's gateway once the authority
issues it (:mod:`exchange.central.receipts`). Numbers are sequential, so a number alone shows
nothing: a wrong receipt gets the very page of a number never given (404).

The form carries a CSRF token of a session cookie of its own (scoped to ``/apply``), so that no
other site can file applications in a visitor's name; pages run no script and deny framing. A
submission counts against the same rate limits as ``POST /applications``
(:mod:`exchange.central.throttle`), before the form is read (the app's outer guard passes
these pages on with their bodies unread; :func:`web.form` caps them); refused, the visitor gets
the error page (429) in their language. The applicant's page counts against the allowance of
``GET /applications/<number>``, the reads of applications.
"""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from exchange import keyfolder, web
from exchange.central.applications import UNKNOWN, Applications
from exchange.central.enrolment import Enrolments
from exchange.central.settings import CentralSettings
from exchange.central.throttle import APPLICATION_READS, APPLICATIONS, Throttle
from exchange.errors import NotFound
from exchange.http import install_error_handlers
from exchange.web import languages
from exchange.web.languages import N_, gettext
from exchange.web.sessions import sessions
from exchange.web.staff import SecurityHeaders

PREFIX = "/apply"
AUTHORITY = N_("Central authority")  # the site's name beside the instance's


def create_apply_app(
    settings: CentralSettings,
    applications: Applications,
    enrolments: Enrolments,
    limits: Throttle,
) -> ASGIApp:
    """The pages under :data:`PREFIX` of the authority's listener."""
    pages = web.Pages("exchange.central")
    instance = applications.instance

    def site() -> str:
        return f"{instance} · {gettext(AUTHORITY)}"

    def field(form: object, name: str) -> str:
        value = form.get(name, "") if hasattr(form, "get") else ""
        return value.strip() if isinstance(value, str) else ""

    async def form_page(request: Request) -> Response:
        return pages.page(
            "apply.html",
            site=site(),
            csrf=web.csrf_token(request.session),
            prefix=PREFIX,
            instance=instance,
        )

    async def submit(request: Request) -> Response:
        # The API's allowance, counted before the form is read; refused, the error page says so.
        limits.admit(APPLICATIONS, request.client.host if request.client else None)
        form = await web.form(request)
        web.check_csrf(request.session, form)
        kind = field(form, "kind")
        submitted = await asyncio.to_thread(
            applications.submit,
            kind,
            field(form, "id"),
            name=field(form, "name"),
            contact=field(form, "contact"),
        )
        return pages.page("applied.html", site=site(), prefix=PREFIX, application=submitted)

    async def receipt(request: Request) -> Response:
        """The applicant's own page: the status, and the gateway's code once issued."""
        # Numbers and receipts can be guessed at: the API's allowance for reads, counted first.
        limits.admit(APPLICATION_READS, request.client.host if request.client else None)
        raw, secret = request.path_params["number"], request.path_params["receipt"]
        if not raw.isascii() or not raw.isdigit() or len(raw) > 10 or len(secret) > 64:
            raise NotFound(UNKNOWN)
        shown = await asyncio.to_thread(applications.for_applicant, int(raw), secret)
        codes = await asyncio.to_thread(enrolments.for_applicant, shown.id, secret)
        return pages.page(
            "application.html",
            site=site(),
            prefix=PREFIX,
            application=shown,
            codes=codes,
            private=True,
        )

    https = settings.url.startswith("https://")
    app = Starlette(
        routes=[
            Route("/", form_page, methods=["GET"]),
            Route("/", submit, methods=["POST"]),
            Route("/{number}/{receipt}", receipt, methods=["GET"]),
        ],
        middleware=[
            sessions(
                keyfolder.secret(settings.data_dir / "apply-session.key"),
                cookie="apply_session",
                https=https,
                path=PREFIX,
            ),
            languages.middleware(https=https),
        ],
    )
    install_error_handlers(app, page=lambda error: pages.failure(site(), error, back=PREFIX + "/"))
    return SecurityHeaders(app)
