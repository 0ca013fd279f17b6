"""Rate limits of the authority's open endpoints, the ones anyone can call cheaply: the writes,
and the reads of applications, where the number and receipt can be guessed at.

Four allowances, each with buckets of its own, so that a flood of one leaves the others open:
``applications`` (``POST /applications`` and the apply form ``POST /apply/``, one allowance),
``enrolment`` (``POST /enrolment``), ``catalogue`` (``PUT /catalogue/v1/services``) and
``application-reads`` (``GET /applications/<number>`` and the applicant's page
``GET /apply/<number>/<receipt>``, one allowance). Each is
a token bucket per client address and one for everyone
(:class:`~exchange.central.settings.RateLimits`): a bucket holds at most its burst, is refilled
at its rate per second, and a request takes one token. With none left the request is refused
before its body is read (no parsing, no database): ``429 QuotaExceeded`` with ``Retry-After``,
the whole seconds until a token is back, and ``detail`` ``per-client`` or ``overall``. A
request refused overall gives its client's token back.
Refusals are counted in ``exchange_central_rate_limited_total{endpoint,limit}`` and not logged
(a flood of refusals would be a flood of log lines).

**Whose address.** The TCP peer's: an IPv4 address (also when a dual-stack listener sees it as
``::ffff:a.b.c.d``), or an IPv6 address's /64, since one host commonly holds a whole /64. The
authority's server (:func:`exchange.serving.config`) believes no ``X-Forwarded-For`` unless the
peer is a reverse proxy the operator names (``EXCHANGE_CENTRAL_TRUSTED_PROXIES``, none by
default); then the client is the last address it forwards that is not itself a named proxy.
Behind an unnamed proxy every request comes from the proxy's address, so the per-client limit
becomes a second overall limit there. Memory is bounded: at most
:data:`MAX_CLIENTS` addresses are held per allowance, the least recently seen forgotten first (it
starts again with a full bucket). Whoever holds more addresses than that escapes the per-client
limit, not the overall one.

**One process.** The buckets live in the process's memory, used on the event loop only (no lock).
The authority runs as one process (``exchange central serve``); each further process behind a
balancer would allow the limits again (N processes, N times the overall limit).
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from prometheus_client import CollectorRegistry, Counter

from exchange.central.settings import RateLimits
from exchange.errors import QuotaExceeded
from exchange.web.languages import N_

APPLICATIONS, ENROLMENT, CATALOGUE = "applications", "enrolment", "catalogue"
APPLICATION_READS = "application-reads"
ENDPOINTS = (APPLICATIONS, ENROLMENT, CATALOGUE, APPLICATION_READS)
PER_CLIENT, OVERALL = "per-client", "overall"
MAX_CLIENTS = 10_000  # addresses held per allowance: a few hundred kilobytes at most
_REFUSALS = {
    PER_CLIENT: N_("too many requests from your address; please try again in a moment"),
    OVERALL: N_("too many requests at the moment; please try again in a moment"),
}


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class Buckets:
    """Token buckets of one rate and burst, by key; at most ``capacity`` keys held."""

    def __init__(self, *, rate: float, burst: int, capacity: int) -> None:
        self._rate, self._burst, self._capacity = rate, burst, capacity
        self._held: OrderedDict[str, _Bucket] = OrderedDict()  # least recently seen first

    def take(self, key: str, now: float) -> float:
        """Take a token of ``key``'s bucket: 0 if there was one, else the seconds until one is
        back (nothing taken)."""
        bucket = self._held.pop(key, None)
        if bucket is None:
            if len(self._held) >= self._capacity:
                self._held.popitem(last=False)
            bucket = _Bucket(float(self._burst), now)
        else:
            # A clock that steps back refills nothing (and takes nothing back).
            refill = max(0.0, now - bucket.at) * self._rate
            bucket.tokens, bucket.at = min(float(self._burst), bucket.tokens + refill), now
        self._held[key] = bucket
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self._rate

    def give_back(self, key: str) -> None:
        bucket = self._held.get(key)
        if bucket is not None:
            bucket.tokens = min(float(self._burst), bucket.tokens + 1)


def client_of(address: str | None) -> str:
    """The key of a client address: itself (IPv4, also IPv4-mapped IPv6) or its /64 (IPv6)."""
    try:
        parsed = ipaddress.ip_address(address or "")
    except ValueError:
        return "unknown"  # a Unix socket, or a test transport: all such callers as one
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        # A dual-stack listener sees every IPv4 peer as ::ffff:a.b.c.d, all in one /64.
        return str(parsed.ipv4_mapped)
    if parsed.version == 6:
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


class Throttle:
    def __init__(
        self,
        limits: RateLimits,
        *,
        clock: Callable[[], float],
        registry: CollectorRegistry | None = None,
    ) -> None:
        """``clock``: seconds, any origin (the app passes its own clock, so tests move it)."""
        self._clock = clock
        self._clients = {
            endpoint: Buckets(
                rate=limits.per_client, burst=limits.per_client_burst, capacity=MAX_CLIENTS
            )
            for endpoint in ENDPOINTS
        }
        self._overall = {
            endpoint: Buckets(rate=limits.overall, burst=limits.overall_burst, capacity=1)
            for endpoint in ENDPOINTS
        }
        self._refusals = Counter(
            "exchange_central_rate_limited",
            "Requests to the authority's open endpoints refused by a rate limit",
            ["endpoint", "limit"],
            registry=registry,
        )

    def admit(self, endpoint: str, address: str | None) -> None:
        """Count one request to ``endpoint`` from ``address``; raise :class:`QuotaExceeded`
        if its client's or everyone's bucket is empty."""
        now, client = self._clock(), client_of(address)
        wait = self._clients[endpoint].take(client, now)
        if wait:
            self._refuse(endpoint, PER_CLIENT, wait)
        wait = self._overall[endpoint].take("", now)
        if wait:
            self._clients[endpoint].give_back(client)  # not served: it spent nothing
            self._refuse(endpoint, OVERALL, wait)

    def _refuse(self, endpoint: str, limit: str, wait: float) -> NoReturn:
        self._refusals.labels(endpoint, limit).inc()
        raise QuotaExceeded(_REFUSALS[limit], detail=limit, retry_after=math.ceil(wait))
