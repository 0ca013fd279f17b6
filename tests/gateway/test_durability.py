"""A gateway killed with SIGKILL in the middle of a load loses no acknowledged exchange."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid

import httpx
from sqlalchemy import text

from exchange.db.engine import build_engine
from tests.gateway.conftest import MARI, PORTAL_CLIENT, PURPOSE, RESIDENCE, Running
from tests.servers import exchange

KILL_AFTER = 60  # acknowledged exchanges before the kill
CLIENTS = 16


async def load(running: Running, acknowledged: list[str]) -> None:
    """Bounded load: stops at the kill plus a moment, or after 2,000 requests at most."""
    provider = running.processes["provider"]
    killed = asyncio.Event()
    sent = 0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal sent
        while sent < 2000 and not killed.is_set():
            sent += 1
            message_id = str(uuid.uuid4())
            try:
                response = await http.get(
                    f"{RESIDENCE}?person={MARI}",
                    headers={
                        "X-Road-Client": PORTAL_CLIENT,
                        "X-Road-Id": message_id,
                        "X-Exchange-Purpose": PURPOSE,
                    },
                )
            except httpx.HTTPError:
                continue
            if response.status_code == 200:
                acknowledged.append(message_id)
                if len(acknowledged) == KILL_AFTER:
                    provider.send_signal(signal.SIGKILL)
                    killed.set()

    async with httpx.AsyncClient(base_url=running.consumer_url, timeout=10) as http:
        await asyncio.wait_for(asyncio.gather(*(client(http) for _ in range(CLIENTS))), timeout=120)
    provider.wait(10)


def audited(running: Running, config: str) -> set[str]:
    settings = running.provider_settings() if config == "provider" else running.consumer_settings()
    with build_engine(settings.db_url).connect() as connection:
        bodies = connection.execute(text("SELECT body FROM audit_records")).scalars()
        return {json.loads(body)["message_id"] for body in bodies}


def test_sigkill_during_load_loses_no_acknowledged_exchange(fresh: Running) -> None:
    acknowledged: list[str] = []
    asyncio.run(load(fresh, acknowledged))
    assert len(acknowledged) >= KILL_AFTER
    assert fresh.processes["provider"].returncode == -signal.SIGKILL
    assert set(acknowledged) <= audited(fresh, "provider")
    assert set(acknowledged) <= audited(fresh, "consumer")
    with fresh.restarted("provider"):
        assert fresh.call(f"{RESIDENCE}?person={MARI}").status_code == 200  # the chain goes on
        for config in (fresh.layout.provider, fresh.layout.consumer):
            assert exchange("audit", "head", "-c", str(config)).returncode == 0
            verified = exchange("audit", "verify", "-c", str(config))
            assert verified.returncode == 0, verified.stderr
