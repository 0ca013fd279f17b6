"""Settings of a central authority: ``EXCHANGE_CENTRAL_*`` environment variables and the command's
options (see :mod:`exchange.settings_file`); it has no settings file.

The operators' console (:mod:`exchange.central.console`) is off unless
``EXCHANGE_CENTRAL_CONSOLE_ENABLED=true``, with ``..._CONSOLE_PUBLIC_URL``, ``..._ISSUER``,
``..._JWKS_URL`` and ``..._CLIENT_ID`` (and ``..._CLIENT_SECRET`` if the issuer wants one); the
role claim's values ``operator``, ``auditor`` and ``viewer`` give those roles. On a listener
bound to a non-loopback address it is refused unless ``..._CONSOLE_ALLOW_PUBLIC=true``.

The open write endpoints (applications, enrolment, signed catalogues) and the reads of
applications are rate-limited per client address and overall (:mod:`exchange.central.throttle`):
``EXCHANGE_CENTRAL_RATE_LIMIT_PER_CLIENT``, ``..._PER_CLIENT_BURST``, ``..._OVERALL`` and
``..._OVERALL_BURST``. A client is the TCP peer's address, unless the peer is one of the reverse
proxies ``EXCHANGE_CENTRAL_TRUSTED_PROXIES`` names (none by default): then it is the address
that proxy put in ``X-Forwarded-For``.

With ``EXCHANGE_CENTRAL_EDM_FOLDER`` naming the OOTS EDM material, the authority answers the EDM
Data Service Directory query from its service catalogue (:mod:`exchange.central.dsd`)."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator, model_validator

from exchange.db.engine import sqlite_url
from exchange.settings_file import RoleSettings, Strict
from exchange.web.staff import ConsoleSpec, stays_local


class RateLimits(Strict):
    """Token buckets of each open endpoint: one per client address, one for everyone.
    The defaults let a gateway publish a few dozen subsystems' catalogues at once and an agency
    apply by hand or by script, and hold a flood to a few requests a second."""

    per_client: float = Field(
        default=1.0, gt=0, le=10_000, description="requests per second a client address gets back"
    )
    per_client_burst: int = Field(
        default=30, ge=1, le=100_000, description="requests a client address may send at once"
    )
    overall: float = Field(
        default=10.0, gt=0, le=100_000, description="requests per second everyone gets back"
    )
    overall_burst: int = Field(
        default=200, ge=1, le=1_000_000, description="requests everyone together may send at once"
    )


class CentralSettings(RoleSettings):
    prefix: ClassVar[str] = "EXCHANGE_CENTRAL_"
    kind: ClassVar[str] = "central authority"

    data_dir: Path = Field(default=Path("exchange-data/central"))
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite file in the data folder"
    )
    host: str = "127.0.0.1"
    port: int = 4400
    public_url: str | None = Field(
        default=None, description="URL gateways use to reach this authority"
    )
    configuration_validity: timedelta = timedelta(hours=1)
    crl_validity: timedelta = timedelta(days=1)
    ocsp_validity: timedelta = Field(
        default=timedelta(minutes=10), description="OCSP answers: nextUpdate - thisUpdate"
    )
    ocsp_delegated: bool = Field(
        default=False,
        description=(
            "sign OCSP answers with a delegated responder certificate (id-kp-OCSPSigning, "
            "ocsp-nocheck; ocsp.key and ocsp.pem in the data folder) instead of the CA key"
        ),
    )
    ocsp_responder_validity: timedelta = Field(
        default=timedelta(days=30),
        description="validity of the delegated responder certificate; made anew when it ends",
    )
    ca_validity: timedelta = timedelta(days=20 * 365)
    configuration_signing_validity: timedelta = timedelta(days=5 * 365)
    signing_certificate_validity: timedelta = timedelta(days=2 * 365)
    tls_certificate_validity: timedelta = timedelta(days=365)
    enrolment_code_validity: timedelta = Field(
        default=timedelta(days=7), description="how long a gateway's one-time enrolment code works"
    )
    clock_skew: float = Field(
        default=120.0,
        ge=0,
        description="seconds of tolerated clock drift of what gateways sign (their catalogues)",
    )
    console: ConsoleSpec = Field(default_factory=ConsoleSpec)
    rate_limit: RateLimits = Field(default_factory=RateLimits)
    trusted_proxies: str = Field(
        default="",
        description=(
            "addresses or networks (comma-separated) of reverse proxies in front of the "
            "authority whose X-Forwarded-For names the client; none by default"
        ),
    )
    edm_folder: Path | None = Field(
        default=None,
        description=(
            "the OOTS EDM v1.0 material (xsd/ inside; docs/oots.md); with it, the authority "
            "answers Data Service Directory queries at /dsd/rest/search"
        ),
    )

    @model_validator(mode="after")
    def _console_stays_local(self) -> CentralSettings:
        stays_local(
            self.console,
            self.host,
            where="the authority's listener",
            setting="EXCHANGE_CENTRAL_CONSOLE_ALLOW_PUBLIC=true",
        )
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_addresses(cls, value: str) -> str:
        # Addresses only: "*" would let any client name itself as anyone.
        for item in filter(None, (part.strip() for part in value.split(","))):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(f"{item!r} is not an IP address or network") from exc
        return value

    @property
    def proxies(self) -> tuple[str, ...]:
        """:attr:`trusted_proxies` as a list of addresses and networks."""
        return tuple(filter(None, (part.strip() for part in self.trusted_proxies.split(","))))

    @property
    def url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def db_url(self) -> str:
        return self.database_url or sqlite_url(self.data_dir / "central.db")
