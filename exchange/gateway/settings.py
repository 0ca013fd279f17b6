"""A gateway's settings file (TOML).

::

    id = "EE/GOV/70000310/gw1"          # this gateway; its member is the member it serves
    data_dir = "gw1"                    # keys, certificates, cached configuration, database
    anchor = "anchor.json"              # the instance's trust anchor, received out of band
    subsystems = ["population-registry"]

    [consumer]                          # where the member's own systems call (X-Road REST)
    host = "127.0.0.1"
    port = 8080

    [provider]                          # where other gateways call, mutual TLS only
    host = "127.0.0.1"
    port = 8443

    [console]                           # the staff's console at <consumer>/console, off by default
    enabled = true
    public_url = "http://127.0.0.1:8080"
    issuer = "https://login.example.org"
    jwks_url = "https://login.example.org/jwks"
    client_id = "gw1-console"
    [console.roles]                     # values of the role claim -> console roles
    "gateway-admins" = ["operator"]

    [[services]]
    subsystem = "population-registry"
    code = "birth-certificate"
    evidence_type = "birth-certificate"
    parameters = ["person"]
    consent_policy = "consent"
    [services.connector]
    type = "sql"
    url = "sqlite:///population.db"
    query = "SELECT ... WHERE person_code = :person"

Relative paths are taken from the settings file's folder. Variables ``EXCHANGE_GATEWAY_<KEY>``
and ``EXCHANGE_GATEWAY_<SECTION>_<KEY>`` override the file (:mod:`exchange.settings_file`), so that
deployments keep credentials out of it: ``EXCHANGE_GATEWAY_DATABASE_URL``,
``EXCHANGE_GATEWAY_PREVIEW_CLIENT_SECRET``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

import schemas
from exchange.db.engine import sqlite_url
from exchange.identifiers import GatewayId, SubsystemId, check_segment
from exchange.settings_file import Listen, RoleSettings, Strict
from exchange.web.languages import SOURCE, Language, Text
from exchange.web.staff import ConsoleSpec as StaffConsoleSpec
from exchange.web.staff import stays_local

SCHEMAS_DIR = schemas.FOLDER  # the evidence schemas shipped with the package


class ConnectorSpec(Strict):
    type: Literal["sql", "http", "python"]
    url: str | None = None
    query: str | None = None
    target: str | None = None
    fields: dict[str, str] | None = None
    json_columns: list[str] = Field(default_factory=list, description="sql: columns of JSON text")
    timeout: float = Field(default=5.0, gt=0, le=300)
    connect_timeout: float = Field(default=2.0, gt=0, le=60)
    max_bytes: int = Field(default=1024 * 1024, gt=0)
    document: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*$",
        description=(
            "http: the registry serves one document of this media type (application/pdf), "
            "streamed through both gateways, bound by the length and SHA-256 it declares "
            "(docs/protocol.md); at most the gateway's max_part_bytes"
        ),
    )


class IdentitySpec(Strict):
    """The OIDC issuer whose ID tokens citizens present (to read their own usage)."""

    issuer: str
    jwks_url: str
    portals: dict[str, str] = Field(
        min_length=1, description="client id at the issuer -> the portal's X-Road subsystem id"
    )


class UsageSpec(Strict):
    """Who may ask this gateway's usage service ("who used my data") on a citizen's behalf."""

    trusted_portals: list[str] = Field(
        default_factory=list,
        description=(
            "portal subsystems trusted to ask for a citizen named by X-Road-UserId alone, as "
            "state portals ask Data Tracker; every other caller presents the citizen's ID token"
        ),
    )

    @field_validator("trusted_portals")
    @classmethod
    def _subsystems(cls, value: list[str]) -> list[str]:
        return [str(SubsystemId.parse(portal)) for portal in value]


class PreviewSpec(Strict):
    """Where citizens look at evidence before it is released (plain HTTP behind the operator's
    TLS front in production): this listener, its public address, and its client id at the
    identity provider (``identity.issuer``)."""

    host: str = "127.0.0.1"
    port: int = Field(ge=0, le=65535)
    public_url: str
    client_id: str
    client_secret: str | None = None  # or EXCHANGE_GATEWAY_PREVIEW_CLIENT_SECRET
    lifetime: float = Field(default=900.0, gt=0, le=86400, description="seconds a preview waits")
    default_language: Language = SOURCE  # when a reader's browser asks for none the pages speak
    labels: dict[str, Text] = Field(
        default_factory=dict, description="evidence fields as citizens read them, per language"
    )


class EdmParty(Strict):
    """An agent as EDM names it: an identifier in an EAS scheme
    (``urn:cef.eu:names:identifier:EAS:<code>``) and a name."""

    id: str = Field(min_length=1, max_length=200)
    scheme: str = Field(pattern=r"^urn:cef\.eu:names:identifier:EAS:[0-9]{4}$")
    name: str = Field(min_length=1, max_length=500)
    # Where this provider's evidence comes from, as the Data Service Directory answers it
    # (sdg:Jurisdiction); without a country its services are not listed there.
    country: str | None = Field(
        default=None, pattern=r"^[A-Z]{2}$", description="AdminUnitLevel1 (ISO 3166-1)"
    )
    region: str | None = Field(
        default=None, pattern=r"^[A-Z]{2}[0-9A-Z]{1,3}$", description="AdminUnitLevel2 (NUTS)"
    )
    locality: str | None = Field(
        default=None, pattern=r"^[0-9A-Za-z]{1,20}$", description="AdminUnitLevel3 (LAU)"
    )
    address: str | None = Field(default=None, max_length=500, description="full address")


class EdmSpec(Strict):
    """The OOTS EDM profile (docs/oots.md): where the official EDM schema set is installed, and
    how this gateway's member is named in EDM answers (evidence provider, error provider)."""

    folder: Path = Field(description="the OOTS EDM v1.0 material (xsd/ inside); never shipped")
    provider: EdmParty | None = Field(
        default=None, description="this member in EDM answers; needed to provide EDM services"
    )
    waived_rules: list[Annotated[str, Field(pattern=r"^R-EDM-REQ-[SC][0-9]{3}$")]] = Field(
        default_factory=list,
        description=(
            "EDM-REQ business rules the consumer gateway does not enforce (the material's own "
            "mistakes, or R-EDM-REQ-C005 where preview pages are not https); logged at start"
        ),
    )


