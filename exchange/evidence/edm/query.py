"""An EDM evidence request (``query:QueryRequest``, query ``DocumentQuery``), read for a provider.

:func:`read_request` takes a document that already satisfies the EDM schemas and returns the
facts a provider decides on: who asks, for which evidence type and distribution, about which
natural person (eIDAS identifier and minimum data set) or legal person (eIDAS legal person
identifier and legal name), in which procedure, with or without an explicit request and the
possibility of a preview, and the preview it returns to.

Refusals are :class:`~exchange.errors.Error` subclasses the EDM answers map to their codes:
:class:`Unsupported` (``EDM:ERR:0007``) for what this layer does not offer (a subject of the
other kind than the service answers about, an authorised representative for a natural person,
a query other than ``DocumentQuery``, a response option other than the full evidence), and
:class:`~exchange.errors.InvalidRequest` (``EDM:ERR:0003``) for what is missing or malformed.
What is *not* checked: the EDM business rules beyond those (see docs/oots.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from lxml import etree

from exchange.errors import InvalidRequest, NotFound
from exchange.evidence.edm import NS, SPECIFICATION

_EIDAS = re.compile(r"([A-Z]{2})/([A-Z]{2})/([0-9A-Za-z]{1,30})")
_CODE = re.compile(r"[A-Za-z0-9._-]{1,60}")
_SEVERITY_PREFIXES = ("urn:sr.oots.tech.europa.eu:", "urn:sr.oots.tech.ec.europa.eu:")


class Unsupported(InvalidRequest):
    """A feature of EDM this layer does not offer (``EDM:ERR:0007``)."""

    code = "UnsupportedCapability"


class Unresolved(NotFound):
    """A reference that cannot be resolved here (``EDM:ERR:0006``): an evidence type not
    offered by the service, a preview not held."""

    code = "UnresolvedReference"


@dataclass(frozen=True, slots=True)
class NaturalPerson:
    identifier: str  # eIDAS: XX/YY/ID
    nationality: str  # XX: the country that issued the identifier
    destination: str  # YY
    national_id: str  # ID
    family_name: str
    given_name: str
    date_of_birth: date
    level_of_assurance: str | None

    @property
    def person_code(self) -> str:
        """The identifier as this project's registers hold it: country code + national id."""
        return f"{self.nationality}{self.national_id}"


@dataclass(frozen=True, slots=True)
class LegalPerson:
    identifier: str  # eIDAS: XX/YY/ID
    nationality: str  # XX: the country whose register issued the identifier
    destination: str  # YY
    national_id: str  # ID: the company's code in that country's register
    legal_name: str
    level_of_assurance: str | None


@dataclass(frozen=True, slots=True)
class Agent:
    identifier: str
    scheme: str | None
    name: str | None


@dataclass(frozen=True, slots=True)
class EdmRequest:
    id: str
    procedure: str | None
    possibility_for_preview: bool
    explicit_request_given: bool
    preview_location: str | None
    requester: Agent | None
    evidence_type_classification: str
    evidence_type_identifier: str | None
    format: str | None
    conforms_to: str | None
    transformation: str | None
    person: NaturalPerson | None  # exactly one of person and company is set
    language: str | None
    company: LegalPerson | None = None
    # Read (an eIDAS identifier and minimum data set) but not relied on: a legal person's
    # evidence is released on a legal basis or as public data, never on who represents it.
    representative: NaturalPerson | None = None

    @property
    def natural_person(self) -> NaturalPerson:
        """The natural person the evidence is about (a service about natural persons)."""
        if self.person is None:
            raise Unsupported("this request is about a legal person", detail="LegalPerson")
        return self.person


def _slot(parent: etree._Element, name: str) -> etree._Element | None:
    found: list[etree._Element] = parent.xpath(
        "rim:Slot[@name=$name]/rim:SlotValue", namespaces=NS, name=name
    )
    return found[0] if found else None


