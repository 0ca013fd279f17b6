"""Lay out a small federation on disk: central authority, timestamping authority, identity
provider, consent service, the Population Register's gateway (provider, with a preview page),
the State Portal's gateway (consumer) and the citizen portal.

Used by ``exchange demo`` and by the integration tests. Everything goes through the same code
paths an operator's commands use (CSR issuance, registration, access rights); only the carrying
of CSRs and certificates between folders is done directly instead of over the management API.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from exchange import keyfolder
from exchange.central import files as central_files
from exchange.central.service import Central, build
from exchange.central.settings import CentralSettings
from exchange.consent import files as consent_files
from exchange.db import migrate
from exchange.db.engine import build_engine
from exchange.gateway import files as gateway_files
from exchange.gateway.access import AccessRights
from exchange.gateway.services import catalogue
from exchange.gateway.settings import GatewaySettings
from exchange.identifiers import GatewayId, MemberId, SubsystemId
from exchange.idp import files as idp_files
from exchange.idp.provider import Citizen, Staff
from exchange.portal.settings import Procedure, passport, teaching
from exchange.sample import business, oots, population
from exchange.sample.labels import EVIDENCE_TYPES, MEMBER_NAMES, SAMPLE_LABELS
from exchange.trust.globalconf_client import utcnow
from exchange.tsa import files as tsa_files

INSTANCE = "EE"
POPULATION = MemberId(INSTANCE, "GOV", "70000310")
PORTAL = MemberId(INSTANCE, "GOV", "70000001")
AUTHORITY = MemberId(INSTANCE, "GOV", "70000000")  # runs the timestamping and consent services
POPULATION_REGISTRY = SubsystemId(POPULATION, "population-registry")
CITIZEN_PORTAL = SubsystemId(PORTAL, "citizen-portal")
PORTAL_CLIENT_ID = "citizen-portal"  # the portal's client id at the identity provider
CONSENT_CLIENT_ID = "consent-service"
PREVIEW_CLIENT_ID = "population-preview"
CONSENT_SERVICE = "consent"
RESIDENCE_LEGAL_BASIS = "Population Register Act § 46 (1) 3: public services to residents"
# The demo's other registers (``create(..., more=MorePorts(...))``).
BUSINESS = MemberId(INSTANCE, "GOV", "70003098")
UNIVERSITY = MemberId(INSTANCE, "GOV", "74001073")
BUSINESS_REGISTRY = SubsystemId(BUSINESS, "business-registry")
DIPLOMA_REGISTRY = SubsystemId(UNIVERSITY, "diploma-registry")
BUSINESS_REGISTRATION = f"{BUSINESS_REGISTRY}/business-registration"
DIPLOMA = f"{DIPLOMA_REGISTRY}/diploma"
UNIVERSITY_PREVIEW_CLIENT_ID = "university-preview"
BIRTH_CERTIFICATE = f"{POPULATION_REGISTRY}/birth-certificate"
RESIDENCE_RECORD = f"{POPULATION_REGISTRY}/residence-record"
ACTOR = "sample:federation"
# The agencies' staff at the identity provider: each gateway's console maps their role claim.
STAFF = (
    Staff("olga", "Olga Oja", ("operator",)),
    Staff("aivar", "Aivar Aru", ("auditor",)),
    Staff("vera", "Vera Vaher", ("viewer",)),
)


CENTRAL_CONSOLE_CLIENT = "central-console"


def central_console(ports: Ports) -> dict[str, object]:
    """The central authority's console settings: on, signing staff in at the identity provider."""
    issuer = f"http://127.0.0.1:{ports.idp}"
    return {
        "enabled": True,
        "public_url": f"http://127.0.0.1:{ports.central}",
        "issuer": issuer,
        "jwks_url": f"{issuer}/jwks",
        "client_id": CENTRAL_CONSOLE_CLIENT,
    }


def console_client(gateway_folder: str) -> str:
    """The client id at the identity provider of a gateway's console (``population-gateway``)."""
    return f"{gateway_folder}-console"


@dataclass(frozen=True)
class Ports:
    central: int
    provider_consumer: int
    provider_tls: int
    consumer_consumer: int
    consumer_tls: int
    tsa: int
    idp: int
    consent: int
    portal: int
    preview: int  # the Population Register's preview pages


