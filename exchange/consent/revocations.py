"""The revocation feed: how providers learn of revoked consents without asking per request.

A provider long-polls ``GET /api/v1/revocations?after=n&wait=s&subscriber=gateway-id`` at the
consent service that issued the artefacts it sees. The answer is a page, a compact JWS (``typ``
``exchange-consent-revocations+jwt``) signed by the consent service, much like a CRL: the consent
ids revoked after number ``n`` (each with the consent's end, after which nobody needs to remember
it), the number to ask after next, and whether the page holds everything up to now. With
nothing new, the consent service holds the poll for up to ``s`` seconds and answers as soon as a
revocation commits.

The provider answers a consent's status from its copy only while the copy is fresh (a complete
page received within ``consent_feed_max_age`` seconds); otherwise it asks the consent service
per request, which fails closed when the service cannot be reached.

A revocation waits (at most :data:`ACK_TIMEOUT` seconds) until every provider that was following
the feed has asked again after its number, which it does only once it holds it: when the
citizen sees "revoked", the providers following the feed refuse the consent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

PAGE_SIZE = 1000
MAX_WAIT = 25.0
ACK_TIMEOUT = 2.0
# A subscriber that asked this recently is still following, even if not waiting right now.
FOLLOWING = 2.0
MAX_SUBSCRIBERS = 1000


class Subscribers:
    """The consent service's side of the long polls: who follows, what each has taken, and the
    wake-up when a revocation commits (in this process; other replicas' polls notice within a
    second, see :meth:`wait`)."""

    def __init__(self) -> None:
        self._changed = asyncio.Condition()
        self._published = 0  # revocations committed by this process so far
        self._taken: dict[str, int] = {}  # subscriber -> the number it asked after
        self._waiting: dict[str, int] = {}  # subscriber -> polls held now
        self._seen: dict[str, float] = {}  # subscriber -> when it last asked or was answered

    async def asked(self, subscriber: str | None, after: int) -> None:
        """A poll arrived: ``subscriber`` holds every revocation up to ``after``."""
        if subscriber is None or not self._room_for(subscriber):
            return
        self._taken[subscriber] = max(self._taken.get(subscriber, 0), after)
        self._seen[subscriber] = time.monotonic()
        async with self._changed:
            self._changed.notify_all()

    def holding(self, subscriber: str) -> int:
        """How many polls of ``subscriber`` are held right now."""
        return self._waiting.get(subscriber, 0)

    @property
    def published_so_far(self) -> int:
        """Read before looking in the database; hand to :meth:`wait` if nothing was there."""
        return self._published

    async def wait(self, subscriber: str | None, since: int, seconds: float) -> None:
        """Hold a poll until this process commits a revocation after ``since`` (a value of
        :attr:`published_so_far`), or ``seconds`` pass."""
        counted = subscriber if subscriber is not None and subscriber in self._seen else None
        if counted is not None:
            self._waiting[counted] = self._waiting.get(counted, 0) + 1
        try:
            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(seconds):
                        await self._changed.wait_for(lambda: self._published != since)
        finally:
            if counted is not None and counted in self._waiting:
                self._waiting[counted] -= 1
                self._seen[counted] = time.monotonic()

    async def published(self, seq: int) -> None:
        """Wake the held polls; return once every follower has asked again after ``seq``."""
        now = time.monotonic()
        following = {
            s for s, seen in self._seen.items() if self._waiting.get(s) or now - seen < FOLLOWING
        }
        async with self._changed:
            self._published += 1
            self._changed.notify_all()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(ACK_TIMEOUT):
                    await self._changed.wait_for(
                        lambda: all(self._taken.get(s, 0) >= seq for s in following)
                    )

    def _room_for(self, subscriber: str) -> bool:
        if subscriber in self._seen:
            return True
        if len(self._seen) >= MAX_SUBSCRIBERS:
            stale = time.monotonic() - MAX_WAIT - FOLLOWING
            for name in [s for s, seen in self._seen.items() if seen < stale]:
                if not self._waiting.get(name):
                    del self._seen[name]
                    self._taken.pop(name, None)
                    self._waiting.pop(name, None)
        return len(self._seen) < MAX_SUBSCRIBERS
