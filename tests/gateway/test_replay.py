"""The replay guard on a real SQLite file: each (client, message id) pair is accepted once,
whether it is inserted on the event loop or by the writer thread, across restarts."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from exchange.db.engine import build_engine, sqlite_url
from exchange.db.migrate import upgrade
from exchange.errors import DuplicateMessage
from exchange.gateway.replay import ReplayGuard
from tests.conftest import terminate_connections

CLIENT = "EE/GOV/70000001/portal"
LATER = datetime.now(UTC) + timedelta(minutes=5)


def guard_on(database: Path) -> ReplayGuard:
    url = sqlite_url(database)
    engine = build_engine(url)
    upgrade("gateway", engine)
    return ReplayGuard(engine, unflushed=build_engine(url, flushed=False))


async def accept(guard: ReplayGuard, message_id: str, *, safe: bool = True) -> None:
    accepted = guard.accept_once(client=CLIENT, message_id=message_id, keep_until=LATER, safe=safe)
    await asyncio.wait_for(accepted, 10)


async def test_a_pair_is_accepted_once_on_the_loop_and_after_a_restart(tmp_path: Path) -> None:
    guard = guard_on(tmp_path / "gateway.db")
    await accept(guard, "first")  # on the writer thread, which opens the loop's connection
    await guard._unflushed.close()  # from here on, safe requests have no writer thread
    await accept(guard, "second")
    for message_id in ("first", "second"):
        with pytest.raises(DuplicateMessage):
            await accept(guard, message_id)
        with pytest.raises(DuplicateMessage):
            await accept(guard, message_id, safe=False)
    outcomes = await asyncio.gather(
        *(accept(guard, "third") for _ in range(20)), return_exceptions=True
    )
    assert outcomes.count(None) == 1
    assert all(isinstance(o, DuplicateMessage) for o in outcomes if o is not None)
    await guard.close()

    restarted = guard_on(tmp_path / "gateway.db")
    try:
        for message_id in ("first", "second", "third"):
            with pytest.raises(DuplicateMessage):
                await accept(restarted, message_id)
        await accept(restarted, "fourth")
    finally:
        await restarted.close()
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        stored = db.execute("SELECT message_id, expires_at FROM gw_seen_messages").fetchall()
    assert sorted(m for m, _ in stored) == ["first", "fourth", "second", "third"]
    # Every pair is stored alike, whoever wrote it: pruning compares like with like.
    assert len({len(expires) for _, expires in stored}) == 1
    assert restarted.prune(at=LATER + timedelta(seconds=1)) == 4


async def test_a_busy_database_is_waited_for_off_the_loop(tmp_path: Path) -> None:
    """The loop's insert never waits: while another writer holds the database, the pair goes
    to the writer thread, which waits for the lock; the loop goes on meanwhile."""
    guard = guard_on(tmp_path / "gateway.db")
    await accept(guard, "first")
    writer = sqlite3.connect(tmp_path / "gateway.db", check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")  # holds the write lock
    released = threading.Timer(0.3, writer.commit)
    released.start()
    try:
        started = time.perf_counter()
        loop_free = asyncio.create_task(asyncio.sleep(0.05))
        await accept(guard, "second")
        assert loop_free.done()
        assert time.perf_counter() - started >= 0.25
        with pytest.raises(DuplicateMessage):
            await accept(guard, "second")
    finally:
        released.join()
        writer.close()
        await guard.close()


async def test_a_pair_is_accepted_once_by_the_writer_threads_on_each_backend(
    database_url: str,
) -> None:
    """Concurrent copies share a batch (one new, the rest replays), safe or not; on PostgreSQL
    a connection the server cut is replaced and still finds the pairs it committed."""
    engine = build_engine(database_url)
    upgrade("gateway", engine)
    guard = ReplayGuard(engine, unflushed=build_engine(database_url, flushed=False))
    try:
        for safe in (True, False):
            name = f"batch-{safe}"
            outcomes = await asyncio.gather(
                *(accept(guard, name, safe=safe) for _ in range(20)), return_exceptions=True
            )
            assert outcomes.count(None) == 1
            assert all(isinstance(o, DuplicateMessage) for o in outcomes if o is not None)
        distinct = await asyncio.gather(*(accept(guard, f"m-{n}", safe=False) for n in range(20)))
        assert distinct == [None] * 20
        mixed = await asyncio.gather(  # old and new pairs in one batch: only the new pass
            *(accept(guard, f"{prefix}-{n}", safe=False) for n in range(10) for prefix in "mn"),
            return_exceptions=True,
        )
        assert [o is None for o in mixed] == [False, True] * 10
        if database_url.startswith("postgresql"):
            terminate_connections(database_url)
        for name in ("batch-True", "batch-False", "m-7"):
            for safe in (True, False):
                with pytest.raises(DuplicateMessage):
                    await accept(guard, name, safe=safe)
        await accept(guard, "after", safe=False)
    finally:
        await guard.close()
        engine.dispose()
