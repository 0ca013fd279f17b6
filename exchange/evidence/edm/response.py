"""An EDM answer read by the consumer side: evidence delivered, or an EDM error (PreviewRequired
included), as typed values.

:func:`read_answer` takes an answer as it comes back over HTTP (``Content-Type`` and body):
``multipart/related`` whose root part is a ``QueryResponse`` with status Success and whose other
parts are the evidence documents its ``RepositoryItemRef``\\ s name by ``cid:``; or a single
``QueryResponse`` with status Failure and one ``rs:Exception``. :func:`read_response` reads the
``QueryResponse`` document alone (the official samples carry their evidence as AS4 attachments);
:func:`read_streamed_answer` reads an answer whose evidence document (a PDF) is still streaming,
from the bytes before it, once they and the closing boundary after it are found to be the bytes
the answer's signature binds around the document.

Both refuse, as :class:`InvalidEdmResponse` (the provider's fault, never the caller's), a document
that breaks the EDM schemas, names another request, pairs an error code with the wrong exception
type, offers a preview without a location, or points to an evidence part that is not there.

What is *not* checked: the EDM-RESP and EDM-ERR business rules (Schematron), the evidence
document against its data model (``ConformsTo``), and whether the evidence is about the person
asked for: that is the consumer system's to decide on the values read here.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, replace
from datetime import date, datetime

from lxml import etree

from exchange.errors import InvalidRequest, InvalidResponse
from exchange.evidence.edm import MEDIA_TYPE, NS, SPECIFICATION
from exchange.evidence.edm.answers import CODES, FAILURE, SEVERITY_ERROR, SUCCESS, split_related
from exchange.evidence.edm.query import (
    Agent,
    is_preview_required,
    read_agent,
    slot_value,
    text_at,
)
from exchange.evidence.edm.schemaset import EdmSchemas
from exchange.trust.signed import body_digest

_XSI_TYPE = f"{{{NS['xsi']}}}type"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_HREF = f"{{{NS['xlink']}}}href"
_TITLE = f"{{{NS['xlink']}}}title"
# The exception types of the error code list, as (namespace, local name).
_PREFIXES = {"rs": NS["rs"], "query": NS["query"]}

EVIDENCE = "evidence"  # the outcome of a delivered evidence response
PREVIEW_REQUIRED = "preview-required"


class InvalidEdmResponse(InvalidResponse):
    """An EDM answer from a provider that this side cannot accept (detail: what is wrong)."""

    code = "InvalidEdmResponse"


@dataclass(frozen=True, slots=True)
class NaturalPersonAbout:
    identifier: str  # eIDAS: XX/YY/ID
    family_name: str
    given_name: str
    date_of_birth: date


@dataclass(frozen=True, slots=True)
class LegalPersonAbout:
    identifier: str  # eIDAS: XX/YY/ID
    legal_name: str


@dataclass(frozen=True, slots=True)
class EvidenceMetadata:
    """``sdg:Evidence``: what the provider says about one evidence document."""

    identifier: str
    about: NaturalPersonAbout | LegalPersonAbout
    issuing_authority: Agent
    classification: str
    titles: dict[str, str]  # language -> title
    issuing_date: date
    format: str
    language: str | None
    conforms_to: str | None
    transformation: str | None
    valid_from: date | None
    valid_until: date | None


@dataclass(frozen=True, slots=True)
class DeliveredEvidence:
    metadata: EvidenceMetadata
    content_id: str  # the part's Content-ID, without "cid:"
    title: str | None
    content_type: str | None = None  # None when the document was read without its parts
    document: bytes | None = None


@dataclass(frozen=True, slots=True)
class EvidenceDelivered:
    request_id: str
    response_id: str | None
    issued_at: datetime | None
    providers: tuple[Agent, ...]
    requester: Agent | None
    evidence: tuple[DeliveredEvidence, ...]

    @property
    def outcome(self) -> str:
        return EVIDENCE


@dataclass(frozen=True, slots=True)
class PreviewOffer:
    """Where the person previews the evidence before the requester asks again."""

    location: str
    method: str | None
    description: dict[str, str]  # language -> text


@dataclass(frozen=True, slots=True)
class EdmError:
    request_id: str
    response_id: str | None
    error_provider: Agent | None
    requester: Agent | None
    code: str  # EDM:ERR:0001..0008
    exception_type: str  # as the code list names it, e.g. rs:AuthorizationExceptionType
    preview_required: bool
    message: str | None
    detail: str | None
    timestamp: datetime | None
    preview: PreviewOffer | None

    @property
    def outcome(self) -> str:
        """What came back, as the consumer's records name it."""
        return PREVIEW_REQUIRED if self.preview is not None else self.code


