"""Group commit: many concurrent writers, one transaction, each waits for its own result.

A :class:`GroupCommit` owns one worker thread. Callers ``await submit(item)``; the worker takes
everything queued (up to ``max_batch``), hands it to ``apply`` in one go (which writes it in one
transaction and returns a result or an exception per item, in order), then wakes each caller
with its own outcome. Durability costs one fsync per batch instead of one per request, and a
caller is answered only after its write is committed.

The hand-off is as short as a thread allows: a caller puts its item and its future straight on
the worker's queue (no task, no asyncio queue, no executor between them), and the worker hands
a batch's outcomes back to the event loop with one ``call_soon_threadsafe``, however many
callers it answers. Both the asyncio queue and an executor call per batch cost a caller about
twice as much CPU as the write's own Python (docs/performance.md).

Writes that nobody waits for (operational records) may ``linger``: the worker then waits that
long after the first item of a batch for more to arrive, so that at low load many requests
share one commit instead of each paying for its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")
Value = TypeVar("Value")


class _Work:
    """Something to run on the worker thread between two batches (:meth:`run_in_worker`)."""

    __slots__ = ("call", "future")

    def __init__(self, call: Callable[[], Any], future: asyncio.Future[Any]) -> None:
        self.call = call
        self.future = future


class _Stop:
    """Put on the queue by :meth:`GroupCommit.close`: the worker commits what came before it,
    then ends."""


_STOP = _Stop()


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
        self._queue: queue.SimpleQueue[tuple[Item, asyncio.Future[Result]] | _Work | _Stop] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()  # two event loops' first items start one worker
        self._closed = False

    async def submit(self, item: Item) -> Result:
        return await self.put(item)

    def put(self, item: Item) -> asyncio.Future[Result]:
        """Queue ``item`` and return the future of its outcome, for a caller that does not wait
        for it (no task needed to carry it)."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        if self._thread is None or self._closed:
            self._start()
        self._queue.put((item, future))
        return future

    async def run_in_worker(self, work: Callable[[], Value]) -> Value:
        """Run ``work`` on the worker thread, between two batches."""
        future: asyncio.Future[Value] = asyncio.get_running_loop().create_future()
        if self._thread is None or self._closed:
            self._start()
        self._queue.put(_Work(work, future))
        return await future

    def _start(self) -> None:
        with self._starting:
            if self._closed:
                raise RuntimeError(f"{self._name} is closed")
            if self._thread is not None:  # started by another thread meanwhile
                return
            # A daemon, as the executor's thread was not joined at exit either when a role
            # forgot to close: what it had not committed, nobody was told was committed.
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        take, take_now = self._queue.get, self._queue.get_nowait
        while True:
            first = take()
            if isinstance(first, _Stop):
                return
            if isinstance(first, _Work):
                _settle_work(first)
                continue
            if self._linger:
                time.sleep(self._linger)
            batch = [first]
            after: _Work | _Stop | None = None  # what ended the batch early: seen once it is done
            while len(batch) < self._max_batch:
                try:
                    following = take_now()
                except queue.Empty:
                    break
                if isinstance(following, _Stop | _Work):
                    after = following
                    break
                batch.append(following)
            self._commit(batch)
            if isinstance(after, _Work):
                _settle_work(after)
            elif isinstance(after, _Stop):
                return

    def _commit(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            outcomes: Sequence[Result | BaseException] = self._apply([item for item, _ in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"{self._name}: {len(outcomes)} outcomes for {len(batch)}")
        except Exception as exc:
            outcomes = [self._on_error(exc) for _ in batch]
        loop = batch[0][1].get_loop()
        if any(future.get_loop() is not loop for _, future in batch):  # callers on two loops
            for waiting, outcome in zip(batch, outcomes, strict=True):
                _call_on(waiting[1].get_loop(), _settle, [waiting], [outcome])
        else:
            _call_on(loop, _settle, batch, outcomes)

    async def close(self) -> None:
        """Let the worker commit what was submitted so far, then end it."""
        self._closed = True
        thread = self._thread
        if thread is not None:
            self._queue.put(_STOP)
            await asyncio.get_running_loop().run_in_executor(None, thread.join)


def _call_on(loop: asyncio.AbstractEventLoop, call: Callable[..., None], *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody is left waiting
        loop.call_soon_threadsafe(call, *args)


def _settle(batch: Sequence[tuple[Any, asyncio.Future[Any]]], outcomes: Sequence[Any]) -> None:
    """On the event loop: wake each caller with its own outcome (a cancelled one is skipped)."""
    for (_, future), outcome in zip(batch, outcomes, strict=True):
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


def _settle_work(work: _Work) -> None:
    try:
        outcome: Any = work.call()
    except Exception as exc:
        outcome = exc
    _call_on(work.future.get_loop(), _settle, [(None, work.future)], [outcome])
