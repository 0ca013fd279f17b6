"""An app's pages: its own templates over the shared base, sent with the security headers.

Each app makes its :class:`Pages` when it is created, naming its package: templates are looked up
first in that package's ``templates/`` folder, then in this package's (``base.html`` and
``message.html``), so a page extends the shared base by name and an app cannot render another
app's pages. Nothing is read at import time; a template is compiled on first use and kept by the
app's environment.

The pages run no script at all; the content security policy says so.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from jinja2 import ChoiceLoader, Environment, PackageLoader, Template, select_autoescape
from starlette.responses import HTMLResponse

from exchange.errors import Error

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


def utc(seconds: float) -> str:
    """A Unix time as the pages show it (the ``utc`` filter)."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")


class Pages:
    def __init__(self, package: str) -> None:
        self._templates = Environment(
            loader=ChoiceLoader(
                [PackageLoader(package, "templates"), PackageLoader(SHARED, "templates")]
            ),
            autoescape=select_autoescape(default=True),
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=["jinja2.ext.i18n"],
        )
        # Text meant for people is marked for translation (``{% trans %}``, ``_()``); until a
        # page is given its reader's language, it is shown as written.
        self._templates.install_null_translations(newstyle=True)  # type: ignore[attr-defined]
        self._templates.filters["utc"] = utc

    def template(self, name: str) -> Template:
        """``name``, compiled on first use (``TemplateNotFound`` if this app has no such page)."""
        return self._templates.get_template(name)

    def render(self, template: str, **context: Any) -> str:
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
            heading="That did not work",
            kind="alert",
            text=error.message,
            detail=error.detail,
            back=back,
        )
        shown.headers["X-Road-Error"] = error.xroad_type  # people read the page, programs the type
        return shown
