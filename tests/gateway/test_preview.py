"""Preview: the citizen sees the evidence at the provider and approves or refuses it; the
consumer's retry gets exactly that evidence, or the refusal."""

from __future__ import annotations

import uuid

import httpx

from exchange.sample import federation
from tests.browser import Browser
from tests.gateway.conftest import CONSENTED_DIPLOMA, MARI, PURPOSE, Running
from tests.gateway.registry_server import DIPLOMA as DIPLOMA_RECORD

JAAN = "EE39107156021"
DIPLOMA_SERVICE = f"{federation.POPULATION_REGISTRY}/consented-diploma"


def ask(running: Running, artefact: str) -> httpx.Response:
    return running.call(
        f"{CONSENTED_DIPLOMA}?person={MARI}",
        headers={
            "X-Road-UserId": MARI,
            "X-Exchange-Purpose": PURPOSE,
            "X-Exchange-Consent": artefact,
            "X-Road-Id": str(uuid.uuid4()),
        },
    )


def preview_url(running: Running, artefact: str) -> str:
    first = ask(running, artefact)
    assert first.status_code == 428, first.text
    body = first.json()
    assert body["type"] == "Server.ServerProxy.PreviewRequired"
    assert body["detail"].startswith(f"http://127.0.0.1:{running.ports.preview}/preview/")
    return str(body["detail"])


def decide(running: Running, url: str, citizen: str, decision: str) -> httpx.Response:
    browser = Browser()
    try:
        page = browser.sign_in(browser.get(url), citizen)
        if decision == "look":
            return page
        assert page.status_code == 200, page.text
        return browser.submit(page, f'value="{decision}"', decision=decision)
    finally:
        browser.close()


def test_approved_evidence_is_released_once_as_shown(running: Running) -> None:
    artefact = running.artefact(MARI, service=DIPLOMA_SERVICE, preview=True, max_uses=2)
    before = running.registry.calls
    url = preview_url(running, artefact)
    assert running.registry.calls == before + 1  # fetched once, to be shown
    again = ask(running, artefact)
    assert again.status_code == 428
    assert again.json()["detail"] == url

    shown = decide(running, url, MARI, "look")
    assert shown.status_code == 200
    assert DIPLOMA_RECORD["diplomaNumber"] in shown.text  # exactly what would be sent
    answer = decide(running, url, MARI, "approved")
    assert answer.status_code == 200
    assert "Approved" in answer.text

    released = ask(running, artefact)
    assert released.status_code == 200, released.text
    assert released.json()["Diploma"]["personCode"] == MARI
    assert running.registry.calls == before + 1  # the evidence shown, not a new fetch
    # Released once: the next request starts a new preview.
    assert ask(running, artefact).status_code == 428


def test_refused_evidence_is_not_released(running: Running) -> None:
    artefact = running.artefact(MARI, service=DIPLOMA_SERVICE, preview=True)
    url = preview_url(running, artefact)
    assert "Refused" in decide(running, url, MARI, "refused").text
    before = running.registry.calls
    refused = ask(running, artefact)
    assert refused.status_code == 403, refused.text
    assert refused.json()["type"] == "Server.ServerProxy.PreviewRefused"
    assert running.registry.calls == before


def test_only_the_person_concerned_may_look(running: Running) -> None:
    artefact = running.artefact(MARI, service=DIPLOMA_SERVICE, preview=True)
    url = preview_url(running, artefact)
    stranger = decide(running, url, JAAN, "look")
    assert stranger.status_code == 404
    assert DIPLOMA_RECORD["diplomaNumber"] not in stranger.text
