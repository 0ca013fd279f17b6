"""The relying party's side: keep the last good configuration, fail closed once it expires."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from exchange.errors import (
    ConfigurationExpired,
    ConfigurationInvalid,
    ConfigurationUnavailable,
)
from exchange.trust.globalconf_client import GlobalConfClient
from tests.conftest import NOW, Clock
from tests.factories import Signer


class Source:
    """What the central authority would serve; a test swaps the document or breaks it."""

    def __init__(self, document: bytes) -> None:
        self.document: bytes | None = document
        self.calls = 0

    def __call__(self) -> bytes:
        self.calls += 1
        if self.document is None:
            raise ConfigurationUnavailable("central authority cannot be reached")
        return self.document


def cached(signer: Signer, clock: Clock, cache: Path, version: int) -> GlobalConfClient:
    """A client keeping its copy in ``cache``, whose authority serves ``version``."""
    return GlobalConfClient(
        anchor=signer.anchor(),
        fetch=Source(signer.document(version=version)),
        clock=clock,
        cache_path=cache,
    )


@pytest.fixture
def signer() -> Signer:
    return Signer(instance="EE", at=NOW)


def test_nothing_is_trusted_before_the_first_refresh(signer: Signer, clock: Clock) -> None:
    client = GlobalConfClient(anchor=signer.anchor(), fetch=Source(signer.document()), clock=clock)
    with pytest.raises(ConfigurationUnavailable):
        client.current()
    assert client.refresh().version == 1
    assert client.current().version == 1


def test_failed_refresh_keeps_last_good_until_it_expires(signer: Signer, clock: Clock) -> None:
    source = Source(signer.document(version=1, validity=timedelta(minutes=10)))
    client = GlobalConfClient(anchor=signer.anchor(), fetch=source, clock=clock)
    client.refresh()

    source.document = None  # central authority down
    clock.advance(timedelta(minutes=5))
    with pytest.raises(ConfigurationUnavailable):
        client.refresh()
    assert client.current().version == 1
    assert isinstance(client.last_error, ConfigurationUnavailable)

    impostor = Signer(instance="EE", at=NOW)
    source.document = impostor.document(version=2)  # someone else's signature
    with pytest.raises(ConfigurationInvalid):
        client.refresh()
    assert client.current().version == 1

    clock.advance(timedelta(minutes=5))  # now exactly at expiry
    with pytest.raises(ConfigurationExpired, match="version 1 expired"):
        client.current()

    source.document = signer.document(version=2, at=clock.at)  # the authority is back
    client.refresh()
    assert client.current().version == 2
    assert client.last_error is None


def test_older_version_is_refused_as_rollback(signer: Signer, clock: Clock) -> None:
    source = Source(signer.document(version=5))
    client = GlobalConfClient(anchor=signer.anchor(), fetch=source, clock=clock)
    client.refresh()
    source.document = signer.document(version=4)
    with pytest.raises(ConfigurationInvalid, match="older than version 5"):
        client.refresh()
    assert client.current().version == 5


def test_cache_survives_restart_and_is_verified_again(
    signer: Signer, clock: Clock, tmp_path: Path
) -> None:
    cache = tmp_path / "globalconf.jws"
    cached(signer, clock, cache, version=3).refresh()

    down = Source(signer.document())
    down.document = None
    restarted = GlobalConfClient(anchor=signer.anchor(), fetch=down, clock=clock, cache_path=cache)
    assert restarted.current().version == 3
    assert down.calls == 0

    data = bytearray(cache.read_bytes())
    data[len(data) // 2] ^= 0x01
    cache.write_bytes(bytes(data))
    tampered = GlobalConfClient(anchor=signer.anchor(), fetch=down, clock=clock, cache_path=cache)
    with pytest.raises(ConfigurationUnavailable):
        tampered.current()


def test_expired_cache_is_not_trusted_after_restart(
    signer: Signer, clock: Clock, tmp_path: Path
) -> None:
    cache = tmp_path / "globalconf.jws"
    GlobalConfClient(
        anchor=signer.anchor(), fetch=Source(signer.document()), clock=clock, cache_path=cache
    ).refresh()
    clock.advance(timedelta(hours=2))
    restarted = GlobalConfClient(
        anchor=signer.anchor(), fetch=Source(signer.document()), clock=clock, cache_path=cache
    )
    with pytest.raises(ConfigurationUnavailable):
        restarted.current()


def test_failed_refresh_does_not_overwrite_cache(
    signer: Signer, clock: Clock, tmp_path: Path
) -> None:
    cache = tmp_path / "globalconf.jws"
    source = Source(signer.document(version=1))
    client = GlobalConfClient(anchor=signer.anchor(), fetch=source, clock=clock, cache_path=cache)
    client.refresh()
    good = cache.read_bytes()
    source.document = b"garbage"
    with pytest.raises(ConfigurationInvalid):
        client.refresh()
    assert cache.read_bytes() == good


def test_a_slower_process_never_writes_the_shared_cache_back_to_an_older_version(
    signer: Signer, clock: Clock, tmp_path: Path
) -> None:
    """Workers of one gateway share the cache; one that fetched an older version last must not
    replace a newer one there (a process started next would take it as its floor, and with it
    certificates the newer version no longer lists)."""
    cache = tmp_path / "globalconf.jws"
    late, early = (cached(signer, clock, cache, version=v) for v in (5, 6))  # both running
    early.refresh()
    late.refresh()  # fetched before version 6 was published, answered after
    restarted = cached(signer, clock, cache, version=6)
    assert restarted.current().version == 6


async def test_background_refresh_runs_until_block_ends(signer: Signer, clock: Clock) -> None:
    source = Source(signer.document())
    client = GlobalConfClient(anchor=signer.anchor(), fetch=source, clock=clock)
    async with client.refreshing(interval=0.01):
        for _ in range(500):
            if source.calls >= 3:
                break
            await asyncio.sleep(0.01)
    calls = source.calls
    assert calls >= 3
    await asyncio.sleep(0.05)
    assert source.calls == calls  # stopped with the block
    assert client.current().version == 1


def test_the_clock_reads_the_time_now_in_utc() -> None:
    from datetime import UTC, datetime

    from exchange.trust.globalconf_client import utcnow

    before = datetime.now(UTC)
    now = utcnow()
    assert now.tzinfo is UTC
    assert before <= now <= datetime.now(UTC)
