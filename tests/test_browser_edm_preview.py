"""The OOTS EDM preview flow end to end, the citizen's part in a real browser (Debian's Chromium
via Playwright): request -> PreviewRequired -> the citizen previews and approves -> second
request -> exactly the evidence that was previewed.

The federation is the EDM one of ``tests/gateway/test_edm.py`` (both gateways with the official
material, the consent service with preview), built in process; its identity provider and the
Population Register's preview pages also listen on their real loopback ports for Chromium. The
test plays the consumer system: it posts the official birth certificate request, made about the
sample population's Mari Tamm and offering a preview, reads the answers with the consumer side's
EDM reader, and sends Chromium to the ``PreviewLocation`` it was given.

Skipped when Chromium is not installed, unless ``EXCHANGE_REQUIRE_BROWSER`` is set (CI sets it).
Everything listens on loopback; every wait is bounded (Playwright's timeout, pytest-timeout's).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from sqlalchemy import text

from exchange.db.engine import build_engine
from exchange.evidence.edm import NS
from exchange.evidence.edm.response import EdmError, EvidenceDelivered, read_answer
from exchange.evidence.edm.schemaset import EdmSchemas
from exchange.evidence.rows import flatten
from exchange.identifiers import ServiceId
from tests.gateway.conftest import MARI, Roles
from tests.gateway.test_edm import (
    CONSENTED,
    _sample,
    as_mari,
    edited,
    edm_federation,
    post,
    set_slot,
)
from tests.gateway.test_edm_consumer import consumer_audited
from tests.oots import material

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    if os.environ.get("EXCHANGE_REQUIRE_BROWSER"):
        raise RuntimeError(f"Chromium is required here but {CHROMIUM} is missing")
    pytest.skip("Chromium is not installed", allow_module_level=True)
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def roles(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Roles]:
    with edm_federation(tmp_path_factory.mktemp("edm-browser")) as made:
        preview = made.provider_settings().preview
        assert preview is not None
        made.roles.listen_for_browser(f"http://127.0.0.1:{made.ports.idp}", preview.public_url)
        yield made


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with playwright_api.sync_playwright() as driver:
        launched = driver.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,  # as the journey launches it: nothing reaches beyond loopback
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield launched
        launched.close()


def previewable(root: etree._Element) -> None:
    as_mari(root)
    set_slot(root, "PossibilityForPreview", "true")


def returning_to(location: str) -> bytes:
    """The same request again, carrying the ``PreviewLocation`` it was given."""

    def change(root: etree._Element) -> None:
        previewable(root)
        slot = etree.Element(f"{{{NS['rim']}}}Slot", name="PreviewLocation")
        value = etree.SubElement(
            slot, f"{{{NS['rim']}}}SlotValue", {f"{{{NS['xsi']}}}type": "rim:StringValueType"}
        )
        etree.SubElement(value, f"{{{NS['rim']}}}Value").text = location
        procedure = root.find("rim:Slot[@name='Procedure']", NS)
        assert procedure is not None
        procedure.addnext(slot)

    return edited(_sample(), change)


def held_evidence(roles: Roles, preview_id: str) -> dict[str, Any]:
    """What the provider holds back for the preview ``preview_id`` (the registry's answer)."""
    engine = build_engine(roles.provider_settings().db_url)
    with engine.connect() as connection:
        found = connection.execute(
            text("SELECT evidence FROM gw_previews WHERE id = :id"), {"id": preview_id}
        ).scalar_one()
    evidence: dict[str, Any] = json.loads(found)
    return evidence


def test_edm_preview_in_the_browser_releases_exactly_what_was_previewed(
    roles: Roles, chromium: Any
) -> None:
    schemas = EdmSchemas.load(material())
    artefact = roles.artefact(MARI, service=CONSENTED, purpose="oots:R1", preview=True, max_uses=2)
    consent = {"X-Exchange-Consent": artefact, "X-Road-UserId": MARI}

    # 1. The consumer system asks; the provider answers PreviewRequired with where to preview.
    first = post(roles, CONSENTED, edited(_sample(), previewable), **consent)
    assert first.status_code == 428, first.text
    refused = read_answer(schemas, first.headers["content-type"], first.content)
    assert isinstance(refused, EdmError)
    assert (refused.code, refused.outcome) == ("EDM:ERR:0002", "preview-required")
    assert refused.preview is not None
    assert refused.preview.method == "GET"
    location = refused.preview.location
    held = held_evidence(roles, location.rsplit("/", 1)[1])
    assert consumer_audited(roles, first)["edm_outcome"] == "preview-required"

    # 2. The citizen opens the location in Chromium, signs in, looks, and approves.
    context = chromium.new_context(viewport={"width": 1100, "height": 800}, locale="en")
    context.set_default_timeout(20_000)
    page = context.new_page()
    expect = playwright_api.expect
    try:
        page.goto(location)
        page.get_by_role("button", name="Mari Tamm").click()  # the identity provider's choice
        expect(page.get_by_role("heading", name="Look before you share")).to_be_visible()
        rows = page.locator("#evidence tbody tr")
        shown = [
            (row.locator("th").inner_text().strip(), row.locator("td").inner_text().strip())
            for row in rows.all()
        ]
        page.get_by_role("button", name="Send this data").click()
        expect(page.get_by_role("heading", name="Approved")).to_be_visible()
    finally:
        context.close()
    # The page showed exactly what the provider holds back, each field as the gateway labels it.
    assert shown == flatten(held, label=roles.provider.previews.label)
    assert ("Person code", "EE38001085718") in shown

    # 3. The consumer system asks again with the PreviewLocation: the evidence previewed.
    second = post(roles, CONSENTED, returning_to(location), **consent)
    assert second.status_code == 200, second.text
    delivered = read_answer(
        schemas, second.headers["content-type"], second.content, request_id=refused.request_id
    )
    assert isinstance(delivered, EvidenceDelivered)
    (evidence,) = delivered.evidence
    assert evidence.document is not None
    service = roles.provider.services.get(ServiceId.parse(CONSENTED))
    previewed = service.schema.to_xml(held)
    assert hashlib.sha256(evidence.document).hexdigest() == hashlib.sha256(previewed).hexdigest()
    assert evidence.metadata.about.identifier == "EE/DK/38001085718"
    assert consumer_audited(roles, second)["edm_outcome"] == "evidence"
    # Released once: the same PreviewLocation names nothing any more.
    again = post(roles, CONSENTED, returning_to(location), **consent)
    gone = read_answer(schemas, again.headers["content-type"], again.content)
    assert isinstance(gone, EdmError)
    assert gone.code == "EDM:ERR:0006"