def _text(parent: etree._Element | None, path: str) -> str | None:
    if parent is None:
        return None
    found = parent.find(path, NS)
    if found is None or found.text is None:
        return None
    return " ".join(found.text.split()) or None


def _boolean(parent: etree._Element, name: str) -> bool:
    return _text(_slot(parent, name), "rim:Value") in {"true", "1"}


def _agent(value: etree._Element | None) -> Agent | None:
    agent = None if value is None else value.find(".//sdg:Agent", NS)
    if agent is None:
        return None
    identifier = agent.find("sdg:Identifier", NS)
    if identifier is None or not identifier.text:
        return None
    return Agent(
        identifier=identifier.text.strip(),
        scheme=identifier.get("schemeID"),
        name=_text(agent, "sdg:Name"),
    )


def read_requester(root: etree._Element) -> Agent | None:
    """The evidence requester, as far as the request names one (for answers to it)."""
    return _agent(_slot(root, "EvidenceRequester"))


def read_request(root: etree._Element, *, about: str = "natural-person") -> EdmRequest:
    """The request in ``root`` (schema-valid EDM) to a service whose evidence is ``about`` a
    ``natural-person`` or a ``legal-person``; raise to refuse what is not offered."""
    if root.tag != f"{{{NS['query']}}}QueryRequest":
        raise InvalidRequest("an EDM evidence request is a query:QueryRequest", detail="root")
    specification = _text(_slot(root, "SpecificationIdentifier"), "rim:Value")
    if specification != SPECIFICATION:
        raise Unsupported(
            f"only the EDM specification {SPECIFICATION} is spoken here",
            detail="SpecificationIdentifier",
        )
    request_id = root.get("id") or ""
    query = root.find("query:Query", NS)
    if query is None or query.get("queryDefinition") != "DocumentQuery":
        raise Unsupported("only the DocumentQuery is answered here", detail="queryDefinition")
    option = root.find("query:ResponseOption", NS)
    if option is not None and option.get("returnType", "LeafClassWithRepositoryItem") != (
        "LeafClassWithRepositoryItem"
    ):
        raise Unsupported("evidence is returned with its repository item only", detail="returnType")
    company = about == "legal-person"
    other = "NaturalPerson" if company else "LegalPerson"
    if _slot(query, other) is not None:
        kind = "natural" if company else "legal"
        raise Unsupported(f"evidence about {kind} persons is not offered here", detail=other)
    if not company and _slot(query, "AuthorizedRepresentative") is not None:
        raise Unsupported(
            "requests by an authorised representative are not answered here",
            detail="AuthorizedRepresentative",
        )
    evidence = _slot(query, "EvidenceRequest")
    wanted = None if evidence is None else evidence.find("sdg:DataServiceEvidenceType", NS)
    classification = _text(wanted, "sdg:EvidenceTypeClassification")
    if wanted is None or classification is None:
        raise InvalidRequest(
            "the request names no evidence type (EvidenceRequest)", detail="EvidenceRequest"
        )
    procedure_value = _slot(root, "Procedure")
    procedure = None
    if procedure_value is not None:
        localized = procedure_value.find("rim:Value/rim:LocalizedString", NS)
        procedure = None if localized is None else (localized.get("value") or "").strip()
        if procedure is not None and _CODE.fullmatch(procedure) is None:
            raise InvalidRequest("the procedure is not a code", detail="Procedure")
    preview_location = _text(_slot(root, "PreviewLocation"), "rim:Value")
    return EdmRequest(
        id=request_id,
        procedure=procedure,
        possibility_for_preview=_boolean(root, "PossibilityForPreview"),
        explicit_request_given=_boolean(root, "ExplicitRequestGiven"),
        preview_location=preview_location,
        requester=_agent(_slot(root, "EvidenceRequester")),
        evidence_type_classification=classification,
        evidence_type_identifier=_text(wanted, "sdg:Identifier"),
        format=_text(wanted, "sdg:DistributedAs/sdg:Format"),
        conforms_to=_text(wanted, "sdg:DistributedAs/sdg:ConformsTo"),
        transformation=_text(wanted, "sdg:DistributedAs/sdg:Transformation"),
        person=None if company else _person(query, "NaturalPerson"),
        language=root.get("{http://www.w3.org/XML/1998/namespace}lang"),
        company=_company(query) if company else None,
        representative=(
            _person(query, "AuthorizedRepresentative")
            if company and _slot(query, "AuthorizedRepresentative") is not None
            else None
        ),
    )


