"""Publish this gateway's services to the central authority's catalogue.

One ``PUT /catalogue/v1/services`` per subsystem the gateway serves, listing every service it
provides there: the settings file's and the enabled declared ones (a disabled service leaves the
catalogue). Each catalogue is signed with the gateway's signing key
(:mod:`exchange.trust.catalogue`): the authority accepts it for its own member's subsystems
only, fresh and once, and needs no token from the gateway. The command line and the console
publish the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

import httpx

from exchange.errors import Error
from exchange.faults import mapped
from exchange.gateway.services import catalogue
from exchange.gateway.settings import GatewaySettings, ServiceSpec
from exchange.http import retry_after
from exchange.trust.catalogue import sign_catalogue
from exchange.trust.signed import Signer

MAX_WAIT = 30.0  # seconds spent in all waiting out the authority's rate limit, at most


@dataclass(frozen=True, slots=True)
class Publication:
    """What one publication did: how many services each subsystem now lists, and why the
    authority refused the others (its own message)."""

    published: dict[str, int] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)


def publish(
    settings: GatewaySettings,
    declared: Iterable[ServiceSpec],
    *,
    central_url: str,
    signer: Signer,
    clock: Callable[[], datetime],
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
    max_wait: float = MAX_WAIT,
) -> Publication:
    """Publish every subsystem's catalogue, each signed as it is sent.

    A refused subsystem does not stop the others. A ``429`` is waited out as its
    ``Retry-After`` says (the authority limits catalogues per gateway), up to ``max_wait``
    seconds in all, and the catalogue signed again; past that, the subsystem is refused with
    when to try again. If the authority cannot be reached, the subsystems not yet sent are
    refused with that reason.
    """
    done = Publication()
    waited = 0.0
    entries_of = catalogue(settings, declared)
    url = f"{central_url.rstrip('/')}/catalogue/v1/services"
    with httpx.Client(transport=transport, timeout=30, follow_redirects=False) as http:
        for subsystem, entries in entries_of.items():
            while True:
                signed = sign_catalogue(
                    signer,
                    gateway=str(settings.gateway),
                    subsystem=subsystem,
                    services=entries,
                    at=clock(),
                )
                try:
                    with mapped("the central authority"):
                        response = http.put(url, json={"catalogue": signed})
                except Error as exc:
                    for unsent in entries_of:  # a refusal heard already keeps its reason
                        if unsent not in done.published and unsent not in done.refused:
                            done.refused[unsent] = str(exc)
                    return done
                wait = retry_after(response.status_code, response.headers.get("retry-after"))
                if wait is None or waited + wait > max_wait:
                    break
                sleep(wait)
                waited += wait
            if response.status_code == 200:
                done.published[subsystem] = len(entries)
            else:
                done.refused[subsystem] = _reason(response)
    return done


def _reason(response: httpx.Response) -> str:
    try:
        said = str(response.json().get("message"))
    except (ValueError, AttributeError):
        said = f"HTTP {response.status_code}"
    after = retry_after(response.status_code, response.headers.get("retry-after"))
    if after is not None:
        said = f"{said} (try again in {after} s)"
    return said
