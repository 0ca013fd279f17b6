"""Large documents through the gateway pair: memory held and throughput. See README.md.

The central authority and both gateways run as processes of their own on loopback (mutual TLS
between the gateways); an agency backend serves a PDF of each size with its length and SHA-256
declared. A client reads the answer in chunks and checks its digest. For each size: each
gateway's peak resident memory over what it held before the transfer (its high-water mark is
reset first, from /proc), and the rate of the transfer, against the backend read directly.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from tests.gateway.document_server import (
    HEADERS,
    MB,
    PERSON,
    SCAN,
    DocumentFederation,
    document_federation,
    peak_rss,
    reset_peak,
    rss,
)

GATEWAYS = ("consumer", "provider")
GROWTH_TARGET_MB = 30  # issue 17: each process grows by less than this for 100 MB


@dataclass
class Row:
    size_mb: int
    seconds: float
    direct_seconds: float
    growth_mb: dict[str, float]  # per gateway: peak resident memory over what it held before
    rss_mb: dict[str, float]  # per gateway: resident memory before the transfer

    @property
    def rate(self) -> float:
        return self.size_mb / self.seconds

    @property
    def direct_rate(self) -> float:
        return self.size_mb / self.direct_seconds


def read(url: str, headers: dict[str, str]) -> tuple[float, str, int]:
    """Seconds to read ``url`` in chunks, with its SHA-256 (base64url) and length."""
    hashed, length = hashlib.sha256(), 0
    started = time.perf_counter()
    with httpx.Client(timeout=120) as client, client.stream("GET", url, headers=headers) as answer:
        answer.raise_for_status()
        for chunk in answer.iter_raw(65536):
            hashed.update(chunk)
            length += len(chunk)
    seconds = time.perf_counter() - started
    return seconds, base64.urlsafe_b64encode(hashed.digest()).rstrip(b"=").decode(), length


def measure(running: DocumentFederation, size_mb: int) -> Row:
    backend = running.backend
    url = f"{running.consumer_url}{SCAN}?person={PERSON}"
    backend.size = MB  # every code path loaded once, before anything is measured
    read(url, {**HEADERS, "X-Road-Id": str(uuid.uuid4())})
    backend.size = size_mb * MB
    backend.digest()  # worked out before the clock runs
    direct, _, _ = read(f"{backend.url}/scans/{PERSON}", {})
    pids = {name: running.processes[name].pid for name in GATEWAYS}
    before = {name: rss(pid) for name, pid in pids.items()}
    for pid in pids.values():
        reset_peak(pid)
    seconds, digest, length = read(url, {**HEADERS, "X-Road-Id": str(uuid.uuid4())})
    if (length, digest) != (backend.size, backend.digest()):
        raise SystemExit(f"{size_mb} MB: the document arrived changed")
    return Row(
        size_mb,
        seconds,
        direct,
        {name: (peak_rss(pid) - before[name]) / MB for name, pid in pids.items()},
        {name: before[name] / MB for name in GATEWAYS},
    )


def report(rows: Sequence[Row]) -> str:
    lines = [
        "| size | through both gateways | backend read directly | consumer gateway: RSS, "
        "peak growth | provider gateway: RSS, peak growth |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.size_mb} MB | {row.seconds:.2f} s, {row.rate:.0f} MB/s "
            f"| {row.direct_seconds:.2f} s, {row.direct_rate:.0f} MB/s | "
            + " | ".join(
                f"{row.rss_mb[name]:.0f} MB, +{row.growth_mb[name]:.1f} MB" for name in GATEWAYS
            )
            + " |"
        )
    largest = max(rows, key=lambda row: row.size_mb)
    worst = max(largest.growth_mb.values())
    met = "met" if worst < GROWTH_TARGET_MB else "NOT met"
    lines.append(
        f"\nTarget (issue 17): each gateway grows by less than {GROWTH_TARGET_MB} MB for "
        f"{largest.size_mb} MB: largest growth {worst:.1f} MB, {met}."
    )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100], help="in MB")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="exchange-bench-large-") as folder,
        document_federation(Path(folder)) as running,
    ):
        rows = [measure(running, size) for size in args.sizes]
    if args.json:
        print(json.dumps([asdict(row) for row in rows], indent=2))
    else:
        print(report(rows))


if __name__ == "__main__":
    main()