def _eidas(element: etree._Element | None, where: str) -> re.Match[str]:
    """The parts of an eIDAS identifier ``XX/YY/ID`` in ``element`` (schemeID ``eidas``)."""
    identifier = "" if element is None else " ".join((element.text or "").split())
    matched = _EIDAS.fullmatch(identifier)
    if element is None or element.get("schemeID") != "eidas" or matched is None:
        raise InvalidRequest(
            "the identifier must be an eIDAS identifier XX/YY/ID (schemeID eidas)", detail=where
        )
    return matched


def _company(query: etree._Element) -> LegalPerson:
    value = _slot(query, "LegalPerson")
    company = None if value is None else value.find("sdg:LegalPerson", NS)
    if company is None:
        raise InvalidRequest(
            "the request names no legal person (LegalPerson)", detail="LegalPerson"
        )
    # The schemas leave the eIDAS identifier optional (sdg:Identifier may carry tax or VAT
    # numbers); a register finds a company by its eIDAS legal person identifier only.
    matched = _eidas(
        company.find("sdg:LegalPersonIdentifier", NS), "LegalPerson/LegalPersonIdentifier"
    )
    name = _text(company, "sdg:LegalName")
    if name is None:
        raise InvalidRequest("the minimum data set needs the legal name", detail="LegalPerson")
    nationality, destination, national_id = matched.groups()
    return LegalPerson(
        identifier=matched.group(0),
        nationality=nationality,
        destination=destination,
        national_id=national_id,
        legal_name=name,
        level_of_assurance=_text(company, "sdg:LevelOfAssurance"),
    )


def _person(query: etree._Element, slot: str) -> NaturalPerson:
    value = _slot(query, slot)
    person = None if value is None else value.find("sdg:Person", NS)
    if person is None:
        raise InvalidRequest(f"the request names no natural person ({slot})", detail=slot)
    matched = _eidas(person.find("sdg:Identifier", NS), f"{slot}/Identifier")
    identifier = matched.group(0)
    family, given, born = (
        _text(person, "sdg:FamilyName"),
        _text(person, "sdg:GivenName"),
        _text(person, "sdg:DateOfBirth"),
    )
    if family is None or given is None or born is None:
        raise InvalidRequest(
            "the minimum data set needs family name, given name and date of birth",
            detail=slot,
        )
    try:
        date_of_birth = date.fromisoformat(born)
    except ValueError as error:
        raise InvalidRequest(
            "the date of birth is not a date (YYYY-MM-DD)", detail=f"{slot}/DateOfBirth"
        ) from error
    nationality, destination, national_id = matched.groups()
    return NaturalPerson(
        identifier=identifier,
        nationality=nationality,
        destination=destination,
        national_id=national_id,
        family_name=family,
        given_name=given,
        date_of_birth=date_of_birth,
        level_of_assurance=_text(person, "sdg:LevelOfAssurance"),
    )


def is_preview_required(severity: str | None) -> bool:
    """Whether an error's severity is PreviewRequired, in either prefix found in the wild."""
    return any(
        severity == f"{prefix}codes:ErrorSeverity:EDMErrorResponse:PreviewRequired"
        for prefix in _SEVERITY_PREFIXES
    )


# The same reading of slots, texts and agents for the consumer's reader of answers (response.py).
slot_value = _slot
text_at = _text
read_agent = _agent
