"""Start a gateway: verify trust first, then serve the consumer and provider listeners."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

import structlog
import uvicorn

from exchange import serving
from exchange.errors import Error
from exchange.gateway import files
from exchange.gateway.consumer import create_consumer_app
from exchange.gateway.node import Gateway
from exchange.gateway.preview import create_preview_app
from exchange.gateway.provider import create_provider_app
from exchange.gateway.tls import PeerCertificateProtocol, server_ssl_options
from exchange.identity.login import OidcLogin

log = structlog.get_logger(__name__)


def prepare(gateway: Gateway, *, refresh: bool = True) -> list[uvicorn.Config]:
    """Get a verified configuration (fresh, else cached) and the listeners' uvicorn configs."""
    view = gateway.trust.start(f"gateway {gateway.settings.id}", refresh=refresh)
    ca_file = gateway.settings.data_dir / "ca.pem"
    # Written whole and moved into place: a gateway's workers write it as they start.
    written = ca_file.with_name(f".ca.pem.{os.getpid()}")
    written.write_text("".join(view.configuration.ca_certificates))
    written.replace(ca_file)
    gateway.start_crl(fetch=refresh)
    if refresh:
        gateway.refresh_status()  # else the first background refresh asks, a second later
    settings = gateway.settings
    provider = serving.config(
        create_provider_app(gateway),
        host=settings.provider.host,
        port=settings.provider.port,
        http=PeerCertificateProtocol,
        **server_ssl_options(
            certificate=gateway.keys.tls_certificate_path,
            key=gateway.keys.tls_key_path,
            ca=ca_file,
        ),
    )
    # uvicorn builds the listener's SSLContext once; the CRL goes into that very context, and
    # later CRLs are added to it as they arrive (exchange.trust.crl).
    provider.load()
    if provider.ssl is None:
        raise RuntimeError("the provider listener has no TLS context")
    gateway.crl.protect(provider.ssl)
    listeners = [
        serving.config(
            create_consumer_app(gateway), host=settings.consumer.host, port=settings.consumer.port
        ),
        provider,
    ]
    if settings.preview is not None and settings.identity is not None:
        member = view.configuration.member(str(gateway.member))
        preview = settings.preview
        app = create_preview_app(
            gateway.previews,
            login=OidcLogin(
                issuer=settings.identity.issuer,
                client_id=preview.client_id,
                client_secret=preview.client_secret,
                redirect_uri=f"{preview.public_url.rstrip('/')}/callback",
            ),
            site=member.name if member else str(gateway.member),
            session_secret=files.session_key(settings),
            clock=gateway.clock,
        )
        listeners.append(serving.config(app, host=preview.host, port=preview.port))
    return listeners


def background_jobs(gateway: Gateway) -> list[Callable[[], Coroutine[Any, Any, None]]]:
    async def prune() -> None:
        while True:
            await asyncio.sleep(60)
            await gateway.in_thread(gateway.replay.prune, at=gateway.clock() - timedelta(seconds=1))
            await gateway.in_thread(gateway.previews.prune)
            await gateway.in_thread(gateway.quotas.prune, at=gateway.clock())
            await gateway.in_thread(gateway.idempotency.prune, at=gateway.clock())

    async def refresh_crl() -> None:
        while True:
            # Every second while no current CRL or no OCSP answers are held (a gateway started
            # before its authority could be reached refuses meanwhile), then with the
            # configuration.
            current = gateway.crl.current(gateway.clock()) and gateway.status.known
            await asyncio.sleep(gateway.settings.globalconf_refresh if current else 1.0)
            try:
                await gateway.in_thread(gateway.refresh_crl)
            except Error as error:  # the CRL held stays until its nextUpdate, then all fail
                log.warning("gateway.crl_refresh_failed", reason=error.message)
            try:
                await gateway.in_thread(gateway.refresh_status)
            except Error as error:  # answers held stay until their bound, then refusals
                log.warning("gateway.status_refresh_failed", reason=error.message)

    jobs = [
        gateway.trust.keep_fresh(gateway.settings.globalconf_refresh),
        refresh_crl,
        prune,
        gateway.heads.run,
        gateway.declared.keep_in_step,
    ]
    if gateway.settings.audit_witness:
        jobs.append(gateway.witnessing.run)
    if gateway.peer_witnessing.peers:
        jobs.append(gateway.peer_witnessing.run)
    return jobs
