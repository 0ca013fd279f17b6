"""OOTS EDM through both gateways: the official birth certificate and commercial register
requests answered with EDM evidence, each EDM error code the provider produces, and preview by
PreviewLocation.

The federation here is the sample one with the EDM profile on both gateways, pointed at the
official material beside the repository (tests/oots.py), and EDM services on the population
register's gateway: the birth certificate on a legal basis, the same under the person's consent
with preview, two python registries for a timeout and a broken answer, and a company extract
from a business register (about legal persons, on a legal basis)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lxml import etree

from exchange.db.engine import build_engine
from exchange.evidence.edm import NS
from exchange.evidence.edm.answers import split_related
from exchange.evidence.edm.query import EdmRequest, read_request
from exchange.evidence.edm.schemaset import EdmProfileError, EdmSchemas
from exchange.gateway.access import AccessRights
from exchange.gateway.node import Gateway
from exchange.gateway.settings import GatewaySettings
from exchange.sample import business, federation, population
from exchange.trust.globalconf_client import utcnow
from tests.gateway import edm_registry
from tests.gateway.conftest import GATEWAY_EXTRA, MARI, PORTAL_CLIENT, Roles
from tests.gateway.document_server import DocumentServer, running_backend
from tests.gateway.registry_server import running_registry
from tests.gateway.test_preview import decide
from tests.inprocess import LiveClock
from tests.oots import BIRTH_REQUEST, COMPANY_REQUEST, material, request_samples, rules
from tests.servers import free_port

LEGAL = f"{federation.POPULATION_REGISTRY}/birth-certificate-oots"
CONSENTED = f"{federation.POPULATION_REGISTRY}/birth-certificate-oots-consent"
HELD = f"{federation.POPULATION_REGISTRY}/birth-oots-held"
BROKEN = f"{federation.POPULATION_REGISTRY}/birth-oots-broken"
COMPANY = f"{federation.POPULATION_REGISTRY}/company-extract-oots"
PDF_PREVIEWED = f"{federation.POPULATION_REGISTRY}/birth-pdf-previewed"
PDF = f"{federation.POPULATION_REGISTRY}/birth-pdf"
SMALL_PDF = 40_000  # the in-process transport reads answers whole, up to max_body_bytes
LEGAL_BASIS = "Single Digital Gateway Regulation Art. 14"
EDM_TYPE = "application/x-ebrs+xml"
SAMPLE = "2.1 Step 1  Evidence Request - Birth - full example.xml"


def _sample() -> bytes:
    return (material() / BIRTH_REQUEST / SAMPLE).read_bytes()


def _company_sample() -> bytes:
    """The official commercial register request, with its one slip mended: it writes Greece
    ``GR`` where the EU's country list (R-EDM-REQ-C067) has ``EL``, so the consumer gateway
    refuses it as published (tests/gateway/test_edm_consumer.py shows that refusal)."""
    official = (material() / COMPANY_REQUEST).read_bytes()
    slip = b"<sdg:AdminUnitLevel1>GR</sdg:AdminUnitLevel1>"
    assert official.count(slip) == 1
    return official.replace(slip, b"<sdg:AdminUnitLevel1>EL</sdg:AdminUnitLevel1>")


def _company_service(register: Path, offer: dict[str, str]) -> str:
    """The business register's registration as an EDM company extract (public registers'
    data about legal persons, released on a legal basis)."""
    fields = "".join(
        f"{json.dumps(k)} = {json.dumps(v)}\n" for k, v in business.REGISTRATION_FIELDS.items()
    )
    return (
        "\n[[services]]\n"
        'subsystem = "population-registry"\ncode = "company-extract-oots"\n'
        'evidence_type = "business-registration"\nconsent_policy = "legal-basis"\n'
        'methods = ["POST"]\nparameters = ["code"]\nsubject_parameter = ""\n'
        '[services.connector]\ntype = "sql"\n'
        f"url = {json.dumps(f'sqlite:///{register}')}\n"
        f'query = {json.dumps(business.REGISTRATION_QUERY)}\njson_columns = ["board"]\n'
        f"[services.connector.fields]\n{fields}"
        "[services.edm]\n"
        'about = "legal-person"\nlegal_person_parameter = "code"\n'
        f"evidence_type_classification = {json.dumps(offer['classification'])}\n"
        f"conforms_to = {json.dumps(offer['conforms_to'])}\n"
        f"transformations = [{json.dumps(offer['transformation'])}]\n"
        'issued_field = "registeredOn"\nvalid_for_days = 89\n'
        '[services.edm.titles]\nEN = "Extract of the Commercial Register"\n'
    )


def _offer(request: EdmRequest) -> dict[str, str]:
    return {
        "classification": request.evidence_type_classification,
        "conforms_to": request.conforms_to or "",
        "transformation": request.transformation or "",
    }


def _service(
    code: str, connector: str, *, policy: str, preview: bool, offer: dict[str, str]
) -> str:
    return (
        "\n[[services]]\n"
        f'subsystem = "population-registry"\ncode = "{code}"\nevidence_type = "birth-certificate"\n'
        f'consent_policy = "{policy}"\npreview = {json.dumps(preview)}\n'
        'methods = ["POST"]\nparameters = ["person"]\n'
        f"{connector}"
        "[services.edm]\n"
        f"evidence_type_classification = {json.dumps(offer['classification'])}\n"
        f"conforms_to = {json.dumps(offer['conforms_to'])}\n"
        f"transformations = [{json.dumps(offer['transformation'])}]\n"
        'issued_field = "registeredOn"\n'
        '[services.edm.titles]\nEN = "Certificate of Birth"\n'
    )


@contextlib.contextmanager
def edm_federation(base: Path, scans: DocumentServer | None = None) -> Iterator[Roles]:
    """The EDM federation; with ``scans``, services that offer the birth certificate as the
    PDF ``scans`` serves too (``birth-pdf-previewed`` with preview, ``birth-pdf`` on a legal
    basis)."""
    folder = material()
    schemas = EdmSchemas.load(folder)
    asked = read_request(schemas.parse(_sample(), what="sample"))
    offer = _offer(asked)
    about_company = read_request(
        schemas.parse(_company_sample(), what="sample"), about="legal-person"
    )
    register = base / "registries" / "population.db"
    companies = base / "registries" / "business.db"
    url, query = json.dumps(f"sqlite:///{register}"), json.dumps(population.BIRTH_QUERY)
    sql = (
        f'[services.connector]\ntype = "sql"\nurl = {url}\nquery = {query}\n'
        "[services.connector.fields]\n"
        + "".join(
            f"{json.dumps(k)} = {json.dumps(v)}\n" for k, v in population.BIRTH_FIELDS.items()
        )
    )

    def python(target: str) -> str:
        return f'[services.connector]\ntype = "python"\ntarget = "{target}"\ntimeout = 0.2\n'

    services = (
        _service("birth-certificate-oots", sql, policy="legal-basis", preview=False, offer=offer)
        + _service(
            "birth-certificate-oots-consent", sql, policy="consent", preview=True, offer=offer
        )
        + _service(
            "birth-oots-held",
            python("tests.gateway.edm_registry:held"),
            policy="legal-basis",
            preview=False,
            offer=offer,
        )
        + _service(
            "birth-oots-broken",
            python("tests.gateway.edm_registry:broken"),
            policy="legal-basis",
            preview=False,
            offer=offer,
        )
        + _company_service(companies, _offer(about_company))
    )
    # The test federation's preview pages are plain http, which R-EDM-REQ-C005 forbids to the
    # PreviewLocation of a second request: waived here, as an operator would have to.
    edm = (
        f"\n[edm]\nfolder = {json.dumps(str(folder))}\n"
        'waived_rules = ["R-EDM-REQ-C005"]\n'
        '[edm.provider]\nid = "70000310"\nscheme = "urn:cef.eu:names:identifier:EAS:0191"\n'
        'name = "Population Register"\n'
    )
    ports = federation.Ports(*(free_port() for _ in range(10)))
    if scans is not None:  # the birth certificate as a PDF too, with preview and without
        document = f'[services.edm.document]\nurl = "{scans.url}/scans/{{person}}"\n'
        offered = ((PDF_PREVIEWED, "consent", True), (PDF, "legal-basis", False))
        for code, policy, preview in offered:
            services += _service(
                code.rsplit("/", 1)[1], sql, policy=policy, preview=preview, offer=offer
            )
            services += document
    with running_registry() as registry:
        layout = federation.create(
            base, ports, gateway_extra=GATEWAY_EXTRA + edm, extra_services=services
        )
        business.create(companies)
        company = about_company.company
        assert company is not None  # the sample is about a legal person
        with sqlite3.connect(companies) as db:  # the official sample's company, registered here
            db.execute(
                "INSERT INTO companies VALUES (?, ?, 'private-limited-company', 'active',"
                " '2023-02-09', 'Prince Street', '15', '11121', 'Stockholm', NULL)",
                (company.national_id, company.legal_name),
            )
            db.execute(
                "INSERT INTO board_members VALUES (?, NULL, 'John', 'Doe', 'chair')",
                (company.national_id,),
            )
        person = asked.natural_person
        with sqlite3.connect(register) as db:  # the official sample's person, born here
            db.execute(
                "INSERT INTO births (person_code, given_name, family_name, born_on,"
                " birth_municipality, sex, registration_number, registered_on)"
                " VALUES (?, ?, ?, ?, 'Tallinn', 'M', 'B-1970-000301', '1970-03-03')",
                (
                    person.person_code,
                    person.given_name,
                    person.family_name,
                    str(person.date_of_birth),
                ),
            )
        access = AccessRights(
            build_engine(GatewaySettings.load(layout.provider).db_url), cache_ttl=0, clock=utcnow
        )
        for service in (LEGAL, HELD, BROKEN, COMPANY):
            access.grant(
                service=service, subject=PORTAL_CLIENT, legal_basis=LEGAL_BASIS, actor="test"
            )
        access.grant(service=CONSENTED, subject=PORTAL_CLIENT, actor="test")
        if scans is not None:
            access.grant(service=PDF_PREVIEWED, subject=PORTAL_CLIENT, actor="test")
            access.grant(service=PDF, subject=PORTAL_CLIENT, legal_basis=LEGAL_BASIS, actor="test")
        made = Roles(layout, ports, registry, LiveClock())
        try:
            yield made
        finally:
            made.roles.close()


@pytest.fixture(scope="module")
def scans() -> Iterator[DocumentServer]:
    with running_backend() as running:
        yield running


@pytest.fixture(scope="module")
def roles(tmp_path_factory: pytest.TempPathFactory, scans: DocumentServer) -> Iterator[Roles]:
    with edm_federation(tmp_path_factory.mktemp("edm"), scans) as made:
        yield made


def post(roles: Roles, service: str, body: bytes, **headers: str) -> httpx.Response:
    return roles.call(
        f"/r1/{service}",
        method="POST",
        content=body,
        headers={
            "Content-Type": EDM_TYPE,
            "X-Road-Id": str(uuid.uuid4()),
            "X-Exchange-Purpose": "oots:R1",  # may repeat the procedure, never contradict it
            **headers,
        },
    )


def edited(document: bytes, change: object) -> bytes:
    root = etree.fromstring(document)
    change(root)  # type: ignore[operator]
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def exception_of(answer: httpx.Response, *, also: frozenset[str] = frozenset()) -> etree._Element:
    assert answer.headers["content-type"] == EDM_TYPE, answer.text
    root = etree.fromstring(answer.content)
    EdmSchemas.load(material()).validate(root, what="the answer")
    # R-EDM-ERR-C015 forbids severity Error with AuthorizationExceptionType, against the error
    # code list (EDM:ERR:0002, Missing Authorization) and its own message: see docs/oots.md.
    failed = {f.rule for f in rules("ERR").failures(answer.content)}
    assert failed <= {"R-EDM-ERR-C015", *also}, answer.text
    assert root.get("status") == "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"
    provider = root.find("rim:Slot[@name='ErrorProvider']//sdg:Name", NS)
    assert provider is not None
    assert "EE/GOV/70000310/gw1" in (provider.text or "")  # names the gateway that refused
    found = root.find("rs:Exception", NS)
    assert found is not None
    return found


def as_mari(root: etree._Element) -> None:
    person = root.find(".//sdg:Person", NS)
    assert person is not None
    for name, value in (
        ("Identifier", "EE/DK/38001085718"),
        ("FamilyName", "Tamm"),
        ("GivenName", "Mari"),
        ("DateOfBirth", "1980-01-08"),
    ):
        element = person.find(f"sdg:{name}", NS)
        assert element is not None
        element.text = value


def set_slot(root: etree._Element, name: str, value: str) -> None:
    slot = root.find(f"rim:Slot[@name='{name}']//rim:Value", NS)
    assert slot is not None
    slot.text = value


def test_the_official_birth_request_is_answered_with_edm_evidence(roles: Roles) -> None:
    for path in request_samples():
        if "Birth" not in path.name:
            continue
        answer = post(roles, LEGAL, path.read_bytes())
        assert answer.status_code == 200, answer.text
        parts = split_related(answer.headers["content-type"], answer.content)
        assert len(parts) == 2
        (kind, document), (evidence_kind, evidence) = parts.values()
        assert kind == EDM_TYPE
        root = etree.fromstring(document)
        EdmSchemas.load(material()).validate(root, what="the response")
        assert rules("RESP").failures(document) == []
        asked = etree.fromstring(path.read_bytes())
        assert root.get("requestId") == asked.get("id")
        reference = root.find(".//rim:RepositoryItemRef", NS)
        assert reference is not None
        href = reference.get(f"{{{NS['xlink']}}}href") or ""
        assert parts[href.removeprefix("cid:")] == (evidence_kind, evidence)
        assert evidence_kind == "application/xml"
        certificate = etree.fromstring(evidence)
        assert certificate.findtext("{urn:exchange:evidence:birth-certificate:1}familyName") == (
            asked.findtext(".//sdg:FamilyName", namespaces=NS)
        )
        assert root.findtext(".//sdg:IssuingDate", namespaces=NS) == "1970-03-03"


def test_the_official_company_request_is_answered_with_edm_evidence(roles: Roles) -> None:
    # The sample also names an authorised representative: read, and not relied on, since a
    # company's extract is released on the requester's legal basis.
    answer = post(roles, COMPANY, _company_sample(), **{"X-Exchange-Purpose": "oots:X4"})
    assert answer.status_code == 200, answer.text
    parts = split_related(answer.headers["content-type"], answer.content)
    (kind, document), (evidence_kind, evidence) = parts.values()
    assert (kind, evidence_kind) == (EDM_TYPE, "application/xml")
    root = etree.fromstring(document)
    EdmSchemas.load(material()).validate(root, what="the response")
    assert rules("RESP").failures(document) == []
    asked = etree.fromstring(_company_sample())
    assert root.get("requestId") == asked.get("id")
    about = root.find(".//sdg:IsAbout/sdg:LegalPerson", NS)
    assert about is not None
    assert about.findtext("sdg:LegalPersonIdentifier", namespaces=NS) == "SE/DE/12132123Y"
    assert about.findtext("sdg:LegalName", namespaces=NS) == "Sweden ltd"
    assert root.findtext(".//sdg:ValidityPeriod/sdg:EndDate", namespaces=NS) == "2023-05-09"
    extract = etree.fromstring(evidence)
    found = extract.findtext("{urn:exchange:evidence:business-registration:1}registryCode")
    assert found == "12132123Y"


def test_0004_a_company_that_does_not_match_its_legal_name_is_not_found(roles: Roles) -> None:
    def renamed(root: etree._Element) -> None:
        element = root.find(".//sdg:LegalPerson/sdg:LegalName", NS)
        assert element is not None
        element.text = "Sweden Holdings ltd"

    def unknown(root: etree._Element) -> None:
        element = root.find(".//sdg:LegalPerson/sdg:LegalPersonIdentifier", NS)
        assert element is not None
        element.text = "SE/DE/99999999Y"

    purpose = {"X-Exchange-Purpose": "oots:X4"}
    mismatch = exception_of(post(roles, COMPANY, edited(_company_sample(), renamed), **purpose))
    missing = exception_of(post(roles, COMPANY, edited(_company_sample(), unknown), **purpose))
    for found in (mismatch, missing):
        assert found.get("code") == "EDM:ERR:0004"
    assert mismatch.get("message") == missing.get("message")  # no oracle for register codes


def test_0007_a_subject_of_the_other_kind(roles: Roles) -> None:
    company_at_births = exception_of(
        post(roles, LEGAL, _company_sample(), **{"X-Exchange-Purpose": "oots:X4"})
    )
    person_at_companies = exception_of(post(roles, COMPANY, _sample()))
    assert company_at_births.get("detail") == "LegalPerson"
    assert person_at_companies.get("detail") == "NaturalPerson"
    for found in (company_at_births, person_at_companies):
        assert found.get("code") == "EDM:ERR:0007"


def test_the_consumer_gateway_refuses_what_breaks_the_schema_before_signing(roles: Roles) -> None:
    broken = _sample().replace(b"sdg:FamilyName>", b"sdg:Surname>")
    dtd = _sample().replace(b"?>", b'?><!DOCTYPE q SYSTEM "http://127.0.0.1:9/q.dtd">', 1)
    for body, error in ((broken, "Client.InvalidEdm"), (dtd, "Client.InvalidXml")):
        answer = post(roles, LEGAL, body)
        assert answer.status_code == 400
        assert answer.json()["type"] == error
        # Refused by the consumer gateway itself: nothing was signed, nothing was sent.
        assert "x-road-request-hash" not in answer.headers
        assert "x-exchange-response-signature" not in answer.headers


def test_0001_a_forged_signature(roles: Roles) -> None:
    settings = roles.consumer_settings()
    with roles.as_gateway(settings) as client:
        answer = client.post(
            f"https://127.0.0.1:{roles.ports.provider_tls}/r1/{LEGAL}",
            content=_sample(),
            headers={
                "Content-Type": EDM_TYPE,
                "X-Road-Client": PORTAL_CLIENT,
                "X-Road-Id": str(uuid.uuid4()),
                "X-Exchange-Signature": "e30.e30.AAAA",
            },
        )
    # A request whose signature fails is not read, so its answer cannot name the requester.
    found = exception_of(
        answer, also=frozenset({"An OOTS error response must have one EvidenceRequester slot"})
    )
    assert found.get("code") == "EDM:ERR:0001"
    assert found.get(f"{{{NS['xsi']}}}type") == "rs:AuthenticationExceptionType"


def test_0002_no_explicit_request_or_no_consent(roles: Roles) -> None:
    mari = edited(_sample(), as_mari)
    found = exception_of(post(roles, CONSENTED, mari))
    assert found.get("code") == "EDM:ERR:0002"  # no consent artefact
    assert found.get(f"{{{NS['xsi']}}}type") == "rs:AuthorizationExceptionType"
    implicit = edited(mari, lambda root: set_slot(root, "ExplicitRequestGiven", "false"))
    artefact = roles.artefact(MARI, service=CONSENTED, purpose="oots:R1", preview=True)
    found = exception_of(post(roles, CONSENTED, implicit, **{"X-Exchange-Consent": artefact}))
    assert found.get("code") == "EDM:ERR:0002"
    assert "ExplicitRequestGiven" in (found.get("message") or "")


def test_0002_preview_required_then_exactly_the_previewed_evidence(roles: Roles) -> None:
    def previewable(root: etree._Element) -> None:
        as_mari(root)
        set_slot(root, "PossibilityForPreview", "true")

    request = edited(_sample(), previewable)
    artefact = roles.artefact(MARI, service=CONSENTED, purpose="oots:R1", preview=True, max_uses=2)
    consent = {"X-Exchange-Consent": artefact, "X-Road-UserId": MARI}
    first = post(roles, CONSENTED, request, **consent)
    assert first.status_code == 428
    root = etree.fromstring(first.content)
    EdmSchemas.load(material()).validate(root, what="the answer")
    # The test federation's preview pages are plain http; production ones are https (C019).
    assert {f.rule for f in rules("ERR").failures(first.content)} <= {"R-EDM-ERR-C019"}
    found = root.find("rs:Exception", NS)
    assert found is not None
    assert found.get("code") == "EDM:ERR:0002"
    assert found.get("severity", "").endswith("EDMErrorResponse:PreviewRequired")
    location = found.findtext("rim:Slot[@name='PreviewLocation']//rim:Value", namespaces=NS)
    assert location is not None
    assert location.startswith(f"http://127.0.0.1:{roles.ports.preview}/preview/")
    assert found.findtext("rim:Slot[@name='PreviewMethod']//rim:Value", namespaces=NS) == "GET"
    assert found.find("rim:Slot[@name='PreviewDescription']//rim:LocalizedString", NS) is not None

    assert decide(roles, location, MARI, "approved").status_code == 200

    def returning(to: str) -> bytes:
        def change(root: etree._Element) -> None:
            previewable(root)
            slot = etree.Element(f"{{{NS['rim']}}}Slot", name="PreviewLocation")
            value = etree.SubElement(
                slot, f"{{{NS['rim']}}}SlotValue", {f"{{{NS['xsi']}}}type": "rim:StringValueType"}
            )
            etree.SubElement(value, f"{{{NS['rim']}}}Value").text = to
            root.find("rim:Slot[@name='Procedure']", NS).addnext(slot)  # type: ignore[union-attr]

        return edited(_sample(), change)

    elsewhere = post(roles, CONSENTED, returning(location + "x"), **consent)
    assert exception_of(elsewhere).get("code") == "EDM:ERR:0006"
    released = post(roles, CONSENTED, returning(location), **consent)
    assert released.status_code == 200, released.text
    parts = split_related(released.headers["content-type"], released.content)
    (_, document), (_, evidence) = parts.values()
    assert rules("RESP").failures(document) == []
    assert b"<personCode>EE38001085718</personCode>" in evidence
    again = post(roles, CONSENTED, returning(location), **consent)  # released once
    assert exception_of(again).get("code") == "EDM:ERR:0006"


def _returning(request: bytes, location: str) -> bytes:
    """``request`` again, returning to the preview at ``location``."""

    def change(root: etree._Element) -> None:
        slot = etree.Element(f"{{{NS['rim']}}}Slot", name="PreviewLocation")
        value = etree.SubElement(
            slot, f"{{{NS['rim']}}}SlotValue", {f"{{{NS['xsi']}}}type": "rim:StringValueType"}
        )
        etree.SubElement(value, f"{{{NS['rim']}}}Value").text = location
        root.find("rim:Slot[@name='Procedure']", NS).addnext(slot)  # type: ignore[union-attr]

    return edited(request, change)


def distributed_as(media_type: str, *, preview: bool = False) -> bytes:
    """Mari Tamm's birth certificate, previewable or not, as ``media_type`` (a PDF without a
    data model or subset)."""

    def change(root: etree._Element) -> None:
        as_mari(root)
        set_slot(root, "PossibilityForPreview", json.dumps(preview))
        distributed = root.find(".//sdg:DistributedAs", NS)
        assert distributed is not None
        distributed.findall("sdg:Format", NS)[0].text = media_type
        if media_type != "application/xml":
            for name in ("ConformsTo", "Transformation"):
                for element in distributed.findall(f"sdg:{name}", NS):
                    distributed.remove(element)

    return edited(_sample(), change)


def _previewed_pdf(roles: Roles) -> tuple[bytes, str, dict[str, str]]:
    """A PDF request answered PreviewRequired: the request, its preview page, the headers."""
    request = distributed_as("application/pdf", preview=True)
    artefact = roles.artefact(
        MARI, service=PDF_PREVIEWED, purpose="oots:R1", preview=True, max_uses=2
    )
    consent = {"X-Exchange-Consent": artefact, "X-Road-UserId": MARI}
    return request, _preview_of(post(roles, PDF_PREVIEWED, request, **consent)), consent


def _preview_of(answer: httpx.Response) -> str:
    """The preview page of a PreviewRequired ``answer``."""
    assert answer.status_code == 428, answer.text
    found = exception_of(answer, also=frozenset({"R-EDM-ERR-C019"}))  # plain http pages here
    location = found.findtext("rim:Slot[@name='PreviewLocation']//rim:Value", namespaces=NS)
    assert location is not None
    return location


def test_a_pdf_preview_shows_the_record_and_the_documents_size_then_releases_that_pdf(
    roles: Roles, scans: DocumentServer
) -> None:
    scans.mode, scans.size = "ok", SMALL_PDF
    request, location, consent = _previewed_pdf(roles)

    shown = decide(roles, location, MARI, "look")
    assert shown.status_code == 200
    assert "Tamm" in shown.text  # the record the document is made from
    assert "application/pdf" in shown.text
    assert "40 kB" in shown.text  # 40,000 bytes
    assert scans.digest() in shown.text  # the one document that may be sent
    assert decide(roles, location, MARI, "approved").status_code == 200

    xml = _returning(distributed_as("application/xml", preview=True), location)
    xml_answer = post(roles, PDF_PREVIEWED, xml, **consent)
    assert exception_of(xml_answer).get("code") == "EDM:ERR:0006"  # another distribution
    released = post(roles, PDF_PREVIEWED, _returning(request, location), **consent)
    assert released.status_code == 200, released.text
    (_, document), (evidence_kind, evidence) = split_related(
        released.headers["content-type"], released.content
    ).values()
    assert rules("RESP").failures(document) == []
    assert evidence_kind == "application/pdf"
    assert evidence == b"".join(scans.blocks())


def test_0008_a_pdf_that_changed_since_its_preview_is_not_released_and_the_approval_stands(
    roles: Roles, scans: DocumentServer
) -> None:
    scans.mode, scans.size = "ok", SMALL_PDF
    request, location, consent = _previewed_pdf(roles)  # under a consent of two uses
    assert decide(roles, location, MARI, "approved").status_code == 200
    back = _returning(request, location)
    scans.size = SMALL_PDF + 1  # the registry's document is no longer the one approved
    changed = exception_of(post(roles, PDF_PREVIEWED, back, **consent))
    assert changed.get("code") == "EDM:ERR:0008"
    assert "previewed" in (changed.get("message") or "")
    scans.size, scans.mode = SMALL_PDF, "down"  # the document store in an outage
    assert exception_of(post(roles, PDF_PREVIEWED, back, **consent)).get("code") == "EDM:ERR:0008"
    scans.mode = "gone"  # the document withdrawn
    assert exception_of(post(roles, PDF_PREVIEWED, back, **consent)).get("code") == "EDM:ERR:0004"

    # Nothing was sent, so nothing was spent: once the approved document is back, the same
    # approval releases it.
    scans.mode = "ok"
    released = post(roles, PDF_PREVIEWED, back, **consent)
    assert released.status_code == 200, released.text
    (_, evidence) = list(
        split_related(released.headers["content-type"], released.content).values()
    )[1]
    assert evidence == b"".join(scans.blocks())
    # ... and the consent's second use is left for a second document, its last.
    again = _preview_of(post(roles, PDF_PREVIEWED, request, **consent))
    assert again != location
    assert decide(roles, again, MARI, "approved").status_code == 200
    second = post(roles, PDF_PREVIEWED, _returning(request, again), **consent)
    assert second.status_code == 200, second.text
    used_up = post(roles, PDF_PREVIEWED, request, **consent)
    assert used_up.status_code == 403, used_up.text
    refused = exception_of(used_up)
    assert refused.get("code") == "EDM:ERR:0002"
    assert refused.get("message") == "consent is exhausted"  # two uses, two documents


def test_0003_a_request_that_is_valid_but_means_nothing_here(roles: Roles) -> None:
    # Valid EDM that the business rules let through, contradicted by the X-Road purpose.
    found = exception_of(post(roles, LEGAL, _sample(), **{"X-Exchange-Purpose": "oots:T1"}))
    assert found.get("code") == "EDM:ERR:0003"
    assert found.get(f"{{{NS['xsi']}}}type") == "rs:InvalidRequestExceptionType"

    # A company's representative is not relied on, but must still be a person one can name:
    # the consumer gateway's business rules refuse it first (the provider's own check of it is
    # tests/evidence/test_edm.py::test_a_representative_must_be_named_by_an_eidas_identifier).
    def not_eidas(root: etree._Element) -> None:
        element = root.find(".//sdg:Person/sdg:Identifier", NS)
        assert element is not None
        element.text = "123123123"

    unnamed = edited(_company_sample(), not_eidas)
    refused = post(roles, COMPANY, unnamed, **{"X-Exchange-Purpose": "oots:X4"})
    assert refused.status_code == 400, refused.text
    assert refused.json()["type"] == "Client.InvalidEdm"
    assert refused.json()["detail"].startswith("R-EDM-REQ-")


def test_0004_a_person_who_does_not_match_the_data_set_is_not_found(roles: Roles) -> None:
    def renamed(root: etree._Element) -> None:
        element = root.find(".//sdg:Person/sdg:GivenName", NS)
        assert element is not None
        element.text = "Jonathan"

    def unknown(root: etree._Element) -> None:
        element = root.find(".//sdg:Person/sdg:Identifier", NS)
        assert element is not None
        element.text = "DK/DE/999999999"

    mismatch = exception_of(post(roles, LEGAL, edited(_sample(), renamed)))
    missing = exception_of(post(roles, LEGAL, edited(_sample(), unknown)))
    for found in (mismatch, missing):
        assert found.get("code") == "EDM:ERR:0004"
        assert found.get(f"{{{NS['xsi']}}}type") == "rs:ObjectNotFoundExceptionType"
    assert mismatch.get("message") == missing.get("message")  # no oracle for identifiers


def test_0005_a_registry_slower_than_the_gateway_waits(roles: Roles) -> None:
    try:
        found = exception_of(post(roles, HELD, _sample()))
    finally:
        edm_registry.RELEASE.set()
    assert found.get("code") == "EDM:ERR:0005"
    assert found.get(f"{{{NS['xsi']}}}type") == "rs:TimeoutExceptionType"


def test_0006_an_evidence_type_the_service_does_not_offer(roles: Roles) -> None:
    def other(root: etree._Element) -> None:
        element = root.find(".//sdg:EvidenceTypeClassification", NS)
        assert element is not None
        element.text = (
            "https://sr.oots.tech.europa.eu/evidencetypeclassifications/EE/"
            "0b6f2a8e-6f1c-4c55-9d1e-3c1f5a0e9b21"
        )

    found = exception_of(post(roles, LEGAL, edited(_sample(), other)))
    assert found.get("code") == "EDM:ERR:0006"
    assert found.get(f"{{{NS['xsi']}}}type") == "rs:UnresolvedReferenceExceptionType"


def test_0007_a_distribution_or_subject_not_offered(roles: Roles) -> None:
    def pdf(root: etree._Element) -> None:
        element = root.find(".//sdg:DistributedAs/sdg:Format", NS)
        assert element is not None
        element.text = "application/pdf"

    def company(root: etree._Element) -> None:
        # The official commercial register request's company in place of the person.
        slot = root.find(".//query:Query/rim:Slot[@name='NaturalPerson']", NS)
        assert slot is not None
        (tax,) = [path for path in request_samples() if "Tax" in path.name]
        legal = etree.fromstring(tax.read_bytes()).find(
            ".//query:Query/rim:Slot[@name='LegalPerson']", NS
        )
        assert legal is not None
        slot.getparent().replace(slot, legal)  # type: ignore[union-attr]

    for change in (pdf, company):
        found = exception_of(post(roles, LEGAL, edited(_sample(), change)))
        assert found.get("code") == "EDM:ERR:0007"
        assert found.get(f"{{{NS['xsi']}}}type") == "rs:UnsupportedCapabilityExceptionType"


def test_0008_a_registry_answer_that_breaks_the_evidence_schema(roles: Roles) -> None:
    found = exception_of(post(roles, BROKEN, edited(_sample(), as_mari)))
    assert found.get("code") == "EDM:ERR:0008"
    assert found.get(f"{{{NS['xsi']}}}type") == "query:QueryExceptionType"


def test_the_profile_refuses_to_start_without_its_folder(roles: Roles, tmp_path: Path) -> None:
    settings = roles.provider_settings()
    assert settings.edm is not None
    moved = settings.model_copy(
        update={"edm": settings.edm.model_copy(update={"folder": tmp_path / "oots-edm"})}
    )
    with pytest.raises(EdmProfileError, match=r"oots-edm does not exist: install the OOTS EDM"):
        Gateway(moved, migrates=False)
    declared = settings.model_dump()
    (company,) = (s for s in declared["services"] if s["code"] == "company-extract-oots")
    company["consent_policy"] = "consent"  # consent is a natural person's to give
    with pytest.raises(ValueError, match=r"about legal persons needs .* \"legal-basis\""):
        GatewaySettings.model_validate(declared)
    company["consent_policy"] = "legal-basis"
    declared["edm"] = None
    with pytest.raises(ValueError, match=r"\[services\.edm\] needs \[edm\] folder and provider"):
        GatewaySettings.model_validate(declared)
