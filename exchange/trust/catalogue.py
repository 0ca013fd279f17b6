"""A signed service catalogue: what a gateway sends the central authority to publish its services.

A compact JWS (``typ`` ``exchange-catalogue+jws``, ES256, ``kid`` the fingerprint of one of the
member's signing certificates, :mod:`exchange.trust.signed`) over::

    {"gateway": "<gateway id>", "subsystem": "<subsystem id>", "services": [<entry>, ...],
     "iat": <seconds since the epoch>}

Each entry is one service as the catalogue lists it (``id``, ``evidence_type``,
``consent_policy``, ``description``, ``methods``, ``parameters``). The member's key is the
credential: the authority needs no token of the gateway's, and a signature by one member's key
publishes none of another member's subsystems (:mod:`exchange.central.catalogue` decides).

Here only the form is made and read; who may sign, freshness and replay are the authority's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from exchange.errors import InvalidRequest
from exchange.trust.signed import Signer

CATALOGUE_TYPE = "exchange-catalogue+jws"


@dataclass(frozen=True, slots=True)
class CatalogueClaims:
    gateway: str
    subsystem: str
    services: list[dict[str, Any]]
    iat: int


def sign_catalogue(
    signer: Signer,
    *,
    gateway: str,
    subsystem: str,
    services: list[dict[str, Any]],
    at: datetime,
) -> str:
    claims = {
        "gateway": gateway,
        "subsystem": subsystem,
        "services": services,
        "iat": int(at.timestamp()),
    }
    return signer.sign(claims, CATALOGUE_TYPE)


def read_claims(claims: Mapping[str, Any]) -> CatalogueClaims:
    """The claims of a verified catalogue JWS, once they have the form above."""
    gateway, subsystem = claims.get("gateway"), claims.get("subsystem")
    services, iat = claims.get("services"), claims.get("iat")
    if not (
        isinstance(gateway, str)
        and isinstance(subsystem, str)
        and isinstance(services, list)
        and all(isinstance(entry, dict) for entry in services)
        and isinstance(iat, int)
        and not isinstance(iat, bool)
    ):
        raise InvalidRequest("the signed catalogue is malformed")
    return CatalogueClaims(gateway=gateway, subsystem=subsystem, services=services, iat=iat)
