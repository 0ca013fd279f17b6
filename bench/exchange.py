"""Full exchange against a direct registry call, side by side, on loopback. See README.md."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
import uvicorn
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from exchange.sample import federation, population
from tests.servers import citizen_token, free_port, serve_federation

PERSON = "EE38001085718"
CLIENT = {"X-Road-Client": str(federation.CITIZEN_PORTAL)}


@dataclass
class Result:
    name: str
    concurrency: int
    count: int
    seconds: float
    latencies: list[float]
    errors: int
    cpu: float | None = None
    rss_mb: float | None = None

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return (
            ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000
            if ordered
            else float("nan")
        )


async def drive(
    url: str, headers: dict[str, str], concurrency: int, seconds: float, name: str
) -> Result:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                async with session.get(url, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return Result(name, concurrency, len(latencies), elapsed, latencies, errors)


def direct_registry(path: Path) -> Starlette:
    """The baseline: the same query and JSON, straight from the register, no gateway."""
    database = sqlite3.connect(path, check_same_thread=False)
    database.row_factory = sqlite3.Row
    query = population.BIRTH_QUERY.replace(":person", "?")

    async def birth(request: Request) -> Response:
        row = database.execute(query, (request.query_params["person"],)).fetchone()
        if row is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        return JSONResponse(dict(row))

    return Starlette(routes=[Route("/births", birth)])


def process_stats(pids: list[int]) -> tuple[float, float]:
    """(CPU seconds, resident MB) summed over ``pids``, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = rss = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu += (int(fields[11]) + int(fields[12])) / ticks
        rss += int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    return cpu, rss


@contextlib.contextmanager
def running_federation(
    base: Path, urls: tuple[str | None, str | None], synchronous: str
) -> Iterator[tuple[federation.Federation, federation.Ports, list[int]]]:
    ports = federation.Ports(*(free_port() for _ in range(10)))
    layout = federation.create(
        base, ports, database_urls=urls, gateway_extra=f'sqlite_synchronous = "{synchronous}"\n'
    )
    logs = base / "logs"
    logs.mkdir()
    with contextlib.ExitStack() as stack:
        processes = serve_federation(stack, layout, ports, logs=logs)
        yield layout, ports, [processes["provider"].pid, processes["consumer"].pid]


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


async def serve_baseline(app: Starlette, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    return server, task


async def measure(
    args: argparse.Namespace, base: Path, urls: tuple[str | None, str | None], label: str
) -> list[Result]:
    """Direct calls and full exchanges, alternating per concurrency, on one federation."""
    results: list[Result] = []
    with running_federation(base, urls, args.sqlite_synchronous) as (layout, ports, pids):
        baseline_port = free_port()
        server, task = await serve_baseline(direct_registry(layout.registry), baseline_port)
        direct = f"http://127.0.0.1:{baseline_port}/births?person={PERSON}"
        full = f"http://127.0.0.1:{ports.consumer_consumer}/r1/{federation.BIRTH_CERTIFICATE}?person={PERSON}"
        consented = {**CLIENT, **consent_headers(ports)}
        await drive(full, consented, 4, 1.0, "warm-up")
        for concurrency in args.concurrency:
            results.append(
                await drive(direct, {}, concurrency, args.seconds, "direct call (baseline)")
            )
            before, _ = process_stats(pids)
            exchange = await drive(
                full, consented, concurrency, args.seconds, f"full exchange, {label}"
            )
            after, rss = process_stats(pids)
            exchange.cpu, exchange.rss_mb = (after - before) / max(exchange.count, 1), rss
            results.append(exchange)
        server.should_exit = True
        await task
    return results


@contextlib.contextmanager
def postgres(url: str | None) -> Iterator[str | None]:
    """The server to measure on: ``url``, else a throwaway cluster if PostgreSQL is installed."""
    if url is not None:
        yield url
        return
    script = Path(__file__).resolve().parents[1] / "scripts" / "pg-throwaway"
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


def report(results: list[Result]) -> str:
    header = (
        "path",
        "clients",
        "per s",
        "p50 ms",
        "p99 ms",
        "x base",
        "CPU ms",
        "RSS MB",
        "errors",
    )
    widths = (30, 8, 10, 9, 9, 8, 8, 8, 8)
    lines = [
        "".join(
            f"{h:<{w}}" if i == 0 else f"{h:>{w}}"
            for i, (h, w) in enumerate(zip(header, widths, strict=True))
        )
    ]
    baseline: dict[int, Result] = {}
    for result in results:
        if result.name.startswith("direct"):
            baseline[result.concurrency] = result
        base = baseline.get(result.concurrency)
        ratio = f"{result.rate / base.rate:.2f}" if base and base is not result else "1.00"
        cpu = f"{result.cpu * 1000:.2f}" if result.cpu is not None else "-"
        rss = f"{result.rss_mb:.0f}" if result.rss_mb is not None else "-"
        lines.append(
            f"{result.name:<30}{result.concurrency:>8}{result.rate:>10.0f}{result.percentile(0.5):>9.2f}"
            f"{result.percentile(0.99):>9.2f}{ratio:>8}{cpu:>8}{rss:>8}{result.errors:>8}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 50])
    parser.add_argument(
        "--postgres-url",
        default=None,
        help="a PostgreSQL server (admin URL) for the PostgreSQL run; default: a throwaway one",
    )
    parser.add_argument("--no-postgres", action="store_true", help="measure SQLite only")
    parser.add_argument(
        "--sqlite-synchronous", choices=["FULL", "NORMAL"], default="FULL", help="for the gateways"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="exchange-bench-") as folder:
        base = Path(folder)
        results += asyncio.run(measure(args, base / "sqlite", (None, None), "SQLite"))
        if not args.no_postgres:
            with postgres(args.postgres_url) as server:
                if server is None:
                    print("PostgreSQL is not installed: its run is skipped", file=sys.stderr)
                else:
                    urls = databases(server)
                    results += asyncio.run(measure(args, base / "postgresql", urls, "PostgreSQL"))
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "path": r.name,
                        "clients": r.concurrency,
                        "rate": r.rate,
                        "p50_ms": r.percentile(0.5),
                        "p99_ms": r.percentile(0.99),
                        "cpu_ms": None if r.cpu is None else r.cpu * 1000,
                        "rss_mb": r.rss_mb,
                    }
                    for r in results
                ],
                indent=2,
            )
        )
    else:
        print(report(results))


if __name__ == "__main__":
    main()
