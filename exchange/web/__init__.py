"""What the project's web pages share (citizen portal, consent service, preview pages at a
provider gateway, the development identity provider's sign-in page).

- :mod:`~exchange.web.pages`: each app's templates over the shared base, security headers;
- :mod:`~exchange.web.sessions`: signed session cookies and the CSRF token of forms;
- :mod:`~exchange.web.signin`: the routes that sign a citizen in through the OIDC issuer;
- :mod:`~exchange.web.forms`: bounded request bodies and posted forms;
- :mod:`~exchange.web.languages`: each reader's language, the catalogues, dates and numbers.

The names below are re-exported so that an app needs one import (``from exchange import web``).
"""

from __future__ import annotations

from exchange.web import languages
from exchange.web.forms import MAX_FORM_BYTES, bounded_body, form
from exchange.web.pages import Pages
from exchange.web.sessions import check_csrf, csrf_token, sessions
from exchange.web.signin import sign_in_routes

__all__ = [
    "MAX_FORM_BYTES",
    "Pages",
    "bounded_body",
    "check_csrf",
    "csrf_token",
    "form",
    "languages",
    "sessions",
    "sign_in_routes",
]
