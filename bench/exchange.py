"""Full exchange against a direct registry call, side by side, on loopback. See README.md.

Every server is a process of its own: the sample federation's roles (each gateway apart), and
the baseline (``bench.baseline``, served by the gateways' server stack). The load comes from wrk
in its own process (``bench.load``). CPU per exchange is read from /proc for each gateway
process before and after each row.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.x509.oid import NameOID
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench import load, native
from exchange.central import models
from exchange.central.ocsp import respond
from exchange.sample import federation
from exchange.trust import ca
from exchange.trust.keys import certificate_pem, generate_key
from exchange.trust.ocsp import CertificateStatus, ocsp_request
from tests.servers import citizen_token, exchange, free_port, serve_federation, serving

ROOT = Path(__file__).resolve().parents[1]
PERSON = "EE38001085718"
CLIENT = {"X-Road-Client": str(federation.CITIZEN_PORTAL)}
GATEWAYS = ("consumer", "provider")
DATABASES = ("SQLite", "PostgreSQL")
DIRECT = "direct call"
EXCHANGE = "full exchange"
# What --costs adds, each on or off against the plain exchange of the same run (see README.md).
QUOTA, IDEMPOTENCY, NO_WITNESS = "with a quota", "with Idempotency-Key", "witnessing off"
# Quotas a real access right might declare, well above the load: nothing is refused, and each
# process leases a tenth of a second's limit and 50 units of the day's at a time.
QUOTAS = ("--per-second", "10000", "--per-day", "100000000", "--persons-per-day", "1000")
RIGHTS_RELOAD = 3.0  # seconds: the provider reloads access rights every access_cache_ttl (2 s)
OCSP_LOOKUPS = 3  # signatures whose certificate's status an exchange looks up


@dataclass
class Row:
    path: str  # DIRECT or EXCHANGE
    database: str  # of the gateways: SQLite or PostgreSQL
    clients: int
    load: load.Load
    cpu_ms: dict[str, float]  # per server process: CPU ms per answered request
    rss_mb: dict[str, float]
    direct: Row | None = field(default=None, repr=False)  # the baseline of the same run
    variant: str = ""  # with --costs: what is switched on or off against the plain exchange
    # with --perf: per gateway, the share of its CPU each kind of code executed (bench.native)
    executed_by: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        if self.path == DIRECT:
            return DIRECT
        return f"{EXCHANGE}, {self.database}" + (f", {self.variant}" if self.variant else "")

    @property
    def ratio(self) -> float:
        return self.load.rate / self.direct.load.rate if self.direct else 1.0

    @property
    def gateways_cpu_ms(self) -> float | None:
        measured = [self.cpu_ms[g] for g in GATEWAYS if g in self.cpu_ms]
        return sum(measured) if measured else None


def measure_row(
    path: str,
    database: str,
    clients: int,
    drive: load.Driver,
    url: str,
    headers: dict[str, str],
    *,
    seconds: int,
    processes: dict[str, int],
    direct: Row | None = None,
    variant: str = "",
    perf: Path | None = None,
) -> Row:
    """One row: the load, and each server process's CPU per answered request and memory (a
    gateway with workers: the parent's and its workers' together); with ``perf`` (a folder for
    its files), what executed that CPU too."""

    def cpu(pid: int) -> float:
        return load.cpu_seconds(pid, children=True)

    before = {role: cpu(pid) for role, pid in processes.items()}
    sampling = native.start(processes, seconds, perf) if perf is not None else None
    measured = drive(url, headers, clients, seconds)
    per = max(measured.answered, 1) / 1000
    used = {role: (cpu(pid) - before[role]) / per for role, pid in processes.items()}
    rss = {role: load.rss_mb(pid, children=True) for role, pid in processes.items()}
    executed_by = sampling.executed_by() if sampling is not None else {}  # read after the CPU
    if measured.errors:
        print(f"{url}, {clients} clients: {measured.errors} errors", file=sys.stderr)
    return Row(path, database, clients, measured, used, rss, direct, variant, executed_by)


@contextlib.contextmanager
def running_federation(
    base: Path,
    urls: tuple[str | None, str | None],
    synchronous: str,
    *,
    workers: int = 1,
    cpus: str | None = None,
    extra: str = "",
) -> Iterator[tuple[federation.Federation, federation.Ports, int, dict[str, int]]]:
    """Every role as a process, and the baseline: (layout, ports, baseline port, role -> pid).
    Each gateway runs ``workers`` processes, pinned to ``cpus`` (a taskset list) if given, with
    ``extra`` settings."""
    ports = federation.Ports(*(free_port() for _ in range(10)))
    layout = federation.create(
        base,
        ports,
        database_urls=urls,
        gateway_extra=f'sqlite_synchronous = "{synchronous}"\nworkers = {workers}\n{extra}',
    )
    logs = base / "logs"
    logs.mkdir()
    baseline_port = free_port()
    with contextlib.ExitStack() as stack:
        processes = serve_federation(stack, layout, ports, logs=logs)
        processes["baseline"] = stack.enter_context(
            serving(
                ["--registry", str(layout.registry), "--port", str(baseline_port)],
                health_url=f"http://127.0.0.1:{baseline_port}/health",
                log=logs / "baseline.log",
                command=[sys.executable, "-m", "bench.baseline"],
                cwd=ROOT,
            )
        )
        if cpus is not None:
            for gateway in GATEWAYS:
                pin(processes[gateway].pid, cpus)
        yield layout, ports, baseline_port, {role: p.pid for role, p in processes.items()}


def pin(pid: int, cpus: str) -> None:
    """Bind a gateway (its parent and workers, every thread; workers started again later
    inherit the parent's binding) to the CPUs ``cpus``."""
    for member in load.family(pid):
        subprocess.run(
            ["taskset", "--all-tasks", "--cpu-list", "--pid", cpus, str(member)],
            check=True,
            capture_output=True,
        )


def consent_headers(ports: federation.Ports) -> dict[str, str]:
    """What the portal sends for a person who consented (for as many uses as the run needs)."""
    token = citizen_token(ports, PERSON, federation.CONSENT_CLIENT_ID)
    granted = httpx.post(
        f"http://127.0.0.1:{ports.consent}/api/v1/consents",
        headers={"Authorization": f"Bearer {token}"},
        json={
            "consumer": str(federation.CITIZEN_PORTAL),
            "service": federation.BIRTH_CERTIFICATE,
            "purpose": "benchmark",
            "purpose_text": "to measure the exchange",
            "max_uses": "unlimited",
        },
    )
    granted.raise_for_status()
    return {
        "X-Road-UserId": PERSON,
        "X-Exchange-Purpose": "benchmark",
        "X-Exchange-Consent": granted.json()["artefact"],
    }


def feed_fresh(
    ports: federation.Ports, warm_up: Callable[[], object], *, workers: int, within: float = 60
) -> None:
    """Wait until the provider (each of its workers) holds a fresh copy of the consent service's
    revocation feed (it starts following it at the first consent it checks): until then it asks
    the consent service for every exchange, which is not the steady state to measure."""
    health = f"http://127.0.0.1:{ports.provider_consumer}/health"
    deadline = time.monotonic() + within
    fresh: set[str] = set()
    tries = 0
    while time.monotonic() < deadline:
        # A connection of its own each time: with workers, each answers for itself.
        answer = httpx.get(health).json()
        feeds = answer["consent_feeds"]
        if feeds and all(feed["fresh"] for feed in feeds.values()):
            fresh.add(answer["replica"])
            if len(fresh) == workers:
                return
        tries += 1
        if tries % 20 == 0:
            warm_up()  # a worker that has checked no consent yet follows no feed
        time.sleep(0.1)
    sys.exit("the provider's copy of the consent feed did not become fresh")


def limit_access(layout: federation.Federation, quotas: tuple[str, ...]) -> None:
    """Declare ``quotas`` on the benchmark's access right (none: lift them), as an operator
    would; the running provider applies them at its next reload of the rights."""
    done = exchange(
        *("gateway", "access", "limit", "-c", str(layout.provider)),
        *(federation.BIRTH_CERTIFICATE, str(federation.CITIZEN_PORTAL), *quotas),
    )
    if done.returncode != 0:
        sys.exit(f"exchange gateway access limit failed: {done.stderr}")
    time.sleep(RIGHTS_RELOAD)


def measure(
    args: argparse.Namespace,
    base: Path,
    urls: tuple[str | None, str | None],
    database: str,
    *,
    witnessing: bool = True,
) -> list[Row]:
    """Direct calls and full exchanges, alternating per number of clients, on one federation;
    with ``args.costs`` (and ``witnessing`` on) also the exchange with a quota declared and
    with an ``Idempotency-Key`` on each request, each right after the plain one."""
    drive = load.DRIVERS[args.driver]
    rows: list[Row] = []
    with running_federation(
        base,
        urls,
        args.sqlite_synchronous,
        workers=args.workers,
        cpus=args.cpus,
        extra="" if witnessing else "audit_witness = false\n",
    ) as (layout, ports, baseline, pids):
        direct = f"http://127.0.0.1:{baseline}/births?person={PERSON}"
        full = f"http://127.0.0.1:{ports.consumer_consumer}/r1/{federation.BIRTH_CERTIFICATE}?person={PERSON}"
        consented = {**CLIENT, **consent_headers(ports)}
        drive(direct, {}, 4, 1)  # warm-up
        drive(full, consented, 4, 1)
        feed_fresh(ports, lambda: drive(full, consented, 8, 1), workers=args.workers)
        drive(full, consented, 4, 1)
        for clients in args.concurrency:
            baseline_row = measure_row(
                DIRECT,
                database,
                clients,
                drive,
                direct,
                {},
                seconds=args.seconds,
                processes={"baseline": pids["baseline"]},
            )
            exchange_row = measure_row(
                EXCHANGE,
                database,
                clients,
                drive,
                full,
                consented,
                seconds=args.seconds,
                processes={role: pids[role] for role in GATEWAYS},
                direct=baseline_row,
                variant="" if witnessing else NO_WITNESS,
                perf=base / "perf" / f"{clients}" if args.perf else None,
            )
            rows += [baseline_row, exchange_row]
            if not (args.costs and witnessing):
                continue
            variants = [
                (QUOTA, consented, lambda: limit_access(layout, QUOTAS)),
                (IDEMPOTENCY, {**consented, "Idempotency-Key": load.FRESH}, None),
            ]
            for variant, headers, before in variants:
                if before is not None:
                    before()
                rows.append(
                    measure_row(
                        EXCHANGE,
                        database,
                        clients,
                        drive,
                        full,
                        headers,
                        seconds=args.seconds,
                        processes={role: pids[role] for role in GATEWAYS},
                        direct=baseline_row,
                        variant=variant,
                    )
                )
                if variant == QUOTA:
                    limit_access(layout, ())  # lifted: the next rows run without it
    return rows


@contextlib.contextmanager
def postgres(url: str | None) -> Iterator[str | None]:
    """The server to measure on: ``url``, else a throwaway cluster if PostgreSQL is installed."""
    if url is not None:
        yield url
        return
    script = ROOT / "scripts" / "pg-throwaway"
    if subprocess.run([script, "bindir"], capture_output=True, check=False).returncode != 0:
        yield None
        return
    folder, started = subprocess.run(
        [script, "start"], capture_output=True, text=True, check=True
    ).stdout.split()
    try:
        yield started
    finally:
        subprocess.run([script, "stop", folder], capture_output=True, check=False)


def databases(server: str) -> tuple[str, str]:
    """A fresh database for each gateway on ``server``."""
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    names = [f"bench_{side}_{uuid.uuid4().hex[:8]}" for side in ("provider", "consumer")]
    with admin.connect() as connection:
        for name in names:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(server)
    provider, consumer = (url.set(database=n).render_as_string(hide_password=False) for n in names)
    return provider, consumer


@dataclass(frozen=True)
class Target:
    """One of issue 13's acceptance figures, read from one row of the table."""

    what: str
    database: str
    clients: int
    at_most: bool  # the figure must be <= limit (else >= limit)
    limit: float
    figure: Callable[[Row], float | None]
    unit: str  # how the figure and the limit are printed: "{:.0f}/s"

    def describe(self) -> str:
        clients = "1 client" if self.clients == 1 else f"{self.clients} clients"
        limit = self.unit.format(self.limit)
        return f"{self.what} {'<=' if self.at_most else '>='} {limit}, {self.database}, {clients}"

    def check(self, rows: list[Row]) -> tuple[str, str]:
        """(the figure, "met" or "not met"); "-" and "not measured" without its row."""
        for row in rows:
            if (row.path, row.database, row.clients) == (EXCHANGE, self.database, self.clients):
                figure = self.figure(row)
                if figure is None:
                    break
                met = figure <= self.limit if self.at_most else figure >= self.limit
                return self.unit.format(figure), "met" if met else "not met"
        return "-", "not measured"


def _added_p50(row: Row) -> float | None:
    return row.load.p50_ms - row.direct.load.p50_ms if row.direct else None


def _rate(row: Row) -> float:
    return row.load.rate


def _ratio(row: Row) -> float:
    return row.ratio


def _gateways_cpu(row: Row) -> float | None:
    return row.gateways_cpu_ms


TARGETS = [
    Target("exchanges", "SQLite", 50, False, 1000, _rate, "{:.0f}/s"),
    Target("rate", "SQLite", 50, False, 0.12, _ratio, "{:.3f}x direct"),
    Target("exchanges", "PostgreSQL", 50, False, 800, _rate, "{:.0f}/s"),
    *(Target("added p50", db, 1, True, 3, _added_p50, "{:.2f} ms") for db in DATABASES),
    *(
        Target("gateway CPU per exchange", db, 50, True, 1.5, _gateways_cpu, "{:.2f} ms")
        for db in DATABASES
    ),
]


def _cell(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(rows: list[Row], driver: str, *, workers: int = 1, cpus: str | None = None) -> str:
    columns = [
        ("path", max([28, *(len(row.name) + 2 for row in rows)])),
        ("clients", 8),
        ("per s", 8),
        ("p50 ms", 8),
        ("p99 ms", 8),
        ("x direct", 9),
        ("CPU ms cons", 12),
        ("prov", 6),
        ("both", 6),
        ("RSS MB cons", 12),
        ("prov", 5),
        ("gen %", 6),
        ("errors", 7),
    ]
    lines = [
        f"load: {driver}; every exchange is signed both ways, consent checked, audited durably;",
        f"gateways: {workers} worker(s) each"
        + (f", pinned to CPUs {cpus}" if cpus else ", not pinned"),
        "CPU ms: per answered request, for each gateway process (cons, prov) and both together;",
        "gen %: the load generator's CPU, in percent of one core",
        "".join(f"{h:<{w}}" if i == 0 else f"{h:>{w}}" for i, (h, w) in enumerate(columns)),
    ]
    for row in rows:
        cells = [
            f"{row.load.rate:.0f}",
            f"{row.load.p50_ms:.2f}",
            f"{row.load.p99_ms:.2f}",
            f"{row.ratio:.3f}",
            _cell(row.cpu_ms.get("consumer"), ".2f"),
            _cell(row.cpu_ms.get("provider"), ".2f"),
            _cell(row.gateways_cpu_ms, ".2f"),
            _cell(row.rss_mb.get("consumer"), ".0f"),
            _cell(row.rss_mb.get("provider"), ".0f"),
            f"{100 * row.load.generator_cpu / row.load.seconds:.0f}",
            str(row.load.errors),
        ]
        lines.append(
            f"{row.name:<{columns[0][1]}}{row.clients:>8}"
            + "".join(f"{c:>{w}}" for c, (_, w) in zip(cells, columns[2:], strict=True))
        )
    lines += ["", f"{'target (issue 13)':<58}{'measured':>16}"]
    for target in TARGETS:
        figure, mark = target.check(rows)
        lines.append(f"{target.describe():<58}{figure:>16}  {mark}")
    for row in rows:
        if row.executed_by:
            lines += ["", f"what executed the gateways' CPU, {row.name}, {row.clients} clients:"]
            lines += native.table(row.cpu_ms, row.executed_by)
    return "\n".join(lines)


def costs(rows: list[Row], ocsp_us: float | None) -> str:
    """What each of quotas, idempotency keys, witnessing and OCSP costs per exchange: each
    variant beside the plain exchange of the same database and clients."""
    lines = [
        "what each costs per exchange (against the plain full exchange, same database and"
        " clients; witnessing is on in the plain rows, so its cost is plain minus 'off'):",
        f"{'path':<52}{'clients':>8}{'per s':>8}{'p50 ms':>8}{'CPU ms both':>12}{'+CPU ms':>9}"
        f"{'+p50 ms':>9}",
    ]
    plain = {(r.database, r.clients): r for r in rows if r.path == EXCHANGE and not r.variant}
    for row in rows:
        base = plain.get((row.database, row.clients))
        if row.path != EXCHANGE or not row.variant or base is None:
            continue
        both, base_both = row.gateways_cpu_ms, base.gateways_cpu_ms
        extra = None if both is None or base_both is None else both - base_both
        lines.append(
            f"{row.name:<52}{row.clients:>8}{row.load.rate:>8.0f}{row.load.p50_ms:>8.2f}"
            f"{_cell(both, '.2f'):>12}{_cell(extra, '+.2f'):>9}"
            f"{row.load.p50_ms - base.load.p50_ms:>+9.2f}"
        )
    if ocsp_us is not None:
        lines.append(
            f"OCSP: {ocsp_us:.2f} us per status lookup, in process; an exchange verifies"
            f" {OCSP_LOOKUPS} signatures (request, consent artefact, answer):"
            f" {OCSP_LOOKUPS * ocsp_us / 1000:.4f} ms"
        )
    return "\n".join(lines)


def ocsp_lookup_us(lookups: int = 200_000) -> float:
    """Microseconds per OCSP status lookup, as the gateways make one per verified signature
    (the answers are fetched off the request path; the lookup is all an exchange pays)."""
    at = datetime.now(UTC)
    root_key = generate_key()
    authority = ca.CertificateAuthority(
        root_key, ca.create_root(root_key, instance="XX", at=at, validity=timedelta(days=1))
    )
    certificate = authority.issue(
        public_key=generate_key().public_key(),
        subject=x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, "XX/GOV/1")]),
        profile=ca.Profile.SIGNING,
        at=at,
        validity=timedelta(days=1),
    )
    row = models.Certificate(pem=certificate_pem(certificate), revoked_at=None)
    der = respond(
        ocsp_request(certificate, authority.certificate),
        authority=authority,
        lookup=lambda _serial: row,
        at=at,
        validity=timedelta(minutes=10),
    )
    status = CertificateStatus(
        post=lambda _url, _body: der, clock=lambda: at, max_age=timedelta(minutes=10)
    )
    if status.prefetch(
        url="http://ca.invalid/ocsp", ca=authority.certificate, certificates=[certificate]
    ):
        sys.exit("the OCSP answer made for the measurement did not verify")
    started = time.perf_counter()
    for _ in range(lookups):
        status.require(certificate, at)
    return (time.perf_counter() - started) / lookups * 1e6


