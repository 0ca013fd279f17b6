"""Idempotency keys claimed and answers kept in batches, on a real database (SQLite and
PostgreSQL): requests that arrive together share one transaction, and each still gets the
outcome it would have had on its own; two processes share the keys through the database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError
from structlog.testing import capture_logs

from exchange.db.engine import build_engine
from exchange.db.migrate import upgrade
from exchange.errors import IdempotencyKeyReused, RequestInProgress
from exchange.gateway.idempotency import TAKEOVER_AFTER, Held, Idempotency, Stored
from tests.conftest import Clock, database_down

CLIENT, SERVICE = "EE/GOV/70000001/portal", "EE/GOV/70000002/registry/diploma"


@pytest.fixture
async def processes(database_url: str, clock: Clock) -> AsyncIterator[list[Idempotency]]:
    """Two processes' idempotency on one database, each with its engine and writer."""
    migrating = build_engine(database_url)
    upgrade("gateway", migrating)
    migrating.dispose()
    engines = [build_engine(database_url, flushed=False) for _ in range(2)]
    kept = [Idempotency(engine, clock=clock) for engine in engines]
    yield kept
    for idempotency, engine in zip(kept, engines, strict=True):
        await idempotency.close()
        engine.dispose()


async def claim(
    idempotency: Idempotency, key: str, message_id: str, *, fingerprint: str = "same"
) -> Held | Stored:
    begun = idempotency.begin(
        client=CLIENT, service=SERVICE, key=key, fingerprint=fingerprint, message_id=message_id
    )
    return await asyncio.wait_for(begun, 10)


async def claim_or_refusal(idempotency: Idempotency, key: str, message_id: str) -> object:
    try:
        return await claim(idempotency, key, message_id)
    except RequestInProgress as refused:
        return refused


async def keep(idempotency: Idempotency, held: Held, status: int, payload: bytes) -> None:
    kept = idempotency.finish(
        held,
        status=status,
        content_type="application/json",
        payload=payload,
        error_type=None,
        legal_basis="law",
        consent=None,
    )
    await asyncio.wait_for(kept, 10)


async def test_requests_claiming_together_each_get_their_own_outcome(
    processes: list[Idempotency],
) -> None:
    """Submitted in one go, these share a batch: of two duplicates one executes, the key's
    reuse for another request is refused, and neither refusal fails the fresh key beside them."""
    idempotency = processes[0]
    outcomes = await asyncio.gather(
        claim(idempotency, "a", "m1"),
        claim(idempotency, "a", "m2"),
        claim(idempotency, "a", "m3", fingerprint="other"),
        claim(idempotency, "b", "m4"),
        return_exceptions=True,
    )
    assert outcomes[0] == Held(CLIENT, SERVICE, "a", "m1")
    assert isinstance(outcomes[1], RequestInProgress)
    assert isinstance(outcomes[2], IdempotencyKeyReused)
    assert outcomes[3] == Held(CLIENT, SERVICE, "b", "m4")


async def test_an_answer_kept_beside_a_retry_of_its_key_is_given_to_that_retry(
    processes: list[Idempotency],
) -> None:
    idempotency = processes[0]
    held = await claim(idempotency, "a", "m1")
    assert isinstance(held, Held)
    _, retried = await asyncio.gather(
        keep(idempotency, held, 200, b'{"ok": true}'), claim(idempotency, "a", "m2")
    )
    assert isinstance(retried, Stored)
    assert (retried.message_id, retried.status, retried.payload) == ("m1", 200, b'{"ok": true}')
    # A failure is not kept: its key is given up, and the retry beside it executes.
    failed = await claim(idempotency, "b", "m3")
    assert isinstance(failed, Held)
    _, again = await asyncio.gather(
        keep(idempotency, failed, 503, b""), claim(idempotency, "b", "m4")
    )
    assert again == Held(CLIENT, SERVICE, "b", "m4")


async def test_a_claim_whose_process_died_is_taken_over_by_another_process(
    processes: list[Idempotency], clock: Clock
) -> None:
    dead, alive = processes
    first = await claim(dead, "a", "m1")
    assert isinstance(first, Held)
    with pytest.raises(RequestInProgress):  # shared through the database
        await claim(alive, "a", "m2")
    clock.advance(TAKEOVER_AFTER)
    taken = await claim(alive, "a", "m3")
    assert taken == Held(CLIENT, SERVICE, "a", "m3")
    await keep(dead, first, 200, b"late")  # the first, finishing after all, keeps nothing
    await keep(alive, taken, 200, b"kept")
    retried = await claim(dead, "a", "m4")
    assert isinstance(retried, Stored)
    assert (retried.message_id, retried.payload) == ("m3", b"kept")


