"""The OOTS EDM profile of a gateway: EDM requests in, EDM answers out (docs/oots.md).

Only services that declare ``[services.edm]`` go through here; every other exchange takes the
usual path untouched. The provider maps an EDM ``QueryRequest`` onto its usual pipeline:

- the evidence type classification (and ``DistributedAs``) -> the service it was sent to, which
  must offer exactly that classification, in that format (its XML record, or a document such as
  a PDF that streams as the answer's ``cid:`` part), with that data model and subset;
- ``NaturalPerson`` -> the service's subject parameter (the eIDAS identifier ``XX/YY/ID``
  becomes the person code ``XXID``); the evidence found must be about the person of the minimum
  data set given (family name, given name, date of birth), else it is refused as not found;
- ``LegalPerson`` (on a service ``about = "legal-person"``) -> the register code ``ID`` of the
  eIDAS legal person identifier ``XX/YY/ID``, in the service's ``legal_person_parameter``; the
  company found must bear the legal name given, else it is refused as not found (``XX`` is not
  compared: a tax agency, as in the official sample, holds companies of other countries);
- ``Procedure`` -> the purpose ``oots:<code>``; ``ExplicitRequestGiven`` -> required where the
  service's policy is the person's consent; ``PossibilityForPreview`` and ``PreviewLocation``
  -> this project's preview;
- every refusal -> the EDM error response (:func:`exchange.evidence.edm.answers.code_of`).

The consumer side validates EDM requests (``Content-Type: application/x-ebrs+xml``) against the
schema set before it signs them.
"""

from __future__ import annotations

import unicodedata
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from connectors.base import ConnectorRequest, Document
from connectors.document import HttpDocumentConnector
from exchange.errors import (
    AccessDenied,
    Error,
    InvalidEvidence,
    InvalidRequest,
    NotFound,
    PreviewRequired,
    ServiceUnavailable,
    UnsupportedMediaType,
)
from exchange.evidence.edm import MEDIA_TYPE
from exchange.evidence.edm.answers import (
    Offer,
    Party,
    Preview,
    Related,
    error_response,
    evidence_response,
    framed_response,
)
from exchange.evidence.edm.query import (
    Agent,
    EdmRequest,
    Unresolved,
    Unsupported,
    read_request,
    read_requester,
)
from exchange.evidence.edm.schemaset import EdmSchemas
from exchange.gateway.node import Gateway
from exchange.gateway.parts import Part, Streamed
from exchange.gateway.preview import PreviewedDocument
from exchange.gateway.services import LocalService
from exchange.gateway.settings import EdmServiceSpec
from exchange.trust.signed import body_digest

ACCEPTED_TYPES = (MEDIA_TYPE, "application/xml")
NOT_FOUND = "the registry holds no record for this request"  # as the connectors say it
PREVIEW_TEXT = {
    "EN": "Look at the evidence and approve or refuse its release, then return to the service."
}