@dataclass(frozen=True)
class MorePorts:
    """Listeners of the demo's business register and university (their gateways and backend)."""

    business_consumer: int
    business_tls: int
    university_consumer: int
    university_tls: int
    university_preview: int
    university_backend: int  # the university's own REST backend, behind the HTTP connector
    documents_backend: int  # the business register's document store (its extracts as PDFs)
    mail: int  # the demo's mailbox, where the portal's e-mails to citizens go (SMTP)


@dataclass(frozen=True)
class Federation:
    base: Path
    central: CentralSettings
    provider: Path  # settings file of the population register's gateway
    consumer: Path  # settings file of the portal's gateway
    registry: Path  # the population register's SQLite file
    tsa: Path  # the timestamping authority's folder
    idp: Path  # the development identity provider's folder
    consent: Path  # the consent service's settings file
    portal: Path  # the citizen portal's settings file
    providers: tuple[Path, ...] = ()  # settings files of the other registers' gateways


def _toml(value: object) -> str:
    if isinstance(value, dict):  # an inline table: text in each language
        return "{ " + ", ".join(f"{_toml(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)  # JSON strings, numbers and lists are valid TOML values


def gateway_toml(
    *,
    gateway: GatewayId,
    subsystems: list[str],
    ports: tuple[int, int],
    services: str = "",
    extra: str = "",
) -> str:
    return (
        f"id = {_toml(str(gateway))}\n"
        f'data_dir = "data"\nanchor = "../central/anchor.json"\n'
        f"subsystems = {_toml(subsystems)}\n{extra}\n"
        f'[consumer]\nhost = "127.0.0.1"\nport = {ports[0]}\n\n'
        f'[provider]\nhost = "127.0.0.1"\nport = {ports[1]}\n{services}'
    )


def population_services(registry: Path) -> str:
    """Birth certificates need the person's consent; residence records are released to clients
    holding a declared legal basis."""
    blocks = []
    for code, evidence, query, fields, policy in (
        (
            "birth-certificate",
            "birth-certificate",
            population.BIRTH_QUERY,
            population.BIRTH_FIELDS,
            "consent",
        ),
        (
            "residence-record",
            "residence-record",
            population.RESIDENCE_QUERY,
            population.RESIDENCE_FIELDS,
            "legal-basis",
        ),
    ):
        blocks.append(
            "\n[[services]]\n"
            f'subsystem = "population-registry"\ncode = {_toml(code)}\nversion = "v1"\n'
            f"evidence_type = {_toml(evidence)}\n"
            f"description = {_toml(f'{evidence} from the population register')}\n"
            f'consent_policy = "{policy}"\nparameters = ["person"]\n'
            "[services.connector]\n"
            f'type = "sql"\nurl = {_toml(f"sqlite:///{registry}")}\nquery = {_toml(query)}\n'
            "[services.connector.fields]\n"
            + "".join(f"{_toml(k)} = {_toml(v)}\n" for k, v in fields.items())
        )
    return "".join(blocks)


def business_services(register: Path) -> str:
    """Company registrations are public data."""
    return (
        "\n[[services]]\n"
        'subsystem = "business-registry"\ncode = "business-registration"\nversion = "v1"\n'
        'evidence_type = "business-registration"\n'
        'description = "business registration from the business register"\n'
        'consent_policy = "public"\nparameters = ["code"]\n'
        'subject_parameter = ""\n'  # a company, not a person
        "[services.connector]\n"
        f'type = "sql"\nurl = {_toml(f"sqlite:///{register}")}\n'
        f"query = {_toml(business.REGISTRATION_QUERY)}\n"
        'json_columns = ["board"]\n'
        "[services.connector.fields]\n"
        + "".join(f"{_toml(k)} = {_toml(v)}\n" for k, v in business.REGISTRATION_FIELDS.items())
    )


def diploma_services(backend: str) -> str:
    return (
        "\n[[services]]\n"
        'subsystem = "diploma-registry"\ncode = "diploma"\n'
        'evidence_type = "diploma"\ndescription = "diploma from the university"\n'
        'consent_policy = "consent"\nparameters = ["person"]\n'
        "[services.connector]\n"
        f'type = "http"\nurl = "{backend}/diplomas/{{person}}"\n'
    )


def _enrol(central: Central, settings: GatewaySettings) -> None:
    gateway_files.initialise(settings)
    root = settings.data_dir
    signing = central.certificates.issue_signing(
        settings.gateway.member, (root / "signing.csr").read_text(), actor=ACTOR
    )
    (root / "signing.pem").write_text(signing.pem)
    tls = central.certificates.issue_tls(
        settings.gateway, (root / "tls.csr").read_text(), actor=ACTOR
    )
    (root / "tls.pem").write_text(tls.pem)


def create(
    base: Path,
    ports: Ports,
    *,
    gateway_extra: str = "",
    extra_services: str = "",
    database_urls: tuple[str | None, str | None] = (None, None),
    central_database_url: str | None = None,
    more: MorePorts | None = None,
    edm: Path | None = None,
) -> Federation:
    """Create the whole federation under ``base`` (which must not hold one yet).

    ``gateway_extra`` adds top-level settings to both gateways, ``extra_services`` adds
    ``[[services]]`` blocks to the provider, ``database_urls`` gives the provider's and the
    consumer's gateway a database other than their SQLite default; ``more`` adds the demo's
    business register (SQL, public data) and university (HTTP backend, consent) with gateways;
    ``edm`` (the OOTS EDM material's folder, with ``more``) adds the EDM walkthrough's services
    and the authority's Data Service Directory (:mod:`exchange.sample.oots`).
    """
    if edm is not None and more is None:
        raise ValueError("the EDM walkthrough needs the business register (more=...)")
    base = base.resolve()
    central_settings = CentralSettings.load(
        overrides={
            "data_dir": base / "central",
            "port": ports.central,
            "public_url": f"http://127.0.0.1:{ports.central}",
            "database_url": central_database_url,
            "console": central_console(ports),
            "edm_folder": edm,
        }
    )
    central_files.initialise(central_settings, instance=INSTANCE, at=utcnow())
    migrate.upgrade("central", build_engine(central_settings.db_url))
    central = build(central_settings)
    registry = central.registry
    registry.seed_member_classes(actor=ACTOR)
    registry.register_member(POPULATION, "Population Register", actor=ACTOR)
    registry.register_member(PORTAL, "State Portal", actor=ACTOR)
    registry.register_member(AUTHORITY, "Information System Authority", actor=ACTOR)
    tsa_folder = base / "tsa"
    tsa_csr = tsa_files.initialise(tsa_folder, "tsa1")
    stamped = central.certificates.issue_timestamping(
        AUTHORITY, "tsa1", f"http://127.0.0.1:{ports.tsa}/", tsa_csr.read_text(), actor=ACTOR
    )
    (tsa_folder / "tsa.pem").write_text(stamped.pem)
    consent_settings = _consent_service(central, base, ports)
    registry.register_subsystem(POPULATION_REGISTRY, actor=ACTOR)
    registry.register_subsystem(CITIZEN_PORTAL, actor=ACTOR)
    if more is not None:
        registry.register_member(BUSINESS, "Business Register", actor=ACTOR)
        registry.register_member(UNIVERSITY, "University of Tartu", actor=ACTOR)
        registry.register_subsystem(BUSINESS_REGISTRY, actor=ACTOR)
        registry.register_subsystem(DIPLOMA_REGISTRY, actor=ACTOR)

    register = population.create(base / "registries" / "population.db")
    issuer = f"http://127.0.0.1:{ports.idp}"
    idp_folder = base / "idp"
    clients = {
        PORTAL_CLIENT_ID: [f"http://127.0.0.1:{ports.portal}/callback"],
        CONSENT_CLIENT_ID: [f"http://127.0.0.1:{ports.consent}/callback"],
        PREVIEW_CLIENT_ID: [f"http://127.0.0.1:{ports.preview}/callback"],
        CENTRAL_CONSOLE_CLIENT: [f"http://127.0.0.1:{ports.central}/console/callback"],
    }
    consoles = {
        "population-gateway": ports.provider_consumer,
        "portal-gateway": ports.consumer_consumer,
    }
    if more is not None:
        clients[UNIVERSITY_PREVIEW_CLIENT_ID] = [
            f"http://127.0.0.1:{more.university_preview}/callback"
        ]
        consoles |= {
            "business-gateway": more.business_consumer,
            "university-gateway": more.university_consumer,
        }
    for folder_name, port in consoles.items():
        clients[console_client(folder_name)] = [f"http://127.0.0.1:{port}/console/callback"]
    idp_files.initialise(
        idp_folder,
        issuer=issuer,
        clients=clients,
        citizens=[Citizen(code, given, family) for code, given, family, *_ in population.PEOPLE],
        staff=STAFF,
    )

    def console(folder_name: str) -> str:
        """The console's settings: on, at the gateway's loopback consumer listener."""
        return (
            f"\n[console]\nenabled = true\n"
            f"public_url = {_toml(f'http://127.0.0.1:{consoles[folder_name]}')}\n"
            f"issuer = {_toml(issuer)}\njwks_url = {_toml(issuer + '/jwks')}\n"
            f"client_id = {_toml(console_client(folder_name))}\n"
        )

    identity = (
        f"\n[identity]\nissuer = {_toml(issuer)}\njwks_url = {_toml(issuer + '/jwks')}\n"
        f"[identity.portals]\n{_toml(PORTAL_CLIENT_ID)} = {_toml(str(CITIZEN_PORTAL))}\n"
    )

    def preview(port: int, client: str) -> str:
        return (
            f'\n[preview]\nhost = "127.0.0.1"\nport = {port}\n'
            f"public_url = {_toml(f'http://127.0.0.1:{port}')}\nclient_id = {_toml(client)}\n"
            "[preview.labels]\n"
            + "".join(f"{_toml(k)} = {_toml(v)}\n" for k, v in SAMPLE_LABELS.items())
        )

    layouts = [
        (
            GatewayId(POPULATION, "gw1"),
            ["population-registry"],
            (ports.provider_consumer, ports.provider_tls),
            identity
            + preview(ports.preview, PREVIEW_CLIENT_ID)
            + console("population-gateway")
            + (
                ""
                if edm is None
                else oots.profile(edm, member=POPULATION.member_code, name="Population Register")
                + oots.population_services(register)
            )
            + population_services(register)
            + extra_services,
            base / "population-gateway",
            database_urls[0],
        ),
        (
            GatewayId(PORTAL, "gw1"),
            ["citizen-portal"],
            (ports.consumer_consumer, ports.consumer_tls),
            console("portal-gateway") + ("" if edm is None else oots.profile(edm)),
            base / "portal-gateway",
            database_urls[1],
        ),
    ]
    if more is not None:
        companies = business.create(base / "registries" / "business.db")
        backend = f"http://127.0.0.1:{more.university_backend}"
        layouts += [
            (
                GatewayId(BUSINESS, "gw1"),
                ["business-registry"],
                (more.business_consumer, more.business_tls),
                # every register offers usage
                identity
                + console("business-gateway")
                + (
                    ""
                    if edm is None
                    else oots.profile(edm, member=BUSINESS.member_code, name="Business Register")
                    + oots.business_services(
                        companies, documents=f"http://127.0.0.1:{more.documents_backend}"
                    )
                )
                + business_services(companies),
                base / "business-gateway",
                None,
            ),
            (
                GatewayId(UNIVERSITY, "gw1"),
                ["diploma-registry"],
                (more.university_consumer, more.university_tls),
                identity
                + preview(more.university_preview, UNIVERSITY_PREVIEW_CLIENT_ID)
                + console("university-gateway")
                + diploma_services(backend),
                base / "university-gateway",
                None,
            ),
        ]
    configs = []
    for gateway_id, subsystems, listen, services, folder, database_url in layouts:
        registry.register_gateway(gateway_id, f"https://127.0.0.1:{listen[1]}", actor=ACTOR)
        folder.mkdir(parents=True)
        extra = gateway_extra + (f"database_url = {_toml(database_url)}\n" if database_url else "")
        config = folder / "gateway.toml"
        config.write_text(
            gateway_toml(
                gateway=gateway_id,
                subsystems=subsystems,
                ports=listen,
                services=services,
                extra=extra,
            )
        )
        _enrol(central, GatewaySettings.load(config))
        configs.append(config)
    provider, consumer, *others = configs

    grants: dict[Path, list[tuple[str, str | None]]] = {
        provider: [(BIRTH_CERTIFICATE, None), (RESIDENCE_RECORD, RESIDENCE_LEGAL_BASIS)],
    }
    if more is not None:
        grants[others[0]] = [(BUSINESS_REGISTRATION, None)]
        grants[others[1]] = [(DIPLOMA, None)]
    if edm is not None:
        grants[provider].append((f"{POPULATION_REGISTRY}/{oots.BIRTH_CODE}", None))
        grants[others[0]].append((f"{BUSINESS_REGISTRY}/{oots.COMPANY_CODE}", None))
    for config, granted in grants.items():
        settings = GatewaySettings.load(config)
        for subsystem, entries in catalogue(settings).items():
            registry.publish_services(SubsystemId.parse(subsystem), entries, actor=ACTOR)
        engine = build_engine(settings.db_url)
        migrate.upgrade("gateway", engine)
        access = AccessRights(engine, cache_ttl=0, clock=utcnow)
        for service, basis in granted:
            access.grant(
                service=service, subject=str(CITIZEN_PORTAL), legal_basis=basis, actor=ACTOR
            )
        engine.dispose()
    procedures = [passport(f"{BIRTH_CERTIFICATE}/v1")]
    if more is not None:
        procedures.append(teaching(DIPLOMA))
    portal_settings = _portal(base, ports, issuer, procedures)

    # Hand each gateway the current configuration so it can start before the authority does.
    document = central.publisher.document()
    for config in configs:
        (GatewaySettings.load(config).data_dir / "globalconf.jws").write_bytes(document)
    for folder in (base / "consent", base / "portal" / "data"):
        (keyfolder.create(folder) / "globalconf.jws").write_bytes(document)
    return Federation(
        base=base,
        central=central_settings,
        provider=provider,
        consumer=consumer,
        registry=register,
        tsa=tsa_folder,
        idp=idp_folder,
        consent=consent_settings,
        portal=portal_settings,
        providers=tuple(others),
    )


def _consent_service(central: Central, base: Path, ports: Ports) -> Path:
    """The consent service's folder, key certified by the central authority, and settings."""
    folder = base / "consent"
    csr = consent_files.initialise(folder, CONSENT_SERVICE)
    url = f"http://127.0.0.1:{ports.consent}"
    issued = central.certificates.issue_consent_service(
        AUTHORITY, CONSENT_SERVICE, url, csr.read_text(), actor=ACTOR
    )
    (folder / "consent.pem").write_text(issued.pem)
    issuer = f"http://127.0.0.1:{ports.idp}"
    settings = folder / "consent.toml"
    settings.write_text(
        f"name = {_toml(CONSENT_SERVICE)}\nmember = {_toml(str(AUTHORITY))}\n"
        f'data_dir = "."\nanchor = "../central/anchor.json"\npublic_url = {_toml(url)}\n\n'
        f'[listen]\nhost = "127.0.0.1"\nport = {ports.consent}\n\n'
        f"[identity]\nissuer = {_toml(issuer)}\njwks_url = {_toml(issuer + '/jwks')}\n"
        f"client_id = {_toml(CONSENT_CLIENT_ID)}\n\n"
        f"[consumers]\n{_toml(str(CITIZEN_PORTAL))} = "
        f"{_toml([f'http://127.0.0.1:{ports.portal}/procedures/'])}\n"
        "\n[evidence_types]\n"
        + "".join(f"{_toml(k)} = {_toml(v)}\n" for k, v in EVIDENCE_TYPES.items())
        + "\n[members]\n"
        + "".join(f"{_toml(k)} = {_toml(v)}\n" for k, v in MEMBER_NAMES.items())
    )
    return settings


def _portal(base: Path, ports: Ports, issuer: str, procedures: list[Procedure]) -> Path:
    folder = base / "portal"
    folder.mkdir(parents=True, exist_ok=True)
    settings = folder / "portal.toml"
    settings.write_text(
        f"client = {_toml(str(CITIZEN_PORTAL))}\n"
        f"gateway_url = {_toml(f'http://127.0.0.1:{ports.consumer_consumer}')}\n"
        f'anchor = "../central/anchor.json"\ndata_dir = "data"\n'
        f"public_url = {_toml(f'http://127.0.0.1:{ports.portal}')}\n"
        f"consent_service = {_toml(CONSENT_SERVICE)}\n\n"
        f'[listen]\nhost = "127.0.0.1"\nport = {ports.portal}\n\n'
        f"[identity]\nissuer = {_toml(issuer)}\njwks_url = {_toml(issuer + '/jwks')}\n"
        f"client_id = {_toml(PORTAL_CLIENT_ID)}\n\n"
        + "".join(
            "\n[[procedures]]\n"
            + "".join(
                f"{k} = {_toml(v)}\n" for k, v in procedure.model_dump(exclude_none=True).items()
            )
            for procedure in procedures
        )
        + "\n[labels]\n"
        + "".join(f"{_toml(k)} = {_toml(v)}\n" for k, v in SAMPLE_LABELS.items())
    )
    return settings
