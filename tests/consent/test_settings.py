"""Where the consent service may send citizens back: URLs compared as URLs, not as strings."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from exchange.consent.settings import ConsentSettings
from exchange.settings_file import OidcClient

PORTAL = "EE/GOV/70000001/citizen-portal"
BASE = "http://127.0.0.1:4450"  # the demo portal, registered as BASE/procedures/


def settings(*registered: str) -> ConsentSettings:
    return ConsentSettings(
        name="consent",
        member="EE/GOV/70000000",
        data_dir=Path("data"),
        anchor=Path("anchor.json"),
        public_url="http://127.0.0.1:4460",
        identity=OidcClient(issuer="http://idp", jwks_url="http://idp/jwks", client_id="c"),
        consumers={PORTAL: list(registered or [f"{BASE}/procedures/"])},
    )


@pytest.mark.parametrize(
    "url",
    [
        f"{BASE}/procedures/passport/consent",  # what the portal sends
        f"{BASE}/procedures/teaching/consent",
        f"{BASE}/procedures/",
        f"{BASE}/procedures/passport/consent?step=2",
        "HTTP://127.0.0.1:4450/procedures/passport/consent",  # scheme and host fold case
    ],
)
def test_the_addresses_the_portal_sends_are_allowed(url: str) -> None:
    assert settings().return_allowed(PORTAL, url)


@pytest.mark.parametrize(
    "url",
    [
        f"{BASE}/procedures/../../evil",
        f"{BASE}/procedures/x/../../..",
        f"{BASE}/procedures/./passport",
        f"{BASE}/procedures/@evil.example",
        f"{BASE}/procedures/%2e%2e/%2E%2E/evil",
        f"{BASE}/procedures/%252e%252e/evil",
        f"{BASE}/procedures/..%2fevil",
        f"{BASE}/procedures/..\\evil",
        f"{BASE}/procedures/x%5c..%5cevil",
        f"{BASE}/procedures//evil.example/x",
        f"{BASE}/procedures/x#fragment",
        f"{BASE}/procedures/x\t",
        f"{BASE}/procedures/x\n",
        f"{BASE}/procedures/a b",
        f"{BASE}/procedures/\uff0e\uff0e/evil",
        f"{BASE}/Procedures/passport/consent",
        f"{BASE}/proceduresx",
        f"{BASE}/",
        "http://user:secret@127.0.0.1:4450/procedures/x",
        "http://127.0.0.1:4450@evil.example/procedures/x",
        "https://127.0.0.1:4450/procedures/x",
        "http://127.0.0.1:4451/procedures/x",
        "http://127.0.0.1/procedures/x",
        "http://localhost:4450/procedures/x",
        "http://127.0.0.1:4450:80/procedures/x",
        "http://127.0.0.1:99999/procedures/x",
        "//127.0.0.1:4450/procedures/x",
        "/procedures/x",
        "javascript:alert(1)//127.0.0.1:4450/procedures/",
        "",
    ],
)
def test_hostile_return_addresses_are_refused(url: str) -> None:
    assert not settings().return_allowed(PORTAL, url)


def test_the_default_port_and_a_path_without_slash_are_read_as_urls() -> None:
    registered = settings("https://portal.example/procedures")
    assert registered.return_allowed(PORTAL, "https://Portal.Example:443/procedures/x/consent")
    assert registered.return_allowed(PORTAL, "https://portal.example/procedures")
    assert not registered.return_allowed(PORTAL, "https://portal.example/procedures-evil")
    assert not registered.return_allowed(PORTAL, "https://portal.example:8443/procedures/x")
    assert not registered.return_allowed(
        "EE/GOV/70000002/other", "https://portal.example/procedures"
    )


@pytest.mark.parametrize(
    "registered",
    [
        "https://portal.example",
        "/procedures/",
        "https://user@portal.example/procedures/",
        "https://portal.example/procedures/?x=1",
        "https://portal.example/procedures/#x",
        "https://portal.example/a/../procedures/",
        "ftp://portal.example/procedures/",
    ],
)
def test_a_registered_address_must_be_a_plain_url(registered: str) -> None:
    with pytest.raises(ValidationError, match="consumers"):
        settings(registered)


def test_port_zero_is_not_the_default_port() -> None:
    registered = settings("http://portal.example/procedures/")
    assert registered.return_allowed(PORTAL, "http://portal.example:80/procedures/x")
    assert not registered.return_allowed(PORTAL, "http://portal.example:0/procedures/x")