def is_edm(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() == MEDIA_TYPE


@dataclass(slots=True)
class Exchange:
    """One EDM exchange at the provider, filled as the pipeline learns it."""

    service: LocalService
    request: EdmRequest | None = None
    request_id: str | None = None  # known before the request is read in full
    requester: Agent | None = None


def _same(a: str, b: str) -> bool:
    def folded(text: str) -> str:
        return " ".join(unicodedata.normalize("NFC", text).casefold().split())

    return folded(a) == folded(b)


class EdmProvider:
    """The provider's EDM adapter; built only on gateways with an ``[edm]`` profile."""

    def __init__(self, gateway: Gateway, schemas: EdmSchemas) -> None:
        settings = gateway.settings.edm
        if settings is None or settings.provider is None:  # the settings validator sees to it
            raise ValueError("the EDM profile needs [edm] provider")
        self.gateway = gateway
        self.schemas = schemas
        declared = settings.provider
        self.party = Party(declared.id, declared.scheme, declared.name)
        # The error provider names the gateway that refused.
        self.error_party = Party(declared.id, declared.scheme, f"{declared.name} ({gateway.id})")

    def read(self, body: bytes, content_type: str | None, exchange: Exchange) -> EdmRequest:
        """The request in ``body``, checked against the schemas and what the service offers;
        noted in ``exchange`` as far as it was read."""
        service = exchange.service
        spec = _spec(service)
        if (content_type or "").split(";")[0].strip().lower() not in ACCEPTED_TYPES:
            raise UnsupportedMediaType(
                f"an EDM service takes a QueryRequest ({MEDIA_TYPE})", detail="Content-Type"
            )
        root = self.schemas.parse(body, what="the QueryRequest")
        exchange.request_id, exchange.requester = root.get("id"), read_requester(root)
        request = read_request(root, about=spec.about)
        if request.requester is None:
            raise InvalidRequest(
                "the request names no evidence requester", detail="EvidenceRequester"
            )
        if request.evidence_type_classification != spec.evidence_type_classification:
            raise Unresolved(
                "this service does not offer the evidence type requested",
                detail="EvidenceTypeClassification",
            )
        self.distribution(request, service)
        if request.conforms_to and spec.conforms_to and request.conforms_to != spec.conforms_to:
            raise Unsupported("this data model is not offered", detail="ConformsTo")
        if request.transformation and request.transformation not in spec.transformations:
            raise Unsupported("this subset of the evidence is not offered", detail="Transformation")
        exchange.request = request
        return request

    @staticmethod
    def distribution(request: EdmRequest, service: LocalService) -> str:
        """The format the evidence is distributed in: the one requested (``DistributedAs``),
        if the service offers it; without one, the first the service offers."""
        offered = _spec(service).formats
        wanted = request.format or offered[0]
        if wanted not in offered:
            raise Unsupported(
                f"this evidence is distributed as {' or '.join(offered)} only", detail="Format"
            )
        if wanted != "application/xml" and request.transformation:
            raise Unsupported(
                "a subset of the evidence is offered in application/xml only",
                detail="Transformation",
            )
        return wanted

    @staticmethod
    def parameters(request: EdmRequest, service: LocalService) -> dict[str, str]:
        if request.company is not None:
            return {_spec(service).legal_person_parameter: request.company.national_id}
        parameter = service.spec.subject_parameter or "person"
        return {parameter: request.natural_person.person_code}

    @staticmethod
    def purpose(request: EdmRequest, stated: str | None) -> str | None:
        """The purpose of the exchange: the OOTS procedure, which a stated X-Exchange-Purpose
        may repeat but not contradict."""
        purpose = f"oots:{request.procedure}" if request.procedure else None
        if stated and purpose and stated != purpose:
            raise InvalidRequest(
                f"X-Exchange-Purpose contradicts the request's procedure ({purpose})",
                detail="X-Exchange-Purpose",
            )
        return purpose or stated

    @staticmethod
    def admit(request: EdmRequest, service: LocalService) -> None:
        """What EDM adds to the service's release policy, before the registry is asked."""
        if service.spec.consent_policy == "consent" and not request.explicit_request_given:
            raise AccessDenied(
                "this evidence is released only on the person's explicit request "
                "(ExplicitRequestGiven)",
                detail="ExplicitRequestGiven",
            )
        if service.spec.preview and not request.possibility_for_preview:
            raise AccessDenied(
                "the person must preview this evidence, and the request offers no preview "
                "(PossibilityForPreview)",
                detail="PossibilityForPreview",
            )

    @staticmethod
    def check_person(
        evidence: Mapping[str, Any], request: EdmRequest, service: LocalService
    ) -> None:
        """Refuse evidence that is not about the person of the minimum data set, natural or
        legal, as if there were none: a mismatch must not tell the requester that the
        identifier exists."""
        spec = _spec(service)
        if request.company is not None:
            company = request.company
            name = evidence.get(spec.legal_name_field)
            if not isinstance(name, str) or not _same(name, company.legal_name):
                raise NotFound(NOT_FOUND)
            return
        person = request.natural_person
        found = (
            evidence.get(spec.family_name_field),
            evidence.get(spec.given_name_field),
            evidence.get(spec.date_of_birth_field),
        )
        born = found[2]
        if isinstance(born, str):
            try:
                born = date.fromisoformat(born)
            except ValueError:
                born = None
        if not (
            isinstance(found[0], str)
            and isinstance(found[1], str)
            and _same(found[0], person.family_name)
            and _same(found[1], person.given_name)
            and born == person.date_of_birth
        ):
            raise NotFound(NOT_FOUND)

    def answer(
        self, request: EdmRequest, service: LocalService, evidence: Mapping[str, Any]
    ) -> Related:
        issued, offer = self._offer(service, evidence)
        return evidence_response(
            self.schemas,
            request=request,
            provider=self.party,
            offer=offer,
            evidence=service.schema.to_xml(evidence),
            issued=issued,
            at=self.gateway.clock(),
        )

    async def document_answer(
        self,
        request: EdmRequest,
        service: LocalService,
        evidence: Mapping[str, Any],
        asked: ConnectorRequest,
        opened: Document | None = None,
    ) -> tuple[str, Streamed]:
        """The answer whose evidence part is the service's document of the record
        ``evidence`` (checked to be about the person asked for): its content type, and the body
        that streams the registry's document between the framing, bound as one part by the
        length and SHA-256 the registry declared (:mod:`exchange.gateway.parts`). After a
        preview, the document is the one :meth:`open_previewed` ``opened`` (closed here if the
        answer cannot be made); otherwise it is opened here."""
        connector = _document_connector(service)
        try:
            issued, offer = self._offer(service, evidence)
            framed = framed_response(
                self.schemas,
                request=request,
                provider=self.party,
                offer=offer,
                media_type=connector.media_type,
                issued=issued,
                at=self.gateway.clock(),
            )
        except BaseException:
            if opened is not None:
                await opened.close()
            raise
        document = opened if opened is not None else await connector.open(asked)
        return framed.content_type, Streamed(
            parts=(Part(len(framed.head), document.length, document.digest),),
            length=len(framed.head) + document.length + len(framed.tail),
            envelope=body_digest(framed.head + framed.tail),
            chunks=_around(framed.head, document.chunks, framed.tail),
            close=document.close,
            broken=InvalidEvidence,
            what="the registry",
        )

    @staticmethod
    async def describe(service: LocalService, asked: ConnectorRequest) -> PreviewedDocument:
        """What the registry declares of the service's document for ``asked``, for the person
        to preview: opened and closed unread."""
        document = await _document_connector(service).open(asked)
        await document.close()
        return _facts(document)

    @staticmethod
    async def open_previewed(
        service: LocalService, asked: ConnectorRequest, previewed: PreviewedDocument
    ) -> Document:
        """The service's document for ``asked``, opened unread, once the registry declares it
        to be the one ``previewed`` (same media type, length and SHA-256); its bytes are then
        checked against that declaration as they stream."""
        document = await _document_connector(service).open(asked)
        if _facts(document) != previewed:
            await document.close()
            raise InvalidEvidence(
                "the registry's document is not the one the person previewed (its length or "
                "SHA-256 changed)"
            )
        return document

    def _offer(self, service: LocalService, evidence: Mapping[str, Any]) -> tuple[date, Offer]:
        """The issuing date of ``evidence`` and what the provider says of its kind."""
        spec = _spec(service)
        issued = evidence.get(spec.issued_field) if spec.issued_field else None
        if isinstance(issued, str):
            issued = date.fromisoformat(issued)
        offer = Offer(
            classification=spec.evidence_type_classification,
            titles=spec.titles,
            conforms_to=spec.conforms_to,
            authority=self.party,
            valid_for=None if spec.valid_for_days is None else timedelta(days=spec.valid_for_days),
        )
        return issued if isinstance(issued, date) else self.gateway.clock().date(), offer

    def refusal(self, error: Error, exchange: Exchange) -> bytes:
        request = exchange.request
        preview = None
        if isinstance(error, PreviewRequired) and request is not None and error.detail:
            if request.possibility_for_preview:
                preview = Preview(location=error.detail, description=PREVIEW_TEXT)
            else:
                error = AccessDenied(
                    "the person must preview this evidence, and the request offers no preview "
                    "(PossibilityForPreview)",
                    detail="PossibilityForPreview",
                )
        return error_response(
            self.schemas,
            error,
            request_id=exchange.request_id,
            requester=exchange.requester,
            provider=self.error_party,
            at=self.gateway.clock(),
            preview=preview,
        )


def _spec(service: LocalService) -> EdmServiceSpec:
    if service.spec.edm is None:
        raise ServiceUnavailable(f"{service.id} is not offered in EDM")
    return service.spec.edm


def _document_connector(service: LocalService) -> HttpDocumentConnector:
    if service.edm_document is None:  # distribution() offers no document without one
        raise ServiceUnavailable(f"{service.id} offers no document distribution")
    return service.edm_document


def _facts(document: Document) -> PreviewedDocument:
    return PreviewedDocument(document.media_type, document.length, document.digest)


async def _around(head: bytes, chunks: AsyncIterator[bytes], tail: bytes) -> AsyncIterator[bytes]:
    yield head
    async for chunk in chunks:
        yield chunk
    yield tail
