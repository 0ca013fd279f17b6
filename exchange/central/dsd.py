"""The authority's Data Service Directory: EDM DSD queries answered from the service catalogue.

Gateways publish their services with their EDM classification and the provider as EDM names it
(``[services.edm]``, ``[edm.provider]``, see :func:`exchange.gateway.services.catalogue_entry`);
the directory lists those whose provider declares a country, matched on the evidence type
classification and the jurisdiction asked for. Only this layer's own catalogue is searched: the
Common Services' real directory is not consulted. The documents are built and validated by
:mod:`exchange.evidence.edm.directory`.

What is *not* done: evidence provider classifications and jurisdiction determination
(``DSD:ERR:0005``, asking the user for more input) are never asked for, and distributions other
than XML are never listed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from exchange.central.registry import Registry
from exchange.errors import Error, InvalidRequest
from exchange.evidence.edm.directory import (
    QUERY_ID,
    DataService,
    NoDataService,
    Publisher,
    UnknownEvidenceType,
    UnknownQuery,
    directory_error,
    directory_response,
)
from exchange.evidence.edm.schemaset import EdmSchemas

REQUIRED = ("queryId", "evidence-type-classification", "country-code")
OPTIONAL = ("jurisdiction-admin-l2", "jurisdiction-admin-l3")
WRONG_PARAMETERS = "The query parameters do not follow the query specification"
_COUNTRY = re.compile(r"[A-Z]{2}")
_CODE = re.compile(r"[0-9A-Za-z]{1,20}")
_MAX_VALUE = 500


def _offer(identifier: str, details: dict[str, Any]) -> DataService | None:
    edm = details.get("edm")
    if not isinstance(edm, dict) or not isinstance(edm.get("provider"), dict):
        return None
    provider = edm["provider"]
    if not provider.get("country"):  # not placed in any jurisdiction: not listed
        return None
    return DataService(
        service=identifier,
        classification=edm["evidence_type_classification"],
        titles=dict(edm["titles"]),
        conforms_to=edm.get("conforms_to"),
        transformations=tuple(edm.get("transformations") or ()),
        formats=tuple(edm.get("formats") or ("application/xml",)),
        publisher=Publisher(
            identifier=provider["id"],
            scheme=provider["scheme"],
            name=provider["name"],
            country=provider["country"],
            region=provider.get("region"),
            locality=provider.get("locality"),
            address=provider.get("address"),
        ),
    )


def _within(offer: DataService, country: str, region: str | None, locality: str | None) -> bool:
    """Whether the provider answers for the jurisdiction asked; a provider that declares no
    region (or locality) answers for the whole country (or region)."""
    publisher = offer.publisher
    return (
        publisher.country == country
        and (region is None or publisher.region in (None, region))
        and (locality is None or publisher.locality in (None, locality))
    )


class Directory:
    """Answers ``GET /dsd/rest/search`` (:mod:`exchange.central.app`)."""

    def __init__(self, *, registry: Registry, schemas: EdmSchemas) -> None:
        self.registry = registry
        self.schemas = schemas

    def search(self, parameters: Iterable[tuple[str, str]]) -> bytes:
        """The QueryResponse for the REST query's ``parameters``; raise to refuse."""
        asked: dict[str, str] = {}
        for name, value in parameters:
            if name not in (*REQUIRED, *OPTIONAL) or name in asked or len(value) > _MAX_VALUE:
                raise InvalidRequest(WRONG_PARAMETERS, detail=name[:100])
            asked[name] = value
        missing = [name for name in REQUIRED if not asked.get(name)]
        if missing:
            raise InvalidRequest(WRONG_PARAMETERS, detail=missing[0])
        if asked["queryId"] != QUERY_ID:
            raise UnknownQuery("The requested Query does not exist", detail="queryId")
        country = asked["country-code"]
        region = asked.get("jurisdiction-admin-l2")
        locality = asked.get("jurisdiction-admin-l3")
        checks: tuple[tuple[str, str | None, re.Pattern[str]], ...] = (
            ("country-code", country, _COUNTRY),
            ("jurisdiction-admin-l2", region, _CODE),
            ("jurisdiction-admin-l3", locality, _CODE),
        )
        for name, given, pattern in checks:
            if given is not None and pattern.fullmatch(given) is None:
                raise InvalidRequest(WRONG_PARAMETERS, detail=name)
        classification = asked["evidence-type-classification"]
        offers = [
            offer
            for service in self.registry.services()
            if (offer := _offer(service.identifier, json.loads(service.details))) is not None
            and offer.classification == classification
        ]
        if not offers:
            raise UnknownEvidenceType(
                "The Evidence Type requested cannot be found", detail=classification
            )
        found = [offer for offer in offers if _within(offer, country, region, locality)]
        if not found:
            raise NoDataService(
                "No Data Services were found based on the given parameters",
                detail="country-code" if region is None and locality is None else "jurisdiction",
            )
        return directory_response(self.schemas, found)

    def refusal(self, error: Error) -> bytes:
        return directory_error(self.schemas, error)
