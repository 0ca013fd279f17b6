"""``exchange gateway ...``: set up, enrol, run and administer a member's gateway."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import httpx
import typer

from exchange import keyfolder
from exchange.cli.output import table
from exchange.db import migrate
from exchange.db.engine import build_engine
from exchange.errors import NotFound, ServiceFailed
from exchange.faults import mapped
from exchange.gateway import enrolment, files
from exchange.gateway.access import AccessRights, Limits
from exchange.gateway.settings import GatewaySettings
from exchange.identifiers import ServiceId
from exchange.trust.globalconf_client import utcnow

if TYPE_CHECKING:
    from exchange.gateway.node import Gateway

app = typer.Typer(
    help="Set up, enrol, run and administer a member's gateway.", no_args_is_help=True
)
access_app = typer.Typer(
    help="Grant and revoke clients' access to this gateway's services.", no_args_is_help=True
)
group_app = typer.Typer(
    help="Named groups of clients, usable in access rights as group:NAME.", no_args_is_help=True
)
app.add_typer(access_app, name="access")
app.add_typer(group_app, name="group")

Config = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        help="Gateway settings file (TOML).",
        exists=True,
        dir_okay=False,
        envvar="EXCHANGE_GATEWAY_CONFIG",
    ),
]
TokenFile = Annotated[
    Path,
    typer.Option(
        help="File holding the central authority's admin token.", exists=True, dir_okay=False
    ),
]


def _central_url(settings: GatewaySettings, central: str | None) -> str:
    if central:
        return central.rstrip("/")
    from exchange.trust.globalconf import TrustAnchor

    return TrustAnchor.load(settings.anchor).configuration_url.removesuffix("/globalconf")


PerSecond = Annotated[
    int | None, typer.Option(min=1, help="Quota: requests per second (burst), per client.")
]
PerDay = Annotated[int | None, typer.Option(min=1, help="Quota: requests per UTC day, per client.")]
PersonsPerDay = Annotated[
    int | None,
    typer.Option(min=1, help="Quota: distinct persons asked about per UTC day, per client."),
]


def _actor() -> str:
    """Who a change made here is recorded as, in the gateway's change log."""
    return f"cli:{getpass.getuser()}"


def _access(settings: GatewaySettings) -> AccessRights:
    engine = build_engine(settings.db_url)
    migrate.upgrade("gateway", engine)
    return AccessRights(engine, cache_ttl=0, clock=utcnow)


@app.command()
def init(config: Config) -> None:
    """Generate the signing and TLS key pairs (kept here) and their CSRs."""
    settings = GatewaySettings.load(config)
    made = files.initialise(settings)
    migrate.upgrade("gateway", build_engine(settings.db_url))
    for path in made:
        typer.echo(f"wrote {path}")
    if not made:
        typer.echo(f"keys exist already in {settings.data_dir}")
    typer.echo(
        "next: 'exchange gateway enrol --code CODE' with the code of the central authority's"
        " operator (or take the CSRs to that operator)"
    )


