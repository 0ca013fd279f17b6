"""EDM answers: the evidence response (``multipart/related``) and the error response.

An evidence response is a ``multipart/related`` body whose root part is the ``QueryResponse``
(``application/x-ebrs+xml``) with the evidence metadata (``sdg:Evidence``), and whose second
part is the evidence document itself, referenced from ``rim:RepositoryItemRef`` by ``cid:`` as
in the EDM's AS4 binding. An error response is a ``QueryResponse`` with status ``Failure`` and
one ``rs:Exception`` whose code and type follow the EDM error code list (:data:`CODES`).

Every document built here is validated against the EDM schemas before it leaves
(:class:`~exchange.evidence.edm.schemaset.EdmSchemas`).
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from lxml import etree

from exchange.errors import (
    AccessDenied,
    Error,
    InvalidRequest,
    InvalidSignature,
    MethodNotAllowed,
    NotFound,
    PreviewRequired,
    ServiceTimeout,
    StaleMessage,
    Unauthenticated,
    UnsupportedMediaType,
)
from exchange.evidence.edm import MEDIA_TYPE, NS, SPECIFICATION
from exchange.evidence.edm.query import Agent, EdmRequest, Unresolved, Unsupported
from exchange.evidence.edm.schemaset import EdmSchemas

_XSI_TYPE = f"{{{NS['xsi']}}}type"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_NSMAP = {key: NS[key] for key in ("query", "rim", "rs", "sdg", "xsi", "xlink")}
SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
FAILURE = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"
SEVERITY_ERROR = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error"
# As the official samples spell it (later code lists use urn:sr.oots.tech.ec.europa.eu:).
SEVERITY_PREVIEW = "urn:sr.oots.tech.europa.eu:codes:ErrorSeverity:EDMErrorResponse:PreviewRequired"

# The EDM error code list: code -> (exception type, its name in the list).
CODES = {
    "EDM:ERR:0001": ("rs:AuthenticationExceptionType", "Failed Authentication"),
    "EDM:ERR:0002": ("rs:AuthorizationExceptionType", "Missing Authorization"),
    "EDM:ERR:0003": ("rs:InvalidRequestExceptionType", "Invalid request"),
    "EDM:ERR:0004": ("rs:ObjectNotFoundExceptionType", "Object not found"),
    "EDM:ERR:0005": ("rs:TimeoutExceptionType", "Exceeding timeout period"),
    "EDM:ERR:0006": ("rs:UnresolvedReferenceExceptionType", "Unresolved reference"),
    "EDM:ERR:0007": ("rs:UnsupportedCapabilityExceptionType", "Unsupported capability"),
    "EDM:ERR:0008": ("query:QueryExceptionType", "Problem processing the query"),
}


def code_of(error: Error) -> str:
    """The EDM error code for one of this project's errors (the order matters: subclasses
    first)."""
    if isinstance(error, InvalidSignature | StaleMessage | Unauthenticated):
        return "EDM:ERR:0001"
    if isinstance(error, AccessDenied | PreviewRequired):
        return "EDM:ERR:0002"
    if isinstance(error, Unsupported | UnsupportedMediaType):
        return "EDM:ERR:0007"
    if isinstance(error, Unresolved):
        return "EDM:ERR:0006"
    if isinstance(error, NotFound):
        return "EDM:ERR:0004"
    if isinstance(error, ServiceTimeout):
        return "EDM:ERR:0005"
    if isinstance(error, InvalidRequest | MethodNotAllowed) or error.status < 500:
        return "EDM:ERR:0003"
    return "EDM:ERR:0008"


@dataclass(frozen=True, slots=True)
class Party:
    """An agent of the exchange as EDM names it: an identifier in an EAS scheme and a name."""

    identifier: str
    scheme: str
    name: str


@dataclass(frozen=True, slots=True)
class Offer:
    """What a provider says about the evidence it releases for one service."""

    classification: str
    titles: dict[str, str]  # language -> title
    conforms_to: str | None
    authority: Party
    valid_for: timedelta | None


@dataclass(frozen=True, slots=True)
class Preview:
    location: str
    description: dict[str, str]  # language -> text


def _slot(parent: etree._Element, name: str, kind: str) -> etree._Element:
    slot = etree.SubElement(parent, f"{{{NS['rim']}}}Slot", name=name)
    return etree.SubElement(slot, f"{{{NS['rim']}}}SlotValue", {_XSI_TYPE: f"rim:{kind}"})


def _value(parent: etree._Element, name: str, kind: str, text: str) -> None:
    etree.SubElement(_slot(parent, name, kind), f"{{{NS['rim']}}}Value").text = text


def _sdg(
    parent: etree._Element, name: str, text: str | None = None, **attributes: str
) -> etree._Element:
    element = etree.SubElement(parent, f"{{{NS['sdg']}}}{name}", attributes)
    if text is not None:
        element.text = text
    return element


def _agent(parent: etree._Element, party: Party, classification: str | None) -> None:
    agent = _sdg(parent, "Agent")
    _sdg(agent, "Identifier", party.identifier, schemeID=party.scheme)
    _sdg(agent, "Name", party.name, lang="EN")
    if classification:
        _sdg(agent, "Classification", classification)


def _requester(parent: etree._Element, requester: Agent | None) -> None:
    if requester is None:
        return
    value = _slot(parent, "EvidenceRequester", "AnyValueType")
    agent = _sdg(value, "Agent")
    _sdg(
        agent,
        "Identifier",
        requester.identifier,
        **({"schemeID": requester.scheme} if requester.scheme else {}),
    )
    if requester.name:
        _sdg(agent, "Name", requester.name, lang="EN")


def _about(parent: etree._Element, request: EdmRequest) -> None:
    """Whom the evidence is about, as the request named them (and the register confirmed)."""
    if request.company is not None:
        company = _sdg(parent, "LegalPerson")
        _sdg(company, "LegalPersonIdentifier", request.company.identifier, schemeID="eidas")
        _sdg(company, "LegalName", request.company.legal_name)
        return
    about = request.natural_person
    person = _sdg(parent, "NaturalPerson")
    _sdg(person, "Identifier", about.identifier, schemeID="eidas")
    _sdg(person, "FamilyName", about.family_name)
    _sdg(person, "GivenName", about.given_name)
    _sdg(person, "DateOfBirth", about.date_of_birth.isoformat())


def _response(status: str, request_id: str | None) -> etree._Element:
    attributes = {"status": status}
    if request_id:
        attributes["requestId"] = request_id
    root = etree.Element(f"{{{NS['query']}}}QueryResponse", attributes, nsmap=_NSMAP)
    _value(root, "SpecificationIdentifier", "StringValueType", SPECIFICATION)
    _value(root, "EvidenceResponseIdentifier", "StringValueType", str(uuid.uuid4()))
    return root


def _timestamp(at: datetime) -> str:
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Related:
    """A ``multipart/related`` body and the ``Content-Type`` that describes it."""

    content_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Framed:
    """A ``multipart/related`` answer around an evidence document that is streamed, not held:
    ``head`` (the root part, then the evidence part's headers) and ``tail`` are the bytes before
    and after the document."""

    content_type: str
    head: bytes
    tail: bytes


def evidence_response(
    schemas: EdmSchemas,
    *,
    request: EdmRequest,
    provider: Party,
    offer: Offer,
    evidence: bytes,
    issued: date,
    at: datetime,
) -> Related:
    """The QueryResponse for ``evidence`` (an XML document), with the evidence as its second
    part."""
    framed = framed_response(
        schemas,
        request=request,
        provider=provider,
        offer=offer,
        media_type="application/xml",
        issued=issued,
        at=at,
    )
    return Related(framed.content_type, framed.head + evidence + framed.tail)


def framed_response(
    schemas: EdmSchemas,
    *,
    request: EdmRequest,
    provider: Party,
    offer: Offer,
    media_type: str,
    issued: date,
    at: datetime,
) -> Framed:
    """The QueryResponse for evidence distributed as ``media_type``, and the framing of the
    evidence as its second part (``cid:``), the evidence itself left out: a document (a PDF) is
    streamed between ``head`` and ``tail``."""
    root = _response(SUCCESS, request.id)
    _value(root, "IssueDateTime", "DateTimeValueType", _timestamp(at))
    provided = etree.SubElement(
        _slot(root, "EvidenceProvider", "CollectionValueType"),
        f"{{{NS['rim']}}}Element",
        {_XSI_TYPE: "rim:AnyValueType"},
    )
    _agent(provided, provider, "EP")
    _requester(root, request.requester)
    objects = etree.SubElement(root, f"{{{NS['rim']}}}RegistryObjectList")
    item = etree.SubElement(
        objects,
        f"{{{NS['rim']}}}RegistryObject",
        {_XSI_TYPE: "rim:ExtrinsicObjectType", "id": f"urn:uuid:{uuid.uuid4()}"},
    )
    metadata = _sdg(_slot(item, "EvidenceMetadata", "AnyValueType"), "Evidence")
    _sdg(metadata, "Identifier", str(uuid.uuid4()))
    _about(_sdg(metadata, "IsAbout"), request)
    authority = _sdg(metadata, "IssuingAuthority")
    _sdg(authority, "Identifier", offer.authority.identifier, schemeID=offer.authority.scheme)
    _sdg(authority, "Name", offer.authority.name, lang="EN")
    conformant = _sdg(metadata, "IsConformantTo")
    _sdg(conformant, "EvidenceTypeClassification", offer.classification)
    for language, title in offer.titles.items():
        _sdg(conformant, "Title", title, lang=language)
    _sdg(metadata, "IssuingDate", issued.isoformat())
    distribution = _sdg(metadata, "Distribution")
    _sdg(distribution, "Format", media_type)
    # The data model and its subsets are those of the XML record; a document (a PDF of the
    # certificate) conforms to neither, and EDM-RESP asks ConformsTo of XML and JSON only.
    if media_type == "application/xml":
        if offer.conforms_to:
            _sdg(distribution, "ConformsTo", offer.conforms_to)
        if request.transformation:
            _sdg(distribution, "Transformation", request.transformation)
    if offer.valid_for is not None:
        period = _sdg(metadata, "ValidityPeriod")
        _sdg(period, "StartDate", issued.isoformat())
        _sdg(period, "EndDate", (issued + offer.valid_for).isoformat())
    token = secrets.token_hex(16)
    content_id = f"evidence{token}@exchange"
    etree.SubElement(
        item,
        f"{{{NS['rim']}}}RepositoryItemRef",
        {f"{{{NS['xlink']}}}href": f"cid:{content_id}", f"{{{NS['xlink']}}}title": "Evidence"},
    )
    schemas.validate(root, what="the evidence response")
    document = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    boundary = f"edm-{token}"
    start = f"queryresponse{token}@exchange"
    head = b"".join(
        (
            f"--{boundary}\r\nContent-Type: {MEDIA_TYPE}\r\nContent-ID: <{start}>\r\n\r\n".encode(),
            document,
            f"\r\n--{boundary}\r\nContent-Type: {media_type}\r\n"
            f"Content-ID: <{content_id}>\r\n\r\n".encode(),
        )
    )
    content_type = (
        f'multipart/related; type="{MEDIA_TYPE}"; start="<{start}>"; boundary="{boundary}"'
    )
    return Framed(content_type, head, f"\r\n--{boundary}--\r\n".encode())


def error_response(
    schemas: EdmSchemas,
    error: Error,
    *,
    request_id: str | None,
    requester: Agent | None,
    provider: Party,
    at: datetime,
    preview: Preview | None = None,
) -> bytes:
    """The EDM error response for ``error``; with ``preview``, the PreviewRequired answer."""
    code = code_of(error)
    kind, _ = CODES[code]
    root = _response(FAILURE, request_id)
    _agent(_slot(root, "ErrorProvider", "AnyValueType"), provider, "ERRP")
    _requester(root, requester)
    exception = etree.SubElement(
        root,
        f"{{{NS['rs']}}}Exception",
        {
            _XSI_TYPE: kind,
            "severity": SEVERITY_PREVIEW if preview is not None else SEVERITY_ERROR,
            "message": error.message,
            "code": code,
        },
    )
    if error.detail and preview is None:
        exception.set("detail", error.detail)
    _value(exception, "Timestamp", "DateTimeValueType", _timestamp(at))
    if preview is not None:
        _value(exception, "PreviewLocation", "StringValueType", preview.location)
        text = etree.SubElement(
            _slot(exception, "PreviewDescription", "InternationalStringValueType"),
            f"{{{NS['rim']}}}Value",
        )
        for language, words in preview.description.items():
            etree.SubElement(
                text, f"{{{NS['rim']}}}LocalizedString", {_XML_LANG: language, "value": words}
            )
        _value(exception, "PreviewMethod", "StringValueType", "GET")
    schemas.validate(root, what="the error response")
    result: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return result


def split_related(content_type: str, body: bytes) -> dict[str, tuple[str, bytes]]:
    """The parts of a ``multipart/related`` body by Content-ID: (content type, bytes).

    For the consumer side and tests; it reads exactly the form :func:`evidence_response`
    writes (CRLF line ends, headers ``Content-Type`` and ``Content-ID``)."""
    marker = 'boundary="'
    if not content_type.startswith("multipart/related") or marker not in content_type:
        raise InvalidRequest("not a multipart/related body", detail="Content-Type")
    boundary = content_type.split(marker, 1)[1].split('"', 1)[0].encode()
    parts: dict[str, tuple[str, bytes]] = {}
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, content = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        fields = dict(
            line.decode("ascii").split(": ", 1) for line in head.split(b"\r\n") if b": " in line
        )
        content_id = fields.get("Content-ID", "").strip("<>")
        parts[content_id] = (fields.get("Content-Type", ""), content.removesuffix(b"\r\n"))
    return parts
