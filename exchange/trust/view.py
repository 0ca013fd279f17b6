"""What a relying party trusts, derived once per global configuration version.

Every role that accepts signed messages (gateways, the consent service, the portal) holds a
:class:`Trust`, built by :func:`relying_party`: the trust anchor, a client that keeps the
configuration fresh, and the view of the current version.

:class:`TrustView` parses the configuration's certificates once and answers the questions of
the hot path by dictionary lookups: which member owns the signing certificate with this
``kid``, which gateway presents this TLS certificate, where a member's gateways are. A signing
certificate is admitted only if the instance CA issued it, it is a signing certificate, and its
``serialNumber`` names the member that lists it. Validity in time and revocation are checked
per use (``at``), and where the role has a :class:`~exchange.trust.ocsp.CertificateStatus`,
the OCSP status too; :meth:`TrustView.member_signer` and :meth:`TrustView.consent_signer` hand
those checks to :func:`~exchange.trust.signed.verify_signed`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog
from cryptography import x509
from cryptography.x509.oid import NameOID

from exchange.errors import (
    AccessDenied,
    ConfigurationInvalid,
    ConfigurationUnavailable,
    ConsentDenied,
    Error,
    InvalidSignature,
    ServiceUnavailable,
)
from exchange.identifiers import ClientId, MemberId, SubsystemId, member_of, unversioned
from exchange.trust.globalconf import Gateway, GlobalConfiguration, TrustAnchor
from exchange.trust.globalconf_client import GlobalConfClient, utcnow
from exchange.trust.keys import fingerprint
from exchange.trust.ocsp import CertificateStatus
from exchange.trust.signed import CertificateFor, Validity, may_sign

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SigningCertificate:
    member: str
    certificate: x509.Certificate
    validity: Validity  # read once; checked at each use's time

    @property
    def serial(self) -> str:
        return self.validity.serial


@dataclass(frozen=True, slots=True)
class ConsentAuthority:
    """A consent service as the global configuration lists it, its certificate admitted."""

    name: str
    member: str
    url: str
    certificate: x509.Certificate
    validity: Validity  # read once; checked at each use's time

    @property
    def serial(self) -> str:
        return self.validity.serial


class TrustView:
    def __init__(
        self, configuration: GlobalConfiguration, *, status: CertificateStatus | None = None
    ) -> None:
        self.configuration = configuration
        # OCSP answers for signing certificates, where the role checks them (gateways).
        self.status = status
        self.version = configuration.version
        self.ca = x509.load_pem_x509_certificate(configuration.ca_certificates[0].encode())
        self.revoked = frozenset(configuration.revoked_serials)
        # Catalogue entries without version: what metrics may name as a service.
        entries = {unversioned(str(s.get("id", ""))): s for s in configuration.services}
        self.catalogue = frozenset(entries)
        # What each catalogue entry says it does, for people (usage views).
        self.descriptions = {
            service: str(entry["description"])
            for service, entry in entries.items()
            if entry.get("description")
        }
        self.members = {m.id: m for m in configuration.members}
        self.signing: dict[str, SigningCertificate] = {}
        for member in configuration.members:
            for pem in member.signing_certificates:
                admitted = self._admit_signing(member.id, pem)
                if admitted is not None:
                    self.signing[fingerprint(admitted.certificate)] = admitted
        # Consent services whose artefacts providers accept, by certificate fingerprint.
        self.consent_authorities: dict[str, ConsentAuthority] = {}
        for entry in configuration.consent_services:
            authority = self._admit_consent_service(entry)
            if authority is not None:
                self.consent_authorities[fingerprint(authority.certificate)] = authority
        self.gateway_by_tls: dict[str, Gateway] = {}
        self.gateways_of: dict[str, list[Gateway]] = {}
        self._pinned: dict[str, ssl.SSLContext] = {}
        for gateway in configuration.gateways:
            owner = gateway.id.rsplit("/", 1)[0]
            self.gateways_of.setdefault(owner, []).append(gateway)
            for pem in gateway.tls_certificates:
                self.gateway_by_tls[fingerprint(x509.load_pem_x509_certificate(pem.encode()))] = (
                    gateway
                )

    def _admitted(self, member: str, pem: str) -> x509.Certificate | None:
        """``pem`` if the instance CA issued it for document signing to ``member``."""
        try:
            certificate = x509.load_pem_x509_certificate(pem.encode())
        except ValueError:
            return None
        owner = certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
        if not may_sign(certificate, ca=self.ca) or [a.value for a in owner] != [member]:
            return None
        return certificate

    def _admit_signing(self, member: str, pem: str) -> SigningCertificate | None:
        certificate = self._admitted(member, pem)
        if certificate is None:
            log.warning("trust.signing_certificate_rejected", member=member)
            return None
        return SigningCertificate(member, certificate, Validity.of(certificate))

    def _admit_consent_service(self, entry: dict[str, Any]) -> ConsentAuthority | None:
        name, member, url = entry.get("name"), entry.get("member"), entry.get("url")
        pem = entry.get("certificate")
        if not all(isinstance(v, str) for v in (name, member, url, pem)):
            log.warning("trust.consent_service_rejected", name=name)
            return None
        certificate = self._admitted(str(member), str(pem))
        if certificate is None:
            log.warning("trust.consent_service_rejected", name=name)
            return None
        return ConsentAuthority(
            name=str(name),
            member=str(member),
            url=str(url).rstrip("/"),
            certificate=certificate,
            validity=Validity.of(certificate),
        )

    def consent_service(self, name: str) -> ConsentAuthority:
        for authority in self.consent_authorities.values():
            if authority.name == name:
                return authority
        raise ConsentDenied(f"no consent service {name} in the global configuration")

    def signing_certificate(
        self, kid: str, *, member: MemberId | None, at: datetime
    ) -> x509.Certificate:
        """The certificate ``kid`` names, if ``member`` (any member: None) owns it and it is
        usable at ``at``."""
        entry = self.signing.get(kid)
        if entry is None:
            raise InvalidSignature(
                "signed with a certificate the global configuration does not list"
            )
        if member is not None and entry.member != str(member):
            raise InvalidSignature(f"signing certificate does not belong to member {member}")
        entry.validity.require(revoked=self.revoked, at=at)
        if self.status is not None:
            self.status.require(entry.certificate, at)
        return entry.certificate

    def member_signer(self, member: MemberId | None, *, at: datetime) -> CertificateFor:
        """For :func:`~exchange.trust.signed.verify_signed`: a signing certificate of
        ``member`` (of any member: None), usable at ``at``."""
        return lambda kid: self.signing_certificate(kid, member=member, at=at)

    def consent_signer(self, *, at: datetime, name: str | None = None) -> CertificateFor:
        """For :func:`~exchange.trust.signed.verify_signed`: the certificate of a listed consent
        service (the one called ``name``, if given), usable at ``at``."""

        def certificate_for(kid: str) -> x509.Certificate:
            authority = self.consent_authorities.get(kid)
            if authority is None or (name is not None and authority.name != name):
                raise InvalidSignature("signed by no consent service of this instance")
            authority.validity.require(revoked=self.revoked, at=at)
            if self.status is not None:
                self.status.require(authority.certificate, at)
            return authority.certificate

        return certificate_for

    def gateway_presenting(self, tls_fingerprint: str | None) -> Gateway:
        """The registered gateway whose live TLS certificate the peer presented."""
        gateway = self.gateway_by_tls.get(tls_fingerprint or "")
        if gateway is None:
            raise AccessDenied("TLS certificate is not registered to any gateway of this instance")
        return gateway

    def pinned_context(self, peer: Gateway, *, certificate: Path, key: Path) -> ssl.SSLContext:
        """Client TLS towards ``peer`` that trusts exactly the peer's live TLS certificates.

        The trust store holds the peer's own certificates (not the CA) with partial-chain
        verification, so a certificate the CA issued to anyone else, even for the same host, is
        refused at the handshake; the host name is still checked against subjectAltName.
        """
        context = self._pinned.get(peer.id)
        if context is None:
            context = ssl.create_default_context(
                ssl.Purpose.SERVER_AUTH, cadata="".join(peer.tls_certificates)
            )
            context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(certificate, key)
            self._pinned[peer.id] = context
        return context

    def check_client(self, client: ClientId) -> None:
        """The client must be a registered member, or a registered subsystem of one."""
        member = self.members.get(str(member_of(client)))
        if member is None or (
            isinstance(client, SubsystemId) and client.subsystem_code not in member.subsystems
        ):
            raise AccessDenied(f"client {client} is not registered in the global configuration")

    def gateways_for(self, member: MemberId) -> list[Gateway]:
        """The gateways of a registered ``member`` that can be trusted over TLS.

        None is the provider's trouble (no gateway registered, or its certificates revoked or
        expired), not the caller's: 503, so the caller may retry later.
        """
        gateways = [g for g in self.gateways_of.get(str(member), []) if g.tls_certificates]
        if not gateways:
            raise ServiceUnavailable(
                f"no gateway of {member} holds a valid TLS certificate", detail=str(member)
            )
        return gateways


class Trust:
    """The current :class:`TrustView`, rebuilt when the client holds a new configuration."""

    def __init__(self, client: GlobalConfClient, clock: Callable[[], datetime]) -> None:
        self.client = client
        self.clock = clock
        self._view: TrustView | None = None
        # Set by roles that check signing certificates by OCSP (exchange.trust.ocsp).
        self.status: CertificateStatus | None = None

    def start(self, role: str, *, refresh: bool = True) -> TrustView:
        """Refresh once when a role starts (a cached copy still valid will do); refuse to start
        without any valid configuration."""
        if refresh:
            try:
                self.client.refresh()
            except Error as error:
                log.warning(
                    "trust.globalconf_unavailable_at_start", role=role, reason=error.message
                )
        try:
            return self.view()
        except Error as error:
            raise ConfigurationUnavailable(
                f"{role} holds no valid global configuration ({error.message}); "
                "is the central authority reachable?"
            ) from error

    def keep_fresh(self, interval: float) -> Callable[[], Coroutine[Any, Any, None]]:
        """A background job refreshing the configuration every ``interval`` seconds."""

        async def job() -> None:
            async with self.client.refreshing(interval):
                await asyncio.Event().wait()

        return job

    def view(self) -> TrustView:
        configuration = self.client.current(self.clock())  # raises once it has expired
        view = self._view
        if view is None or view.version != configuration.version:
            try:
                view = self._view = TrustView(configuration, status=self.status)
            except (ValueError, IndexError) as exc:
                raise ConfigurationInvalid(
                    f"global configuration version {configuration.version} holds unreadable "
                    "certificates"
                ) from exc
        return view


def relying_party(
    *,
    anchor: Path,
    data_dir: Path,
    clock: Callable[[], datetime] = utcnow,
    globalconf: GlobalConfClient | None = None,
) -> Trust:
    """The trust of a role: its anchor, a configuration client caching in ``data_dir``."""
    client = globalconf or GlobalConfClient(
        anchor=TrustAnchor.load(anchor), cache_path=data_dir / "globalconf.jws", clock=clock
    )
    return Trust(client, clock)
