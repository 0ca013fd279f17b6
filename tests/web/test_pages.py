"""Each app renders its own pages over the shared base, with the security headers."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.resources import files

import httpx
import pytest
from jinja2 import TemplateNotFound

from exchange.errors import NotFound
from exchange.idp.app import create_app
from exchange.idp.provider import Citizen, IdentityProvider
from exchange.trust.keys import generate_key
from exchange.web import Pages

APPS = ["exchange.portal", "exchange.consent", "exchange.gateway", "exchange.idp"]


@pytest.mark.parametrize("package", APPS)
def test_every_template_of_an_app_compiles(package: str) -> None:
    pages = Pages(package)
    names = [t.name for t in files(package).joinpath("templates").iterdir()]
    assert names
    for name in names:
        assert pages.template(name).name == name


def test_a_page_extends_the_shared_base_and_carries_the_headers() -> None:
    response = Pages("exchange.consent").page("signin.html", site="Consent <service>", then="/a b")
    html = response.body.decode()
    assert "<header><strong>Consent &lt;service&gt;</strong>" in html  # base.html, escaped
    assert 'href="/login?then=/a%20b"' in html
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"


def test_a_failure_is_the_shared_message_with_the_error_status() -> None:
    response = Pages("exchange.portal").failure("State Portal", NotFound("no such procedure"))
    assert response.status_code == 404
    assert "no such procedure" in response.body.decode()
    assert "That did not work" in response.body.decode()
    assert response.headers["X-Road-Error"] == "Client.NotFound"  # for programs


def test_an_app_cannot_render_another_apps_pages() -> None:
    with pytest.raises(TemplateNotFound):
        Pages("exchange.portal").render("grant.html")
    with pytest.raises(TemplateNotFound):
        Pages("exchange.consent").render("procedure.html")


async def test_the_identity_providers_sign_in_page_escapes_what_it_echoes() -> None:
    callback = "http://127.0.0.1:4450/callback"
    provider = IdentityProvider(
        issuer="http://127.0.0.1:4440",
        key=generate_key(),
        clients={"portal": [callback]},
        citizens=[Citizen("EE38001085718", "Mari", "<Tamm>")],
        clock=lambda: datetime.now(UTC),
    )
    transport = httpx.ASGITransport(app=create_app(provider))
    async with httpx.AsyncClient(transport=transport, base_url="http://idp") as client:
        page = await client.get(
            "/authorize",
            params={
                "client_id": "portal",
                "redirect_uri": callback,
                "response_type": "code",
                "scope": "openid",
                "state": '"><script>alert(1)</script>',
                "nonce": "n",
            },
        )
    assert page.status_code == 200
    assert "<script>" not in page.text
    assert 'name="state" value="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in page.text
    assert '<button name="citizen" value="EE38001085718">Mari &lt;Tamm&gt;' in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
