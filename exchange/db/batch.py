"""Group commit: many concurrent writers, one transaction, each waits for its own result.

A :class:`GroupCommit` owns one worker thread. Callers ``await submit(item)``; the worker takes
everything queued (up to ``max_batch``), hands it to ``apply`` in one go (which writes it in one
transaction and returns a result or an exception per item, in order), then wakes each caller
with its own outcome. Durability costs one fsync per batch instead of one per request, and a
caller is answered only after its write is committed.

Writes that nobody waits for (operational records) may ``linger``: the worker then waits that
long after the first item of a batch for more to arrive, so that at low load many requests
share one commit instead of each paying for its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")
Value = TypeVar("Value")


class GroupCommit(Generic[Item, Result]):
    def __init__(
        self,
        apply: Callable[[Sequence[Item]], Sequence[Result | BaseException]],
        *,
        name: str,
        max_batch: int = 512,
        linger: float = 0.0,
        on_error: Callable[[BaseException], BaseException] = lambda exc: exc,
    ) -> None:
        self._apply = apply
        self._name = name
        self._max_batch = max_batch
        self._linger = linger
        self._on_error = on_error
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._queue: asyncio.Queue[tuple[Item, asyncio.Future[Result]]] | None = None
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.create_task(self._run(self._queue), name=self._name)
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    async def run_in_worker(self, work: Callable[[], Value]) -> Value:
        """Run ``work`` on the worker thread, between two batches."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    async def _run(self, queue: asyncio.Queue[tuple[Item, asyncio.Future[Result]]]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            if self._linger:
                await asyncio.sleep(self._linger)
            while len(batch) < self._max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            items = [item for item, _ in batch]
            try:
                outcomes = await loop.run_in_executor(self._executor, self._apply, items)
            except Exception as exc:
                outcomes = [self._on_error(exc) for _ in batch]
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._executor.shutdown(wait=True)
