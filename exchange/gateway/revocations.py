"""A provider gateway's copy of each consent service's revocations, kept by following its feed.

See :mod:`exchange.consent.revocations` for the feed. One :class:`Follower` per consent service,
started by the first consent of that service this gateway checks. It long-polls, verifies each
page against the consent service's certificate in the current global configuration, and asks
again after the newest number at once (which tells the consent service it holds it).

:meth:`Follower.fresh` says whether the copy can be trusted: a complete page received within
``consent_feed_max_age`` seconds. While the feed is cut, the copy ages out and consents are
checked by asking the consent service per request (:mod:`exchange.gateway.consent`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import time
from collections.abc import Callable
from datetime import datetime
from urllib.parse import urlencode

import structlog

from exchange.consent.messages import verify_page
from exchange.errors import Error, ServiceFailed
from exchange.gateway.transport import Transport
from exchange.trust.view import Trust

log = structlog.get_logger(__name__)

MAX_PAGE = 256 * 1024
MAX_WAIT = 20.0
PRUNE_EVERY = 60.0


class RevocationFeeds:
    def __init__(
        self,
        *,
        trust: Trust,
        transport: Transport,
        clock: Callable[[], datetime],
        subscriber: str,
        max_age: float,
        skew: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock`` dates pages (their signatures' time); ``monotonic`` measures freshness,
        so that a wall clock stepped back cannot keep a stale copy fresh."""
        self.trust = trust
        self.transport = transport
        self.clock = clock
        self.subscriber = subscriber
        self.max_age = max_age
        self.skew = skew
        self.monotonic = monotonic
        # Held well inside max_age, so that an idle feed stays fresh.
        self.wait = min(max_age / 3, MAX_WAIT)
        self._followers: dict[str, Follower] = {}

    def of(self, issuer: str) -> Follower | None:
        """The follower of consent service ``issuer`` (started now if new); None if disabled.

        ``issuer`` comes from an artefact whose signature verified, so these are bounded by the
        consent services the global configuration lists.
        """
        if self.max_age <= 0:
            return None
        follower = self._followers.get(issuer)
        if follower is None:
            follower = self._followers[issuer] = Follower(self, issuer)
        return follower

    def state(self) -> dict[str, dict[str, object]]:
        """Per consent service followed: fresh or not, revocations held, the number read up to."""
        return {
            issuer: {"fresh": f.fresh(), "revoked": f.count, "after": f.after}
            for issuer, f in self._followers.items()
        }

    async def close(self) -> None:
        for follower in self._followers.values():
            await follower.stop()


class Follower:
    def __init__(self, feeds: RevocationFeeds, issuer: str) -> None:
        self._feeds = feeds
        self.issuer = issuer
        self._revoked: dict[str, int] = {}  # consent id -> the consent's end (epoch seconds)
        self.after = 0
        # When the last complete page was asked for, and when ended consents were last pruned,
        # on the feeds' monotonic clock (injected, so that tests move it).
        self._confirmed = -math.inf
        self._pruned = feeds.monotonic()
        self._task = asyncio.get_running_loop().create_task(
            self._follow(), name=f"revocations:{issuer}"
        )

    def fresh(self) -> bool:
        return self._feeds.monotonic() - self._confirmed <= self._feeds.max_age

    def revoked(self, consent_id: str) -> bool:
        return consent_id in self._revoked

    @property
    def count(self) -> int:
        return len(self._revoked)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _follow(self) -> None:
        backoff, failing = 0.25, False
        while True:
            try:
                await self._poll()
            except Exception as exc:  # whatever it is: a dead follower would fail closed unseen
                if not failing:
                    reason = exc.message if isinstance(exc, Error) else type(exc).__name__
                    log.warning(
                        "gateway.revocation_feed_failing", issuer=self.issuer, reason=reason
                    )
                failing = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if failing:
                log.info("gateway.revocation_feed_restored", issuer=self.issuer)
            backoff, failing = 0.25, False

    async def _poll(self) -> None:
        feeds = self._feeds
        view = feeds.trust.view()
        authority = view.consent_service(self.issuer)
        asked = feeds.monotonic()
        nonce = secrets.token_urlsafe(16)  # the page must answer this very poll
        query = urlencode(
            {
                "after": str(self.after),
                "wait": f"{feeds.wait:.3f}",
                "subscriber": feeds.subscriber,
                "nonce": nonce,
            }
        )
        reply = await feeds.transport.request(
            "GET",
            f"{authority.url}/api/v1/revocations?{query}",
            what=f"consent service {self.issuer}",
            headers={},
            timeout=feeds.wait + 10,
            max_bytes=MAX_PAGE,
        )
        if reply.status != 200 or not reply.body.isascii():
            raise ServiceFailed(f"the revocation feed answered HTTP {reply.status}")
        body = reply.body
        page = verify_page(
            body.decode("ascii"),
            view=view,
            issuer=self.issuer,
            nonce=nonce,
            at=feeds.clock(),
            skew=feeds.skew,
        )
        self._revoked.update(page.revoked)
        self.after = page.last
        if page.complete:
            # As of when it was asked at the latest: a revocation after that is in a later page.
            self._confirmed = asked
        if asked - self._pruned > PRUNE_EVERY:
            ended = feeds.clock().timestamp()
            self._revoked = {c: until for c, until in self._revoked.items() if until > ended}
            self._pruned = asked
