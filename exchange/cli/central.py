"""``exchange central ...``: run and administer the central authority of an instance.

Commands act on the authority's data folder and database directly (run them on the authority's
host); remote tools use the management API instead. Every change is recorded with the acting user.
The authority's own modules are imported by its commands only: every role's process loads this
file (``exchange.cli.main``), and they took ~1 MB of each.
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from exchange.cli.output import emit, table
from exchange.db import migrate
from exchange.db.engine import build_engine
from exchange.identifiers import GatewayId, MemberId, SubsystemId
from exchange.trust.globalconf_client import utcnow
from exchange.trust.keys import certificate_pem

if TYPE_CHECKING:
    from exchange.central.service import Central
    from exchange.central.settings import CentralSettings

app = typer.Typer(
    help="Run and administer the central authority (CA, registry, global configuration).",
    no_args_is_help=True,
)
member_app = typer.Typer(help="Register and list members.", no_args_is_help=True)
member_class_app = typer.Typer(help="Define member classes (GOV, COM, ...).", no_args_is_help=True)
subsystem_app = typer.Typer(help="Register subsystems of members.", no_args_is_help=True)
gateway_app = typer.Typer(help="Register members' gateways.", no_args_is_help=True)
cert_app = typer.Typer(
    help="Issue certificates from CSRs, list and revoke them.", no_args_is_help=True
)
app.add_typer(member_class_app, name="member-class")
app.add_typer(member_app, name="member")
app.add_typer(subsystem_app, name="subsystem")
app.add_typer(gateway_app, name="gateway")
app.add_typer(cert_app, name="cert")
tsa_app = typer.Typer(help="Certify and list timestamping authorities.", no_args_is_help=True)
app.add_typer(tsa_app, name="tsa")
consent_app = typer.Typer(help="Certify and list consent services.", no_args_is_help=True)
app.add_typer(consent_app, name="consent-service")

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Authority data folder (env EXCHANGE_CENTRAL_DATA_DIR; default exchange-data/central)",
    ),
]
Out = Annotated[
    Path | None, typer.Option("--out", "-o", help="Write to this file instead of standard output.")
]


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def settings_for(data_dir: Path | None, **overrides: object) -> CentralSettings:
    from exchange.central import files
    from exchange.central.settings import CentralSettings

    return files.resolve(CentralSettings.load(overrides={"data_dir": data_dir, **overrides}))


def open_central(data_dir: Path | None) -> Central:
    from exchange.central.service import build

    settings = settings_for(data_dir)
    migrate.upgrade("central", build_engine(settings.db_url))
    return build(settings)


@app.command()
def init(
    instance: Annotated[str, typer.Option(help="Instance code, e.g. EE.")],
    data_dir: DataDir = None,
    public_url: Annotated[
        str | None, typer.Option(help="URL gateways use to reach this authority.")
    ] = None,
) -> None:
    """Create a new instance: root CA, configuration-signing key, admin token, trust anchor."""
    from exchange.central import files
    from exchange.central.registry import Registry

    settings = settings_for(data_dir, public_url=public_url)
    material = files.initialise(settings, instance=instance, at=utcnow())
    engine = build_engine(settings.db_url)
    migrate.upgrade("central", engine)
    Registry(engine=engine, instance=instance, clock=utcnow).seed_member_classes(actor=_actor())
    anchor = material.anchor(f"{settings.url}/globalconf")
    typer.echo(f"initialised instance {instance} in {settings.data_dir}")
    typer.echo(f"  root CA:       {settings.data_dir / 'ca.pem'}")
    typer.echo(f"  trust anchor:  {settings.data_dir / 'anchor.json'} (sha256 {anchor.digest()})")
    typer.echo(f"  admin token:   {settings.data_dir / 'admin-token'} (mode 0600)")
    typer.echo(f"  database:      {settings.db_url}")


@app.command()
def serve(
    data_dir: DataDir = None,
    host: Annotated[str | None, typer.Option(help="Listen address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default 4400).")] = None,
    public_url: Annotated[
        str | None, typer.Option(help="URL gateways use to reach it (default: as at init).")
    ] = None,
    json_logs: Annotated[bool, typer.Option("--json-logs", help="Log JSON lines.")] = False,
) -> None:
    """Serve the global configuration, CRL and management API over HTTP."""
    from exchange import serving
    from exchange.central.app import create_app  # FastAPI: loaded by this command only
    from exchange.logging import configure

    configure(json=json_logs)
    settings = settings_for(data_dir, host=host, port=port, public_url=public_url)
    migrate.upgrade("central", build_engine(settings.db_url))
    announce = f"central authority serving on http://{settings.host}:{settings.port}"
    # The server every role runs: X-Road's error body for requests it cannot parse, and no
    # X-Forwarded-For believed but from the proxies the operator names, so the rate limits
    # count the TCP peer's address (or the one such a proxy forwards).
    listener = serving.config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        forwarded_allow_ips=list(settings.proxies),
    )
    serving.run(serving.serve_all([listener], on_started=lambda: typer.echo(announce, err=True)))


@app.command()
def anchor(data_dir: DataDir = None, out: Out = None) -> None:
    """Write the trust anchor for the authority's current public URL and print its digest."""
    from exchange.central import files

    settings = settings_for(data_dir)
    written = files.write_anchor(settings, files.load(settings))
    emit(written.dump().decode(), out)
    typer.echo(f"anchor sha256 {written.digest()}", err=True)