class EdmDocumentSpec(Strict):
    """The evidence distributed as a document the registry serves (a PDF of the certificate),
    streamed as the answer's ``cid:`` part, never held whole (docs/oots.md)."""

    url: str = Field(
        min_length=1,
        description="the registry's address of the document, {parameter} as for http connectors",
    )
    # The document types of the OOTS media type code list (OOTSMediaTypes).
    media_type: Literal["application/pdf", "image/png", "image/jpeg", "image/svg+xml"] = Field(
        default="application/pdf", description="sdg:Distribution/sdg:Format"
    )
    timeout: float = Field(default=5.0, gt=0, le=300, description="between two reads")
    connect_timeout: float = Field(default=2.0, gt=0, le=60)


class EdmServiceSpec(Strict):
    """A service offered in OOTS EDM: requests are EDM QueryRequests for this evidence type."""

    evidence_type_classification: str = Field(min_length=1, max_length=500)
    # The bounds are the authority's catalogue's (EdmOfferIn): beyond them every publication
    # of the subsystem's catalogue would be refused.
    conforms_to: str | None = Field(
        default=None,
        max_length=500,
        description="the distribution's data model URI (sdg:ConformsTo)",
    )
    titles: dict[str, str] = Field(
        min_length=1,
        max_length=30,
        description="language code (EN, DE, ...) -> the evidence type's title",
    )
    transformations: list[str] = Field(
        default_factory=list,
        max_length=30,
        description=(
            "subset URIs (sdg:Transformation) answered with this service's evidence as it is; "
            "declare only those the evidence schema already meets"
        ),
    )
    valid_for_days: int | None = Field(default=None, gt=0, description="sdg:ValidityPeriod")
    issued_field: str | None = Field(
        default=None, description="the evidence field with its issuing date (else: today)"
    )
    about: Literal["natural-person", "legal-person"] = Field(
        default="natural-person",
        description=(
            "whom the evidence is about: the request's NaturalPerson (its eIDAS identifier "
            "XX/YY/ID gives the subject parameter XXID) or LegalPerson (its XX/YY/ID gives "
            "legal_person_parameter the register code ID)"
        ),
    )
    legal_person_parameter: str = Field(
        default="code", description="the parameter taking a legal person's register code"
    )
    family_name_field: str = "familyName"
    given_name_field: str = "givenName"
    date_of_birth_field: str = "dateOfBirth"
    legal_name_field: str = Field(
        default="name", description="the evidence field the legal name is checked on"
    )
    xml: bool = Field(
        default=True,
        description="offers the evidence as application/xml (the registry's record); false: "
        "the document only",
    )
    document: EdmDocumentSpec | None = Field(
        default=None, description="offers the evidence as a document too (DistributedAs Format)"
    )

    @property
    def formats(self) -> tuple[str, ...]:
        """The distributions offered (sdg:DistributedAs/sdg:Format)."""
        xml = ("application/xml",) if self.xml else ()
        return xml + (() if self.document is None else (self.document.media_type,))


