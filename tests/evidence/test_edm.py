"""The EDM schema set and request reader: offline loading, safe parsing, the official samples."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest
from lxml import etree

from exchange.errors import InvalidRequest, InvalidXml
from exchange.evidence.edm import NS
from exchange.evidence.edm.query import Unsupported, read_request
from exchange.evidence.edm.schemaset import EdmProfileError, EdmSchemas, InvalidEdm
from tests.oots import BIRTH_REQUEST, COMPANY_REQUEST, material, request_samples


@pytest.fixture(scope="module")
def schemas() -> EdmSchemas:
    return EdmSchemas.load(material())


def birth_request() -> bytes:
    return (
        material() / BIRTH_REQUEST / "2.1 Step 1  Evidence Request - Birth - full example.xml"
    ).read_bytes()


def test_every_complete_official_sample_satisfies_the_schema_set(schemas: EdmSchemas) -> None:
    samples = [
        path
        for path in material().glob("samples/**/*.xml")
        if etree.parse(str(path)).getroot().tag.startswith("{urn:oasis:names:tc:ebxml-regrep")
    ]
    assert len(samples) >= 20
    for path in samples:
        schemas.parse(path.read_bytes(), what=path.name)


def test_broken_sdg_content_is_refused(schemas: EdmSchemas) -> None:
    # The trap of the SDG schemas' vc:minVersion="1.1": an XSD 1.0 validator that honours it
    # drops the SDG schema and lets this through.
    broken = birth_request().replace(b"sdg:FamilyName>", b"sdg:Surname>")
    with pytest.raises(InvalidEdm) as refused:
        schemas.parse(broken, what="the request")
    assert "Smith" not in refused.value.message  # never quotes the document


def test_dtd_and_entities_are_refused_before_parsing(schemas: EdmSchemas) -> None:
    document = birth_request()
    head, _, rest = document.partition(b"?>")
    for dtd in (
        b'<!DOCTYPE q [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
        b'<!DOCTYPE q SYSTEM "http://example.org/q.dtd">',
    ):
        with pytest.raises(InvalidXml):
            schemas.parse(head + b"?>" + dtd + rest, what="the request")


def test_a_remote_schema_location_in_a_request_is_never_followed(schemas: EdmSchemas) -> None:
    hinted = birth_request().replace(
        b'id="urn:uuid:',
        b'xsi:schemaLocation="urn:oasis:names:tc:ebxml-regrep:xsd:query:4.0 '
        b'http://127.0.0.1:9/query.xsd" id="urn:uuid:',
        1,
    )
    assert b"127.0.0.1:9" in hinted
    schemas.parse(hinted, what="the request")  # validated against the loaded set only


def test_a_remote_import_in_the_schema_set_refuses_to_load(tmp_path: Path) -> None:
    copy = tmp_path / "oots-edm"
    shutil.copytree(material() / "xsd", copy / "xsd")
    driver = copy / "xsd" / "sdg" / "oots_driver_v1.0.0.xsd"
    text = driver.read_text()
    driver.write_text(
        text.replace(
            '<xs:include schemaLocation="SDG-GenericMetadataProfile-v1.0.0.xsd"/>',
            '<xs:include schemaLocation="http://127.0.0.1:9/evil.xsd"/>',
        )
    )
    with pytest.raises(EdmProfileError, match=r"http://127\.0\.0\.1:9/evil\.xsd"):
        EdmSchemas.load(copy)


def test_without_the_folder_the_profile_says_where_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(EdmProfileError, match=r"does not exist.*docs/oots\.md"):
        EdmSchemas.load(tmp_path / "missing")
    (tmp_path / "half" / "xsd" / "xml").mkdir(parents=True)
    with pytest.raises(EdmProfileError, match=r"lacks xsd/xml/xml\.xsd.*OOTS EDM v1\.0"):
        EdmSchemas.load(tmp_path / "half")


def test_the_birth_request_reads_as_what_a_provider_decides_on(schemas: EdmSchemas) -> None:
    request = read_request(schemas.parse(birth_request(), what="the request"))
    assert request.id.startswith("urn:uuid:")
    assert request.procedure == "R1"
    assert (request.explicit_request_given, request.possibility_for_preview) == (True, False)
    assert request.format == "application/xml"
    assert request.evidence_type_classification.startswith(
        "https://sr.oots.tech.europa.eu/evidencetypeclassifications/"
    )
    person = request.person
    assert (person.nationality, person.destination) == ("DK", "DE")
    assert person.person_code == f"DK{person.national_id}"
    assert isinstance(person.date_of_birth, date)
    assert request.requester is not None
    assert request.requester.scheme


def test_the_company_request_reads_as_a_legal_person(schemas: EdmSchemas) -> None:
    root = schemas.parse((material() / COMPANY_REQUEST).read_bytes(), what="the request")
    request = read_request(root, about="legal-person")
    assert request.person is None
    company = request.company
    assert company is not None
    assert (company.nationality, company.national_id) == ("SE", "12132123Y")
    assert company.legal_name == "Sweden ltd"
    assert company.identifier == "SE/DE/12132123Y"
    assert request.representative is not None  # the sample names one
    assert request.procedure == "X4"
    with pytest.raises(Unsupported):  # at a service about natural persons
        read_request(root)


def test_a_representative_must_be_named_by_an_eidas_identifier(schemas: EdmSchemas) -> None:
    root = schemas.parse((material() / COMPANY_REQUEST).read_bytes(), what="the request")
    identifier = root.find(".//sdg:Person/sdg:Identifier", NS)
    assert identifier is not None
    identifier.text = "123123123"
    with pytest.raises(InvalidRequest) as refused:
        read_request(root, about="legal-person")
    assert refused.value.detail == "AuthorizedRepresentative/Identifier"


def test_what_is_not_offered_is_unsupported(schemas: EdmSchemas) -> None:
    root = schemas.parse(birth_request(), what="the request")
    slot = root.find("query:Query/rim:Slot[@name='NaturalPerson']", NS)
    assert slot is not None
    slot.set("name", "LegalPerson")
    with pytest.raises(Unsupported):
        read_request(root)


def test_request_samples_are_found() -> None:
    assert any("Birth" in path.name for path in request_samples())