@member_class_app.command("add")
def member_class_add(code: str, description: str = "", data_dir: DataDir = None) -> None:
    """Define a member class."""
    open_central(data_dir).registry.add_member_class(code, description, actor=_actor())
    typer.echo(f"member class {code} added")


@member_class_app.command("list")
def member_class_list(data_dir: DataDir = None) -> None:
    """List member classes."""
    rows = [[c.code, c.description] for c in open_central(data_dir).registry.member_classes()]
    table(rows, ["CLASS", "DESCRIPTION"])


@member_app.command("add")
def member_add(
    member_id: Annotated[str, typer.Argument(metavar="MEMBER", help="e.g. EE/GOV/70000310")],
    name: Annotated[str, typer.Option(help="Legal name of the organisation.")],
    data_dir: DataDir = None,
) -> None:
    """Register a member organisation."""
    row = open_central(data_dir).registry.register_member(
        MemberId.parse(member_id), name, actor=_actor()
    )
    typer.echo(f"member {row.identifier} registered")


@member_app.command("list")
def member_list(data_dir: DataDir = None) -> None:
    """List members with their subsystems and gateways."""
    rows = [
        [
            m.identifier,
            m.name,
            ",".join(s.identifier.rsplit("/", 1)[1] for s in m.subsystems) or "-",
            ",".join(g.address for g in m.gateways) or "-",
        ]
        for m in open_central(data_dir).registry.members()
    ]
    table(rows, ["MEMBER", "NAME", "SUBSYSTEMS", "GATEWAYS"])


@subsystem_app.command("add")
def subsystem_add(
    subsystem_id: Annotated[
        str, typer.Argument(metavar="SUBSYSTEM", help="e.g. EE/GOV/70000310/population-registry")
    ],
    data_dir: DataDir = None,
) -> None:
    """Register a subsystem of a registered member."""
    row = open_central(data_dir).registry.register_subsystem(
        SubsystemId.parse(subsystem_id), actor=_actor()
    )
    typer.echo(f"subsystem {row.identifier} registered")


@gateway_app.command("add")
def gateway_add(
    gateway_id: Annotated[str, typer.Argument(metavar="GATEWAY", help="e.g. EE/GOV/70000310/gw1")],
    address: Annotated[str, typer.Option(help="https://host:port where other gateways reach it.")],
    data_dir: DataDir = None,
) -> None:
    """Register a member's gateway and the address it serves on."""
    row = open_central(data_dir).registry.register_gateway(
        GatewayId.parse(gateway_id), address, actor=_actor()
    )
    typer.echo(f"gateway {row.identifier} registered at {row.address}")


@gateway_app.command("code")
def gateway_code(
    gateway_id: Annotated[str, typer.Argument(metavar="GATEWAY", help="e.g. EE/GOV/70000310/gw1")],
    address: Annotated[str, typer.Option(help="https://host:port where other gateways reach it.")],
    data_dir: DataDir = None,
) -> None:
    """Issue the one-time code with which the gateway enrols (registering it if new); the
    code is printed once and kept only as its hash."""
    issued = open_central(data_dir).enrolments.issue(
        GatewayId.parse(gateway_id), address, actor=_actor()
    )
    typer.echo(issued.code)
    typer.echo(
        f"enrolment code of {issued.gateway}, valid once until {issued.expires_at.isoformat()}",
        err=True,
    )


Csr = Annotated[
    Path,
    typer.Option(
        "--csr",
        help="PEM CSR made by the owner (exchange keys generate).",
        exists=True,
        dir_okay=False,
    ),
]


@cert_app.command("sign")
def cert_sign(
    member_id: Annotated[str, typer.Argument(metavar="MEMBER")],
    csr: Csr,
    out: Out = None,
    data_dir: DataDir = None,
) -> None:
    """Issue a member's message-signing certificate from its CSR."""
    issued = open_central(data_dir).certificates.issue_signing(
        MemberId.parse(member_id), csr.read_text(), actor=_actor()
    )
    typer.echo(f"issued signing certificate serial {issued.serial}", err=True)
    emit(issued.pem, out)


