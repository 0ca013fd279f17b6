"""OOTS EDM evidence distributed as a document (issue 17): the official birth certificate
request asking for ``DistributedAs/Format application/pdf`` is answered with a ``QueryResponse``
whose ``cid:`` part is the registry's PDF, streamed through both gateways (real processes on
loopback with mutual TLS) and bound by its SHA-256 as every large document is
(tests/gateway/test_large_evidence.py); a 100 MB one without either gateway holding it. A service
that offers only the PDF refuses the XML distribution with the EDM error for a capability not
offered, and a PDF other than the registry promised reaches nobody complete.

The provider's EDM services read the person's record from the sample population register (the
minimum data set is checked on it) and open the document at the tests' backend
(:class:`~tests.gateway.document_server.DocumentServer`).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lxml import etree

from exchange import jws
from exchange.evidence.edm import NS
from exchange.evidence.edm.answers import split_related
from exchange.evidence.edm.response import EvidenceDelivered, read_answer
from exchange.evidence.edm.schemaset import EdmSchemas
from exchange.gateway.settings import GatewaySettings
from exchange.sample import federation, population
from tests.gateway.document_server import (
    CLIENT,
    MB,
    DocumentFederation,
    document_federation,
    peak_rss,
    reset_peak,
    rss,
)
from tests.gateway.test_edm import EDM_TYPE, SAMPLE, as_mari, edited, exception_of
from tests.gateway.test_large_evidence import GROWTH, LARGE, records
from tests.oots import BIRTH_REQUEST, material, rules

pytestmark = pytest.mark.timeout(300)
PDF = f"{federation.POPULATION_REGISTRY}/birth-certificate-pdf"
PDF_ONLY = f"{federation.POPULATION_REGISTRY}/birth-certificate-pdf-only"


def _offered(code: str, scans: str, register: str, *, xml: bool) -> str:
    """A birth certificate in EDM: the person's record from the population register, and its
    PDF from ``scans``; ``xml = false`` offers the PDF only."""
    asked = etree.fromstring(_sample())
    classification = asked.findtext(".//sdg:EvidenceTypeClassification", namespaces=NS)
    fields = "".join(
        f"{json.dumps(k)} = {json.dumps(v)}\n" for k, v in population.BIRTH_FIELDS.items()
    )
    return (
        "\n[[services]]\n"
        f'subsystem = "population-registry"\ncode = "{code}"\nevidence_type = "birth-certificate"\n'
        'consent_policy = "legal-basis"\nmethods = ["POST"]\nparameters = ["person"]\n'
        '[services.connector]\ntype = "sql"\n'
        f"url = {json.dumps(f'sqlite:///{register}')}\n"
        f"query = {json.dumps(population.BIRTH_QUERY)}\n"
        f"[services.connector.fields]\n{fields}"
        "[services.edm]\n"
        f"evidence_type_classification = {json.dumps(classification)}\n"
        f'issued_field = "registeredOn"\nxml = {json.dumps(xml)}\n'
        '[services.edm.titles]\nEN = "Certificate of Birth"\n'
        "[services.edm.document]\n"
        f'url = "{scans}/scans/{{person}}"\nmedia_type = "application/pdf"\ntimeout = 10.0\n'
    )


def _sample() -> bytes:
    return (material() / BIRTH_REQUEST / SAMPLE).read_bytes()


def _asking(media_type: str) -> bytes:
    """The official birth certificate request, for the test register's Mari Tamm, asking for
    ``media_type`` without a subset (the services declare none); a PDF has no data model, so
    ``ConformsTo`` is left out for it."""

    def change(root: etree._Element) -> None:
        as_mari(root)
        distributed = root.find(".//sdg:DistributedAs", NS)
        assert distributed is not None
        distributed.findall("sdg:Format", NS)[0].text = media_type
        left_out = ("Transformation",) if media_type == "application/xml" else ("ConformsTo",)
        for name in ("Transformation", *left_out):
            for element in distributed.findall(f"sdg:{name}", NS):
                distributed.remove(element)

    return edited(_sample(), change)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocumentFederation]:
    base = tmp_path_factory.mktemp("edm-pdf")
    register = base / "registries" / "population.db"  # laid out by the sample federation
    # The test federation's preview pages are plain http (R-EDM-REQ-C005), as in test_edm.py.
    edm = (
        f"\n[edm]\nfolder = {json.dumps(str(material()))}\n"
        'waived_rules = ["R-EDM-REQ-C005"]\n'
        '[edm.provider]\nid = "70000310"\nscheme = "urn:cef.eu:names:identifier:EAS:0191"\n'
        'name = "Population Register"\n'
    )

    def services(scans: str) -> str:
        return _offered("birth-certificate-pdf", scans, str(register), xml=True) + _offered(
            "birth-certificate-pdf-only", scans, str(register), xml=False
        )

    with document_federation(
        base,
        gateway_extra=edm,
        services=services,
        on_legal_basis=("birth-certificate-pdf", "birth-certificate-pdf-only"),
    ) as made:
        yield made


def ask(
    running: DocumentFederation, service: str, body: bytes, message_id: str
) -> tuple[httpx.Response, bytes | None, str, int]:
    """Post ``body`` to ``service`` and read the answer in chunks: the answer, its body (kept
    only when under 16 MB), and the SHA-256 and length of the part ``X-Exchange-Parts`` names."""
    headers = {
        "X-Road-Client": CLIENT,
        "X-Road-Id": message_id,
        "Content-Type": EDM_TYPE,
        "X-Exchange-Purpose": "oots:R1",
    }
    kept: list[bytes] | None = []
    hashed, position, taken = hashlib.sha256(), 0, 0
    with (
        httpx.Client(timeout=60) as client,
        client.stream(
            "POST", f"{running.consumer_url}/r1/{service}", headers=headers, content=body
        ) as answer,
    ):
        declared = answer.headers.get("x-exchange-parts", "0:0:")
        offset, length = (int(n) for n in declared.split(":")[:2])
        for chunk in answer.iter_raw(65536):
            low, high = max(position, offset), min(position + len(chunk), offset + length)
            if low < high:
                hashed.update(chunk[low - position : high - position])
                taken += high - low
            position += len(chunk)
            if kept is not None:
                kept.append(chunk)
                if position > 16 * MB:
                    kept = None
    whole = None if kept is None else b"".join(kept)
    return answer, whole, jws.b64url(hashed.digest()), taken


def test_a_pdf_asked_in_edm_is_the_cid_part_of_a_valid_query_response(
    running: DocumentFederation,
) -> None:
    running.backend.mode, running.backend.size = "ok", 3 * MB
    message_id, request = str(uuid.uuid4()), _asking("application/pdf")
    answer, body, digest, length = ask(running, PDF, request, message_id)

    assert answer.status_code == 200, body
    assert body is not None
    assert (length, digest) == (3 * MB, running.backend.digest())  # bound, and as the source
    parts = split_related(answer.headers["content-type"], body)
    (kind, document), (evidence_kind, evidence) = parts.values()
    assert (kind, evidence_kind) == (EDM_TYPE, "application/pdf")
    assert evidence == b"".join(running.backend.blocks())
    root = etree.fromstring(document)
    EdmSchemas.load(material()).validate(root, what="the response")
    assert rules("RESP").failures(document) == []
    assert root.get("requestId") == etree.fromstring(request).get("id")
    metadata = root.find(".//sdg:Evidence", NS)
    assert metadata is not None
    assert metadata.findtext("sdg:Distribution/sdg:Format", namespaces=NS) == "application/pdf"
    assert metadata.findtext("sdg:IsAbout/sdg:NaturalPerson/sdg:FamilyName", namespaces=NS) == (
        "Tamm"
    )
    assert metadata.findtext("sdg:IssuingAuthority/sdg:Name", namespaces=NS) == (
        "Population Register"
    )
    reference = root.find(".//rim:RepositoryItemRef", NS)
    assert reference is not None
    cid = (reference.get(f"{{{NS['xlink']}}}href") or "").removeprefix("cid:")
    assert parts[cid] == (evidence_kind, evidence)

    # The consumer side reads it as any EDM evidence; both gateways audit the bound part.
    understood = read_answer(EdmSchemas.load(material()), answer.headers["content-type"], body)
    assert isinstance(understood, EvidenceDelivered)
    (delivered,) = understood.evidence
    assert (delivered.metadata.format, delivered.document) == ("application/pdf", evidence)
    offset = body.index(b"%PDF-1.7")
    bound = f"{offset}:{3 * MB}:{digest}"
    assert answer.headers["x-exchange-parts"] == bound
    for gateway in ("consumer", "provider"):
        (record,) = records(running, gateway, message_id)
        assert (record["status"], record["fault"], record["parts"]) == (200, None, bound)
    assert records(running, "consumer", message_id)[0]["edm_outcome"] == "evidence"


def test_the_xml_record_is_still_answered_where_the_service_offers_both(
    running: DocumentFederation,
) -> None:
    calls = running.backend.calls
    answer, body, _, _ = ask(running, PDF, _asking("application/xml"), str(uuid.uuid4()))
    assert answer.status_code == 200, body
    assert body is not None
    _, (evidence_kind, _) = split_related(answer.headers["content-type"], body).values()
    assert evidence_kind == "application/xml"
    assert "x-exchange-parts" not in answer.headers
    assert running.backend.calls == calls  # the document was not opened


def test_0007_xml_asked_of_a_service_that_offers_only_the_pdf(
    running: DocumentFederation,
) -> None:
    calls = running.backend.calls
    answer, body, _, _ = ask(running, PDF_ONLY, _asking("application/xml"), str(uuid.uuid4()))
    assert body is not None
    found = exception_of(httpx.Response(answer.status_code, headers=answer.headers, content=body))
    assert found.get("code") == "EDM:ERR:0007"
    assert found.get(f"{{{NS['xsi']}}}type") == "rs:UnsupportedCapabilityExceptionType"
    assert found.get("detail") == "Format"
    assert "application/pdf" in (found.get("message") or "")
    assert running.backend.calls == calls


def test_a_pdf_other_than_the_registry_promised_reaches_nobody_complete(
    running: DocumentFederation,
) -> None:
    running.backend.mode, running.backend.size = "forged", 4 * MB
    message_id = str(uuid.uuid4())
    with pytest.raises(httpx.RemoteProtocolError):  # cut short of the length bound
        ask(running, PDF_ONLY, _asking("application/pdf"), message_id)
    provider = records(running, "provider", message_id)
    consumer = records(running, "consumer", message_id)
    assert [(r["status"], r["fault"]) for r in provider] == [
        (200, None),
        (502, "Server.ServerProxy.InvalidEvidence"),
    ]
    assert [(r["status"], r["fault"]) for r in consumer] == [
        (200, None),
        (502, "Server.ClientProxy.InvalidResponse"),
    ]


def test_a_100_mb_pdf_passes_both_gateways_in_edm_without_either_holding_it(
    running: DocumentFederation,
) -> None:
    running.backend.mode, running.backend.size = "ok", MB
    answer, _, _, _ = ask(running, PDF_ONLY, _asking("application/pdf"), str(uuid.uuid4()))
    assert answer.status_code == 200  # every code path loaded once
    gateways = {name: running.processes[name].pid for name in ("consumer", "provider")}
    before = {name: rss(pid) for name, pid in gateways.items()}
    for pid in gateways.values():
        reset_peak(pid)

    running.backend.size = LARGE
    answer, body, digest, length = ask(
        running, PDF_ONLY, _asking("application/pdf"), str(uuid.uuid4())
    )

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("multipart/related")
    assert body is None  # not kept here either
    assert (length, digest) == (LARGE, running.backend.digest())
    growth = {name: peak_rss(pid) - before[name] for name, pid in gateways.items()}
    assert all(grown < GROWTH for grown in growth.values()), growth


@pytest.mark.parametrize(
    ("edm", "why"),
    [
        ({"xml": False}, r"offers xml, a \[services.edm.document\], or both"),
        ({"document": {"url": "http://registry/{person}", "media_type": "text/html"}}, "pdf"),
        # What the authority's catalogue refuses is refused here, not at every publication.
        ({"titles": {f"L{n}": "Birth" for n in range(31)}}, "titles"),
        ({"transformations": [f"https://t/{n}" for n in range(31)]}, "transformations"),
        ({"conforms_to": "https://c/" + "x" * 500}, "conforms_to"),
    ],
)
def test_an_edm_service_offers_a_distribution_of_the_code_list_within_the_catalogues_bounds(
    tmp_path: Path, edm: dict[str, object], why: str
) -> None:
    service = {
        "subsystem": "population-registry",
        "code": "birth-certificate-pdf",
        "evidence_type": "birth-certificate",
        "consent_policy": "legal-basis",
        "methods": ["POST"],
        "parameters": ["person"],
        "connector": {"type": "python", "target": "tests.gateway.edm_registry:held"},
        "edm": {"evidence_type_classification": "https://c", "titles": {"EN": "Birth"}},
    }
    declared = {
        "id": "EE/GOV/70000310/gw1",
        "data_dir": tmp_path,
        "anchor": tmp_path / "anchor.json",
        "subsystems": ["population-registry"],
        "edm": {
            "folder": str(material()),
            "provider": {"id": "1", "scheme": "urn:cef.eu:names:identifier:EAS:0191", "name": "P"},
        },
        "services": [service],
    }
    GatewaySettings.model_validate(declared)  # XML only, as before
    service["edm"] = {**service["edm"], **edm}  # type: ignore[dict-item]
    with pytest.raises(ValueError, match=why):
        GatewaySettings.model_validate(declared)


def test_0004_a_person_whose_record_has_no_document_is_not_found(
    running: DocumentFederation,
) -> None:
    # Jaan Kask is in the population register; the document store holds Mari Tamm's only.
    code, given, family, born, *_ = population.PEOPLE[1]

    def as_jaan(root: etree._Element) -> None:
        person = root.find(".//sdg:Person", NS)
        assert person is not None
        for name, value in (
            ("Identifier", f"EE/DK/{code[2:]}"),
            ("FamilyName", family),
            ("GivenName", given),
            ("DateOfBirth", born),
        ):
            element = person.find(f"sdg:{name}", NS)
            assert element is not None
            element.text = value

    calls = running.backend.calls
    answer, body, _, _ = ask(
        running, PDF_ONLY, edited(_asking("application/pdf"), as_jaan), str(uuid.uuid4())
    )
    assert body is not None
    assert running.backend.calls == calls + 1  # the record was found, then the document asked
    found = exception_of(httpx.Response(answer.status_code, headers=answer.headers, content=body))
    assert found.get("code") == "EDM:ERR:0004"
    assert answer.status_code == 404