class ConsoleSpec(StaffConsoleSpec):
    """The console of the member's own staff, under ``/console`` on the consumer listener.

    Staff sign in at an OIDC issuer (``issuer``, this console's ``client_id``); the values of the
    ``role_claim`` in their ID token name their roles through ``roles``. A token whose claim
    names no role listed there signs nobody in. Off by default, and refused on a consumer
    listener bound to a non-loopback address unless ``allow_public`` says so.
    """


class ServiceSpec(Strict):
    subsystem: str
    code: str
    version: str | None = None
    evidence_type: str
    description: str = ""
    consent_policy: Literal["consent", "legal-basis", "public"] = "consent"
    preview: bool = Field(
        default=False, description="citizens see the evidence and approve it before each release"
    )
    subject_parameter: str | None = Field(
        default="person", description="the parameter naming the person the evidence is about"
    )
    methods: list[Literal["GET", "POST"]] = Field(default_factory=lambda: ["GET"])  # type: ignore[arg-type]
    parameters: list[str] = Field(default_factory=list)
    openapi: Path | None = None
    connector: ConnectorSpec
    edm: EdmServiceSpec | None = Field(
        default=None, description="offered in OOTS EDM: POST a QueryRequest (docs/oots.md)"
    )

    @field_validator("subsystem", "code", "version")
    @classmethod
    def _segment(cls, value: str | None) -> str | None:
        if value is not None:
            check_segment(value, "service part")
        return value