@cert_app.command("tls")
def cert_tls(
    gateway_id: Annotated[str, typer.Argument(metavar="GATEWAY")],
    csr: Csr,
    out: Out = None,
    data_dir: DataDir = None,
) -> None:
    """Issue a gateway's TLS certificate (serverAuth + clientAuth) from its CSR."""
    issued = open_central(data_dir).certificates.issue_tls(
        GatewayId.parse(gateway_id), csr.read_text(), actor=_actor()
    )
    typer.echo(f"issued TLS certificate serial {issued.serial}", err=True)
    emit(issued.pem, out)


@cert_app.command("list")
def cert_list(data_dir: DataDir = None) -> None:
    """List issued certificates."""
    rows = [
        [c.serial, c.profile, c.subject, c.not_after.date().isoformat(), c.revocation_reason or "-"]
        for c in open_central(data_dir).certificates.list()
    ]
    table(rows, ["SERIAL", "PROFILE", "SUBJECT", "EXPIRES", "REVOKED"])


@cert_app.command("revoke")
def cert_revoke(
    serial: Annotated[str, typer.Argument(help="Serial number in hex, as 'cert list' shows it.")],
    reason: Annotated[
        str,
        typer.Option(
            help="unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation"
        ),
    ] = "unspecified",
    data_dir: DataDir = None,
) -> None:
    """Revoke a certificate; the next CRL and global configuration list it."""
    open_central(data_dir).certificates.revoke(serial, reason, actor=_actor())
    typer.echo(f"certificate {serial.upper()} revoked ({reason})")


@app.command()
def crl(data_dir: DataDir = None, out: Out = None) -> None:
    """Print the current CRL (PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    der = open_central(data_dir).certificates.crl_der()
    emit(x509.load_der_x509_crl(der).public_bytes(Encoding.PEM).decode(), out)


@app.command("ca")
def ca_certificate(data_dir: DataDir = None, out: Out = None) -> None:
    """Print the root CA certificate (PEM)."""
    from exchange.central import files

    emit(certificate_pem(files.load(settings_for(data_dir)).authority.certificate), out)


@app.command()
def events(
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50, data_dir: DataDir = None
) -> None:
    """Show the change log, oldest first."""
    rows = [
        [str(e.id), e.at.isoformat(timespec="seconds"), e.actor, e.action, e.subject]
        for e in open_central(data_dir).registry.events(limit=limit)
    ]
    table(rows, ["ID", "AT", "ACTOR", "ACTION", "SUBJECT"])


@tsa_app.command("add")
def tsa_add(
    name: Annotated[str, typer.Argument(help="Its name in the instance, e.g. tsa1.")],
    member: Annotated[str, typer.Option(help="The member that runs it.")],
    url: Annotated[str, typer.Option(help="Where gateways send time-stamp queries.")],
    csr: Csr,
    out: Out = None,
    data_dir: DataDir = None,
) -> None:
    """Certify a timestamping authority and list it in the global configuration."""
    issued = open_central(data_dir).certificates.issue_timestamping(
        MemberId.parse(member), name, url, csr.read_text(), actor=_actor()
    )
    typer.echo(f"issued timestamping certificate serial {issued.serial}", err=True)
    emit(issued.pem, out)


@consent_app.command("add")
def consent_service_add(
    member: Annotated[str, typer.Option(help="The member that runs it.")],
    name: Annotated[str, typer.Option(help="Its name in the instance, e.g. consent1.")],
    url: Annotated[str, typer.Option(help="Where gateways reach it.")],
    csr: Csr,
    out: Out = None,
    data_dir: DataDir = None,
) -> None:
    """Certify a consent service and list it in the global configuration."""
    issued = open_central(data_dir).certificates.issue_consent_service(
        MemberId.parse(member), name, url, csr.read_text(), actor=_actor()
    )
    typer.echo(f"issued consent service certificate serial {issued.serial}", err=True)
    emit(issued.pem, out)


@consent_app.command("list")
def consent_service_list(data_dir: DataDir = None) -> None:
    """List consent services with their certificates."""
    rows = [
        [
            c.name,
            c.member.identifier,
            c.url,
            c.certificate_serial,
            c.certificate.not_after.date().isoformat(),
            c.certificate.revocation_reason or "-",
        ]
        for c in open_central(data_dir).certificates.consent_services()
    ]
    table(rows, ["NAME", "MEMBER", "URL", "SERIAL", "EXPIRES", "REVOKED"])
