"""Preview: the citizen sees the evidence at the provider and approves or refuses it; the
consumer's retry gets exactly that evidence, or the refusal."""

from __future__ import annotations

import uuid

import httpx

from exchange.sample import federation
from tests.browser import Browser
from tests.gateway.conftest import CONSENTED_DIPLOMA, MARI, PURPOSE, Roles
from tests.gateway.registry_server import DIPLOMA as DIPLOMA_RECORD

JAAN = "EE39107156021"
DIPLOMA_SERVICE = f"{federation.POPULATION_REGISTRY}/consented-diploma"


def ask(roles: Roles, artefact: str) -> httpx.Response:
    return roles.call(
        f"{CONSENTED_DIPLOMA}?person={MARI}",
        headers={
            "X-Road-UserId": MARI,
            "X-Exchange-Purpose": PURPOSE,
            "X-Exchange-Consent": artefact,
            "X-Road-Id": str(uuid.uuid4()),
        },
    )


def preview_url(roles: Roles, artefact: str) -> str:
    first = ask(roles, artefact)
    assert first.status_code == 428, first.text
    body = first.json()
    assert body["type"] == "Server.ServerProxy.PreviewRequired"
    assert body["detail"].startswith(f"http://127.0.0.1:{roles.ports.preview}/preview/")
    return str(body["detail"])


def decide(roles: Roles, url: str, citizen: str, decision: str) -> httpx.Response:
    browser = Browser(roles.roles.loopback.blocking())
    try:
        page = browser.sign_in(browser.get(url), citizen)
        if decision == "look":
            return page
        assert page.status_code == 200, page.text
        return browser.submit(page, f'value="{decision}"', decision=decision)
    finally:
        browser.close()


def test_approved_evidence_is_released_once_as_shown(roles: Roles) -> None:
    artefact = roles.artefact(MARI, service=DIPLOMA_SERVICE, preview=True, max_uses=2)
    before = roles.registry.calls
    url = preview_url(roles, artefact)
    assert roles.registry.calls == before + 1  # fetched once, to be shown
    again = ask(roles, artefact)
    assert again.status_code == 428
    assert again.json()["detail"] == url

    shown = decide(roles, url, MARI, "look")
    assert shown.status_code == 200
    assert DIPLOMA_RECORD["diplomaNumber"] in shown.text  # exactly what would be sent
    assert 'action="/logout"' in shown.text  # the citizen can sign out here too
    answer = decide(roles, url, MARI, "approved")
    assert answer.status_code == 200
    assert "Approved" in answer.text

    released = ask(roles, artefact)
    assert released.status_code == 200, released.text
    assert released.json()["Diploma"]["personCode"] == MARI
    assert roles.registry.calls == before + 1  # the evidence shown, not a new fetch
    # Released once: the next request starts a new preview.
    assert ask(roles, artefact).status_code == 428


def test_refused_evidence_is_not_released(roles: Roles) -> None:
    artefact = roles.artefact(MARI, service=DIPLOMA_SERVICE, preview=True)
    url = preview_url(roles, artefact)
    assert "Refused" in decide(roles, url, MARI, "refused").text
    before = roles.registry.calls
    refused = ask(roles, artefact)
    assert refused.status_code == 403, refused.text
    assert refused.json()["type"] == "Server.ServerProxy.PreviewRefused"
    assert roles.registry.calls == before


def test_only_the_person_concerned_may_look(roles: Roles) -> None:
    artefact = roles.artefact(MARI, service=DIPLOMA_SERVICE, preview=True)
    url = preview_url(roles, artefact)
    stranger = decide(roles, url, JAAN, "look")
    assert stranger.status_code == 404
    assert DIPLOMA_RECORD["diplomaNumber"] not in stranger.text


def test_the_preview_page_speaks_french_with_the_fields_labelled(roles: Roles) -> None:
    artefact = roles.artefact(MARI, service=DIPLOMA_SERVICE, preview=True, max_uses=1)
    url = preview_url(roles, artefact)
    browser = Browser(roles.roles.loopback.blocking())
    browser.http.headers["Accept-Language"] = "fr-FR,fr;q=0.9"
    try:
        sign_in = browser.get(url)
        assert '<html lang="fr" dir="ltr">' in sign_in.text
        page = browser.submit(sign_in, 'name="citizen"', citizen=MARI)
        assert "Vérifiez avant de partager" in page.text
        assert "Numéro du diplôme" in page.text  # the gateway's [preview.labels]
        assert f"<bdi>{DIPLOMA_RECORD['diplomaNumber']}</bdi>" in page.text
        assert "UTC" in page.text
        refused = browser.submit(page, 'value="refused"', decision="refused")
        assert "Rien ne sera envoyé." in refused.text
    finally:
        browser.close()
