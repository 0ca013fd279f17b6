"""Two replicas of one provider gateway behind a round-robin proxy, on one PostgreSQL database:
both serve, each keeps and verifies its own audit chain, and the citizen's usage view shows the
union of both, with no duplicate and no gap."""

from __future__ import annotations

import contextlib
import functools
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from exchange.sample import federation
from tests.conftest import _postgres_database
from tests.gateway.conftest import GATEWAY_EXTRA, MARI, PORTAL_CLIENT, residence_apart
from tests.proxy import round_robin
from tests.servers import citizen_token, exchange, free_port, serving

USAGE = f"/r1/{federation.POPULATION_REGISTRY}/usage"
EXCHANGES = 40


def replica_settings(provider: Path, name: str, consumer_port: int, tls_port: int) -> Path:
    """The provider's settings for one replica: its own listeners and chain, shared keys and
    database."""
    text = provider.read_text()
    text = re.sub(
        r"(\[consumer\]\nhost = \"127.0.0.1\"\nport = )\d+", rf"\g<1>{consumer_port}", text
    )
    text = re.sub(r"(\[provider\]\nhost = \"127.0.0.1\"\nport = )\d+", rf"\g<1>{tls_port}", text)
    text = re.sub(r"(\[preview\]\nhost = \"127.0.0.1\"\nport = )\d+", rf"\g<1>{free_port()}", text)
    target = provider.with_name(f"replica-{name}.toml")
    target.write_text(f'replica = "{name}"\n' + text)
    return target


@contextlib.contextmanager
def replicated(base: Path, database: str) -> Iterator[tuple[federation.Ports, list[Path]]]:
    ports = federation.Ports(*(free_port() for _ in range(10)))
    layout = federation.create(
        base,
        ports,
        gateway_extra=GATEWAY_EXTRA.replace("max_body_bytes = 65536\n", ""),
        database_urls=(database, None),
    )
    listeners = [(free_port(), free_port()) for _ in range(2)]
    replicas = [
        replica_settings(layout.provider, name, consumer, tls)
        for name, (consumer, tls) in zip("ab", listeners, strict=True)
    ]
    with contextlib.ExitStack() as stack:
        proxy = stack.enter_context(round_robin(ports.provider_tls, [t for _, t in listeners]))
        roles = [
            (["idp", "serve", "--data-dir", str(layout.idp), "--port", str(ports.idp)], ports.idp),
            (["tsa", "serve", "--data-dir", str(layout.tsa), "--port", str(ports.tsa)], ports.tsa),
            (
                [
                    "central",
                    "serve",
                    "--data-dir",
                    str(layout.central.data_dir),
                    "--port",
                    str(ports.central),
                ],
                ports.central,
            ),
            (["consent", "serve", "-c", str(layout.consent)], ports.consent),
            *[
                (["gateway", "serve", "-c", str(config)], consumer)
                for config, (consumer, _) in zip(replicas, listeners, strict=True)
            ],
            (["gateway", "serve", "-c", str(layout.consumer)], ports.consumer_consumer),
        ]
        for number, (args, port) in enumerate(roles):
            stack.enter_context(
                serving(
                    args, health_url=f"http://127.0.0.1:{port}/health", log=base / f"{number}.log"
                )
            )
        yield ports, replicas
        assert all(proxy.connections.values()), proxy.connections


def test_two_replicas_serve_keep_their_own_chains_and_show_one_history(tmp_path: Path) -> None:
    database = contextlib.contextmanager(_postgres_database)()
    with database as url, replicated(tmp_path, url) as (ports, replicas):
        consumer = f"http://127.0.0.1:{ports.consumer_consumer}"
        sent = [str(uuid.uuid4()) for _ in range(EXCHANGES)]

        with ThreadPoolExecutor(max_workers=8) as pool:
            assert set(pool.map(functools.partial(residence_apart, consumer), sent)) == {200}

        chains = {}
        for config in replicas:
            assert exchange("audit", "head", "-c", str(config)).returncode == 0
            verified = exchange("audit", "verify", "-c", str(config))
            assert verified.returncode == 0, verified.stderr
            found = re.search(r"chain (\S+): OK, (\d+) records", verified.stdout)
            assert found, verified.stdout
            chains[found.group(1)] = int(found.group(2))
        assert len(chains) == 2
        assert all(count > 0 for count in chains.values()), chains  # both replicas served

        token = citizen_token(ports, MARI, federation.PORTAL_CLIENT_ID)
        answer = httpx.get(
            f"{consumer}{USAGE}/v1/records",
            params={"userCode": MARI},
            headers={
                "X-Road-Client": PORTAL_CLIENT,
                "X-Road-UserId": MARI,
                "X-Exchange-Identity": token,
            },
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        usages = answer.json()["usages"]
        seen = [u["messageId"] for u in usages]
        assert sorted(seen) == sorted(sent)  # the union: every exchange once, none missing
        assert {u["receipt"]["chain"] for u in usages} == set(chains)


pytestmark = pytest.mark.timeout(300)
