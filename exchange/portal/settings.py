"""The citizen portal's settings file (TOML): an example consumer information system.

::

    client = "EE/GOV/70000001/citizen-portal"   # its X-Road subsystem
    gateway_url = "http://127.0.0.1:4420"       # its own gateway's consumer side
    anchor = "anchor.json"                      # to read the global configuration
    data_dir = "data"
    public_url = "http://127.0.0.1:4450"
    consent_service = "consent"                 # which consent service citizens are sent to
    database_url = "postgresql://..."           # ratings; default: SQLite in data_dir
    figures = true                              # publish /figures (docs/public-figures.md)

    [listen]
    port = 4450

    [identity]
    issuer = "http://127.0.0.1:4440"
    jwks_url = "http://127.0.0.1:4440/jwks"
    client_id = "citizen-portal"

    [[procedures]]                              # what citizens can do here (default: passport)
    code = "passport"
    ...

Variables ``EXCHANGE_PORTAL_<KEY>`` and ``EXCHANGE_PORTAL_<SECTION>_<KEY>`` override the file
(:mod:`exchange.settings_file`), e.g. ``EXCHANGE_PORTAL_IDENTITY_CLIENT_SECRET``.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator

from exchange.db.engine import sqlite_url
from exchange.identifiers import ServiceId, SubsystemId, check_segment, unversioned
from exchange.settings_file import Listen, OidcClient, RoleSettings, Strict


class Procedure(Strict):
    """A public service that needs evidence another agency already holds."""

    code: str
    title: str
    description: str
    service: str  # INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICE[/VERSION] to fetch the evidence from
    evidence: str  # what the citizen would otherwise bring, in words
    purpose: str
    purpose_text: str
    legal_basis: str | None = None
    valid_days: int = Field(default=30, ge=1, le=365)
    max_uses: int | None = Field(default=3, ge=1)
    preview: bool = False

    @field_validator("code")
    @classmethod
    def _code(cls, value: str) -> str:
        return check_segment(value, "procedure code")

    @field_validator("service")
    @classmethod
    def _service(cls, value: str) -> str:
        ServiceId.parse(value)
        return value

    @property
    def consented_service(self) -> str:
        """The service as a consent names it: without its version."""
        return unversioned(self.service)


def passport(service: str) -> Procedure:
    return Procedure(
        code="passport",
        title="Apply for a passport",
        description=(
            "A first passport needs proof of birth. Instead of bringing a certificate, let the "
            "portal obtain your birth certificate from the Population Register with your consent."
        ),
        service=service,
        evidence="birth certificate",
        purpose="passport-application",
        purpose_text="to check your identity and citizenship for your passport application",
    )


def teaching(service: str) -> Procedure:
    return Procedure(
        code="teaching-position",
        title="Apply for a teaching position",
        description=(
            "Schools need proof of your higher education. Let the portal obtain your diploma "
            "from the university with your consent; you will see it before it is sent."
        ),
        service=service,
        evidence="diploma",
        purpose="teaching-application",
        purpose_text="to check your qualification for a teaching position",
        max_uses=1,
        preview=True,
    )


class PortalSettings(RoleSettings):
    prefix: ClassVar[str] = "EXCHANGE_PORTAL_"
    kind: ClassVar[str] = "portal"

    client: str
    gateway_url: str
    anchor: Path
    data_dir: Path
    public_url: str
    consent_service: str
    listen: Listen = Listen(port=4450)
    identity: OidcClient
    procedures: list[Procedure] = Field(min_length=1)
    timeout: float = Field(default=30.0, gt=0)
    globalconf_refresh: float = Field(default=60.0, gt=0)
    database_url: str | None = None
    figures: bool = True

    @property
    def db_url(self) -> str:
        return self.database_url or sqlite_url(self.data_dir / "portal.db")

    @field_validator("client")
    @classmethod
    def _client(cls, value: str) -> str:
        SubsystemId.parse(value)
        return value

    @property
    def https(self) -> bool:
        return self.public_url.startswith("https://")

    def procedure(self, code: str) -> Procedure | None:
        return next((p for p in self.procedures if p.code == code), None)
