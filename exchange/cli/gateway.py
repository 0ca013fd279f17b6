"""``exchange gateway ...``: set up, enrol, run and administer a member's gateway."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from exchange import keyfolder
from exchange.cli.output import table
from exchange.db import migrate
from exchange.db.engine import build_engine
from exchange.errors import NotFound
from exchange.gateway import enrolment, files
from exchange.gateway.access import AccessRights, Limits
from exchange.gateway.settings import GatewaySettings
from exchange.identifiers import ServiceId
from exchange.trust.globalconf_client import utcnow

if TYPE_CHECKING:
    from exchange.gateway.declared import DeclaredServices
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
service_app = typer.Typer(
    help="Services declared in the gateway's database, beside the settings file's "
    "(as the console declares them); a running gateway serves changes within seconds.",
    no_args_is_help=True,
)
app.add_typer(service_app, name="service")

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


@contextlib.contextmanager
def _declared(settings: GatewaySettings) -> Iterator[DeclaredServices]:
    """The gateway's declared services, for a command run beside (or without) the gateway."""
    from exchange.gateway.declared import DeclaredServices
    from exchange.gateway.services import ServiceTable

    engine = build_engine(settings.db_url)
    migrate.upgrade("gateway", engine)

    async def here(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    table = ServiceTable.build(
        member=settings.gateway.member,
        specs=settings.services,
        schemas_dir=settings.schemas_dir,
        max_part_bytes=settings.max_part_bytes,
    )
    try:
        yield DeclaredServices(engine, settings=settings, table=table, clock=utcnow, in_thread=here)
    finally:
        asyncio.run(table.close())
        engine.dispose()


def _record(settings: GatewaySettings, action: str, target: str, detail: dict[str, int]) -> None:
    from sqlalchemy.orm import Session

    from exchange.gateway import changes

    engine = build_engine(settings.db_url)
    with Session(engine) as session:
        changes.record(
            session, at=utcnow(), actor=_actor(), action=action, target=target, detail=detail
        )
        session.commit()
    engine.dispose()


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
    token_file: Annotated[
        Path | None,
        typer.Option(hidden=True, help="Deprecated and not read: the catalogue is signed."),
    ] = None,
    central: Annotated[
        str | None, typer.Option(help="Central authority URL (default: from the anchor).")
    ] = None,
) -> None:
    """Publish this gateway's services to the central authority's catalogue: the settings
    file's and the enabled ones declared from the console (or ``gateway service``), signed
    with this gateway's signing key (no token of the authority's is needed). Every subsystem
    is tried; the command fails if the authority refused any of them."""
    from exchange.gateway import publishing
    from exchange.trust.signed import Signer

    settings = GatewaySettings.load(config)
    if token_file is not None:  # older scripts still pass it: they keep working, and are told
        typer.echo("--token-file is no longer read: the catalogue is signed", err=True)
    keys = files.load(settings)
    with _declared(settings) as declared:
        enabled = declared.enabled()
    done = publishing.publish(
        settings,
        enabled,
        central_url=_central_url(settings, central),
        signer=Signer(keys.signing_key, keys.signing_certificate),
        clock=utcnow,
    )
    for subsystem, count in done.published.items():
        typer.echo(f"published {count} service(s) of {subsystem}")
    if done.published:
        _record(settings, "services.publish", str(settings.gateway.member), done.published)
    for subsystem, reason in done.refused.items():
        refused = f"the central authority refused the catalogue of {subsystem}: {reason}"
        typer.echo(refused, err=True)
    if done.refused:
        raise typer.Exit(1)


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


ServiceFile = Annotated[
    Path,
    typer.Option(
        "--file",
        "-f",
        help="TOML file holding one service, with the keys of a [[services]] entry.",
        exists=True,
        dir_okay=False,
    ),
]


def _service_file(path: Path) -> Any:
    from exchange.gateway import declared

    with path.open("rb") as handle:
        return declared.parse(tomllib.load(handle))


@service_app.command("list")
def service_list(config: Config) -> None:
    """List the services: the settings file's and the declared ones, enabled or not."""
    from exchange.gateway.declared import hide_password

    settings = GatewaySettings.load(config)
    with _declared(settings) as declared:
        listed = declared.listed()
    rows = [
        [
            f"{s.subsystem}/{s.code}",
            "file",
            "served",
            s.consent_policy,
            s.connector.type,
            hide_password(s.connector.url),
        ]
        for s in settings.services
    ]
    rows += [
        [
            f"{d.spec.subsystem}/{d.spec.code}",
            "declared",
            "served" if d.enabled else "disabled",
            d.spec.consent_policy,
            d.spec.connector.type,
            d.shown_url,
        ]
        for d in listed
    ]
    table(rows, ["SERVICE", "SOURCE", "STATE", "POLICY", "CONNECTOR", "ADDRESS"])


@service_app.command("declare")
def service_declare(config: Config, file: ServiceFile) -> None:
    """Declare a service (served by a running gateway within seconds)."""
    settings = GatewaySettings.load(config)
    spec = _service_file(file)
    with _declared(settings) as declared:
        asyncio.run(declared.declare(spec, actor=_actor()))
    typer.echo(f"declared {spec.subsystem}/{spec.code}")


@service_app.command("edit")
def service_edit(config: Config, file: ServiceFile) -> None:
    """Replace a declared service's declaration (named by its subsystem and code)."""
    settings = GatewaySettings.load(config)
    spec = _service_file(file)
    with _declared(settings) as declared:
        asyncio.run(declared.edit(spec, actor=_actor()))
    typer.echo(f"changed {spec.subsystem}/{spec.code}")


@service_app.command("disable")
def service_disable(config: Config, subsystem: str, code: str) -> None:
    """Stop serving a declared service: clients asking for it get UnknownService."""
    settings = GatewaySettings.load(config)
    with _declared(settings) as declared:
        asyncio.run(declared.switch(subsystem, code, enabled=False, actor=_actor()))
    typer.echo(f"disabled {subsystem}/{code}")


@service_app.command("enable")
def service_enable(config: Config, subsystem: str, code: str) -> None:
    """Serve a disabled declared service again."""
    settings = GatewaySettings.load(config)
    with _declared(settings) as declared:
        asyncio.run(declared.switch(subsystem, code, enabled=True, actor=_actor()))
    typer.echo(f"enabled {subsystem}/{code}")


@service_app.command("test")
def service_test(config: Config, subsystem: str, code: str) -> None:
    """Test a service's connection without reading a record."""
    settings = GatewaySettings.load(config)
    with _declared(settings) as declared:
        spec = next(
            (s for s in settings.services if s.subsystem == subsystem and s.code == code), None
        )
        if spec is None:
            found = declared.find(subsystem, code)
            if found is None:
                raise NotFound(f"no service {subsystem}/{code} is provided here", detail="code")
            spec = found.spec
        typer.echo(asyncio.run(declared.probe(spec)))
