"""The central authority's Data Service Directory, driven as the official DSD samples show it.

The material holds the DSD's responses, not its requests: each official response names the
evidence type asked for and the providers found. Here every provider of every official response
is published to a real authority's catalogue as a gateway publishes its EDM services (through
the management API, in the form ``exchange gateway publish`` sends), then the authority is asked
with the query parameters of the DSD's REST binding (``queryId``, ``evidence-type-classification``,
``country-code``, ``jurisdiction-admin-l2``/``-l3``) over HTTP. Its answers must validate against
the EDM schemas and list exactly the providers the official responses list; its refusals must be
the official error responses' codes, types and details. (The material has no Schematron rules
for DSD documents.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from lxml import etree

from exchange.central import files
from exchange.central.app import create_app
from exchange.central.registry import Registry
from exchange.central.service import build
from exchange.central.settings import CentralSettings
from exchange.db import migrate
from exchange.db.engine import build_engine
from exchange.evidence.edm import NS
from exchange.evidence.edm.directory import QUERY_ID
from exchange.evidence.edm.schemaset import EdmProfileError, EdmSchemas
from exchange.gateway.services import catalogue_entry
from exchange.gateway.settings import EdmParty, ServiceSpec
from exchange.identifiers import MemberId, ServiceId, SubsystemId
from exchange.trust.globalconf_client import utcnow
from tests.conftest import _postgres_database
from tests.inprocess import LoopThread, listen
from tests.oots import material
from tests.servers import free_port

EDM_TYPE = "application/x-ebrs+xml"
REGISTRY = "tests.gateway.edm_registry:held"  # never asked: the directory only lists services


def _samples(pattern: str) -> list[Path]:
    return sorted((material() / "samples" / "DSD").glob(pattern))


@dataclass(frozen=True)
class Offered:
    classification: str
    title: str  # in English
    publishers: frozenset[str]  # their identifiers
    first: list[tuple[str, str]]  # the first publisher's jurisdiction: (level, code)


def _offers() -> dict[str, Offered]:
    """What the official responses list, by evidence type classification."""
    found: dict[str, Offered] = {}
    for path in _samples("4.3*.xml"):
        for kind in etree.parse(str(path)).iterfind(".//sdg:DataServiceEvidenceType", NS):
            classification = kind.findtext("sdg:EvidenceTypeClassification", namespaces=NS)
            assert classification is not None
            publishers = kind.findall("sdg:AccessService/sdg:Publisher", NS)
            jurisdiction = publishers[0].find("sdg:Jurisdiction", NS)
            assert jurisdiction is not None
            found[classification] = Offered(
                classification,
                kind.findtext("sdg:Title[@lang='EN']", namespaces=NS) or "",
                frozenset(p.findtext("sdg:Identifier", namespaces=NS) or "" for p in publishers),
                [(child.tag.split("}")[1], child.text or "") for child in jurisdiction],
            )
    return found


def _type(title: str) -> str:
    """The classification of the official responses' evidence type of that English title."""
    (classification,) = (o.classification for o in _offers().values() if title in o.title)
    return classification