@app.command()
def enrol(
    config: Config,
    code: Annotated[
        str | None,
        typer.Option(
            help="The one-time enrolment code the authority's operator issued for this gateway.",
            envvar="EXCHANGE_ENROLMENT_CODE",
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            help="Instead of a code: a file holding the central authority's admin token.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    central: Annotated[
        str | None, typer.Option(help="Central authority URL (default: from the anchor).")
    ] = None,
) -> None:
    """Send the CSRs to the central authority and install the certificates it issues."""
    settings = GatewaySettings.load(config)
    if code is not None and token_file is None:
        enrolment.enrol(settings, code, central=central)
    elif token_file is not None and code is None:
        files.enrol(
            settings,
            central_url=_central_url(settings, central),
            token=token_file.read_text().strip(),
        )
    else:
        raise typer.BadParameter("give either --code or --token-file", param_hint="--code")
    typer.echo(f"installed signing.pem and tls.pem in {settings.data_dir}")


@app.command()
def publish(
    config: Config,
    token_file: TokenFile,
    central: Annotated[
        str | None, typer.Option(help="Central authority URL (default: from the anchor).")
    ] = None,
) -> None:
    """Publish this gateway's services to the central authority's catalogue."""
    from exchange.gateway.services import catalogue

    settings = GatewaySettings.load(config)
    url = _central_url(settings, central)
    token = token_file.read_text().strip()
    for subsystem, entries in catalogue(settings).items():
        with mapped("the central authority"):
            response = httpx.put(
                f"{url}/api/v1/services",
                json={"subsystem": subsystem, "services": entries},
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
        if response.status_code != 200:
            raise ServiceFailed(
                f"central authority refused the catalogue of {subsystem}: "
                f"{response.json().get('message')}"
            )
        typer.echo(f"published {len(entries)} service(s) of {subsystem}")


@app.command()
def serve(
    config: Config,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="Processes serving both listeners on the same ports (default: the settings'"
            " workers, 1); each is a replica with its own audit chain.",
        ),
    ] = None,
    worker: Annotated[int | None, typer.Option(hidden=True)] = None,
    listen_fds: Annotated[str | None, typer.Option(hidden=True)] = None,
    ready_fd: Annotated[int | None, typer.Option(hidden=True)] = None,
    parent_pid: Annotated[int | None, typer.Option(hidden=True)] = None,
) -> None:
    """Serve the consumer (X-Road REST) and provider (mutual TLS) listeners."""
    from exchange import serving
    from exchange.gateway import workers as worker_processes
    from exchange.logging import configure

    settings = GatewaySettings.load(config)
    if workers is not None:
        settings = settings.model_copy(update={"workers": workers})
    configure(json=settings.json_logs, level="INFO")
    if worker is None:  # the gateway's only process, or the parent of its workers
        enrolled = enrolment.state(settings).enrolled
        if not enrolled:
            keyfolder.create(settings.data_dir)  # the lock's; keys are the staff's to make
        worker_processes.gateway_lock(settings)
        if not enrolled:
            set_up(settings)  # until staff enrol it in the console
        if settings.workers > 1:
            raise typer.Exit(worker_processes.Supervisor(config, settings).run())

    from exchange.gateway.metrics import GatewayMetrics
    from exchange.gateway.node import Gateway
    from exchange.gateway.runner import background_jobs, prepare

    consumer, provider = settings.consumer, settings.provider
    banner = (
        f"gateway {settings.id}: consumer http://{consumer.host}:{consumer.port}, "
        f"provider https://{provider.host}:{provider.port} (mutual TLS)"
    )
    if worker is not None:
        banner += f", worker {worker} (replica {settings.replica})"
    # The parent names itself: asked here, a worker whose parent died while it started would
    # find its new parent (init) and never notice.
    parent = parent_pid if parent_pid is not None else os.getppid()

    worker_processes.chain_lock(settings)  # before anything is written: one writer per chain

    async def main() -> None:
        metrics = None
        if worker is not None:
            metrics = GatewayMetrics(folder=worker_processes.metrics_folder(settings))
        gateway = Gateway(settings, metrics=metrics, migrates=worker is None)
        try:
            configs = prepare(gateway)
            sockets = None
            jobs = background_jobs(gateway)
            if listen_fds is not None:
                sockets = worker_processes.inherited(listen_fds, [c.port for c in configs])
                jobs.append(worker_processes.parent_watch(parent))
            await serving.serve_all(
                configs,
                sockets=sockets,
                background=jobs,
                on_started=lambda: started(gateway, banner, worker, ready_fd),
            )
        finally:
            await gateway.close()

    serving.run(main())


def set_up(settings: GatewaySettings) -> None:
    """Serve the setup console on the consumer listener until the gateway is enrolled
    (:mod:`exchange.gateway.console.setup`); exit if stopped before."""
    import asyncio

    from exchange import serving
    from exchange.gateway.console.setup import create_setup_app
    from exchange.identity.login import OidcLogin

    spec = settings.console
    if not (spec.enabled and spec.issuer and spec.client_id and spec.public_url):
        raise NotFound(
            f"{settings.data_dir} holds no certificates: run 'exchange gateway init' and"
            " 'enrol', or turn the [console] on to enrol from it"
        )
    engine = build_engine(settings.db_url)
    migrate.upgrade("gateway", engine)
    login = OidcLogin(
        issuer=spec.issuer,
        client_id=spec.client_id,
        client_secret=spec.client_secret,
        redirect_uri=f"{spec.public_url.rstrip('/')}/console/callback",
    )

    async def main() -> None:
        done = asyncio.Event()
        app = create_setup_app(
            settings, engine=engine, login=login, clock=utcnow, enrolled=done.set
        )
        consumer = settings.consumer
        await serving.serve_all(
            [serving.config(app, host=consumer.host, port=consumer.port)],
            until=done,
            on_started=lambda: typer.echo(
                f"gateway {settings.id}: not enrolled; enrol it at"
                f" {spec.public_url}/console/certificates",
                err=True,
            ),
        )

    serving.run(main())
    engine.dispose()
    if not enrolment.state(settings).enrolled:
        raise typer.Exit(1)  # stopped before it was enrolled


def started(gateway: Gateway, banner: str, worker: int | None, ready_fd: int | None) -> None:
    from exchange.gateway.workers import announce_ready

    gateway.started = True
    typer.echo(banner, err=True)
    if worker is not None and ready_fd is not None:
        announce_ready(ready_fd, worker)


@access_app.command("grant")
def access_grant(
    config: Config,
    service: Annotated[str, typer.Argument(help="INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICE")],
    subject: Annotated[
        str,
        typer.Argument(help="Client id (a member, or a member/SUBSYSTEM) or group:NAME"),
    ],
    method: Annotated[str, typer.Option(help="Only this HTTP method.")] = "",
    path: Annotated[str, typer.Option(help="Only paths matching this pattern (* and **).")] = "",
    legal_basis: Annotated[
        str | None,
        typer.Option(help="The law that entitles the client (services with legal-basis policy)."),
    ] = None,
    per_second: PerSecond = None,
    per_day: PerDay = None,
    persons_per_day: PersonsPerDay = None,
) -> None:
    """Allow a client (or group) to call a service, within quotas if given."""
    ServiceId.parse(service)
    _access(GatewaySettings.load(config)).grant(
        service=service,
        subject=subject,
        method=method,
        path=path,
        legal_basis=legal_basis,
        limits=Limits(per_second, per_day, persons_per_day),
        actor=_actor(),
    )
    typer.echo(f"granted {subject} access to {service}")


