"""OOTS EDM at the consumer gateway: each answer read before it is handed on (what it said
audited, a malformed one refused as the provider's fault), and the EDM-REQ business rules
enforced before a request is signed.

The federation is the EDM one of ``tests/gateway/test_edm.py``."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from lxml import etree
from sqlalchemy import text

from exchange.db.engine import build_engine
from exchange.errors import InvalidResponse
from exchange.evidence.edm import NS
from exchange.evidence.edm.answers import Framed, Related
from exchange.evidence.edm.schemaset import EdmProfileError
from exchange.gateway import edm as edm_profile
from exchange.gateway import edm_consumer
from exchange.gateway.node import Gateway
from exchange.gateway.parts import Part, Streamed
from exchange.gateway.settings import GatewaySettings
from exchange.sample import federation
from tests.gateway.conftest import MARI, Roles
from tests.gateway.document_server import running_backend
from tests.gateway.test_edm import (
    CONSENTED,
    EDM_TYPE,
    LEGAL,
    PDF,
    SMALL_PDF,
    _sample,
    as_mari,
    distributed_as,
    edited,
    edm_federation,
    exception_of,
    post,
    set_slot,
)
from tests.oots import request_samples


@pytest.fixture(scope="module")
def roles(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Roles]:
    with (
        running_backend() as scans,
        edm_federation(tmp_path_factory.mktemp("edm-consumer"), scans) as made,
    ):
        scans.size = SMALL_PDF
        yield made


def consumer_audited(roles: Roles, answer: httpx.Response) -> dict[str, object]:
    """The consumer gateway's audit record of ``answer``'s exchange."""
    with build_engine(roles.consumer_settings().db_url).connect() as connection:
        rows = connection.execute(text("SELECT body FROM audit_records ORDER BY seq"))
        bodies = [json.loads(body) for body in rows.scalars()]
    found = [b for b in bodies if b.get("message_id") == answer.headers["X-Road-Id"]]
    assert found, answer.headers["X-Road-Id"]
    return found[-1]  # a replayed message id has a record per attempt: the last


def test_the_consumer_records_what_each_edm_answer_said(roles: Roles) -> None:
    delivered = post(roles, LEGAL, _sample())
    assert delivered.status_code == 200, delivered.text
    assert consumer_audited(roles, delivered)["edm_outcome"] == "evidence"

    def unknown(root: etree._Element) -> None:
        element = root.find(".//sdg:Person/sdg:Identifier", NS)
        assert element is not None
        element.text = "DK/DE/999999999"

    missing = post(roles, LEGAL, edited(_sample(), unknown))
    assert missing.status_code == 404
    record = consumer_audited(roles, missing)
    assert record["edm_outcome"] == "EDM:ERR:0004"
    assert record["fault"] == "Server.ServerProxy.NotFound"

    def previewable(root: etree._Element) -> None:
        as_mari(root)
        set_slot(root, "PossibilityForPreview", "true")

    artefact = roles.artefact(MARI, service=CONSENTED, purpose="oots:R1", preview=True)
    preview = post(
        roles,
        CONSENTED,
        edited(_sample(), previewable),
        **{"X-Exchange-Consent": artefact, "X-Road-UserId": MARI},
    )
    assert preview.status_code == 428
    assert consumer_audited(roles, preview)["edm_outcome"] == "preview-required"
    # Not an EDM refusal: the X-Road error of the consumer gateway itself, no EDM outcome.
    nowhere = post(roles, f"{federation.POPULATION_REGISTRY}/no-such-service", _sample())
    assert nowhere.status_code == 404
    assert "edm_outcome" not in consumer_audited(roles, nowhere)


def _another_request(document: bytes) -> bytes:
    return document.replace(b'requestId="urn:uuid:', b'requestId="urn:uuid:0', 1)


def _not_schema_valid(document: bytes) -> bytes:
    return document.replace(b"sdg:IssuingDate>", b"sdg:IssueDate>")


def _evidence_elsewhere(document: bytes) -> bytes:
    return document.replace(b"Content-ID: <evidence", b"Content-ID: <elsewhere", 1)


@pytest.mark.parametrize(
    ("broken", "said"),
    [
        (_another_request, "another request"),
        (_not_schema_valid, "EDM schemas"),
        (_evidence_elsewhere, "lacks the evidence part"),
    ],
)
def test_a_malformed_edm_answer_is_refused_as_the_providers_fault(
    roles: Roles,
    monkeypatch: pytest.MonkeyPatch,
    broken: Callable[[bytes], bytes],
    said: str,
) -> None:
    # A provider whose EDM answers are broken; its gateway still signs what it sends.
    original = edm_profile.evidence_response

    def breaking(*args: Any, **kwargs: Any) -> Related:
        answer = original(*args, **kwargs)
        return Related(answer.content_type, broken(answer.body))

    monkeypatch.setattr(edm_profile, "evidence_response", breaking)
    answer = post(roles, LEGAL, _sample())
    assert answer.status_code == 502, answer.text
    body = answer.json()
    assert body["type"] == "Server.ClientProxy.InvalidEdmResponse"
    assert said in body["message"]
    assert "Smith" not in answer.text  # nothing of the evidence reaches the consumer system
    record = consumer_audited(roles, answer)
    assert record["fault"] == "Server.ClientProxy.InvalidEdmResponse"
    assert "edm_outcome" not in record


def _pdf_part_as_png(head: bytes) -> bytes:
    return head.replace(b"Content-Type: application/pdf", b"Content-Type: image/png")


def _pdf_part_unnamed(head: bytes) -> bytes:
    return head.replace(b"Content-ID: <evidence", b"Content-ID: <elsewhere", 1)


def test_a_streamed_pdf_answer_is_read_up_to_the_pdf_and_passed_on(roles: Roles) -> None:
    answer = post(roles, PDF, distributed_as("application/pdf"))
    assert answer.status_code == 200, answer.text[-2000:]
    assert answer.headers["x-exchange-parts"].split(":")[1] == str(SMALL_PDF)
    record = consumer_audited(roles, answer)
    assert (record["edm_outcome"], record["parts"]) == (
        "evidence",
        answer.headers["x-exchange-parts"],
    )


@pytest.mark.parametrize(
    ("broken", "said"),
    [
        (_pdf_part_as_png, "not of its Distribution Format"),
        (_pdf_part_unnamed, "lacks the evidence part"),
    ],
)
def test_a_streamed_pdf_answer_that_does_not_match_its_response_is_refused(
    roles: Roles,
    monkeypatch: pytest.MonkeyPatch,
    broken: Callable[[bytes], bytes],
    said: str,
) -> None:
    # A provider that labels its PDF part otherwise than its metadata; still signed and bound.
    original = edm_profile.framed_response

    def breaking(*args: Any, **kwargs: Any) -> Framed:
        framed = original(*args, **kwargs)
        return Framed(framed.content_type, broken(framed.head), framed.tail)

    monkeypatch.setattr(edm_profile, "framed_response", breaking)
    answer = post(roles, PDF, distributed_as("application/pdf"))
    assert answer.status_code == 502, answer.text
    body = answer.json()
    assert body["type"] == "Server.ClientProxy.InvalidEdmResponse"
    assert said in body["message"]
    assert "%PDF" not in answer.text  # nothing of the document reaches the consumer system
    record = consumer_audited(roles, answer)
    assert record["fault"] == "Server.ClientProxy.InvalidEdmResponse"


def _unchecked_root_after_the_pdf(framed: Framed) -> Framed:
    """The PDF followed by a second root part (the root's Content-ID), then the closing
    boundary: all of it signed and bound, none of it the QueryResponse the consumer reads."""
    start = framed.content_type.split('start="<', 1)[1].split(">", 1)[0]
    opening = framed.tail.removesuffix(b"--\r\n")  # CRLF, then the boundary
    second = (
        opening
        + f"\r\nContent-Type: {EDM_TYPE}\r\nContent-ID: <{start}>\r\n\r\n".encode()
        + b"<unchecked/>"
    )
    return Framed(framed.content_type, framed.head, second + framed.tail)


def test_a_streamed_pdf_answer_with_parts_after_the_pdf_is_refused_before_it_is_passed_on(
    roles: Roles, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = edm_profile.framed_response

    def extended(*args: Any, **kwargs: Any) -> Framed:
        return _unchecked_root_after_the_pdf(original(*args, **kwargs))

    monkeypatch.setattr(edm_profile, "framed_response", extended)
    _refused_unread(roles, "not its closing boundary")


def test_a_streamed_pdf_answer_whose_head_is_not_the_one_signed_is_refused_unread(
    roles: Roles, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A provider (or anyone on the way) that sends another QueryResponse than the one signed.
    original = edm_profile._around

    def forged(head: bytes, chunks: AsyncIterator[bytes], tail: bytes) -> AsyncIterator[bytes]:
        assert b"<sdg:FamilyName>Tamm<" in head
        return original(head.replace(b">Tamm<", b">Tamx<"), chunks, tail)

    monkeypatch.setattr(edm_profile, "_around", forged)
    _refused_unread(roles, "not those its signature binds")


def _refused_unread(roles: Roles, said: str) -> None:
    """A PDF asked for is refused by the consumer gateway before anything is passed on or
    audited as delivered."""
    answer = post(roles, PDF, distributed_as("application/pdf"))
    assert answer.status_code == 502, answer.text[-2000:]
    body = answer.json()
    assert body["type"] == "Server.ClientProxy.InvalidEdmResponse"
    assert said in body["message"]
    assert b"%PDF" not in answer.content  # nothing of the answer reaches the consumer system
    assert b"unchecked" not in answer.content
    record = consumer_audited(roles, answer)
    assert record["fault"] == "Server.ClientProxy.InvalidEdmResponse"
    assert "edm_outcome" not in record


def test_a_streamed_answer_cut_short_before_its_document_is_refused_as_broken() -> None:
    async def cut() -> AsyncIterator[bytes]:
        yield b"--edm-b\r\nContent-Type: application/x-ebrs+xml\r\n"  # then the line drops

    async def close() -> None:  # read_reply closes the stream it refuses; _head only reads
        return None

    stream = Streamed(
        parts=(Part(4096, 100, "A" * 43),),
        length=4096 + 100 + 13,
        envelope="A" * 43,
        chunks=cut(),
        close=close,
        broken=InvalidResponse,
        what="gateway P",
    )
    with pytest.raises(InvalidResponse, match="cut short"):
        asyncio.run(edm_consumer._head(stream))


def test_the_consumer_gateway_refuses_a_request_that_breaks_a_business_rule(
    roles: Roles,
) -> None:
    def identifier(root: etree._Element) -> None:
        element = root.find(".//sdg:Person/sdg:Identifier", NS)
        assert element is not None
        element.text = "123123123"  # not XX/YY/ID

    def classification(root: etree._Element) -> None:
        element = root.find(".//sdg:EvidenceTypeClassification", NS)
        assert element is not None
        element.text = "https://sr.oots.tech.europa.eu/evidencetypeclassifications/EE/other"

    def company(root: etree._Element) -> None:
        slot = root.find(".//query:Query/rim:Slot[@name='NaturalPerson']", NS)
        assert slot is not None
        slot.set("name", "LegalPerson")  # a person where a company must be

    for change, rule in (
        (identifier, "R-EDM-REQ-C039"),
        (classification, "R-EDM-REQ-C027"),
        (company, "R-EDM-REQ-S047"),
    ):
        answer = post(roles, LEGAL, edited(_sample(), change))
        assert answer.status_code == 400, answer.text
        body = answer.json()
        assert (body["type"], body["detail"]) == ("Client.InvalidEdm", rule)
        assert f"breaks the EDM business rule {rule} (EDM:ERR:0003): " in body["message"]
        # Refused by the consumer gateway itself: nothing was signed, nothing was sent.
        assert "x-road-request-hash" not in answer.headers
        assert consumer_audited(roles, answer)["fault"] == "Client.InvalidEdm"


def test_the_official_company_request_is_refused_for_its_country_code(roles: Roles) -> None:
    (tax,) = [path for path in request_samples() if "Tax" in path.name]
    answer = post(roles, LEGAL, tax.read_bytes())
    assert answer.status_code == 400
    assert answer.json()["detail"] == "R-EDM-REQ-C067"  # GR, where the EU's list has EL
    corrected = tax.read_bytes().replace(
        b"<sdg:AdminUnitLevel1>GR</sdg:AdminUnitLevel1>",
        b"<sdg:AdminUnitLevel1>EL</sdg:AdminUnitLevel1>",
    )
    found = exception_of(post(roles, LEGAL, corrected))
    assert found.get("code") == "EDM:ERR:0007"  # on to the provider: no legal persons here


def test_an_edm_refusal_in_admission_reaches_the_consumer_system(roles: Roles) -> None:
    # The provider refuses a replayed message id before it reads the request, so its EDM error
    # names no requestId: that is no answer to another request.
    message_id = str(uuid.uuid4())
    assert post(roles, LEGAL, _sample(), **{"X-Road-Id": message_id}).status_code == 200
    replayed = post(roles, LEGAL, _sample(), **{"X-Road-Id": message_id})
    assert replayed.status_code == 409, replayed.text
    root = etree.fromstring(replayed.content)
    assert root.get("requestId") is None
    found = root.find("rs:Exception", NS)
    assert found is not None
    assert found.get("code") == "EDM:ERR:0003"
    assert consumer_audited(roles, replayed)["edm_outcome"] == "EDM:ERR:0003"


def test_a_gateway_waives_only_rules_that_exist(roles: Roles) -> None:
    settings = roles.consumer_settings()
    assert settings.edm is not None
    unknown = settings.model_copy(
        update={"edm": settings.edm.model_copy(update={"waived_rules": ["R-EDM-REQ-C999"]})}
    )
    with pytest.raises(EdmProfileError, match=r"no EDM business rule R-EDM-REQ-C999 to waive"):
        Gateway(unknown, migrates=False)
    declared = settings.model_dump()
    declared["edm"]["waived_rules"] = ["R-EDM-RESP-C001"]  # only request rules are enforced
    with pytest.raises(ValueError, match="waived_rules"):
        GatewaySettings.model_validate(declared)
