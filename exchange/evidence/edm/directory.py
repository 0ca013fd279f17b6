"""Data Service Directory (DSD) documents: which providers offer evidence of a type, and where.

The OOTS DSD answers one query over the RegRep 4 REST binding,
``GET <base>/rest/search?queryId=<QUERY_ID>&evidence-type-classification=...&country-code=...``
(optionally ``jurisdiction-admin-l2`` and ``jurisdiction-admin-l3``), with a ``QueryResponse``
holding one ``RegistryObject`` per data service: its ``sdg:DataServiceEvidenceType``
(classification, titles, distributions) and the ``sdg:AccessService`` with its ``Publisher``,
the evidence provider and its jurisdiction, as in the official DSD samples. Refusals are a
``QueryResponse`` with status Failure and one ``rs:Exception`` coded from the DSD error code
list (:data:`CODES`).

Each service's object also carries a ``ServiceIdentifier`` slot: the X-Road identifier a
requester of this federation posts its EDM request to (``/r1/<ServiceIdentifier>``). OOTS
requesters, which address providers by their party identifier, ignore it.

Every document built here is validated against the EDM schemas before it leaves. The material
holds no Schematron rules for DSD documents, so nothing beyond the schemas is checked.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from lxml import etree

from exchange.errors import Error, InvalidRequest, NotFound
from exchange.evidence.edm import NS, SPECIFICATION
from exchange.evidence.edm.answers import FAILURE, SEVERITY_ERROR, SUCCESS
from exchange.evidence.edm.schemaset import EdmSchemas

QUERY_ID = "urn:fdc:oots:dsd:ebxml-regrep:queries:dataservices-by-evidencetype-and-jurisdiction"
_XSI_TYPE = f"{{{NS['xsi']}}}type"
_NSMAP = {key: NS[key] for key in ("query", "rim", "rs", "sdg", "xsi")}
# A stable sdg:Identifier for each service's evidence type: the same service, the same id.
_IDENTIFIERS = uuid.UUID("5b0f3c55-4a57-4e0c-9d2b-0c8f1b6a7d11")


class NoDataService(NotFound):
    """The evidence type is known, but no provider offers it in that jurisdiction."""

    code = "NoDataService"


class UnknownEvidenceType(NotFound):
    """No provider of this federation offers the evidence type anywhere."""

    code = "UnknownEvidenceType"


class UnknownQuery(InvalidRequest):
    """A query the directory does not answer."""

    code = "UnknownQuery"


# The DSD error code list: code -> exception type.
CODES = {
    "DSD:ERR:0001": "rs:ObjectNotFoundExceptionType",
    "DSD:ERR:0002": "rs:ObjectNotFoundExceptionType",
    "DSD:ERR:0003": "rs:InvalidRequestExceptionType",
    "DSD:ERR:0004": "rs:InvalidRequestExceptionType",
}


def code_of(error: Error) -> str:
    if isinstance(error, UnknownEvidenceType):
        return "DSD:ERR:0002"
    if isinstance(error, NotFound):
        return "DSD:ERR:0001"
    if isinstance(error, UnknownQuery):
        return "DSD:ERR:0004"
    return "DSD:ERR:0003"


@dataclass(frozen=True, slots=True)
class Publisher:
    """An evidence provider as the directory lists it."""

    identifier: str
    scheme: str
    name: str
    country: str
    region: str | None = None  # NUTS
    locality: str | None = None  # LAU
    address: str | None = None


@dataclass(frozen=True, slots=True)
class DataService:
    """One service of the catalogue offered in EDM."""

    service: str  # its X-Road identifier
    classification: str
    titles: dict[str, str]
    conforms_to: str | None
    transformations: tuple[str, ...]
    publisher: Publisher
    formats: tuple[str, ...] = ("application/xml",)  # the XML record and/or documents (a PDF)


def _sdg(
    parent: etree._Element, name: str, text: str | None = None, **attributes: str
) -> etree._Element:
    element = etree.SubElement(parent, f"{{{NS['sdg']}}}{name}", attributes)
    if text is not None:
        element.text = text
    return element


def _slot(parent: etree._Element, name: str, kind: str) -> etree._Element:
    slot = etree.SubElement(parent, f"{{{NS['rim']}}}Slot", name=name)
    return etree.SubElement(slot, f"{{{NS['rim']}}}SlotValue", {_XSI_TYPE: f"rim:{kind}"})


def _distribution(parent: etree._Element, offer: DataService, subset: str | None) -> None:
    distributed = _sdg(parent, "DistributedAs")
    _sdg(distributed, "Format", "application/xml")
    if offer.conforms_to:
        _sdg(distributed, "ConformsTo", offer.conforms_to)
    if subset:
        _sdg(distributed, "Transformation", subset)


def _distributions(parent: etree._Element, offer: DataService) -> None:
    """The XML record, whole and per subset, then each document format (a PDF conforms to no
    data model, as the official DSD responses say)."""
    if "application/xml" in offer.formats:
        _distribution(parent, offer, None)
        for subset in offer.transformations:
            _distribution(parent, offer, subset)
    for media_type in offer.formats:
        if media_type != "application/xml":
            _sdg(_sdg(parent, "DistributedAs"), "Format", media_type)


def _publisher(parent: etree._Element, publisher: Publisher) -> None:
    element = _sdg(parent, "Publisher")
    _sdg(element, "Identifier", publisher.identifier, schemeID=publisher.scheme)
    _sdg(element, "Name", publisher.name, lang="EN")
    address = _sdg(element, "Address")
    if publisher.address:
        _sdg(address, "FullAddress", publisher.address)
    jurisdiction = _sdg(element, "Jurisdiction")
    for level, value in (
        ("AdminUnitLevel1", publisher.country),
        ("AdminUnitLevel2", publisher.region),
        ("AdminUnitLevel3", publisher.locality),
    ):
        if value:
            if level != "AdminUnitLevel3":  # an address has no LAU
                _sdg(address, level, value)
            _sdg(jurisdiction, level, value)


def directory_response(schemas: EdmSchemas, offers: list[DataService]) -> bytes:
    """The QueryResponse listing ``offers``, one registry object each."""
    root = etree.Element(f"{{{NS['query']}}}QueryResponse", status=SUCCESS, nsmap=_NSMAP)
    objects = etree.SubElement(root, f"{{{NS['rim']}}}RegistryObjectList")
    for offer in offers:
        identifier = uuid.uuid5(_IDENTIFIERS, offer.service)
        item = etree.SubElement(
            objects, f"{{{NS['rim']}}}RegistryObject", id=f"urn:uuid:{identifier}"
        )
        etree.SubElement(
            _slot(item, "ServiceIdentifier", "StringValueType"), f"{{{NS['rim']}}}Value"
        ).text = offer.service
        value = _slot(item, "DataServiceEvidenceType", "AnyValueType")
        kind = _sdg(value, "DataServiceEvidenceType")
        _sdg(kind, "Identifier", str(identifier))
        _sdg(kind, "EvidenceTypeClassification", offer.classification)
        for language, title in offer.titles.items():
            _sdg(kind, "Title", title, lang=language)
        _distributions(kind, offer)
        access = _sdg(kind, "AccessService")
        # This layer has no access points between requester and provider: the provider's
        # gateway is its access service, named as the provider is.
        _sdg(access, "Identifier", offer.publisher.identifier, schemeID=offer.publisher.scheme)
        _sdg(access, "ConformsTo", SPECIFICATION)
        _publisher(access, offer.publisher)
    schemas.validate(root, what="the directory's response")
    result: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return result


def directory_error(schemas: EdmSchemas, error: Error) -> bytes:
    """The DSD error response for ``error``."""
    code = code_of(error)
    root = etree.Element(f"{{{NS['query']}}}QueryResponse", status=FAILURE, nsmap=_NSMAP)
    exception = etree.SubElement(
        root,
        f"{{{NS['rs']}}}Exception",
        {
            _XSI_TYPE: CODES[code],
            "severity": SEVERITY_ERROR,
            "message": error.message,
            "code": code,
        },
    )
    if error.detail:
        exception.set("detail", error.detail)
    schemas.validate(root, what="the directory's error response")
    result: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return result