async def test_of_duplicates_claimed_at_once_in_two_processes_one_executes(
    processes: list[Idempotency],
) -> None:
    """Each process's batch holds ten copies; the two batches meet in the database."""
    outcomes = await asyncio.gather(
        *(claim(process, "a", f"m{i}") for i in range(10) for process in processes),
        return_exceptions=True,
    )
    assert sum(isinstance(outcome, Held) for outcome in outcomes) == 1
    assert all(isinstance(o, RequestInProgress) for o in outcomes if not isinstance(o, Held))


async def test_retries_crossing_answers_in_two_processes_all_get_their_outcome(
    processes: list[Idempotency],
) -> None:
    """Each process keeps the answer of one key while a retry of the other process's key
    arrives beside it: the two batches touch the same two rows from opposite ends. Every answer
    is kept and every retry gets it or is told to ask again (no batch fails). Repeated: the
    crossing is a race, which most rounds used to lose (a deadlock aborted one batch)."""
    a, b = processes
    for round_ in range(40):
        x, y = f"x{round_}", f"y{round_}"
        held_x, held_y = await claim(a, x, f"{x}-1"), await claim(b, y, f"{y}-1")
        assert isinstance(held_x, Held)
        assert isinstance(held_y, Held)
        _, retry_y, _, retry_x = await asyncio.gather(
            keep(a, held_x, 200, x.encode()),
            claim_or_refusal(a, y, f"{y}-2"),
            keep(b, held_y, 200, y.encode()),
            claim_or_refusal(b, x, f"{x}-2"),
        )
        for retried, key in ((retry_y, y), (retry_x, x)):
            if not isinstance(retried, RequestInProgress):  # its answer was not kept yet
                assert isinstance(retried, Stored)
                assert retried.payload == key.encode()
        for process, key in ((b, x), (a, y)):
            again = await claim(process, key, f"{key}-3")
            assert isinstance(again, Stored)
            assert again.payload == key.encode()


async def test_abandoned_keys_taken_over_in_opposite_orders_go_one_to_each_key(
    processes: list[Idempotency], clock: Clock
) -> None:
    """Two processes take over the same two abandoned keys, listed in opposite orders in their
    batches: each key is taken over once, the other claim asked to wait, and no batch fails."""
    a, b = processes
    for round_ in range(30):
        p, q = f"p{round_}", f"q{round_}"
        for key in (p, q):
            assert isinstance(await claim(a, key, f"{key}-dead"), Held)
        clock.advance(TAKEOVER_AFTER)
        outcomes = await asyncio.gather(
            claim_or_refusal(a, q, f"{q}-a"),
            claim_or_refusal(a, p, f"{p}-a"),
            claim_or_refusal(b, p, f"{p}-b"),
            claim_or_refusal(b, q, f"{q}-b"),
        )
        for first, second in ((outcomes[0], outcomes[3]), (outcomes[1], outcomes[2])):
            assert {type(first), type(second)} == {Held, RequestInProgress}


async def test_a_write_that_fails_in_a_batch_fails_only_its_own_request(
    processes: list[Idempotency],
) -> None:
    """One answer in the batch cannot be stored (a content type the database cannot encode: a
    header byte that is not UTF-8, as aiohttp passes it on). Only its own caller gets the error;
    the claims and the other answer beside it are decided as if it were not there."""
    idempotency = processes[0]
    broken, fine = await claim(idempotency, "a", "m1"), await claim(idempotency, "b", "m2")
    assert isinstance(broken, Held)
    assert isinstance(fine, Held)

    # Submitted straight (no task of wait_for's between), so that all five share one batch.
    def begin(key: str, message_id: str) -> Awaitable[Held | Stored]:
        return idempotency.begin(
            client=CLIENT, service=SERVICE, key=key, fingerprint="same", message_id=message_id
        )

    def finish(held: Held, content_type: str, payload: bytes) -> Awaitable[None]:
        return idempotency.finish(
            held,
            status=200,
            content_type=content_type,
            payload=payload,
            error_type=None,
            legal_basis="law",
            consent=None,
        )

    together = asyncio.gather(
        begin("c", "m3"),
        finish(broken, "text/plain; charset=\udcff", b"lost"),
        finish(fine, "application/json", b"kept"),
        begin("b", "m4"),
        begin("c", "m5"),
        return_exceptions=True,
    )
    with capture_logs() as logs:
        outcomes = await asyncio.wait_for(together, 10)
    assert [(log["event"], log["items"]) for log in logs] == [("idempotency.batch_failed", 5)]
    assert outcomes[0] == Held(CLIENT, SERVICE, "c", "m3")
    assert isinstance(outcomes[1], Exception)
    assert outcomes[2] is None
    assert isinstance(outcomes[3], Stored)
    assert outcomes[3].payload == b"kept"
    assert isinstance(outcomes[4], RequestInProgress)
    # The answer that could not be kept leaves its key held: a retry is asked to wait (and
    # executes after the takeover time), it is never given something else.
    with pytest.raises(RequestInProgress):
        await claim(idempotency, "a", "m6")


