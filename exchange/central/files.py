"""The central authority's data folder: its identity, keys, certificates, anchor and token.

::

    <data_dir>/
      authority.json               instance and creation time
      ca.key, ca.pem               root CA key (0600) and certificate
      configuration-signing.key    configuration-signing key (0600)
      configuration-signing.pem    its certificate, issued by the root
      anchor.json                  the trust anchor to hand to gateways out of band
      admin-token                  bearer token of the management API (0600)
      central.db                   the registry (SQLite default)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.x509.oid import NameOID

from exchange import keyfolder
from exchange.central.settings import CentralSettings
from exchange.errors import Conflict, NotFound
from exchange.identifiers import check_segment
from exchange.trust import ca
from exchange.trust.globalconf import TrustAnchor, anchor_for
from exchange.trust.keys import (
    PrivateKey,
    certificate_pem,
    generate_key,
    load_certificate,
    load_private_key,
)


@dataclass(frozen=True)
class AuthorityMaterial:
    """Everything the authority loads from its data folder once, at start-up."""

    instance: str
    authority: ca.CertificateAuthority
    configuration_key: PrivateKey
    configuration_certificate: x509.Certificate
    admin_token_digest: bytes

    def admin_token_matches(self, presented: str) -> bool:
        digest = hashlib.sha256(presented.encode()).digest()
        return hmac.compare_digest(digest, self.admin_token_digest)

    def anchor(self, configuration_url: str) -> TrustAnchor:
        return anchor_for(
            instance=self.instance,
            configuration_url=configuration_url,
            certificates=[self.configuration_certificate],
        )


def initialise(settings: CentralSettings, *, instance: str, at: datetime) -> AuthorityMaterial:
    """Create a new instance's keys and certificates in an empty data folder."""
    check_segment(instance, "instance")
    root = settings.data_dir
    if (root / "authority.json").exists():
        raise Conflict(f"{root} already holds a central authority; refusing to overwrite it")
    keyfolder.create(root)

    ca_key = generate_key()
    ca_certificate = ca.create_root(ca_key, instance=instance, at=at, validity=settings.ca_validity)
    authority = ca.CertificateAuthority(key=ca_key, certificate=ca_certificate)
    configuration_key = generate_key()
    configuration_certificate = authority.issue(
        public_key=configuration_key.public_key(),
        subject=x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"exchange instance {instance}"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{instance} configuration signing"),
            ]
        ),
        profile=ca.Profile.CONFIGURATION_SIGNING,
        at=at,
        validity=settings.configuration_signing_validity,
    )
    keyfolder.write_key(root / "ca.key", ca_key)
    (root / "ca.pem").write_text(certificate_pem(ca_certificate))
    keyfolder.write_key(root / "configuration-signing.key", configuration_key)
    (root / "configuration-signing.pem").write_text(certificate_pem(configuration_certificate))
    keyfolder.write_private(root / "admin-token", secrets.token_urlsafe(32).encode() + b"\n")
    identity = {"instance": instance, "created_at": at.isoformat(), "public_url": settings.url}
    (root / "authority.json").write_text(json.dumps(identity, indent=2) + "\n")
    material = load(settings)
    write_anchor(settings, material)
    return material


def resolve(settings: CentralSettings) -> CentralSettings:
    """Fill in the public URL chosen at ``init`` unless the environment overrides it."""
    identity = settings.data_dir / "authority.json"
    if settings.public_url is not None or not identity.exists():
        return settings
    stored = json.loads(identity.read_text()).get("public_url")
    return settings.model_copy(update={"public_url": stored}) if stored else settings


def load(settings: CentralSettings) -> AuthorityMaterial:
    root = settings.data_dir
    identity = root / "authority.json"
    if not identity.exists():
        raise NotFound(
            f"no central authority in {root}; run 'exchange central init --instance <CODE>' first"
        )
    instance = json.loads(identity.read_text())["instance"]
    return AuthorityMaterial(
        instance=instance,
        authority=ca.CertificateAuthority(
            key=load_private_key(root / "ca.key"), certificate=load_certificate(root / "ca.pem")
        ),
        configuration_key=load_private_key(root / "configuration-signing.key"),
        configuration_certificate=load_certificate(root / "configuration-signing.pem"),
        admin_token_digest=hashlib.sha256(read_admin_token(settings).encode()).digest(),
    )


def read_admin_token(settings: CentralSettings) -> str:
    return (settings.data_dir / "admin-token").read_text().strip()


def write_anchor(settings: CentralSettings, material: AuthorityMaterial) -> TrustAnchor:
    """(Re)write ``anchor.json`` for the authority's current public URL."""
    anchor = material.anchor(f"{settings.url}/globalconf")
    (settings.data_dir / "anchor.json").write_bytes(anchor.dump())
    return anchor
