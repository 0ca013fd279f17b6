"""Publish this gateway's services to the central authority's catalogue.

One ``PUT /catalogue/v1/services`` per subsystem the gateway serves, listing every service it
provides there: the settings file's and the enabled declared ones (a disabled service leaves the
catalogue). Each catalogue is signed with the gateway's signing key
(:mod:`exchange.trust.catalogue`): the authority accepts it for its own member's subsystems
only, fresh and once, and needs no token from the gateway. The command line and the console
publish the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import httpx

from exchange.errors import ServiceFailed
from exchange.faults import mapped
from exchange.gateway.services import catalogue
from exchange.gateway.settings import GatewaySettings, ServiceSpec
from exchange.trust.catalogue import sign_catalogue
from exchange.trust.signed import Signer


def publish(
    settings: GatewaySettings,
    declared: Iterable[ServiceSpec],
    *,
    central_url: str,
    signer: Signer,
    at: datetime,
    transport: httpx.BaseTransport | None = None,
) -> dict[str, int]:
    """Publish every subsystem's services, signed at ``at``; how many, by subsystem id."""
    published: dict[str, int] = {}
    with httpx.Client(transport=transport, timeout=30, follow_redirects=False) as http:
        for subsystem, entries in catalogue(settings, declared).items():
            signed = sign_catalogue(
                signer, gateway=str(settings.gateway), subsystem=subsystem, services=entries, at=at
            )
            with mapped("the central authority"):
                response = http.put(
                    f"{central_url.rstrip('/')}/catalogue/v1/services", json={"catalogue": signed}
                )
            if response.status_code != 200:
                try:
                    said = response.json().get("message")
                except ValueError:
                    said = f"HTTP {response.status_code}"
                raise ServiceFailed(
                    f"the central authority refused the catalogue of {subsystem}: {said}"
                )
            published[subsystem] = len(entries)
    return published