class GatewaySettings(RoleSettings):
    prefix: ClassVar[str] = "EXCHANGE_GATEWAY_"
    kind: ClassVar[str] = "gateway"
    relative: ClassVar[tuple[str, ...]] = (
        "data_dir",
        "anchor",
        "schemas_dir",
    )

    id: str
    data_dir: Path
    anchor: Path
    subsystems: list[str]
    database_url: str | None = None
    schemas_dir: Path = SCHEMAS_DIR
    consumer: Listen = Listen(port=8080)
    provider: Listen = Listen(port=8443)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    max_part_bytes: int = Field(
        default=256 * 1024 * 1024,
        gt=0,
        description=(
            "largest document part streamed through (a PDF scan): never held whole, bound by "
            "its declared length and SHA-256; max_body_bytes caps everything around it"
        ),
    )
    request_ttl: float = Field(default=60.0, gt=0, description="seconds a request signature lives")
    clock_skew: float = Field(default=120.0, ge=0, description="seconds of tolerated clock drift")
    peer_timeout: float = Field(default=30.0, gt=0)
    globalconf_refresh: float = Field(default=60.0, gt=0)
    certificate_status_max_age: float = Field(
        default=600.0,
        gt=0,
        description="seconds an OCSP answer about a signing certificate is relied on at most "
        "(less if its nextUpdate is sooner); past it, signatures by that certificate are refused",
    )
    access_cache_ttl: float = Field(default=2.0, ge=0)
    json_logs: bool = False
    sqlite_synchronous: Literal["FULL", "NORMAL"] = Field(
        default="FULL", description="NORMAL: commits survive a process crash, not a power loss"
    )
    replica: str = Field(
        default="1", description="this replica's name; each keeps its own audit chain"
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description=(
            "processes serving both listeners on the same ports; worker i is replica "
            "<replica>-w<i> with its own audit chain"
        ),
    )
    audit_head_interval: float = Field(
        default=5.0,
        gt=0,
        description=(
            "seconds between tree heads while records come in (none while idle); each head is "
            "timestamped and sent to the witness, so this bounds the unwitnessed tail"
        ),
    )
    audit_witness: bool = Field(
        default=True,
        description="submit every tree head to the central authority's witness",
    )
    audit_peer_witnesses: list[str] = Field(
        default_factory=list,
        description=(
            "gateways (ids, as in the global configuration) of other members that witness this "
            "gateway's tree heads besides the authority; off when empty"
        ),
    )
    audit_peer_witness: bool = Field(
        default=False,
        description=(
            "witness other members' gateways' tree heads (serve /witness/v1 on the provider "
            "listener): check consistency, countersign, refuse and report forks"
        ),
    )
    audit_head_every: int = Field(default=10000, gt=0, description="records that force a head")
    consent_feed_max_age: float = Field(
        default=15.0,
        ge=0,
        le=300,
        description=(
            "seconds the consent status is answered from the consent service's revocation feed "
            "after last hearing from it; then asked per request (0: always asked)"
        ),
    )
    identity: IdentitySpec | None = None
    usage: UsageSpec = Field(default_factory=UsageSpec)
    preview: PreviewSpec | None = None
    edm: EdmSpec | None = None

    console: ConsoleSpec = Field(default_factory=ConsoleSpec)
    services: list[ServiceSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _preview_needs_identity(self) -> GatewaySettings:
        if self.preview is not None and self.identity is None:
            raise ValueError("a preview listener needs the [identity] of its citizens")
        for service in self.services:
            problem = self.service_problem(service)
            if problem is not None:
                raise ValueError(problem)
        return self

    def service_problem(self, service: ServiceSpec) -> str | None:
        """What makes ``service`` unfit for this gateway, whether the settings file or the
        console declares it (:mod:`exchange.gateway.declared`); ``None`` if nothing."""
        if service.preview and self.preview is None:
            return "a service with preview = true needs a [preview] listener"
        if service.preview and service.consent_policy != "consent":
            return 'preview = true needs consent_policy = "consent"'
        if service.connector.document is not None:
            if service.connector.type != "http":
                return "a document (connector.document) is served by an http connector"
            if service.preview or service.edm is not None or service.methods != ["GET"]:
                return (
                    'a document service takes methods = ["GET"], and neither preview nor '
                    "[services.edm] (a document is never held whole, so it cannot be shown first)"
                )
        if service.edm is not None:
            if self.edm is None or self.edm.provider is None:
                return "a service with [services.edm] needs [edm] folder and provider"
            if not service.edm.formats:
                return "an EDM service offers xml, a [services.edm.document], or both"
            if service.subject_parameter is None or service.methods != ["POST"]:
                return 'an EDM service needs methods = ["POST"] and a subject_parameter'
            if service.edm.about == "legal-person" and (
                service.consent_policy == "consent"
                or service.edm.legal_person_parameter not in service.parameters
            ):
                # Consent is a natural person's to give; a company's evidence is released on a
                # legal basis or as public data, whoever represents the company.
                return (
                    "an EDM service about legal persons needs its legal_person_parameter among "
                    'its parameters and consent_policy "legal-basis" or "public"'
                )
        return None

    @model_validator(mode="after")
    def _console_stays_local(self) -> GatewaySettings:
        stays_local(
            self.console,
            self.consumer.host,
            where="the consumer listener",
            setting="[console] allow_public = true",
        )
        return self

    @field_validator("id")
    @classmethod
    def _gateway_id(cls, value: str) -> str:
        GatewayId.parse(value)
        return value

    @field_validator("replica")
    @classmethod
    def _replica(cls, value: str) -> str:
        return check_segment(value, "replica")

    @field_validator("subsystems")
    @classmethod
    def _subsystems(cls, value: list[str]) -> list[str]:
        for code in value:
            check_segment(code, "subsystem code")
        return value

    @property
    def gateway(self) -> GatewayId:
        return GatewayId.parse(self.id)

    @property
    def audit_chain(self) -> str:
        return f"{self.id}/{self.replica}"

    @property
    def db_url(self) -> str:
        return self.database_url or sqlite_url(self.data_dir / "gateway.db")

    @classmethod
    def from_file(cls, raw: dict[str, Any], folder: Path) -> None:
        """Also each service's OpenAPI file and SQLite connector database."""
        super().from_file(raw, folder)
        edm = raw.get("edm")
        if isinstance(edm, dict) and "folder" in edm:
            edm["folder"] = str(folder / edm["folder"])
        for service in raw.get("services", []):
            if "openapi" in service:
                service["openapi"] = str(folder / service["openapi"])
            connector = service.get("connector", {})
            url = connector.get("url", "")
            if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
                connector["url"] = f"sqlite:///{folder / url.removeprefix('sqlite:///')}"
