"""A cookie-keeping HTTP client that walks the project's web pages as a browser would (no
script runs on them), for tests of the sign-in, consent, preview and portal flows."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import httpx

_INPUT = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
_FORM = re.compile(r'<form[^>]*method="post"[^>]*action="([^"]+)"[^>]*>(.*?)</form>', re.S)


def hidden_fields(html: str) -> dict[str, str]:
    return {name: unescape(value) for name, value in _INPUT.findall(html)}


def forms(html: str) -> list[tuple[str, dict[str, str]]]:
    """Every POST form of a page: its action and hidden fields."""
    return [(unescape(action), hidden_fields(body)) for action, body in _FORM.findall(html)]


def form_with(html: str, marker: str) -> tuple[str, dict[str, str]]:
    """The POST form whose body contains ``marker``."""
    for action, body in _FORM.findall(html):
        if marker in body:
            return unescape(action), hidden_fields(body)
    raise AssertionError(f"no form with {marker!r} on the page:\n{html[:3000]}")


class Browser:
    def __init__(self, transport: httpx.BaseTransport | None = None) -> None:
        """``transport``: the network by default, or an in-process federation's."""
        self.http = httpx.Client(follow_redirects=True, timeout=30, transport=transport)

    def get(self, url: str) -> httpx.Response:
        return self.http.get(url)

    def post(self, url: str, data: dict[str, Any]) -> httpx.Response:
        return self.http.post(url, data=data)

    def submit(self, page: httpx.Response, marker: str, **extra: str) -> httpx.Response:
        """Press the button ``marker`` names (or fill ``extra``) in a form of ``page``."""
        action, fields = form_with(page.text, marker)
        return self.post(str(page.url.join(action)), {**fields, **extra})

    def sign_in(self, page: httpx.Response, citizen: str) -> httpx.Response:
        """On the identity provider's login page, choose ``citizen``; follow back."""
        assert "Choose a test citizen" in page.text, page.text[:2000]
        return self.submit(page, 'name="citizen"', citizen=citizen)

    def close(self) -> None:
        self.http.close()
