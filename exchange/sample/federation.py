"""Lay out a small federation on disk: one central authority, a provider and a consumer gateway.

Used by ``exchange demo`` and by the integration tests. Everything goes through the same code
paths an operator's commands use (CSR issuance, registration, access rights); only the carrying
of CSRs and certificates between folders is done directly instead of over the management API.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from exchange.central import files as central_files
from exchange.central.app import Central, build
from exchange.central.settings import CentralSettings
from exchange.db import migrate
from exchange.db.engine import build_engine
from exchange.gateway import files as gateway_files
from exchange.gateway.access import AccessRights
from exchange.gateway.services import catalogue
from exchange.gateway.settings import GatewaySettings
from exchange.identifiers import GatewayId, MemberId, SubsystemId
from exchange.idp import files as idp_files
from exchange.idp.provider import Citizen
from exchange.sample import population
from exchange.trust.globalconf_client import utcnow
from exchange.tsa import files as tsa_files

INSTANCE = "EE"
POPULATION = MemberId(INSTANCE, "GOV", "70000310")
PORTAL = MemberId(INSTANCE, "GOV", "70000001")
AUTHORITY = MemberId(INSTANCE, "GOV", "70000000")  # runs the timestamping authority
POPULATION_REGISTRY = SubsystemId(POPULATION, "population-registry")
CITIZEN_PORTAL = SubsystemId(PORTAL, "citizen-portal")
PORTAL_CLIENT_ID = "citizen-portal"  # the portal's client id at the identity provider
BIRTH_CERTIFICATE = f"{POPULATION_REGISTRY}/birth-certificate"
RESIDENCE_RECORD = f"{POPULATION_REGISTRY}/residence-record"
ACTOR = "sample:federation"


@dataclass(frozen=True)
class Ports:
    central: int
    provider_consumer: int
    provider_tls: int
    consumer_consumer: int
    consumer_tls: int
    tsa: int
    idp: int


@dataclass(frozen=True)
class Federation:
    base: Path
    central: CentralSettings
    provider: Path  # settings file of the population register's gateway
    consumer: Path  # settings file of the portal's gateway
    registry: Path  # the population register's SQLite file
    tsa: Path  # the timestamping authority's folder
    idp: Path  # the development identity provider's folder


def _toml(value: object) -> str:
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
    blocks = []
    for code, evidence, query, fields in (
        ("birth-certificate", "birth-certificate", population.BIRTH_QUERY, population.BIRTH_FIELDS),
        (
            "residence-record",
            "residence-record",
            population.RESIDENCE_QUERY,
            population.RESIDENCE_FIELDS,
        ),
    ):
        blocks.append(
            "\n[[services]]\n"
            f'subsystem = "population-registry"\ncode = {_toml(code)}\nversion = "v1"\n'
            f"evidence_type = {_toml(evidence)}\n"
            f"description = {_toml(f'{evidence} from the population register')}\n"
            'consent_policy = "consent"\nparameters = ["person"]\n'
            "[services.connector]\n"
            f'type = "sql"\nurl = {_toml(f"sqlite:///{registry}")}\nquery = {_toml(query)}\n'
            "[services.connector.fields]\n"
            + "".join(f"{_toml(k)} = {_toml(v)}\n" for k, v in fields.items())
        )
    return "".join(blocks)


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
    portal_callback: str = "http://127.0.0.1:4450/callback",
    gateway_extra: str = "",
    extra_services: str = "",
    database_urls: tuple[str | None, str | None] = (None, None),
    central_database_url: str | None = None,
) -> Federation:
    """Create the whole federation under ``base`` (which must not hold one yet).

    ``gateway_extra`` adds top-level settings to both gateways, ``extra_services`` adds
    ``[[services]]`` blocks to the provider, ``database_urls`` gives the provider's and the
    consumer's gateway a database other than their SQLite default.
    """
    base = base.resolve()
    central_settings = CentralSettings(
        data_dir=base / "central",
        port=ports.central,
        public_url=f"http://127.0.0.1:{ports.central}",
        database_url=central_database_url,
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
    registry.register_subsystem(POPULATION_REGISTRY, actor=ACTOR)
    registry.register_subsystem(CITIZEN_PORTAL, actor=ACTOR)

    register = population.create(base / "registries" / "population.db")
    issuer = f"http://127.0.0.1:{ports.idp}"
    idp_folder = base / "idp"
    idp_files.initialise(
        idp_folder,
        issuer=issuer,
        clients={PORTAL_CLIENT_ID: [portal_callback]},
        citizens=[Citizen(code, given, family) for code, given, family, *_ in population.PEOPLE],
    )
    identity = (
        f"\n[identity]\nissuer = {_toml(issuer)}\njwks_url = {_toml(issuer + '/jwks')}\n"
        f"[identity.portals]\n{_toml(PORTAL_CLIENT_ID)} = {_toml(str(CITIZEN_PORTAL))}\n"
    )
    layouts = [
        (
            GatewayId(POPULATION, "gw1"),
            ["population-registry"],
            (ports.provider_consumer, ports.provider_tls),
            identity + population_services(register) + extra_services,
            base / "population-gateway",
            database_urls[0],
        ),
        (
            GatewayId(PORTAL, "gw1"),
            ["citizen-portal"],
            (ports.consumer_consumer, ports.consumer_tls),
            "",
            base / "portal-gateway",
            database_urls[1],
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
    provider, consumer = configs

    provider_settings = GatewaySettings.load(provider)
    for subsystem, entries in catalogue(provider_settings).items():
        registry.publish_services(SubsystemId.parse(subsystem), entries, actor=ACTOR)
    engine = build_engine(provider_settings.db_url)
    migrate.upgrade("gateway", engine)
    access = AccessRights(engine, cache_ttl=0, clock=utcnow)
    for service in (BIRTH_CERTIFICATE, RESIDENCE_RECORD):
        access.grant(service=service, subject=str(CITIZEN_PORTAL))
    engine.dispose()

    # Hand each gateway the current configuration so it can start before the authority does.
    document = central.publisher.document()
    for config in configs:
        (GatewaySettings.load(config).data_dir / "globalconf.jws").write_bytes(document)
    return Federation(
        base=base,
        central=central_settings,
        provider=provider,
        consumer=consumer,
        registry=register,
        tsa=tsa_folder,
        idp=idp_folder,
    )
