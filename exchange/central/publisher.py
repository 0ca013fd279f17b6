"""Build, sign and version the global configuration from the registry.

A signed version is reused until the registry changes (a newer event than its basis) or a
quarter of its validity has passed, so that relying parties always hold a copy with most of its
lifetime ahead and learn of a revocation at their next refresh. The quarter is the stored
version's own (from its ``generated_at`` to its ``expires_at``), not the current setting's: an
authority restarted with a longer validity must not serve a version that expired meanwhile.
"""

from __future__ import annotations

from datetime import datetime

from cryptography import x509
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from exchange.central import models
from exchange.central.files import AuthorityMaterial
from exchange.central.registry import Registry, catalogue_entry, latest_event_id
from exchange.central.settings import CentralSettings
from exchange.trust import globalconf
from exchange.trust.ca import Profile
from exchange.trust.keys import certificate_pem

KEEP_VERSIONS = 100


class Publisher:
    def __init__(
        self, *, registry: Registry, material: AuthorityMaterial, settings: CentralSettings
    ) -> None:
        self._registry = registry
        self._material = material
        self._settings = settings

    def document(self) -> bytes:
        """The signed configuration to serve now, signing a new version when due."""
        at = self._registry.clock()
        for _ in range(3):  # another process may publish the same version concurrently
            with self._registry.session() as session:
                basis = latest_event_id(session)
                latest = session.scalar(
                    select(models.ConfigurationVersion)
                    .order_by(models.ConfigurationVersion.version.desc())
                    .limit(1)
                )
                if latest is not None and latest.basis_event == basis and _fresh(latest, at):
                    return latest.document
                version = 1 if latest is None else latest.version + 1
                configuration = self._build(session, version=version, at=at)
                document = globalconf.sign(
                    configuration,
                    self._material.configuration_key,
                    self._material.configuration_certificate,
                )
                session.add(
                    models.ConfigurationVersion(
                        version=version,
                        generated_at=at,
                        expires_at=configuration.expires_at,
                        basis_event=basis,
                        document=document,
                    )
                )
                try:  # the insert is flushed by the delete's query already, or by the commit
                    session.execute(
                        delete(models.ConfigurationVersion).where(
                            models.ConfigurationVersion.version <= version - KEEP_VERSIONS
                        )
                    )
                    session.commit()
                except IntegrityError:  # stored meanwhile by another process: served next turn
                    session.rollback()
                    continue
                return document
        raise RuntimeError("could not publish a global configuration version")

    def _build(
        self, session: Session, *, version: int, at: datetime
    ) -> globalconf.GlobalConfiguration:
        members = session.scalars(
            select(models.Member)
            .order_by(models.Member.identifier)
            .options(selectinload(models.Member.subsystems), selectinload(models.Member.gateways))
        ).all()
        certificates = session.scalars(select(models.Certificate)).all()
        consent_services = session.scalars(
            select(models.ConsentService)
            .order_by(models.ConsentService.name)
            .options(
                selectinload(models.ConsentService.member),
                selectinload(models.ConsentService.certificate),
            )
        ).all()
        # A consent service's key signs consent records only, never messages for its member.
        not_messages = {c.certificate_serial for c in consent_services}
        signing: dict[int, list[str]] = {}
        tls: dict[int, list[str]] = {}
        for cert in (c for c in certificates if _live(c, at)):
            if cert.profile == Profile.SIGNING.value and cert.serial not in not_messages:
                signing.setdefault(cert.member_id, []).append(cert.pem)
            elif cert.profile == Profile.TLS.value and cert.gateway_id is not None:
                tls.setdefault(cert.gateway_id, []).append(cert.pem)
        ca_certificate: x509.Certificate = self._material.authority.certificate
        return globalconf.GlobalConfiguration(
            format_version=globalconf.FORMAT_VERSION,
            instance=self._material.instance,
            version=version,
            generated_at=at,
            expires_at=at + self._settings.configuration_validity,
            central_url=self._settings.url,
            ca_certificates=[certificate_pem(ca_certificate)],
            member_classes=list(
                session.scalars(select(models.MemberClass.code).order_by(models.MemberClass.code))
            ),
            members=[
                globalconf.Member(
                    id=m.identifier,
                    name=m.name,
                    subsystems=[s.identifier.rsplit("/", 1)[1] for s in m.subsystems],
                    signing_certificates=signing.get(m.id, []),
                )
                for m in members
            ],
            gateways=[
                globalconf.Gateway(
                    id=g.identifier, address=g.address, tls_certificates=tls.get(g.id, [])
                )
                for m in members
                for g in m.gateways
            ],
            revoked_serials=sorted(c.serial for c in certificates if c.revoked_at is not None),
            timestamping_authorities=[
                {"name": t.name, "url": t.url, "certificate": t.certificate.pem}
                for t in session.scalars(
                    select(models.TimestampingAuthority)
                    .order_by(models.TimestampingAuthority.name)
                    .options(selectinload(models.TimestampingAuthority.certificate))
                )
                if _live(t.certificate, at)
            ],
            consent_services=[
                {
                    "name": c.name,
                    "member": c.member.identifier,
                    "url": c.url,
                    "certificate": c.certificate.pem,
                }
                for c in consent_services
                if _live(c.certificate, at)
            ],
            services=[
                catalogue_entry(s)
                for s in session.scalars(select(models.Service).order_by(models.Service.identifier))
            ],
        )


def _fresh(version: models.ConfigurationVersion, at: datetime) -> bool:
    """Signed no later than ``at``, and within the first quarter of the validity it was signed
    with (a version from a clock that ran ahead would be refused as from the future)."""
    quarter = (version.expires_at - version.generated_at) / 4
    return version.generated_at <= at < version.generated_at + quarter


def _live(certificate: models.Certificate, at: datetime) -> bool:
    """Unrevoked and within its validity at ``at``: only such certificates are published."""
    return certificate.revoked_at is None and certificate.not_before <= at < certificate.not_after