def _catalogue() -> list[tuple[SubsystemId, dict[str, object]]]:
    """Every provider of the official responses as a member of this federation publishing one
    EDM service for that evidence type, each entry as the gateway's catalogue makes it."""
    entries: dict[tuple[str, str], tuple[SubsystemId, dict[str, object]]] = {}
    for path in _samples("4.3*.xml"):
        for kind in etree.parse(str(path)).iterfind(".//sdg:DataServiceEvidenceType", NS):
            classification = kind.findtext("sdg:EvidenceTypeClassification", namespaces=NS) or ""
            xml = [
                d
                for d in kind.findall("sdg:DistributedAs", NS)
                if d.findtext("sdg:Format", namespaces=NS) == "application/xml"
            ]
            formats = {
                d.findtext("sdg:Format", namespaces=NS)
                for d in kind.iterfind("sdg:DistributedAs", NS)
            }
            pdf = "application/pdf" in formats
            titles = {t.get("lang") or "EN": t.text or "" for t in kind.findall("sdg:Title", NS)}
            for publisher in kind.findall("sdg:AccessService/sdg:Publisher", NS):
                identifier = publisher.find("sdg:Identifier", NS)
                assert identifier is not None
                assert identifier.text
                key = (classification, identifier.text)
                if key in entries:  # two samples list the same provider for the same type
                    continue
                levels = {
                    child.tag.split("}")[1]: child.text
                    for child in publisher.find("sdg:Jurisdiction", NS)  # type: ignore[union-attr]
                }
                party = EdmParty(
                    id=identifier.text,
                    scheme=identifier.get("schemeID") or "",
                    name=publisher.findtext("sdg:Name", namespaces=NS) or "",
                    country=levels["AdminUnitLevel1"],
                    region=levels.get("AdminUnitLevel2"),
                    locality=levels.get("AdminUnitLevel3"),
                    address=publisher.findtext("sdg:Address/sdg:FullAddress", namespaces=NS),
                )
                subsystem = SubsystemId(MemberId("EE", "GOV", f"7{len(entries):07d}"), "register")
                spec = ServiceSpec.model_validate(
                    {
                        "subsystem": "register",
                        "code": "evidence-oots",
                        "evidence_type": "birth-certificate",
                        "consent_policy": "legal-basis",
                        "methods": ["POST"],
                        "parameters": ["person"],
                        "connector": {
                            "type": "python",
                            "target": "tests.gateway.edm_registry:held",
                        },
                        "edm": {
                            "evidence_type_classification": classification,
                            "titles": titles,
                            "conforms_to": xml[0].findtext("sdg:ConformsTo", namespaces=NS),
                            "transformations": [
                                d.findtext("sdg:Transformation", namespaces=NS)
                                for d in xml
                                if d.find("sdg:Transformation", NS) is not None
                            ],
                            **({"document": {"url": "http://registry/{person}"}} if pdf else {}),
                        },
                    }
                )
                service = ServiceId(subsystem, spec.code)
                entries[key] = (subsystem, catalogue_entry(service, spec, party))
    return list(entries.values())


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def directory(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real authority with the EDM material, its catalogue published, on a loopback port;
    on SQLite and on PostgreSQL, as deployments run it."""
    with contextlib.ExitStack() as stack:
        folder = tmp_path_factory.mktemp("dsd")
        if request.param == "sqlite":
            url = f"sqlite:///{folder / 'central.db'}"
        else:
            url = stack.enter_context(contextlib.contextmanager(_postgres_database)())
        yield from _serving(folder, url)


def _serving(folder: Path, database_url: str) -> Iterator[str]:
    settings = CentralSettings(
        data_dir=folder / "central",
        database_url=database_url,
        port=free_port(),
        edm_folder=material(),
    )
    files.initialise(settings, instance="EE", at=utcnow())
    engine = build_engine(settings.db_url)
    migrate.upgrade("central", engine)
    registry = Registry(engine=engine, instance="EE", clock=utcnow)
    registry.seed_member_classes(actor="test")
    catalogue = _catalogue()
    for subsystem, _ in catalogue:
        registry.register_member(subsystem.member, "A provider", actor="test")
        registry.register_subsystem(subsystem, actor="test")
    engine.dispose()
    loop = LoopThread("central")
    listener = loop.run(listen(create_app(settings), settings.port))
    token = (settings.data_dir / "admin-token").read_text().strip()
    try:
        with httpx.Client(base_url=settings.url, timeout=10) as client:
            for subsystem, entry in catalogue:
                published = client.put(
                    "/api/v1/services",
                    json={"subsystem": str(subsystem), "services": [entry]},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert published.status_code == 200, published.text
        yield settings.url
    finally:
        loop.run(listener.stop())
        loop.stop()


def search(url: str, **parameters: str) -> httpx.Response:
    query = {"queryId": QUERY_ID, **{k.replace("_", "-"): v for k, v in parameters.items()}}
    return httpx.get(f"{url}/dsd/rest/search", params=query, timeout=10)


def _publishers(answer: httpx.Response) -> set[str]:
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == EDM_TYPE
    root = etree.fromstring(answer.content)
    EdmSchemas.load(material()).validate(root, what="the directory's answer")
    assert root.get("status") == "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
    return {
        element.text or ""
        for element in root.iterfind(".//sdg:AccessService/sdg:Publisher/sdg:Identifier", NS)
    }


def _exception(answer: httpx.Response, status: int) -> etree._Element:
    assert answer.status_code == status, answer.text
    root = etree.fromstring(answer.content)
    EdmSchemas.load(material()).validate(root, what="the directory's refusal")
    assert root.get("status") == "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"
    found = root.find("rs:Exception", NS)
    assert found is not None
    return found


def _official(name: str) -> etree._Element:
    (path,) = _samples(f"4.4.1 Query Error Response of the DSD - {name}.xml")
    found = etree.parse(str(path)).getroot().find("rs:Exception", NS)
    assert found is not None
    return found


def _same_refusal(ours: etree._Element, official: etree._Element, *, detail: bool) -> None:
    names = ["code", f"{{{NS['xsi']}}}type", "severity", *(["detail"] if detail else [])]
    assert [ours.get(n) for n in names] == [official.get(n) for n in names]


def test_every_official_answer_is_given_for_its_evidence_type_and_country(directory: str) -> None:
    offers = _offers()
    assert len(offers) == 3  # two official responses list the same evidence type
    for offered in offers.values():
        found = _publishers(
            search(
                directory, evidence_type_classification=offered.classification, country_code="DE"
            )
        )
        assert found == offered.publishers


def test_a_jurisdiction_below_the_country_narrows_the_providers(directory: str) -> None:
    narrowed = 0
    for offered in _offers().values():
        narrower = {
            f"jurisdiction_admin_l{level[-1]}": code
            for level, code in offered.first
            if level != "AdminUnitLevel1"
        }
        if not narrower:  # the health insurers answer for the whole country
            continue
        answer = search(
            directory,
            evidence_type_classification=offered.classification,
            country_code="DE",
            **narrower,
        )
        assert len(_publishers(answer)) == 1
        jurisdiction = etree.fromstring(answer.content).find(".//sdg:Jurisdiction", NS)
        assert jurisdiction is not None
        found = [(child.tag.split("}")[1], child.text or "") for child in jurisdiction]
        assert found == offered.first
        narrowed += 1
    assert narrowed == 2


def test_the_official_refusals(directory: str) -> None:
    birth, education = _type("Certificate of Birth"), _type("Secondary Education")
    # No country: the parameters do not follow the query specification (DSD:ERR:0003).
    no_country = _exception(search(directory, evidence_type_classification=birth), 400)
    _same_refusal(no_country, _official("Birth Certificate"), detail=True)
    assert no_country.get("message") == _official("Birth Certificate").get("message")
    # An evidence type no provider here offers (DSD:ERR:0002), named in the detail.
    unknown = "https://sr.oots.tech.europa.eu/evidencetypeclassifications/DE/unknown"
    official = _official("Secondary Education")
    refused = _exception(
        search(directory, evidence_type_classification=unknown, country_code="DE"), 404
    )
    _same_refusal(refused, official, detail=False)
    assert refused.get("detail") == unknown
    assert refused.get("message") == official.get("message")
    # A known evidence type, but no provider in that country (DSD:ERR:0001).
    elsewhere = _exception(
        search(directory, evidence_type_classification=education, country_code="EE"), 404
    )
    _same_refusal(elsewhere, _official("Social Security Contributions"), detail=False)
    # A query the directory does not answer (DSD:ERR:0004), and a malformed country.
    other = search(
        directory, evidence_type_classification=birth, country_code="DE", queryId="urn:other"
    )
    assert _exception(other, 400).get("code") == "DSD:ERR:0004"
    lower = _exception(
        search(directory, evidence_type_classification=birth, country_code="de"), 400
    )
    assert (lower.get("code"), lower.get("detail")) == ("DSD:ERR:0003", "country-code")
    repeated = httpx.get(
        f"{directory}/dsd/rest/search",
        params=[("queryId", QUERY_ID), ("country-code", "DE"), ("country-code", "SE")],
        timeout=10,
    )
    assert _exception(repeated, 400).get("detail") == "country-code"


def test_a_service_found_names_where_this_federation_reaches_it(directory: str) -> None:
    birth = _type("Certificate of Birth")
    answer = search(
        directory,
        evidence_type_classification=birth,
        country_code="DE",
        jurisdiction_admin_l3="11000000",
    )
    root = etree.fromstring(answer.content)
    service = root.findtext(".//rim:Slot[@name='ServiceIdentifier']//rim:Value", namespaces=NS)
    assert service is not None
    assert service.startswith("EE/GOV/")
    assert service.endswith("/register/evidence-oots")
    kind = root.find(".//sdg:DataServiceEvidenceType", NS)
    assert kind is not None
    formats = [
        d.findtext("sdg:Format", namespaces=NS) for d in kind.findall("sdg:DistributedAs", NS)
    ]
    # The full evidence, its subset, and the PDF its official response lists.
    assert formats == ["application/xml", "application/xml", "application/pdf"]


def test_the_directory_needs_the_material_to_start(tmp_path: Path) -> None:
    settings = CentralSettings(
        data_dir=tmp_path / "central", port=free_port(), edm_folder=tmp_path / "oots-edm"
    )
    files.initialise(settings, instance="EE", at=utcnow())
    with pytest.raises(EdmProfileError, match=r"oots-edm does not exist: install the OOTS EDM"):
        build(settings)
