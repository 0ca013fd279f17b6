"""The audit trail at a million records: verifier throughput and the citizen's findUsage.

One command (``python -m bench.audit``, part of ``make bench``): lays out the sample federation,
fills the Population Register gateway's audit chain with ``--records`` provider records (one
citizen's among them every ``--spacing`` records), starts every role, signs and timestamps a
tree head over the whole chain, then measures on loopback, side by side:

- the verifier (records, hash chain, Merkle tree, the signed and timestamped head) in records
  per second, in-process and as ``exchange audit verify``;
- ``findUsage`` for that citizen through the portal's gateway (X-Road path, ID token checked),
  at one client, against ``heartbeat`` on the same path as the baseline (same hops, no lookup);
- the provider gateway's start-up (it rebuilds its Merkle tree) and resident memory.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from audit import bundle
from audit.log import AuditEntry, AuditLog
from audit.verify import verify
from bench.load import rss_mb
from exchange.db import migrate
from exchange.db.engine import build_engine
from exchange.gateway import files
from exchange.gateway.settings import GatewaySettings
from exchange.sample import federation
from exchange.trust.globalconf import TrustAnchor, verify_archived
from exchange.trust.globalconf_client import utcnow
from tests.servers import citizen_token, free_port, serve_federation

PERSON = "EE38001085718"
USAGE = f"/r1/{federation.POPULATION_REGISTRY}/usage/v2"
BATCH = 20_000


def fill(settings: GatewaySettings, records: int, spacing: int, *, side: str = "provider") -> float:
    """Append ``records`` records of ``side`` to the gateway's chain; seconds taken."""
    engine = build_engine(settings.db_url, sqlite_synchronous="NORMAL")
    migrate.upgrade("gateway", engine)
    key = files.audit_key(settings)
    log = AuditLog(engine, chain=settings.audit_chain, key=key, clock=utcnow)
    people = [
        hmac.new(key, f"EE4{n:010d}".encode(), hashlib.sha256).hexdigest() for n in range(10_000)
    ]
    citizen = log.subject_hash(PERSON)
    started = time.perf_counter()
    for first in range(0, records, BATCH):
        batch = []
        for seq in range(first, min(first + BATCH, records)):
            entry = AuditEntry(
                side=side,
                message_id=f"bench-{seq}",
                client=str(federation.CITIZEN_PORTAL),
                service=f"{federation.BIRTH_CERTIFICATE}/v1",
                status=200,
                fault=None,
                purpose="passport-application",
                legal_basis=None,
                consent=f"consent-{seq % 997}",
                peer="EE/GOV/70000001/gw1",
                request_digest=hashlib.sha512(str(seq).encode()).hexdigest()[:88],
                response_digest=hashlib.sha256(str(seq).encode()).hexdigest()[:43],
                request_signature=None,
                request_claims_digest=None,
                response_signature=None,
            )
            subject = citizen if seq % spacing == 0 else people[seq % len(people)]
            batch.append((entry, subject))
        log.commit_batch(batch)
    engine.dispose()
    return time.perf_counter() - started


def timed_calls(url: str, headers: dict[str, str], count: int) -> list[float]:
    latencies = []
    with httpx.Client(timeout=30) as client:
        for _ in range(count):
            started = time.perf_counter()
            response = client.get(url, headers=headers)
            latencies.append(time.perf_counter() - started)
            response.raise_for_status()
    return latencies


def line(name: str, latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    return f"{name:<34}{len(ordered):>8}{p50:>10.2f}{p99:>10.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--spacing", type=int, default=10_000, help="one citizen record in N")
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="exchange-bench-audit-") as folder:
        base = Path(folder)
        ports = federation.Ports(*(free_port() for _ in range(10)))
        layout = federation.create(base, ports, gateway_extra='sqlite_synchronous = "NORMAL"\n')
        settings = GatewaySettings.load(layout.provider)
        filled = fill(settings, args.records, args.spacing)
        print(f"filled {args.records:,} audit records in {filled:.1f} s", flush=True)
        with contextlib.ExitStack() as stack:
            started = time.perf_counter()
            processes = serve_federation(stack, layout, ports, logs=base)
            ready = time.perf_counter() - started
            rss = rss_mb(processes["provider"].pid)
            head = subprocess.run(
                [sys.executable, "-m", "exchange.cli", "audit", "head", "-c", str(layout.provider)],
                capture_output=True,
                text=True,
                check=True,
            )
            print(head.stdout.strip())

            engine = build_engine(settings.db_url)
            configuration = verify_archived(
                (settings.data_dir / "globalconf.jws").read_bytes(),
                TrustAnchor.load(settings.anchor),
            )
            anchors = bundle.anchors(configuration, settings.audit_chain, [])
            began = time.perf_counter()
            report = verify(
                settings.audit_chain,
                bundle.stored(engine, settings.audit_chain),
                bundle.heads(engine, settings.audit_chain),
                anchors,
            )
            in_process = time.perf_counter() - began
            if not report.ok or report.records < args.records:
                raise SystemExit(f"the log did not verify: {report.problem}")
            began = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "exchange.cli",
                    "audit",
                    "verify",
                    "-c",
                    str(layout.provider),
                ],
                check=True,
                capture_output=True,
            )
            command = time.perf_counter() - began

            token = citizen_token(ports, PERSON, federation.PORTAL_CLIENT_ID)
            headers = {
                "X-Road-Client": str(federation.CITIZEN_PORTAL),
                "X-Road-UserId": PERSON,
                "X-Exchange-Identity": token,
            }
            consumer = f"http://127.0.0.1:{ports.consumer_consumer}"
            heartbeat = timed_calls(f"{consumer}{USAGE}/heartbeat", headers, args.calls)
            find = timed_calls(
                f"{consumer}{USAGE}/findUsage?userCode={PERSON}", headers, args.calls
            )
            found = httpx.get(
                f"{consumer}{USAGE}/findUsage?userCode={PERSON}", headers=headers, timeout=30
            ).json()["totalUsages"]
        print()
        print(
            f"audit log of {report.records:,} records, {report.heads} signed head(s), "
            f"{report.timestamped} timestamped"
        )
        print(
            f"  verifier, in process       {report.records / in_process:>12,.0f} records/s "
            f"({in_process:.1f} s)"
        )
        print(
            f"  exchange audit verify      {report.records / command:>12,.0f} records/s "
            f"({command:.1f} s, start-up included)"
        )
        print(
            f"  every role ready in {ready:.1f} s (the provider rebuilt a tree of "
            f"{report.records:,} leaves); provider {rss:.0f} MB resident"
        )
        print()
        print(
            f"{'through the portal gateway, 1 client':<34}{'calls':>8}{'p50 ms':>10}{'p99 ms':>10}"
        )
        print(line("heartbeat (baseline: no lookup)", heartbeat))
        print(line(f"findUsage ({found} usages)", find))


if __name__ == "__main__":
    main()
