"""Download, verify, cache and refresh the global configuration; fail closed.

A :class:`GlobalConfClient` holds the last configuration that verified. :meth:`current` hands it
out only while it has not expired; after that every caller gets
:class:`~exchange.errors.ConfigurationExpired` until a refresh succeeds. A failed refresh (network
down, bad signature, other instance, older version) keeps the last good configuration.

The verified document is cached on disk so that a restart does not need the central authority,
but a cached copy is verified again on load like any download.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import os
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import structlog

from exchange.errors import (
    ConfigurationExpired,
    ConfigurationInvalid,
    ConfigurationUnavailable,
    Error,
)
from exchange.trust import globalconf
from exchange.trust.globalconf import GlobalConfiguration, TrustAnchor

log = structlog.get_logger(__name__)

Fetch = Callable[[], bytes]
Clock = Callable[[], datetime]


# The clock of every role: read several times per exchange on each gateway, so without a Python
# frame of its own around the C call.
utcnow: Clock = functools.partial(datetime.now, UTC)


class HttpFetch:
    """Fetch the document over HTTP(S): bounded size, bounded time, redirects not followed."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._url = url
        self._client = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False)

    def __call__(self) -> bytes:
        try:
            with self._client.stream("GET", self._url) as response:
                if response.status_code != 200:
                    raise ConfigurationUnavailable(
                        f"central authority answered HTTP {response.status_code}"
                    )
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > globalconf.MAX_DOCUMENT_BYTES:
                        raise ConfigurationInvalid("global configuration is larger than allowed")
                return bytes(body)
        except httpx.HTTPError as exc:
            raise ConfigurationUnavailable("central authority cannot be reached") from exc

    def close(self) -> None:
        self._client.close()


class GlobalConfClient:
    def __init__(
        self,
        *,
        anchor: TrustAnchor,
        fetch: Fetch | None = None,
        cache_path: Path | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self._anchor = anchor
        self._anchor_certificates = anchor.certificates()
        self._fetch = fetch if fetch is not None else HttpFetch(anchor.configuration_url)
        self._cache_path = cache_path
        self._clock = clock
        self._lock = threading.Lock()
        self._current: GlobalConfiguration | None = None
        self.last_error: Error | None = None
        if cache_path is not None and cache_path.exists():
            self._load_cache(cache_path)

    @property
    def anchor(self) -> TrustAnchor:
        return self._anchor

    def _verify(self, document: bytes, at: datetime) -> GlobalConfiguration:
        return globalconf.verify(
            document, self._anchor, at=at, anchor_certificates=self._anchor_certificates
        )

    def _load_cache(self, path: Path) -> None:
        try:
            self._current = self._verify(path.read_bytes(), self._clock())
        except (OSError, Error) as exc:
            log.warning("globalconf.cache_rejected", path=str(path), reason=str(exc))

    def refresh(self) -> GlobalConfiguration:
        """Fetch and verify a new document; keep the old one and re-raise on any failure."""
        at = self._clock()
        try:
            document = self._fetch()
            configuration = self._verify(document, at)
            with self._lock:
                held = self._current
                if held is not None and configuration.version < held.version:
                    raise ConfigurationInvalid(
                        f"central authority served version {configuration.version}, "
                        f"older than version {held.version} already held"
                    )
                self._current = configuration
            if self._cache_path is not None:
                try:
                    self._keep(self._cache_path, document, configuration.version, at)
                except OSError as exc:
                    log.warning("globalconf.cache_not_written", cause=type(exc).__name__)
        except Error as exc:
            self.last_error = exc
            log.warning("globalconf.refresh_failed", error=exc.xroad_type, reason=exc.message)
            raise
        self.last_error = None
        log.info("globalconf.refreshed", version=configuration.version)
        return configuration

    def _keep(self, path: Path, document: bytes, version: int, at: datetime) -> None:
        """Write ``document`` to the cache unless it holds a newer version: the processes of
        one gateway share it, and one that fetched earlier may answer later. Under a lock, so
        that the look and the write are one step for every process."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.with_name(f"{path.name}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if self._verify(path.read_bytes(), at).version > version:
                    return
            except (OSError, Error):
                pass  # none, unreadable or no longer valid: replace it
            _write_atomically(path, document)

    def current(self, at: datetime | None = None) -> GlobalConfiguration:
        """The last good configuration, if it is still valid at ``at``; else raise."""
        held = self._current
        if held is None:
            raise ConfigurationUnavailable("no verified global configuration is available")
        at = at if at is not None else self._clock()
        if held.expires_at <= at:
            raise ConfigurationExpired(
                f"global configuration version {held.version} expired at "
                f"{held.expires_at.isoformat()} and no newer one could be verified"
            )
        return held

    @contextlib.asynccontextmanager
    async def refreshing(self, interval: float) -> AsyncIterator[GlobalConfClient]:
        """Refresh every ``interval`` seconds in the background for the block's lifetime."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await asyncio.to_thread(self.refresh)
                except Error:
                    pass  # logged by refresh(); the last good configuration stays
                except Exception as exc:  # never let the loop die: that would fail closed for good
                    log.error("globalconf.refresh_crashed", cause=type(exc).__name__)

        task = asyncio.create_task(loop(), name="globalconf-refresh")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Named per process and thread: a gateway's workers may write at the same moment.
    temporary = path.with_suffix(f"{path.suffix}.{os.getpid()}.{threading.get_ident()}.tmp")
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    temporary.replace(path)
