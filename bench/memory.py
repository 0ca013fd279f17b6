"""Each gateway's resident memory, with an empty audit chain and with a million records in it.

One command (``python -m bench.memory``): for each ``--records`` count, lays out the sample
federation, fills both gateways' audit chains with that many records through the audit log's
own writer (``bench.audit.fill``: the records, their hash chain and the columns a citizen's
usage look-up reads), starts every role as a process of its own beside the baseline (a bare
``bench.baseline`` process: the same server stack with no gateway in it), then reads each
process's resident memory (``/proc/<pid>/status``: VmRSS now, VmHWM its peak):

- once every role answers its health check (the gateways have rebuilt their Merkle trees);
- after ``--seconds`` of full exchanges (consent checked, audited on both sides) at
  ``--clients`` clients from wrk, twice, so that what grows with traffic shows.

Issue 13's target: each gateway <= 150 MB after a million audit records.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench import load
from bench.audit import fill
from bench.exchange import CLIENT, PERSON, ROOT, consent_headers, feed_fresh
from exchange.gateway.settings import GatewaySettings
from exchange.sample import federation
from tests.servers import free_port, serve_federation, serving

TARGET_MB = 150
SHOWN = ("consumer", "provider", "baseline")


@dataclass(frozen=True)
class Reading:
    """One process's resident memory at one moment, in MB."""

    rss: float
    peak: float


def reading(pid: int) -> Reading:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return Reading(
        rss=int(fields["VmRSS"].split()[0]) * 1024 / 1e6,
        peak=int(fields["VmHWM"].split()[0]) * 1024 / 1e6,
    )


@contextlib.contextmanager
def federation_with(base: Path, records: int) -> Iterator[tuple[federation.Ports, dict[str, int]]]:
    """The sample federation, both gateways' chains holding ``records`` records, every role and
    the baseline running: (ports, role -> pid)."""
    ports = federation.Ports(*(free_port() for _ in range(10)))
    layout = federation.create(base, ports)
    for side, config in (("provider", layout.provider), ("consumer", layout.consumer)):
        if records:
            took = fill(GatewaySettings.load(config), records, 10_000, side=side)
            print(
                f"  {side} gateway: {records:,} audit records written in {took:.0f} s", flush=True
            )
    logs = base / "logs"
    logs.mkdir()
    baseline_port = free_port()
    with contextlib.ExitStack() as stack:
        started = time.perf_counter()
        # A gateway rebuilds its Merkle tree from every record before it answers.
        processes = serve_federation(stack, layout, ports, logs=logs, ready_within=600)
        print(f"  every role ready in {time.perf_counter() - started:.1f} s", flush=True)
        processes["baseline"] = stack.enter_context(
            serving(
                ["--registry", str(layout.registry), "--port", str(baseline_port)],
                health_url=f"http://127.0.0.1:{baseline_port}/health",
                log=logs / "baseline.log",
                ready_within=120,
                command=[sys.executable, "-m", "bench.baseline"],
                cwd=ROOT,
            )
        )
        yield ports, {role: p.pid for role, p in processes.items()}


def measure(
    base: Path, records: int, clients: int, seconds: int
) -> list[tuple[str, dict[str, Reading]]]:
    """(moment, role -> reading) at start and after each round of exchanges."""
    moments: list[tuple[str, dict[str, Reading]]] = []
    with federation_with(base, records) as (ports, pids):
        moments.append(("started", {role: reading(pids[role]) for role in SHOWN}))
        full = (
            f"http://127.0.0.1:{ports.consumer_consumer}/r1/{federation.BIRTH_CERTIFICATE}"
            f"?person={PERSON}"
        )
        consented = {**CLIENT, **consent_headers(ports)}
        load.wrk(full, consented, 4, 1)
        feed_fresh(ports, lambda: load.wrk(full, consented, 8, 1), workers=1)
        answered = 0
        for _ in range(2):
            done = load.wrk(full, consented, clients, seconds)
            if done.errors:
                print(f"  {done.errors} exchanges failed", file=sys.stderr)
            answered += done.answered
            moments.append((f"after {answered:,} exchanges", {r: reading(pids[r]) for r in SHOWN}))
    return moments


def report(runs: list[tuple[int, list[tuple[str, dict[str, Reading]]]]]) -> str:
    lines = [
        "resident memory in MB (now / peak), each role a process of its own; baseline: the",
        "same server stack (exchange.serving) serving the register directly, no gateway",
        f"{'audit records per chain':<26}{'moment':<26}" + "".join(f"{role:>18}" for role in SHOWN),
    ]
    for records, moments in runs:
        for moment, readings in moments:
            lines.append(
                f"{records:<26,}{moment:<26}"
                + "".join(f"{f'{readings[r].rss:.0f} / {readings[r].peak:.0f}':>18}" for r in SHOWN)
            )
    largest = max(
        readings[gateway].rss
        for records, moments in runs
        if records == max(r for r, _ in runs)
        for _, readings in moments
        for gateway in ("consumer", "provider")
    )
    mark = "met" if largest <= TARGET_MB else "not met"
    lines += [
        "",
        f"target (issue 13): each gateway <= {TARGET_MB} MB after "
        f"{max(r for r, _ in runs):,} audit records; largest measured {largest:.0f} MB  {mark}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--records",
        type=int,
        nargs="+",
        default=[0, 1_000_000],
        help="audit records in each gateway's chain, one federation per count",
    )
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=10, help="per round of exchanges")
    args = parser.parse_args()
    load.wrk_path()  # installed before any server starts
    runs = []
    with tempfile.TemporaryDirectory(prefix="exchange-bench-memory-") as folder:
        for records in args.records:
            print(f"{records:,} audit records per chain", flush=True)
            base = Path(folder) / str(records)
            runs.append((records, measure(base, records, args.clients, args.seconds)))
    print()
    print(report(runs))


if __name__ == "__main__":
    main()
