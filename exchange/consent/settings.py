"""A consent service's settings file (TOML).

::

    name = "consent"                        # its name in the global configuration
    member = "EE/GOV/70000000"              # the member that operates it
    data_dir = "."                          # key, certificate, secrets, database
    anchor = "anchor.json"
    public_url = "https://consent.example"  # where citizens and gateways reach it

    [listen]
    host = "127.0.0.1"
    port = 4460

    [identity]                              # the OIDC issuer citizens sign in with
    issuer = "https://idp.example"
    jwks_url = "https://idp.example/jwks"
    client_id = "consent-service"

    [consumers]                             # where each portal may have citizens sent back:
    "EE/GOV/70000001/citizen-portal" = ["https://portal.example/procedures/"]  # and below

    default_language = "fr"                 # when a reader's browser asks for none we speak

    [evidence_types]                        # how the pages name what is shared, per language
    "birth-certificate" = { fr = "acte de naissance", ar = "شهادة الميلاد" }

    [members]                               # members' names, per language (else the global
    "EE/GOV/70000001" = { fr = "Portail de l'État", ar = "بوابة الدولة" }  # configuration's)

The purpose's words come from the portal that asks, in the reader's language.

Variables ``EXCHANGE_CONSENT_<KEY>`` and ``EXCHANGE_CONSENT_<SECTION>_<KEY>`` override the file
(:mod:`exchange.settings_file`): ``EXCHANGE_CONSENT_DATABASE_URL`` for ``database_url``, and
``EXCHANGE_CONSENT_CLIENT_SECRET`` (or ``..._IDENTITY_CLIENT_SECRET``) supplies the client secret if
the issuer wants one.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator

from exchange.consent import returns
from exchange.db.engine import sqlite_url
from exchange.identifiers import MemberId, check_segment
from exchange.settings_file import Listen, OidcClient, RoleSettings
from exchange.web.languages import SOURCE, Language, Text, localised


class ConsentSettings(RoleSettings):
    prefix: ClassVar[str] = "EXCHANGE_CONSENT_"
    kind: ClassVar[str] = "consent service"
    aliases: ClassVar[dict[str, tuple[str, ...]]] = {
        "EXCHANGE_CONSENT_CLIENT_SECRET": ("identity", "client_secret"),
    }

    name: str
    member: str
    data_dir: Path
    anchor: Path
    public_url: str
    database_url: str | None = None
    listen: Listen = Listen(port=4460)
    identity: OidcClient
    consumers: dict[str, list[str]] = Field(default_factory=dict)
    max_validity_days: int = Field(default=365, ge=1, le=3650)
    globalconf_refresh: float = Field(default=60.0, gt=0)
    default_language: Language = SOURCE
    evidence_types: dict[str, Text] = Field(default_factory=dict)
    members: dict[str, Text] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_segment(value, "consent service name")

    @field_validator("member")
    @classmethod
    def _member(cls, value: str) -> str:
        MemberId.parse(value)
        return value

    @field_validator("consumers")
    @classmethod
    def _consumers(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for pages in value.values():
            for page in pages:
                returns.registered(page)
        return value

    @property
    def db_url(self) -> str:
        return self.database_url or sqlite_url(self.data_dir / "consent.db")

    @property
    def https(self) -> bool:
        return self.public_url.startswith("https://")

    def evidence_name(self, evidence_type: str) -> str | None:
        """``evidence_type`` in the reader's language, if these settings name it."""
        text = self.evidence_types.get(evidence_type)
        return None if text is None else localised(text)

    def member_name(self, member: str, registered: str) -> str:
        """A member's name in the reader's language, else as the global configuration has it."""
        text = self.members.get(member)
        return registered if text is None else localised(text, otherwise=registered)

    def return_allowed(self, consumer: str, url: str) -> bool:
        """Citizens are sent back only to a page registered for that consumer, or one below it,
        compared as URLs (:mod:`exchange.consent.returns`)."""
        return returns.allowed(url, self.consumers.get(consumer, []))