def as_json(rows: list[Row]) -> list[dict[str, Any]]:
    return [
        {
            "path": row.name,
            "clients": row.clients,
            "rate": row.load.rate,
            "p50_ms": row.load.p50_ms,
            "p99_ms": row.load.p99_ms,
            "ratio": row.ratio,
            "cpu_ms": row.cpu_ms,
            "gateways_cpu_ms": row.gateways_cpu_ms,
            "rss_mb": row.rss_mb,
            "generator_cpu_s": row.load.generator_cpu,
            "errors": row.load.errors,
            "variant": row.variant,
            "executed_by": row.executed_by,
        }
        for row in rows
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10, help="per row (default 10)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 50])
    parser.add_argument(
        "--driver",
        choices=sorted(load.DRIVERS),
        default="wrk",
        help="wrk in its own process (default), or the old Python driver in this process",
    )
    parser.add_argument(
        "--postgres-url",
        default=None,
        help="a PostgreSQL server (admin URL) for the PostgreSQL run; default: a throwaway one",
    )
    parser.add_argument("--no-postgres", action="store_true", help="measure SQLite only")
    parser.add_argument(
        "--sqlite-synchronous", choices=["FULL", "NORMAL"], default="FULL", help="for the gateways"
    )
    parser.add_argument("--workers", type=int, default=1, help="processes per gateway (default 1)")
    parser.add_argument(
        "--cpus",
        default=None,
        help="pin both gateways to these CPUs (taskset list: 0 or 0,1); other roles and the"
        " load generator are not pinned",
    )
    parser.add_argument(
        "--costs",
        action="store_true",
        help="also measure the exchange with a quota declared, with an Idempotency-Key on each"
        " request, and with witnessing off (a federation of its own), and OCSP's per-signature"
        " lookup; printed side by side with the plain exchange",
    )
    parser.add_argument(
        "--perf",
        action="store_true",
        help="also sample each gateway with perf during each full-exchange row and print what"
        " executed its CPU: the interpreter, the C library, the kernel, each compiled library",
    )
    parser.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    if args.driver == "wrk":
        load.wrk_path()  # installed before any server starts
    if args.perf:
        native.perf_path()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="exchange-bench-") as folder:
        base = Path(folder)
        rows += measure(args, base / "sqlite", (None, None), "SQLite")
        if args.costs:
            rows += measure(args, base / "sqlite-off", (None, None), "SQLite", witnessing=False)
        if not args.no_postgres:
            with postgres(args.postgres_url) as server:
                if server is None:
                    print("PostgreSQL is not installed: its run is skipped", file=sys.stderr)
                else:
                    urls = databases(server)
                    rows += measure(args, base / "postgresql", urls, "PostgreSQL")
                    if args.costs:
                        urls = databases(server)
                        rows += measure(
                            args, base / "postgresql-off", urls, "PostgreSQL", witnessing=False
                        )
    ocsp_us = ocsp_lookup_us() if args.costs else None
    if args.json:
        print(json.dumps({"rows": as_json(rows), "ocsp_lookup_us": ocsp_us}, indent=2))
        return
    print(report(rows, args.driver, workers=args.workers, cpus=args.cpus))
    if args.costs:
        print("\n" + costs(rows, ocsp_us))


if __name__ == "__main__":
    main()
