"""Where the consent service may send a citizen back, compared as URLs rather than strings.

Each consumer registers the addresses of its pages (the settings' ``[consumers]``). A
``return_to`` is allowed when, read as a URL, it is a registered page or one below it:

- the scheme and host are equal (case folded, a default port made explicit), with no user info;
- the path is made of plain segments (:func:`exchange.paths.segment_problem`: no dot segments,
  encoded or not, no ``\\``, no ``//``, no control characters) without ``@``, and lies inside
  the registered path on a segment boundary (``/procedures`` covers ``/procedures/x``, not
  ``/procedures-x``);
- there is no fragment; a query is the consumer's own business.

Anything but the printable ASCII characters of URLs is refused before parsing: urllib drops
tabs and newlines without a word, so what it parsed would not be what the browser is sent.
What is *not* checked: whether the page exists, and what it does with the artefact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from exchange.paths import segment_problem

_URL = re.compile(r"[A-Za-z0-9\-._~:/?\[\]@!$&'()*+,;=%]+")  # RFC 3986, without '#'
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Page:
    """An address read as a URL: what two addresses are compared on."""

    scheme: str
    host: str
    port: int
    path: str
    query: str

    def within(self, registered: Page) -> bool:
        prefix = registered.path
        inside = self.path == prefix or self.path.startswith(prefix.rstrip("/") + "/")
        return inside and (self.scheme, self.host, self.port) == (
            registered.scheme,
            registered.host,
            registered.port,
        )


def read(url: str) -> Page | None:
    """``url`` as a :class:`Page`, or None if it is not a plain absolute http(s) URL."""
    if not _URL.fullmatch(url):
        return None
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS or "@" in parts.netloc or not parts.hostname:
        return None
    try:
        port = _DEFAULT_PORTS[parts.scheme] if parts.port is None else parts.port
    except ValueError:  # not a number, or out of range
        return None
    if not parts.path.startswith("/"):
        return None
    segments = parts.path[1:].split("/")
    if segments[-1] == "":  # a trailing slash: a folder of pages
        segments.pop()
    if any("@" in segment or segment_problem(segment) for segment in segments):
        return None
    return Page(parts.scheme, parts.hostname, port, parts.path, parts.query)


def registered(url: str) -> Page:
    """A consumer's registered address, or ValueError: a plain URL without query."""
    page = read(url)
    if page is None or page.query or "?" in url:
        raise ValueError(
            f"{url!r} must be an absolute http(s) URL with a path of plain segments, "
            "without user info, query or fragment"
        )
    return page


def allowed(url: str, pages: list[str]) -> bool:
    """Whether ``url`` is one of ``pages`` (registered addresses) or below one of them."""
    page = read(url)
    return page is not None and any(page.within(registered(p)) for p in pages)
