"""Publish this gateway's services to the central authority's catalogue.

One ``PUT /api/v1/services`` per subsystem the gateway serves, listing every service it
provides there: the settings file's and the enabled declared ones (a disabled service leaves the
catalogue). The authority's management API wants its admin bearer token: the command line reads
it from ``--token-file``, the console from the file ``catalogue_token_file`` names in the
settings (kept beside the gateway's keys, readable by the gateway's user only), so that the
token is never typed into a page nor written to a log.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import httpx

from exchange.errors import InvalidRequest, ServiceFailed
from exchange.faults import mapped
from exchange.gateway.services import catalogue
from exchange.gateway.settings import GatewaySettings, ServiceSpec


def token_of(settings: GatewaySettings) -> str:
    """The admin token from ``catalogue_token_file``, or why the console cannot publish."""
    path: Path | None = settings.catalogue_token_file
    if path is None:
        raise InvalidRequest(
            "publishing from the console needs catalogue_token_file in the gateway's settings",
            detail="catalogue_token_file",
        )
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise InvalidRequest(
            "the file named by catalogue_token_file cannot be read",
            detail="catalogue_token_file",
        ) from exc
    if not token:
        raise InvalidRequest(
            "the file named by catalogue_token_file is empty", detail="catalogue_token_file"
        )
    return token


def publish(
    settings: GatewaySettings,
    declared: Iterable[ServiceSpec],
    *,
    central_url: str,
    token: str,
    transport: httpx.BaseTransport | None = None,
) -> dict[str, int]:
    """Publish every subsystem's services; how many were published, by subsystem id."""
    published: dict[str, int] = {}
    with httpx.Client(transport=transport, timeout=30, follow_redirects=False) as http:
        for subsystem, entries in catalogue(settings, declared).items():
            with mapped("the central authority"):
                response = http.put(
                    f"{central_url.rstrip('/')}/api/v1/services",
                    json={"subsystem": subsystem, "services": entries},
                    headers={"Authorization": f"Bearer {token}"},
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
