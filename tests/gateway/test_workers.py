"""A provider gateway with two worker processes (``workers = 2``): both serve exchanges on the
same ports, each keeps and verifies its own audit chain, /metrics counts both, a worker killed
with SIGKILL is started again and its chain continues, and SIGTERM to the parent stops all."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from exchange.gateway.settings import GatewaySettings
from tests.gateway.conftest import Running, residence_apart, sample_layout
from tests.servers import exchange, serve_federation, serving

WORKERS = ("1-w1", "1-w2")


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    base = tmp_path_factory.mktemp("workers")
    with sample_layout(base, (None, None)) as (layout, ports, registry):
        layout.provider.write_text("workers = 2\n" + layout.provider.read_text())
        with contextlib.ExitStack() as stack:
            processes = serve_federation(stack, layout, ports, logs=base)
            yield Running(layout, ports, registry, processes, base, stack)


def health_url(running: Running) -> str:
    return f"http://127.0.0.1:{running.ports.provider_consumer}/health"


def answering(running: Running, within: float = 30) -> set[str]:
    """The replicas that answer the provider's health on fresh connections, once both do."""
    seen: set[str] = set()
    deadline = time.monotonic() + within
    while seen != set(WORKERS):
        assert time.monotonic() < deadline, f"only {seen} answered"
        with contextlib.suppress(httpx.HTTPError):
            answer = httpx.get(health_url(running), timeout=5)
            if answer.status_code == 200:
                seen.add(answer.json()["replica"])
    return seen


def workers_of(parent: int) -> set[int]:
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == parent:
                children.add(int(stat.parent.name))
    return children


def alive(pid: int) -> bool:
    """Running still (an exited process left unreaped by its new parent does not count)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def ask(running: Running, count: int) -> list[int]:
    """``count`` exchanges, 16 at a time: the consumer's pool to the provider grows to many
    connections, which the kernel spreads over the workers."""
    sent = [str(uuid.uuid4()) for _ in range(count)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(functools.partial(residence_apart, running.consumer_url), sent))


def chain_records(running: Running) -> dict[str, int]:
    """Each worker's chain verified with ``exchange audit verify``: its record count."""
    counts = {}
    for replica in WORKERS:
        env = {"EXCHANGE_GATEWAY_REPLICA": replica}
        config = str(running.layout.provider)
        assert exchange("audit", "head", "-c", config, env=env).returncode == 0
        verified = exchange("audit", "verify", "-c", config, env=env)
        assert verified.returncode == 0, verified.stderr
        found = re.search(r"chain \S+/(\S+): OK, (\d+) records", verified.stdout)
        assert found, verified.stdout
        counts[found.group(1)] = int(found.group(2))
    return counts


def provider_exchanges(running: Running) -> float:
    metrics = httpx.get(f"http://127.0.0.1:{running.ports.provider_consumer}/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("exchange_requests_total{") and 'side="producer"' in line
    )


def test_both_workers_serve_keep_their_own_chains_and_are_counted_together(
    running: Running,
) -> None:
    assert answering(running) == set(WORKERS)
    assert len(workers_of(running.processes["provider"].pid)) == 2

    assert set(ask(running, 60)) == {200}

    counts = chain_records(running)
    assert set(counts) == set(WORKERS)
    assert all(count > 0 for count in counts.values()), counts  # both workers served
    # Every worker's /metrics (fresh connections reach either) counts the exchanges of both.
    assert {provider_exchanges(running) for _ in range(8)} == {60.0}


def test_a_killed_worker_is_started_again_and_its_chain_continues(running: Running) -> None:
    parent = running.processes["provider"].pid
    before = chain_records(running)
    victims = workers_of(parent)
    victim = victims.pop()
    os.kill(victim, signal.SIGKILL)

    deadline = time.monotonic() + 30
    while len(workers_of(parent) - {victim}) < 2:
        assert time.monotonic() < deadline, "the killed worker was not started again"
        time.sleep(0.1)
    assert answering(running) == set(WORKERS)

    # The kernel spreads the consumer's new connections by their addresses: a few batches make
    # it all but certain that some reach the worker started again.
    sent = 0
    for _ in range(4):
        assert set(ask(running, 32)) == {200}
        sent += 32
        after = chain_records(running)
        if all(after[r] > before[r] for r in WORKERS):
            break
    assert all(after[r] > before[r] for r in WORKERS), (before, after)  # its chain continued
    assert sum(after.values()) - sum(before.values()) >= sent


def test_a_second_copy_of_a_running_gateway_refuses_to_start(running: Running) -> None:
    """SO_REUSEPORT would let it bind the same ports and share connections with the first,
    two processes writing one audit chain; a lock refuses it, with workers or without."""
    config = str(running.layout.provider)
    for workers in ("2", "1"):
        again = exchange("gateway", "serve", "-c", config, "--workers", workers)
        assert again.returncode == 1, again.stderr
        assert "is already running on this machine" in again.stderr, again.stderr
    assert answering(running) == set(WORKERS)  # the first copy serves on, undisturbed


def test_sigterm_to_the_parent_stops_every_worker(running: Running) -> None:
    provider = running.processes["provider"]
    workers = workers_of(provider.pid)
    assert len(workers) == 2
    provider.send_signal(signal.SIGTERM)
    try:
        assert provider.wait(timeout=30) == 0
    except subprocess.TimeoutExpired:
        provider.kill()
        raise
    for pid in workers:
        assert not alive(pid)
    with pytest.raises(httpx.ConnectError):
        httpx.get(health_url(running), timeout=5)


def test_a_gateway_whose_workers_cannot_start_or_whose_port_is_taken_exits_1(
    tmp_path: Path,
) -> None:
    with sample_layout(tmp_path, (None, None)) as (layout, ports, _):
        config = str(layout.provider)
        # No central authority runs and no configuration is cached: no worker can start.
        (GatewaySettings.load(layout.provider).data_dir / "globalconf.jws").unlink()
        ended = exchange("gateway", "serve", "-c", config, "--workers", "2")
        assert ended.returncode == 1, ended.stderr
        assert "gateway.worker_failed_to_start" in ended.stdout + ended.stderr

        with socket.socket() as taken:
            taken.bind(("127.0.0.1", ports.provider_consumer))
            taken.listen()
            ended = exchange("gateway", "serve", "-c", config, "--workers", "2")
        assert ended.returncode == 1
        assert ended.stderr.startswith("error:"), ended.stderr


pytestmark = pytest.mark.timeout(300)


def test_workers_stop_by_themselves_when_their_parent_is_killed(running: Running) -> None:
    config = str(running.layout.provider)
    with serving(
        ["gateway", "serve", "-c", config],
        health_url=health_url(running),
        log=running.logs / "provider-orphaned.log",
    ) as provider:
        answering(running)
        workers = workers_of(provider.pid)
        assert len(workers) == 2
        provider.kill()
        provider.wait()
        deadline = time.monotonic() + 20
        while any(alive(pid) for pid in workers):
            assert time.monotonic() < deadline, "workers outlived their parent"
            time.sleep(0.1)
