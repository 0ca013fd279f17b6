"""One gateway's parts, wired once per process: settings, keys, trust, stores, services.

The consumer app (:mod:`exchange.gateway.consumer`) and the provider app
(:mod:`exchange.gateway.provider`) share one :class:`Gateway`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, TypeVar

import httpx
import structlog

from audit.heads import HeadKeeper
from audit.log import AuditLog
from exchange.db import migrate
from exchange.db.engine import build_engine
from exchange.errors import CertificateStatusUnknown, Error
from exchange.evidence.edm.rules import BusinessRules
from exchange.evidence.edm.schemaset import EdmSchemas
from exchange.gateway import files
from exchange.gateway.access import AccessRights
from exchange.gateway.declared import DeclaredServices
from exchange.gateway.idempotency import Idempotency
from exchange.gateway.metrics import GatewayMetrics
from exchange.gateway.peerwitness import PeerWitness
from exchange.gateway.peerwitnessing import PeerWitnessing
from exchange.gateway.pooled import PooledTransport
from exchange.gateway.preview import Previews
from exchange.gateway.quotas import Quotas
from exchange.gateway.records import ExchangeLog
from exchange.gateway.replay import ReplayGuard
from exchange.gateway.revocations import RevocationFeeds
from exchange.gateway.services import ServiceTable
from exchange.gateway.settings import GatewaySettings
from exchange.gateway.transport import Transport
from exchange.gateway.witnessing import Witnessing
from exchange.identifiers import SubsystemId
from exchange.identity.tokens import KeySet, TokenValidator
from exchange.trust.crl import RevocationList
from exchange.trust.globalconf import Gateway as PeerGateway
from exchange.trust.globalconf_client import GlobalConfClient, utcnow
from exchange.trust.keys import fingerprint, load_certificate
from exchange.trust.ocsp import CertificateStatus
from exchange.trust.signed import Signer
from exchange.trust.view import TrustView, relying_party

T = TypeVar("T")
log = structlog.get_logger(__name__)
CANNOT_AUDIT = "the audit log cannot be written: every exchange is refused"
NO_CRL = "no current revocation list: every TLS handshake is refused"
NO_STATUS = "the OCSP status of the signing certificates is not known yet"
# Seconds without a committed audit write after which a health check tries the database itself:
# an idle gateway whose database has gone must not go on saying it can answer.
PROBE_AFTER = 10.0


class Gateway:
    def __init__(
        self,
        settings: GatewaySettings,
        *,
        clock: Callable[[], datetime] = utcnow,
        globalconf: GlobalConfClient | None = None,
        transport: Transport | None = None,
        blocking_http: httpx.BaseTransport | None = None,
        metrics: GatewayMetrics | None = None,
        migrates: bool = True,
    ) -> None:
        """``transport`` reaches peers and consent services; ``blocking_http`` (httpx) the
        identity provider's keys and timestamping authorities. Both default to the network.
        ``metrics`` defaults to this process's own (a worker passes the shared ones). A worker
        does not migrate (``migrates=False``): its parent has, and one with newer code on disk
        must not change the schema under workers still running the old."""
        self.settings = settings
        # How this gateway reaches the identity provider, timestamping and the central
        # authority (the console publishes the signed catalogue through it).
        self.blocking_http = blocking_http
        self.id = settings.gateway
        self.member = settings.gateway.member
        self.clock = clock
        self.blocking_http = blocking_http  # the central authority (enrolment), as below
        self.keys = files.load(settings)
        self.signer = Signer(self.keys.signing_key, self.keys.signing_certificate)
        self.tls_fingerprint = fingerprint(load_certificate(self.keys.tls_certificate_path))
        self.trust = relying_party(
            anchor=settings.anchor, data_dir=settings.data_dir, clock=clock, globalconf=globalconf
        )
        self.globalconf = self.trust.client
        # The instance CRL in this gateway's TLS contexts, both directions (exchange.trust.crl).
        self._crl_http = httpx.Client(transport=blocking_http, timeout=10, follow_redirects=False)
        self.crl = RevocationList(
            path=settings.data_dir / "crl.pem", fetch=self._fetch_crl, clock=clock
        )
        # OCSP status of the signing certificates relied on, prefetched (exchange.trust.ocsp).
        self.status = CertificateStatus(
            post=self._post_ocsp,
            clock=clock,
            max_age=timedelta(seconds=settings.certificate_status_max_age),
        )
        self.trust.status = self.status
        self.engine = build_engine(settings.db_url, sqlite_synchronous=settings.sqlite_synchronous)
        if migrates:
            migrate.upgrade("gateway", self.engine)
        else:
            migrate.require_head("gateway", self.engine)
        # Commits made durable by the next flushed one: the replay guard's for reads (see
        # exchange.gateway.replay) and operational records (which may lose their last few).
        self.unflushed = build_engine(settings.db_url, flushed=False)
        self.replay = ReplayGuard(self.engine, unflushed=self.unflushed)
        self.access = AccessRights(self.engine, cache_ttl=settings.access_cache_ttl, clock=clock)
        self.exchanges = ExchangeLog(self.unflushed)
        self.audit = AuditLog(
            self.engine, chain=settings.audit_chain, key=files.audit_key(settings), clock=clock
        )
        self.metrics = metrics or GatewayMetrics()
        self.idempotency = Idempotency(self.unflushed, clock=clock)
        self.quotas = Quotas(
            self.unflushed,
            clock=clock,
            subject_hash=self.audit.subject_hash,
            refused=self.metrics.refused,
        )
        self.heads = HeadKeeper(
            audit=self.audit,
            engine=self.engine,
            signer=self.signer,
            configuration=lambda: self.trust.view().configuration,
            clock=clock,
            interval=settings.audit_head_interval,
            every=settings.audit_head_every,
            transport=blocking_http,
        )
        self.witnessing = Witnessing(
            audit=self.audit,
            engine=self.engine,
            configuration=lambda: self.trust.view().configuration,
            interval=settings.audit_head_interval,
            transport=blocking_http,
            outcome=lambda outcome: self.metrics.witness.labels(outcome).inc(),
        )
        # Witnessing other members' logs, when audit_peer_witness is on (its routes are served
        # only then), and submitting this log's heads to peer witnesses besides the authority.
        self.peer_witness = PeerWitness(
            engine=self.engine,
            signer=self.signer,
            member=str(self.member),
            view=self.trust.view,
            clock=clock,
            outcome=lambda outcome: self.metrics.peer_witness.labels(outcome).inc(),
        )
        self.services = ServiceTable.build(
            member=self.member,
            specs=settings.services,
            schemas_dir=settings.schemas_dir,
            max_part_bytes=settings.max_part_bytes,
        )
        # Services declared from the console, beside the settings file's: served from now on,
        # and kept in step with the other processes of this gateway (exchange.gateway.declared).
        self.declared = DeclaredServices(
            self.engine,
            settings=settings,
            table=self.services,
            clock=clock,
            in_thread=self.in_thread,
        )
        self.declared.load()
        # The OOTS EDM profile, only where it is configured: its schema set loaded once, offline.
        self.edm_schemas = (
            None
            if settings.edm is None
            else EdmSchemas.load(settings.edm.folder, max_bytes=settings.max_body_bytes)
        )
        # Its request rules (EDM-REQ Schematron), compiled once, enforced before signing.
        self.edm_rules = None
        if settings.edm is not None:
            waived = frozenset(settings.edm.waived_rules)
            self.edm_rules = BusinessRules("REQ", settings.edm.folder, waived=waived)
            if waived:
                log.warning("edm.rules_waived", rules=sorted(waived))
        identity = settings.identity
        self.citizens = (
            None
            if identity is None
            else TokenValidator(
                issuer=identity.issuer,
                audience=tuple(identity.portals),
                keys=KeySet(url=identity.jwks_url, transport=blocking_http),
            )
        )
        console = settings.console
        # ID tokens of staff, for programs that ask the console's query API (browsers sign in).
        self.staff_tokens = (
            TokenValidator(
                issuer=console.issuer.rstrip("/"),
                audience=console.client_id,
                keys=KeySet(url=console.jwks_url, transport=blocking_http),
            )
            if console.enabled and console.issuer and console.client_id and console.jwks_url
            else None
        )
        # How this gateway reaches peers and consent services (tests pass one in process): its
        # own HTTP/1.1 client, which costs the consumer a fraction of aiohttp's CPU per exchange.
        self.transport = transport or PooledTransport(timeout=settings.peer_timeout)
        self.peer_witnessing = PeerWitnessing(
            audit=self.audit,
            engine=self.engine,
            peers=settings.audit_peer_witnesses,
            view=self.trust.view,
            transport=self.transport,
            tls=self.outbound_ssl,
            interval=settings.audit_head_interval,
            outcome=lambda peer, outcome: self.metrics.peer_witnessing.labels(peer, outcome).inc(),
        )
        self.previews = Previews(
            self.engine, spec=settings.preview, subject_hash=self.audit.subject_hash, clock=clock
        )
        self.revocations = RevocationFeeds(
            trust=self.trust,
            transport=self.transport,
            clock=clock,
            subscriber=f"{settings.id}/{settings.replica}",  # each replica follows
            max_age=settings.consent_feed_max_age,
            skew=settings.clock_skew,
        )
        self.subsystems = frozenset(SubsystemId(self.member, code) for code in settings.subsystems)
        # Set once every listener is up: health says "ok" only when exchanges can flow.
        self.started = False
        # Database work runs here, off the event loop, on threads of its own.
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="gateway-db")

    async def health(self) -> tuple[int, dict[str, Any]]:
        """What a load balancer needs to know: 200 when exchanges can be answered, else 503 and
        why. Whether the audit log can be written is the last write's outcome while recent,
        else a probe (a gateway taken out of service gets no exchanges that could show it is
        back; an idle one may have lost its database)."""
        shown: dict[str, Any] = {"gateway": self.settings.id, "replica": self.settings.replica}
        if not self.started:
            return 503, {"status": "FAIL", "reason": "starting", **shown}
        try:
            shown["globalconf_version"] = self.trust.view().version
        except Error as error:
            return 503, {"status": "FAIL", "reason": error.message, **shown}
        if not self.crl.current(self.clock()):
            return 503, {"status": "FAIL", "reason": NO_CRL, **shown}
        if not self.status.known:
            return 503, {"status": "FAIL", "reason": NO_STATUS, **shown}
        if not await self.audit.can_write(known_within=PROBE_AFTER):
            return 503, {"status": "FAIL", "reason": CANNOT_AUDIT, **shown, "audit_log": "failing"}
        # Shown, not failed on: a refused head is an alarm for people; exchanges go on.
        shown["witness"] = self.witnessing.state if self.settings.audit_witness else "off"
        if self.peer_witnessing.peers:
            shown["peer_witnesses"] = dict(self.peer_witnessing.states)
        if self.settings.audit_peer_witness:
            forks = await self.in_thread(self.peer_witness.fork_count)
            shown["peer_witness"] = {"status": "FORK DETECTED" if forks else "ok", "forks": forks}
        return 200, {"status": "ok", **shown, "audit_log": "ok"}

    async def in_thread(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: function(*args, **kwargs))

    def outbound_ssl(self, view: TrustView, peer: PeerGateway) -> ssl.SSLContext:
        return self.crl.protect(
            view.pinned_context(
                peer, certificate=self.keys.tls_certificate_path, key=self.keys.tls_key_path
            )
        )

    def _fetch_crl(self, url: str) -> bytes:
        response = self._crl_http.get(url)
        if response.status_code != 200:
            raise CertificateStatusUnknown(f"the authority answered HTTP {response.status_code}")
        return response.content

    def _post_ocsp(self, url: str, request: bytes) -> bytes:
        response = self._crl_http.post(
            url, content=request, headers={"Content-Type": "application/ocsp-request"}
        )
        if response.status_code != 200:
            raise CertificateStatusUnknown(f"the responder answered HTTP {response.status_code}")
        return response.content

    def refresh_status(self) -> int:
        """Ask the authority's OCSP responder about every signing certificate of the current
        configuration (members' and consent services'); answers are kept for a bounded time."""
        view = self.trust.view()
        certificates = [s.certificate for s in view.signing.values()]
        certificates += [a.certificate for a in view.consent_authorities.values()]
        return self.status.prefetch(
            url=f"{view.configuration.central_url}/ocsp", ca=view.ca, certificates=certificates
        )

    def refresh_crl(self) -> None:
        """Fetch the instance CRL from the authority the configuration names, verify it against
        the configuration's CA, and load it into every TLS context of this gateway."""
        view = self.trust.view()
        self.crl.refresh(url=f"{view.configuration.central_url}/crl", ca=view.ca)

    def start_crl(self, *, fetch: bool = True) -> None:
        """At start: a fresh CRL (unless ``fetch`` is off: the authority starts beside this
        gateway), else the one kept on disk if it is still current. Without either, every
        handshake fails and health says so until the background refresh gets one."""
        if fetch:
            try:
                self.refresh_crl()
                return
            except Error as error:
                cause = error.__cause__
                log.warning(
                    "gateway.crl_unavailable_at_start",
                    reason=error.message,
                    cause=type(cause).__name__ if cause else None,
                )
        if not self.crl.load_cached(self.trust.view().ca):
            log.info("gateway.crl_pending", consequence="TLS handshakes refused until fetched")

    async def close(self) -> None:
        await self.revocations.close()
        await self.audit.close()
        await self.replay.close()
        await self.quotas.close()
        await self.idempotency.close()
        await self.exchanges.close()
        await self.transport.close()
        self._crl_http.close()
        await self.services.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.engine.dispose()
        self.unflushed.dispose()
