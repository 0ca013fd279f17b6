"""An app's pages: its own templates over the shared base, sent with the security headers.

Each app makes its :class:`Pages` when it is created, naming its package: templates are looked up
first in that package's ``templates/`` folder, then in this package's (``base.html`` and
``message.html``), so a page extends the shared base by name and an app cannot render another
app's pages. Nothing is read at import time; a template is compiled on first use and kept by the
app's environment.

Each page is rendered in its reader's language (:mod:`~exchange.web.languages`): one template
environment per language, each with that language's catalogue installed, so a page never shares
its translations with another request's.

The pages run no script at all; the content security policy says so.
"""

from __future__ import annotations

import functools
from typing import Any

from jinja2 import ChoiceLoader, Environment, PackageLoader, Template, select_autoescape
from starlette.responses import HTMLResponse

from exchange.errors import Error
from exchange.web import languages
from exchange.web.languages import N_

SHARED = "exchange.web"

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action *; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class Pages:
    def __init__(self, package: str) -> None:
        self._package = package
        self._environments: dict[str, Environment] = {}

    def _environment(self, language: str) -> Environment:
        """The templates in ``language``, made on the first page in it."""
        environment = self._environments.get(language)
        if environment is None:
            environment = Environment(
                loader=ChoiceLoader(
                    [PackageLoader(self._package, "templates"), PackageLoader(SHARED, "templates")]
                ),
                autoescape=select_autoescape(default=True),
                trim_blocks=True,
                lstrip_blocks=True,
                extensions=["jinja2.ext.i18n"],
            )
            # Literal text is marked in the templates (``{% trans %}``, ``_()``); text that
            # arrives as data (a message code's words, settings) goes through ``translated``,
            # which returns plain text for autoescaping to handle.
            environment.policies["ext.i18n.trimmed"] = True  # one line per message (babel.cfg)
            catalogue = languages.translations(language)
            environment.install_gettext_translations(  # type: ignore[attr-defined]
                catalogue, newstyle=True
            )
            environment.filters.update(
                utc=functools.partial(languages.date_time, language=language),
                time_of_day=functools.partial(languages.time_of_day, language=language),
                month=functools.partial(languages.month, language=language),
                number=functools.partial(languages.number, language=language),
                translated=catalogue.gettext,
                localised=functools.partial(languages.localised, language=language),
            )
            environment.globals.update(language=language, direction=languages.direction(language))
            self._environments[language] = environment
        return environment

    def template(self, name: str, language: str | None = None) -> Template:
        """``name``, compiled on first use (``TemplateNotFound`` if this app has no such page)."""
        return self._environment(language or languages.current()).get_template(name)

    def render(self, template: str, **context: Any) -> str:
        context.setdefault("languages", languages.choices(context))
        return self.template(template).render(**context)

    def page(self, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(self.render(template, **context), status_code=status, headers=HEADERS)

    def message(self, site: str, heading: str, text: str, **context: Any) -> HTMLResponse:
        return self.page("message.html", site=site, heading=heading, text=text, **context)

    def failure(self, site: str, error: Error, *, back: str | None = "/") -> HTMLResponse:
        shown = self.page(
            "message.html",
            status=error.status,
            site=site,
            heading=languages.gettext(N_("That did not work")),
            kind="alert",
            text=languages.gettext(error.message),  # as written unless the catalogue has it
            detail=error.detail,
            back=back,
        )
        shown.headers["X-Road-Error"] = error.xroad_type  # people read the page, programs the type
        return shown
