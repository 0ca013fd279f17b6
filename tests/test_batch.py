"""Group commit: each caller gets its own outcome, in one transaction with whoever came along."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from exchange.db.batch import GroupCommit


def recording(batches: list[list[int]]) -> Callable[[Sequence[int]], list[int | BaseException]]:
    def apply(items: Sequence[int]) -> list[int | BaseException]:
        batches.append(list(items))
        return [ValueError(str(item)) if item < 0 else item * 10 for item in items]

    return apply


async def test_each_caller_gets_its_own_outcome() -> None:
    batches: list[list[int]] = []
    writer: GroupCommit[int, int] = GroupCommit(recording(batches), name="t")
    results = await asyncio.gather(writer.submit(1), writer.submit(-2), return_exceptions=True)
    await writer.close()
    assert results[0] == 10
    assert isinstance(results[1], ValueError)
    assert sum(len(batch) for batch in batches) == 2


async def test_without_linger_a_lone_write_is_committed_at_once() -> None:
    batches: list[list[int]] = []
    writer: GroupCommit[int, int] = GroupCommit(recording(batches), name="t")
    for item in range(3):  # one after another, each awaited: three commits
        assert await writer.submit(item) == item * 10
    await writer.close()
    assert batches == [[0], [1], [2]]


async def test_a_lingering_writer_gathers_writes_that_arrive_one_by_one() -> None:
    batches: list[list[int]] = []
    writer: GroupCommit[int, int] = GroupCommit(recording(batches), name="t", linger=1.0)
    pending = []
    for item in range(3):  # spread over far less time than the linger (a loaded machine too)
        pending.append(asyncio.ensure_future(writer.submit(item)))
        await asyncio.sleep(0.02)
    assert await asyncio.gather(*pending) == [0, 10, 20]
    await writer.close()
    assert batches == [[0, 1, 2]]


async def test_a_failed_commit_fails_its_own_callers_and_the_writer_goes_on() -> None:
    def apply(items: Sequence[int]) -> list[int | BaseException]:
        if 13 in items:
            raise OSError("disk gone")
        return [item * 10 for item in items]

    writer: GroupCommit[int, int] = GroupCommit(
        apply, name="t", on_error=lambda exc: ValueError(f"refused: {exc}")
    )
    assert await writer.submit(1) == 10
    with pytest.raises(ValueError, match="refused: disk gone"):
        await writer.submit(13)
    assert await writer.submit(2) == 20  # the worker survived the failed commit
    await writer.close()


async def test_work_runs_between_batches_and_close_commits_what_was_submitted() -> None:
    batches: list[list[int]] = []
    writer: GroupCommit[int, int] = GroupCommit(recording(batches), name="t", linger=0.5)
    pending = [asyncio.ensure_future(writer.submit(item)) for item in range(3)]
    await asyncio.sleep(0)  # the three are queued
    seen = await writer.run_in_worker(lambda: [list(batch) for batch in batches])
    assert seen == [[0, 1, 2]]  # run after the batch that was lingering, not inside it
    late = asyncio.ensure_future(writer.submit(3))
    await asyncio.sleep(0)
    await writer.close()  # does not drop the lingering write
    assert await asyncio.gather(*pending, late) == [0, 10, 20, 30]
    assert batches == [[0, 1, 2], [3]]


async def test_a_closed_writer_takes_nothing_more() -> None:
    writer: GroupCommit[int, int] = GroupCommit(recording([]), name="t")
    assert await writer.submit(1) == 10
    await writer.close()
    with pytest.raises(RuntimeError, match="closed"):
        await writer.submit(2)


def test_first_items_from_several_event_loops_at_once_start_one_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each of a role's event loops (its own, a test's, a command's) may be first to write."""
    batches: list[list[int]] = []
    writer: GroupCommit[int, int] = GroupCommit(recording(batches), name="started-once")
    together = threading.Barrier(4)

    def first_write(item: int) -> int:
        async def write() -> int:
            together.wait()
            return await writer.put(item)

        return asyncio.run(write())

    threads = [threading.Thread(target=first_write, args=(item,)) for item in range(4)]

    class SlowToBuild(threading.Thread):  # the moment between "no worker yet" and one
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            time.sleep(0.05)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(threading, "Thread", SlowToBuild)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    workers = [t for t in threading.enumerate() if t.name == "started-once"]
    assert len(workers) == 1, workers
    assert sorted(item for batch in batches for item in batch) == list(range(4))
    asyncio.run(writer.close())
