"""The consumer side reads EDM answers: every official response and error sample understood as
typed values, and what a provider must not send refused as the provider's fault."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import TypedDict

import pytest

from exchange.evidence.edm.answers import split_related
from exchange.evidence.edm.response import (
    EdmError,
    EvidenceDelivered,
    InvalidEdmResponse,
    LegalPersonAbout,
    NaturalPersonAbout,
    read_answer,
    read_response,
    read_streamed_answer,
)
from exchange.evidence.edm.schemaset import EdmSchemas
from exchange.trust.signed import body_digest
from tests.oots import BIRTH_REQUEST, material, response_samples, snippet

BIRTH = "2.2 Step 2  Evidence Response - Birth - full example.xml"
EDUCATION = "3.2 Step 2 Error Response - Education - full example.xml"
COMPANY = "4.2 Step 2  Evidence Response - Tax - full example.xml"
TIMEOUT = "4.5.3 - Evidence Error Response Syntax Mapping/2.1 ebRIM QueryResponseError example"
RESPONSE_SNIPPET = "4.5.2 - Evidence Response Syntax Mapping/2.1 ebRIM QueryResponse example"
SAMPLE_REQUEST = "urn:uuid:4ffb5281-179d-4578-adf2-39fd13ccc797"
CID = "attachment100001@example.oots.eu"


@pytest.fixture(scope="module")
def schemas() -> EdmSchemas:
    return EdmSchemas.load(material())


def sample(name: str) -> bytes:
    (path,) = [path for path in response_samples() if path.name == name]
    return path.read_bytes()


def related(document: bytes, parts: dict[str, bytes]) -> tuple[str, bytes]:
    """``document`` and ``parts`` (Content-ID -> XML) as a multipart/related answer."""
    boundary = "b0undary"
    chunks = [
        f"--{boundary}\r\nContent-Type: application/x-ebrs+xml\r\n".encode()
        + b"Content-ID: <root@x>\r\n\r\n"
        + document
    ]
    chunks += [
        f"\r\n--{boundary}\r\nContent-Type: application/xml\r\nContent-ID: <{cid}>\r\n\r\n".encode()
        + content
        for cid, content in parts.items()
    ]
    content_type = (
        f'multipart/related; type="application/x-ebrs+xml"; start="<root@x>"; boundary="{boundary}"'
    )
    return content_type, b"".join(chunks) + f"\r\n--{boundary}--\r\n".encode()


def test_every_official_response_sample_is_one_this_test_reads() -> None:
    assert {path.name for path in response_samples()} == {BIRTH, EDUCATION, COMPANY}


def test_the_birth_certificate_response_is_understood(schemas: EdmSchemas) -> None:
    answer = read_response(schemas, sample(BIRTH), request_id=SAMPLE_REQUEST)
    assert isinstance(answer, EvidenceDelivered)
    assert answer.outcome == "evidence"
    assert answer.response_id == "166155eb-d7a7-4cac-9086-8a85f0116462"
    assert answer.issued_at == datetime(2022, 5, 19, 17, 10, 10, 872000, tzinfo=UTC)
    (provider,) = answer.providers
    assert (provider.identifier, provider.scheme, provider.name) == (
        "DE73524311",
        "urn:cef.eu:names:identifier:EAS:9930",
        "Civil Registration Office Berlin I",
    )
    assert answer.requester is not None
    assert (answer.requester.identifier, answer.requester.name) == (
        "DK22233223",
        "Denmark University Portal",
    )
    (evidence,) = answer.evidence
    assert (evidence.content_id, evidence.title, evidence.document) == (
        CID,
        "BirthCertificate",
        None,
    )
    metadata = evidence.metadata
    assert metadata.identifier == "37a169f1-9cf6-4aa8-ac24-b083fa569173"
    assert metadata.about == NaturalPersonAbout(
        "DK/DE/123123123", "Smith", "John", date(1970, 3, 1)
    )
    assert metadata.issuing_authority.identifier == "DE73524311"
    assert metadata.classification == (
        "https://sr.oots.tech.europa.eu/evidencetypeclassifications/DE/"
        "ca8afed6-2dc0-422a-a931-d21c3d8d370e"
    )
    assert metadata.titles == {"EN": "Certificate of Birth", "DE": "Geburtsurkunde"}
    assert metadata.issuing_date == date(1970, 3, 3)
    assert (metadata.format, metadata.language) == ("application/xml", "DE")
    assert metadata.conforms_to == (
        "https://sr.oots.tech.europa.eu/distributions/certificate-of-birth-1.0.0"
    )
    assert (metadata.transformation or "").endswith("/age-of-majority")
    assert (metadata.valid_from, metadata.valid_until) == (date(2023, 1, 19), date(2024, 5, 19))


def test_the_birth_certificate_with_its_evidence_part_is_understood(schemas: EdmSchemas) -> None:
    certificate = (
        material() / BIRTH_REQUEST / "Evidence Samples" / "BirthEvidence.xml"
    ).read_bytes()
    content_type, body = related(sample(BIRTH), {CID: certificate})
    answer = read_answer(schemas, content_type, body, request_id=SAMPLE_REQUEST)
    assert isinstance(answer, EvidenceDelivered)
    (evidence,) = answer.evidence
    assert (evidence.content_type, evidence.document) == ("application/xml", certificate)


def test_the_education_preview_required_error_is_understood(schemas: EdmSchemas) -> None:
    # Its severity ends with an invisible DEL character (U+007F) in this copy.
    answer = read_answer(schemas, "application/x-ebrs+xml", sample(EDUCATION))
    assert isinstance(answer, EdmError)
    assert answer.outcome == "preview-required"
    assert (answer.code, answer.exception_type) == ("EDM:ERR:0002", "rs:AuthorizationExceptionType")
    assert answer.preview_required
    assert answer.request_id == SAMPLE_REQUEST
    assert answer.response_id == "530ad1e2-5eaf-4a9a-8192-227432eea95d"
    assert answer.message == "Missing Authorization"
    assert answer.timestamp == datetime(
        2020, 2, 14, 19, 21, 30, tzinfo=timezone(timedelta(hours=1))
    )
    assert answer.error_provider is not None
    assert (answer.error_provider.identifier, answer.error_provider.name) == (
        "DE765758700",
        "Authority for school and occupational training",
    )
    assert answer.requester is not None
    assert answer.requester.identifier == "NL22233223"
    assert answer.preview is not None
    assert answer.preview.location == (
        "https://preview.space.example.com/requests?session=d36af8bc-fea6-4ee5-a32d-5bef82cdb071"
    )
    assert answer.preview.method == "GET"
    assert answer.preview.description == {
        "NL": "Kies uw diploma.",
        "RO": "Vă rugăm să selectați diploma dvs.",
        "EN": "Please select your diploma.",
    }


def test_the_commercial_register_extract_about_a_company_is_understood(
    schemas: EdmSchemas,
) -> None:
    answer = read_response(schemas, sample(COMPANY))
    assert isinstance(answer, EvidenceDelivered)
    assert answer.request_id == "urn:uuid:361e43b5-bd1b-4eb5-9b1f-93971ce2e811"
    assert [provider.name for provider in answer.providers] == ["Tax Agency Berlin I"]
    (evidence,) = answer.evidence
    assert evidence.metadata.about == LegalPersonAbout("SE/DE/12132123Y", "Sweden ltd")
    assert evidence.metadata.titles["EN"] == "Extract of the Commercial Register (Type A)"
    assert (
        evidence.metadata.conforms_to == "https://sr.oots.tech.europa.eu/distributions/BRIS-1.0.0"
    )
    assert (evidence.metadata.valid_from, evidence.metadata.valid_until) == (
        date(2023, 2, 9),
        date(2023, 5, 9),
    )
    assert evidence.title == "business-registry-number"


def test_the_timeout_error_snippet_is_understood_despite_its_spaced_severity(
    schemas: EdmSchemas,
) -> None:
    # The snippet writes severity="...ErrorSeverityType:Error " (a trailing space).
    answer = read_response(schemas, snippet(TIMEOUT).read_bytes())
    assert isinstance(answer, EdmError)
    assert answer.outcome == "EDM:ERR:0005"
    assert answer.exception_type == "rs:TimeoutExceptionType"
    assert not answer.preview_required
    assert answer.preview is None
    assert answer.detail == (
        "No response from base registry for requestID 4ffb5281-179d-4578-adf2-39fd13ccc797."
    )
    # Its slots are "omitted for clarity": no provider, timestamp or response id to read.
    assert (answer.error_provider, answer.timestamp, answer.response_id) == (None, None, None)


def test_the_response_snippet_is_refused_as_not_well_formed(schemas: EdmSchemas) -> None:
    # It declares xmlns:sdg twice: no XML parser may accept it.
    with pytest.raises(InvalidEdmResponse) as refused:
        read_response(schemas, snippet(RESPONSE_SNIPPET).read_bytes())
    assert refused.value.status == 502  # the provider's fault, not the caller's
    assert "not well-formed" in refused.value.message


def _broken(document: bytes, old: bytes, new: bytes) -> bytes:
    assert old in document
    return document.replace(old, new)


@pytest.mark.parametrize(
    ("name", "old", "new", "detail"),
    [
        (BIRTH, b"sdg:FamilyName>", b"sdg:Surname>", "SCHEMAV_ELEMENT_CONTENT"),
        (EDUCATION, b'code="EDM:ERR:0002"', b'code="EDM:ERR:0004"', "code"),
        (EDUCATION, b'name="PreviewLocation"', b'name="PreviewPlace"', "PreviewLocation"),
        (EDUCATION, b"oots-edm:v1.0", b"oots-edm:v0.9", "SpecificationIdentifier"),
        (
            EDUCATION,
            b"ResponseStatusType:Failure",
            b"ResponseStatusType:Unavailable",
            "status",
        ),
    ],
)
def test_a_broken_answer_is_refused_naming_what_is_wrong(
    schemas: EdmSchemas, name: str, old: bytes, new: bytes, detail: str
) -> None:
    with pytest.raises(InvalidEdmResponse) as refused:
        read_response(schemas, _broken(sample(name), old, new))
    assert refused.value.detail == detail
    assert "Smith" not in refused.value.message  # never quotes the document


def test_an_answer_to_another_request_is_refused(schemas: EdmSchemas) -> None:
    with pytest.raises(InvalidEdmResponse, match="another request"):
        read_response(schemas, sample(BIRTH), request_id="urn:uuid:another")


def test_an_evidence_part_that_is_not_there_is_refused(schemas: EdmSchemas) -> None:
    content_type, body = related(sample(BIRTH), {"other@x": b"<a/>"})
    with pytest.raises(InvalidEdmResponse) as refused:
        read_answer(schemas, content_type, body)
    assert refused.value.detail == "RepositoryItemRef"
    with pytest.raises(InvalidEdmResponse, match="without its evidence parts"):
        read_answer(schemas, "application/x-ebrs+xml", sample(BIRTH))
    with pytest.raises(InvalidEdmResponse, match="came as multipart/related"):
        read_answer(schemas, *related(sample(EDUCATION), {}))
    with pytest.raises(InvalidEdmResponse) as refused:
        read_answer(schemas, "application/json", b"{}")
    assert refused.value.detail == "Content-Type"


PDF = b"%PDF-1.7 a document that streams"
CLOSING = b"\r\n--b0undary--\r\n"  # the closing boundary of related()'s answers


def _head(document: bytes, kind: str) -> tuple[str, bytes]:
    """The bytes of an answer whose evidence part (``kind``) streams, up to that part."""
    content_type, body = related(document, {CID: PDF})
    head = body[: body.index(PDF)].replace(b"application/xml", kind.encode())
    return content_type, head


class Bound(TypedDict):
    document_length: int
    length: int
    envelope: str


def _bound(head: bytes, tail: bytes = CLOSING) -> Bound:
    """What a provider's signature binds of an answer that streams :data:`PDF` between ``head``
    and ``tail``: the document's length, the body's and the digest of the bytes around it."""
    return Bound(
        document_length=len(PDF),
        length=len(head) + len(PDF) + len(tail),
        envelope=body_digest(head + tail),
    )


def _pdf_response() -> bytes:
    # The official response, with its distribution a PDF (EDM-RESP asks ConformsTo of XML only).
    return sample(BIRTH).replace(
        b"<sdg:Format>application/xml</sdg:Format>", b"<sdg:Format>application/pdf</sdg:Format>"
    )


def test_an_answer_whose_evidence_streams_is_read_up_to_it(schemas: EdmSchemas) -> None:
    content_type, head = _head(_pdf_response(), "application/pdf")
    answer = read_streamed_answer(
        schemas, content_type, head, **_bound(head), request_id=SAMPLE_REQUEST
    )
    (evidence,) = answer.evidence
    assert (evidence.metadata.format, evidence.content_id) == ("application/pdf", CID)
    assert (evidence.content_type, evidence.document) == ("application/pdf", None)


def test_a_streamed_answer_must_end_with_its_closing_boundary_after_the_document(
    schemas: EdmSchemas,
) -> None:
    content_type, head = _head(_pdf_response(), "application/pdf")
    # After the document, a second root part with the root's Content-ID: a reader that takes
    # the last of two parts of one Content-ID (as split_related does) reads it as the answer.
    unchecked = (
        b"\r\n--b0undary\r\nContent-Type: application/x-ebrs+xml\r\n"
        b"Content-ID: <root@x>\r\n\r\n<unchecked/>" + CLOSING
    )
    assert split_related(content_type, head + PDF + unchecked)["root@x"][1] == b"<unchecked/>"
    for tail in (unchecked, CLOSING + b"epilogue", CLOSING[:-2]):
        with pytest.raises(InvalidEdmResponse, match="closing boundary") as refused:
            read_streamed_answer(
                schemas, content_type, head, **_bound(head, tail), request_id=SAMPLE_REQUEST
            )
        assert refused.value.detail == "X-Exchange-Parts"


def test_a_streamed_answer_whose_head_is_not_the_one_signed_is_refused_unread(
    schemas: EdmSchemas,
) -> None:
    content_type, head = _head(_pdf_response(), "application/pdf")
    signed = _bound(head)
    forged = head.replace(
        b"Civil Registration Office Berlin I", b"Civil Registration Office Bonn I"
    )
    unreadable = head.replace(b"<query:QueryResponse", b"<query:QueryResponse <")
    for other in (forged, unreadable):
        assert other != head
        layout = Bound(
            document_length=len(PDF),
            length=len(other) + len(PDF) + len(CLOSING),
            envelope=signed["envelope"],
        )
        with pytest.raises(InvalidEdmResponse, match="signature") as refused:
            read_streamed_answer(schemas, content_type, other, **layout, request_id=SAMPLE_REQUEST)
        assert refused.value.detail == "X-Exchange-Response-Signature"  # not parsed first


@pytest.mark.parametrize(
    ("cut", "detail"),
    [
        ("other-type", "Format"),  # the part is not of the Distribution Format
        ("mid-headers", "X-Exchange-Parts"),  # the document does not start a part
        ("other-part", "RepositoryItemRef"),  # the part streamed is not the evidence named
    ],
)
def test_a_streamed_part_that_does_not_match_its_answer_is_refused(
    schemas: EdmSchemas, cut: str, detail: str
) -> None:
    kind = "image/png" if cut == "other-type" else "application/pdf"
    content_type, head = _head(_pdf_response(), kind)
    if cut == "mid-headers":
        head = head.removesuffix(b"\r\n")
    if cut == "other-part":
        head = head.replace(f"<{CID}>".encode(), b"<other@x>")
    with pytest.raises(InvalidEdmResponse) as refused:
        read_streamed_answer(schemas, content_type, head, **_bound(head), request_id=SAMPLE_REQUEST)
    assert refused.value.detail == detail


def test_a_dtd_in_an_answer_is_refused(schemas: EdmSchemas, tmp_path: Path) -> None:
    head, _, rest = sample(EDUCATION).partition(b"?>")
    entity = b'<!DOCTYPE q [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    with pytest.raises(InvalidEdmResponse):
        read_response(schemas, head + b"?>" + entity + rest)


def test_an_error_naming_no_request_was_refused_before_it_was_read(schemas: EdmSchemas) -> None:
    unread = sample(EDUCATION).replace(f'requestId="{SAMPLE_REQUEST}"'.encode(), b"", 1)
    answer = read_response(schemas, unread, request_id="urn:uuid:mine")
    assert isinstance(answer, EdmError)
    assert answer.request_id == ""
    anonymous = sample(BIRTH).replace(f'requestId="{SAMPLE_REQUEST}"'.encode(), b"", 1)
    with pytest.raises(InvalidEdmResponse, match="another request"):
        read_response(schemas, anonymous, request_id="urn:uuid:mine")