async def test_a_batch_rolled_back_by_a_deadlock_still_keeps_every_answer(
    processes: list[Idempotency], database_url: str
) -> None:
    """Another transaction locks the batch's two rows in the opposite order (as batches did
    before they were written in key order). The batch began waiting first, so PostgreSQL rolls
    it back: it is written again, and both of its answers are kept for their retries."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time: its transactions never deadlock")
    a, b = processes
    first, second = await claim(a, "k1", "m1"), await claim(a, "k2", "m2")
    assert isinstance(first, Held)
    assert isinstance(second, Held)
    outside = build_engine(database_url)
    try:
        with outside.connect() as other, outside.connect() as watching, capture_logs() as logs:
            # Only the batch's wait detects the deadlock, however slow this machine is.
            other.execute(text("SET deadlock_timeout = '60s'"))
            lock(other, "k2")
            kept = asyncio.gather(keep(a, first, 200, b"one"), keep(a, second, 200, b"two"))
            await waiting_for_a_lock(watching)  # the batch holds k1 and waits for k2
            await asyncio.to_thread(lock, other, "k1")  # waits until the batch rolls back
            other.commit()
            await kept
    finally:
        outside.dispose()
    # Written again as a whole, and the operator is told, without the keys. (The second
    # attempt may meet the other transaction again, before it has taken the row it waited for.)
    assert logs[0]["event"] == "idempotency.batch_crossed"
    assert logs[0]["items"] == 2
    assert "k1" not in repr(logs)
    for key, payload in (("k1", b"one"), ("k2", b"two")):
        retried = await claim(b, key, f"{key}-retry")
        assert isinstance(retried, Stored)
        assert retried.payload == payload


def lock(connection: Connection, key: str) -> None:
    connection.execute(
        text("UPDATE gw_idempotent_answers SET expires_at = expires_at WHERE key = :key"),
        {"key": key},
    )


async def waiting_for_a_lock(watching: Connection) -> None:
    """Until a transaction of this database waits for a row another one holds (at most 10 s)."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    for _ in range(1000):
        if watching.execute(query).scalar_one():
            return
        watching.rollback()  # a fresh snapshot of the activity for the next look
        await asyncio.sleep(0.01)
    raise AssertionError("the batch never waited for the row held outside it")


async def test_while_the_database_is_down_every_request_of_a_batch_is_refused_at_once(
    processes: list[Idempotency], database_url: str
) -> None:
    """Not one item's fault, yet the batch falls back to its items one by one: every caller
    gets the failure (within the callers' bound), and nothing is left held once it is back."""
    if not database_url.startswith("postgresql"):
        pytest.skip("an outage of the database server (PostgreSQL)")
    idempotency = processes[0]
    held = await claim(idempotency, "a", "m1")
    assert isinstance(held, Held)
    with database_down(database_url), capture_logs() as logs:
        outcomes = await asyncio.gather(
            keep(idempotency, held, 200, b"lost"),
            *(claim(idempotency, key, f"{key}-1") for key in "bcd"),
            return_exceptions=True,
        )
    assert all(isinstance(outcome, OperationalError) for outcome in outcomes)
    assert [log["event"] for log in logs] == ["idempotency.batch_failed"]
    for key in "bcd":  # back up: the keys were never claimed
        assert await claim(idempotency, key, f"{key}-2") == Held(CLIENT, SERVICE, key, f"{key}-2")