@access_app.command("limit")
def access_limit(
    config: Config,
    service: str,
    subject: str,
    method: Annotated[str, typer.Option()] = "",
    path: Annotated[str, typer.Option()] = "",
    per_second: PerSecond = None,
    per_day: PerDay = None,
    persons_per_day: PersonsPerDay = None,
) -> None:
    """Set the quotas of an access right (named exactly as granted); none given lifts them.
    Each client the right covers has its own counts; running gateways apply them at their next
    reload of the rights."""
    limits = Limits(per_second, per_day, persons_per_day)
    _access(GatewaySettings.load(config)).limit(
        service=service, subject=subject, method=method, path=path, limits=limits, actor=_actor()
    )
    typer.echo(f"{subject}'s quotas on {service}: {_limits(limits)}")


@access_app.command("revoke")
def access_revoke(
    config: Config,
    service: str,
    subject: str,
    method: Annotated[str, typer.Option()] = "",
    path: Annotated[str, typer.Option()] = "",
) -> None:
    """Remove an access right (exactly as granted)."""
    _access(GatewaySettings.load(config)).revoke(
        service=service, subject=subject, method=method, path=path, actor=_actor()
    )
    typer.echo(f"revoked {subject}'s access to {service}")


@access_app.command("list")
def access_list(config: Config) -> None:
    """List access rights."""
    rows = [
        [g.service, g.subject, g.method or "*", g.path or "*", _limits(g.limits)]
        for g in _access(GatewaySettings.load(config)).grants()
    ]
    table(rows, ["SERVICE", "SUBJECT", "METHOD", "PATH", "QUOTAS"])


def _limits(limits: Limits) -> str:
    named = [
        f"{value}/{unit}"
        for value, unit in (
            (limits.per_second, "s"),
            (limits.per_day, "day"),
            (limits.persons_per_day, "persons/day"),
        )
        if value is not None
    ]
    return ", ".join(named) or "-"


@group_app.command("add")
def group_add(config: Config, name: str, description: str = "") -> None:
    """Create a group."""
    _access(GatewaySettings.load(config)).add_group(name, description, actor=_actor())
    typer.echo(f"group {name} created")


@group_app.command("add-member")
def group_add_member(config: Config, name: str, client: str) -> None:
    """Put a client into a group."""
    _access(GatewaySettings.load(config)).add_to_group(name, client, actor=_actor())
    typer.echo(f"{client} added to group {name}")


@group_app.command("remove-member")
def group_remove_member(config: Config, name: str, client: str) -> None:
    """Take a client out of a group."""
    _access(GatewaySettings.load(config)).remove_from_group(name, client, actor=_actor())
    typer.echo(f"{client} removed from group {name}")


@group_app.command("list")
def group_list(config: Config) -> None:
    """List groups and their members."""
    rows = [
        [name, ", ".join(members) or "-"]
        for name, members in _access(GatewaySettings.load(config)).groups().items()
    ]
    table(rows, ["GROUP", "MEMBERS"])


@app.command()
def exchanges(
    config: Config,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="How many, newest first.")] = 20,
    json_lines: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Show operational monitoring records of recent exchanges (X-Road opmon fields)."""
    import json

    from exchange.gateway.records import ExchangeLog, opmon_fields

    settings = GatewaySettings.load(config)
    engine = build_engine(settings.db_url)
    migrate.upgrade("gateway", engine)
    records = ExchangeLog(engine).recent(limit)
    if json_lines:
        for record in records:
            typer.echo(json.dumps(opmon_fields(record)))
        return
    rows = [
        [
            r.response_out.isoformat(timespec="milliseconds"),
            "consumer" if r.side == "client" else "provider",
            r.client,
            r.service,
            str(r.status),
            r.fault_code or "-",
            f"{(r.response_out - r.request_in).total_seconds() * 1000:.1f}",
        ]
        for r in records
    ]
    table(rows, ["AT", "SIDE", "CLIENT", "SERVICE", "STATUS", "FAULT", "MS"])


@app.command()
def changes(
    config: Config,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="How many, newest first.")] = 20,
) -> None:
    """Show the change log: access rights and groups changed, audit exports, with their actor."""
    import json

    from exchange.gateway.changes import ChangeLog

    settings = GatewaySettings.load(config)
    engine = build_engine(settings.db_url)
    migrate.upgrade("gateway", engine)
    shown, _ = ChangeLog(engine).newest(limit=limit)
    rows = [
        [
            c.at.isoformat(timespec="seconds"),
            c.actor,
            c.action,
            c.target,
            json.dumps(c.detail, ensure_ascii=False),
        ]
        for c in shown
    ]
    table(rows, ["AT", "ACTOR", "ACTION", "TARGET", "DETAIL"])