EdmAnswer = EvidenceDelivered | EdmError


def read_answer(
    schemas: EdmSchemas, content_type: str | None, body: bytes, *, request_id: str | None = None
) -> EdmAnswer:
    """The answer in ``body``; with ``request_id``, it must answer that request."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind == "multipart/related":
        try:
            parts = split_related(content_type or "", body)
        except (InvalidRequest, UnicodeDecodeError, ValueError) as error:
            raise InvalidEdmResponse(
                "the EDM answer's parts cannot be read", detail="multipart/related"
            ) from error
        if not parts:
            raise InvalidEdmResponse("the EDM answer has no parts", detail="multipart/related")
        start = _parameter(content_type or "", "start")
        root_id = start.strip("<>") if start else next(iter(parts))
        if root_id not in parts or parts[root_id][0].split(";")[0].strip() != MEDIA_TYPE:
            raise InvalidEdmResponse(
                f"the EDM answer's root part is not a QueryResponse ({MEDIA_TYPE})",
                detail="start",
            )
        answer = read_response(schemas, parts[root_id][1], request_id=request_id)
        if not isinstance(answer, EvidenceDelivered):
            raise InvalidEdmResponse(
                "an EDM error response came as multipart/related", detail="status"
            )
        delivered = []
        for item in answer.evidence:
            part = parts.get(item.content_id)
            if part is None or item.content_id == root_id:
                raise InvalidEdmResponse(
                    "the EDM answer lacks the evidence part its RepositoryItemRef names",
                    detail="RepositoryItemRef",
                )
            delivered.append(
                DeliveredEvidence(item.metadata, item.content_id, item.title, part[0], part[1])
            )
        return EvidenceDelivered(
            answer.request_id,
            answer.response_id,
            answer.issued_at,
            answer.providers,
            answer.requester,
            tuple(delivered),
        )
    if kind in (MEDIA_TYPE, "application/xml"):
        answer = read_response(schemas, body, request_id=request_id)
        if isinstance(answer, EvidenceDelivered):
            raise InvalidEdmResponse(
                "an EDM evidence response came without its evidence parts", detail="Content-Type"
            )
        return answer
    raise InvalidEdmResponse(
        f"an EDM answer is multipart/related or {MEDIA_TYPE}", detail="Content-Type"
    )


def read_streamed_answer(
    schemas: EdmSchemas,
    content_type: str | None,
    head: bytes,
    *,
    document_length: int,
    length: int,
    envelope: str,
    request_id: str | None = None,
) -> EvidenceDelivered:
    """An evidence answer whose evidence document streams (a PDF): ``head`` is every byte of
    the ``multipart/related`` body before the document, which must be the last part it opens,
    one its ``RepositoryItemRef`` names, of the media type its ``Distribution/Format`` says.
    The evidence is returned without its document (``document`` None), which the caller passes
    on as it arrives.

    What the answer's signature binds is checked before anything is parsed: the body
    (``length`` bytes, the document ``document_length`` of them) must end right after the
    document with the closing boundary and nothing else, and ``head`` with that boundary must
    be the bytes whose digest the signature binds (``envelope``). The bytes that follow the
    head are left to the caller, which checks them against the same digests as they pass: so
    no part can follow the document unread, and no head is read that was not signed."""
    boundary = _parameter(content_type or "", "boundary")
    if not boundary or not head.endswith(b"\r\n\r\n"):
        raise InvalidEdmResponse(
            "the EDM answer's streamed part does not start where a part does",
            detail="X-Exchange-Parts",
        )
    tail = f"\r\n--{boundary}--\r\n".encode()
    if length != len(head) + document_length + len(tail):
        raise InvalidEdmResponse(
            "the EDM answer's bytes after its streamed part are not its closing boundary",
            detail="X-Exchange-Parts",
        )
    if body_digest(head + tail) != envelope:
        raise InvalidEdmResponse(
            "the EDM answer's bytes around its streamed part are not those its signature binds",
            detail="X-Exchange-Response-Signature",
        )
    closed = head + tail
    try:
        opened = list(split_related(content_type or "", closed))[-1]
    except (InvalidRequest, UnicodeDecodeError, ValueError, IndexError) as error:
        raise InvalidEdmResponse(
            "the EDM answer's parts cannot be read", detail="multipart/related"
        ) from error
    answer = read_answer(schemas, content_type, closed, request_id=request_id)
    if not isinstance(answer, EvidenceDelivered):  # read_answer refuses errors as multipart
        raise InvalidEdmResponse("an EDM error response came streamed", detail="status")
    evidence = []
    for item in answer.evidence:
        if item.content_id == opened:
            if (item.content_type or "").split(";")[0].strip() != item.metadata.format:
                raise InvalidEdmResponse(
                    "the EDM answer's streamed part is not of its Distribution Format",
                    detail="Format",
                )
            item = DeliveredEvidence(item.metadata, item.content_id, item.title, item.content_type)
        evidence.append(item)
    if opened not in {item.content_id for item in evidence}:
        raise InvalidEdmResponse(
            "the EDM answer streams a part that no RepositoryItemRef names",
            detail="RepositoryItemRef",
        )
    return replace(answer, evidence=tuple(evidence))


def read_response(
    schemas: EdmSchemas, document: bytes, *, request_id: str | None = None
) -> EdmAnswer:
    """The ``QueryResponse`` in ``document``, checked against the EDM schemas."""
    try:
        root = schemas.parse(document, what="the EDM answer")
    except InvalidRequest as error:  # the document's fault is the provider's here
        raise InvalidEdmResponse(error.message, detail=error.detail) from error
    if root.tag != f"{{{NS['query']}}}QueryResponse":
        raise InvalidEdmResponse("an EDM answer is a query:QueryResponse", detail="root")
    # Absent in the official error snippet ("omitted for clarity"); another version is refused.
    specification = text_at(slot_value(root, "SpecificationIdentifier"), "rim:Value")
    if specification not in (None, SPECIFICATION):
        raise InvalidEdmResponse(
            f"the EDM answer is not of the specification {SPECIFICATION}",
            detail="SpecificationIdentifier",
        )
    answered = root.get("requestId") or ""
    status = root.get("status")
    # An error without a requestId is a refusal before the request was read (a replayed message
    # id, a signature that fails): it answers this request as much as any other.
    unread = status == FAILURE and not answered
    if request_id is not None and answered != request_id and not unread:
        raise InvalidEdmResponse("the EDM answer answers another request", detail="requestId")
    response_id = text_at(slot_value(root, "EvidenceResponseIdentifier"), "rim:Value")
    if status == SUCCESS:
        return _delivered(root, answered, response_id)
    if status == FAILURE:
        return _error(root, answered, response_id)
    raise InvalidEdmResponse(
        "only Success and Failure answers are understood here", detail="status"
    )


def _parameter(content_type: str, name: str) -> str | None:
    for piece in content_type.split(";")[1:]:
        key, _, value = piece.strip().partition("=")
        if key.lower() == name:
            return value.strip('"')
    return None


def _date(text: str | None, what: str) -> date:
    try:
        return date.fromisoformat(text or "")
    except ValueError as error:
        raise InvalidEdmResponse(f"the {what} is not a date", detail=what) from error


def _moment(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as error:
        raise InvalidEdmResponse("a timestamp is not a date and time", detail=text) from error


def _delivered(root: etree._Element, request_id: str, response_id: str | None) -> EvidenceDelivered:
    if root.find("rs:Exception", NS) is not None:
        raise InvalidEdmResponse("a successful EDM answer carries an exception", detail="status")
    providers = slot_value(root, "EvidenceProvider")
    agents = [] if providers is None else providers.findall("rim:Element", NS)
    found = tuple(agent for agent in (read_agent(element) for element in agents) if agent)
    objects = root.findall("rim:RegistryObjectList/rim:RegistryObject", NS)
    if not objects:
        raise InvalidEdmResponse(
            "the successful EDM answer holds no evidence", detail="RegistryObjectList"
        )
    return EvidenceDelivered(
        request_id=request_id,
        response_id=response_id,
        issued_at=_moment(text_at(slot_value(root, "IssueDateTime"), "rim:Value")),
        providers=found,
        requester=read_agent(slot_value(root, "EvidenceRequester")),
        evidence=tuple(_evidence(item) for item in objects),
    )


def _evidence(item: etree._Element) -> DeliveredEvidence:
    value = slot_value(item, "EvidenceMetadata")
    evidence = None if value is None else value.find("sdg:Evidence", NS)
    reference = item.find("rim:RepositoryItemRef", NS)
    href = "" if reference is None else reference.get(_HREF, "")
    if evidence is None or not href.startswith("cid:"):
        raise InvalidEdmResponse(
            "each evidence needs its EvidenceMetadata and a cid: RepositoryItemRef",
            detail="RegistryObject",
        )
    # sdg:IssuingAuthority is an agent by itself (Identifier, Name), not an sdg:Agent.
    issuing = evidence.find("sdg:IssuingAuthority", NS)
    identifier = None if issuing is None else issuing.find("sdg:Identifier", NS)
    if identifier is None or not (identifier.text or "").strip():
        raise InvalidEdmResponse(
            "the evidence names no issuing authority", detail="IssuingAuthority"
        )
    authority = Agent(
        identifier=(identifier.text or "").strip(),
        scheme=identifier.get("schemeID"),
        name=text_at(issuing, "sdg:Name"),
    )
    conformant = evidence.find("sdg:IsConformantTo", NS)
    classification = text_at(conformant, "sdg:EvidenceTypeClassification")
    distribution = evidence.find("sdg:Distribution", NS)
    file_format = text_at(distribution, "sdg:Format")
    if conformant is None or classification is None or file_format is None:
        raise InvalidEdmResponse(
            "the evidence metadata lacks its type or distribution", detail="IsConformantTo"
        )
    period = evidence.find("sdg:ValidityPeriod", NS)
    start, end = text_at(period, "sdg:StartDate"), text_at(period, "sdg:EndDate")
    return DeliveredEvidence(
        metadata=EvidenceMetadata(
            identifier=text_at(evidence, "sdg:Identifier") or "",
            about=_about(evidence),
            issuing_authority=authority,
            classification=classification,
            titles={
                title.get("lang", ""): " ".join((title.text or "").split())
                for title in conformant.findall("sdg:Title", NS)
            },
            issuing_date=_date(text_at(evidence, "sdg:IssuingDate"), "IssuingDate"),
            format=file_format,
            language=text_at(distribution, "sdg:Language"),
            conforms_to=text_at(distribution, "sdg:ConformsTo"),
            transformation=text_at(distribution, "sdg:Transformation"),
            valid_from=None if start is None else _date(start, "StartDate"),
            valid_until=None if end is None else _date(end, "EndDate"),
        ),
        content_id=href.removeprefix("cid:"),
        title=None if reference is None else reference.get(_TITLE),
    )


def _about(evidence: etree._Element) -> NaturalPersonAbout | LegalPersonAbout:
    person = evidence.find("sdg:IsAbout/sdg:NaturalPerson", NS)
    if person is not None:
        family, given = text_at(person, "sdg:FamilyName"), text_at(person, "sdg:GivenName")
        identifier = text_at(person, "sdg:Identifier")
        if identifier is None or family is None or given is None:
            raise InvalidEdmResponse(
                "the evidence's person lacks the minimum data set", detail="IsAbout"
            )
        return NaturalPersonAbout(
            identifier, family, given, _date(text_at(person, "sdg:DateOfBirth"), "DateOfBirth")
        )
    company = evidence.find("sdg:IsAbout/sdg:LegalPerson", NS)
    identifier = text_at(company, "sdg:LegalPersonIdentifier")
    name = text_at(company, "sdg:LegalName")
    if identifier is None or name is None:
        raise InvalidEdmResponse("the evidence says about whom it is nothing", detail="IsAbout")
    return LegalPersonAbout(identifier, name)


def _code_text(value: str | None) -> str:
    """A code as written, without the spacing and control characters around it: the official
    samples end severities with a space (the timeout snippet) or a DEL (the education error)."""
    return "".join(c for c in value or "" if unicodedata.category(c) != "Cc").strip()


def _exception_type(exception: etree._Element) -> str:
    """The ``xsi:type`` as the code list writes it (``rs:...``), whatever prefix was used."""
    written = exception.get(_XSI_TYPE) or ""
    prefix, _, local = written.rpartition(":")
    namespace = exception.nsmap.get(prefix or None)
    for known, uri in _PREFIXES.items():
        if namespace == uri:
            return f"{known}:{local}"
    return written


def _error(root: etree._Element, request_id: str, response_id: str | None) -> EdmError:
    exceptions = root.findall("rs:Exception", NS)
    if len(exceptions) != 1:
        raise InvalidEdmResponse(
            "an EDM error response carries exactly one exception", detail="rs:Exception"
        )
    (exception,) = exceptions
    code = _code_text(exception.get("code"))
    kind = _exception_type(exception)
    if code not in CODES or CODES[code][0] != kind:
        raise InvalidEdmResponse(
            "the EDM error code is not in the code list or not of its exception type",
            detail="code",
        )
    severity = _code_text(exception.get("severity"))
    preview_required = is_preview_required(severity)
    if not preview_required and severity != SEVERITY_ERROR:
        raise InvalidEdmResponse("the EDM error's severity is not understood", detail="severity")
    preview = None
    location = text_at(slot_value(exception, "PreviewLocation"), "rim:Value")
    if preview_required:
        if location is None:
            raise InvalidEdmResponse(
                "a PreviewRequired answer must say where to preview", detail="PreviewLocation"
            )
        described = slot_value(exception, "PreviewDescription")
        strings = [] if described is None else described.iterfind(".//rim:LocalizedString", NS)
        preview = PreviewOffer(
            location=location,
            method=text_at(slot_value(exception, "PreviewMethod"), "rim:Value"),
            description={text.get(_XML_LANG, ""): text.get("value", "") for text in strings},
        )
    return EdmError(
        request_id=request_id,
        response_id=response_id,
        error_provider=read_agent(slot_value(root, "ErrorProvider")),
        requester=read_agent(slot_value(root, "EvidenceRequester")),
        code=code,
        exception_type=kind,
        preview_required=preview_required,
        message=exception.get("message"),
        detail=exception.get("detail"),
        timestamp=_moment(text_at(slot_value(exception, "Timestamp"), "rim:Value")),
        preview=preview,
    )
