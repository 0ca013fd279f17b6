"""The global configuration: one signed, versioned, expiring document per instance.

Wire form: a JWS in compact serialisation (RFC 7515), ``typ`` ``exchange-globalconf+jws``,
signed ES256 by the configuration-signing key, ``kid`` = SHA-256 fingerprint of that key's
certificate. The payload is the JSON of :class:`GlobalConfiguration`.

:func:`verify` accepts a document only if all of these hold at time ``at``:

- the JWS is well-formed, its ``typ`` is ours and its ``alg`` is on the allow-list;
- ``kid`` names a certificate of the trust anchor, and that certificate is valid at ``at``;
- the signature verifies with that certificate's key;
- the payload parses, has a supported ``format_version``, and names the anchor's instance;
- it was not generated in the future (beyond ``skew``) and has not expired.

What it does *not* check: that the document is newer than one already held (the client does),
or anything about the certificates listed inside it (relying parties check those per use).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from exchange.errors import ConfigurationExpired, ConfigurationInvalid
from exchange.trust.keys import PrivateKey, certificate_pem, fingerprint

JWS_TYPE = "exchange-globalconf+jws"
ALGORITHMS = ["ES256"]
FORMAT_VERSION = 1
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
DEFAULT_SKEW = timedelta(minutes=2)


class _Model(BaseModel):
    # Unknown fields are ignored so that an older client can read a newer document; a change
    # that older clients must not misread bumps ``format_version`` instead.
    model_config = ConfigDict(frozen=True, extra="ignore")


class Member(_Model):
    id: str
    name: str
    subsystems: list[str] = Field(default_factory=list)
    signing_certificates: list[str] = Field(default_factory=list, description="PEM")


class Gateway(_Model):
    id: str
    address: str
    tls_certificates: list[str] = Field(default_factory=list, description="PEM, live ones only")


class GlobalConfiguration(_Model):
    format_version: int
    instance: str
    version: int
    generated_at: datetime
    expires_at: datetime
    central_url: str
    ca_certificates: list[str] = Field(description="PEM")
    member_classes: list[str]
    members: list[Member]
    gateways: list[Gateway]
    revoked_serials: list[str] = Field(description="upper-case hex")
    # Filled by later roles: the service catalogue, timestamping authorities, consent services.
    services: list[dict[str, Any]] = Field(default_factory=list)
    timestamping_authorities: list[dict[str, Any]] = Field(default_factory=list)
    consent_services: list[dict[str, Any]] = Field(default_factory=list)

    def member(self, member_id: str) -> Member | None:
        return next((m for m in self.members if m.id == member_id), None)

    def gateway(self, gateway_id: str) -> Gateway | None:
        return next((g for g in self.gateways if g.id == gateway_id), None)


class TrustAnchor(_Model):
    """What a relying party must hold before it can trust any global configuration.

    Distributed out of band; its SHA-256 (:meth:`digest`) is what operators compare by phone.
    """

    format_version: int = FORMAT_VERSION
    instance: str
    configuration_url: str
    signing_certificates: list[str] = Field(min_length=1, description="PEM")

    @classmethod
    def load(cls, path: Path) -> TrustAnchor:
        try:
            anchor = cls.model_validate_json(path.read_bytes())
        except (OSError, ValidationError) as exc:
            raise ConfigurationInvalid(f"trust anchor {path} cannot be read") from exc
        anchor.certificates()  # parse now: a broken anchor should fail at start, not later
        return anchor

    def dump(self) -> bytes:
        return self.model_dump_json(indent=2).encode() + b"\n"

    def digest(self) -> str:
        return hashlib.sha256(self.dump()).hexdigest()

    def certificates(self) -> dict[str, x509.Certificate]:
        """The anchor's signing certificates keyed by fingerprint."""
        try:
            certs = [
                x509.load_pem_x509_certificate(pem.encode()) for pem in self.signing_certificates
            ]
        except ValueError as exc:
            raise ConfigurationInvalid("trust anchor holds an unreadable certificate") from exc
        return {fingerprint(cert): cert for cert in certs}


def sign(
    configuration: GlobalConfiguration, key: PrivateKey, certificate: x509.Certificate
) -> bytes:
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError("the configuration-signing key must be EC P-256")
    payload = configuration.model_dump_json().encode()
    headers = {"typ": JWS_TYPE, "kid": fingerprint(certificate)}
    token = jwt.api_jws.encode(payload, key, algorithm="ES256", headers=headers)
    return token.encode("ascii")


def verify(
    document: bytes,
    anchor: TrustAnchor,
    *,
    at: datetime,
    skew: timedelta = DEFAULT_SKEW,
    anchor_certificates: dict[str, x509.Certificate] | None = None,
) -> GlobalConfiguration:
    """Verify ``document`` against ``anchor`` at time ``at``; see the module docstring."""
    if len(document) > MAX_DOCUMENT_BYTES:
        raise ConfigurationInvalid("global configuration is larger than allowed")
    try:
        header = jwt.get_unverified_header(document)
    except jwt.PyJWTError as exc:
        raise ConfigurationInvalid("global configuration is not a signed document") from exc
    if header.get("typ") != JWS_TYPE:
        raise ConfigurationInvalid("global configuration has the wrong document type")
    if header.get("alg") not in ALGORITHMS:
        raise ConfigurationInvalid("global configuration uses a signature algorithm not allowed")
    certificates = anchor_certificates if anchor_certificates is not None else anchor.certificates()
    certificate = certificates.get(str(header.get("kid")))
    if certificate is None:
        raise ConfigurationInvalid(
            "global configuration is signed by a key the anchor does not hold"
        )
    if not certificate.not_valid_before_utc <= at <= certificate.not_valid_after_utc:
        raise ConfigurationInvalid(
            "the anchor's configuration-signing certificate is not valid now"
        )
    try:
        public_key = certificate.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise ConfigurationInvalid("the anchor's configuration-signing key is not EC")
        payload = jwt.api_jws.decode(document, public_key, algorithms=ALGORITHMS)
    except jwt.PyJWTError as exc:
        raise ConfigurationInvalid("global configuration signature does not verify") from exc
    try:
        raw = json.loads(payload)
        if not isinstance(raw, dict) or raw.get("format_version") != FORMAT_VERSION:
            raise ConfigurationInvalid("global configuration has an unsupported format version")
        configuration = GlobalConfiguration.model_validate(raw)
    except (ValueError, ValidationError) as exc:
        raise ConfigurationInvalid("global configuration payload is malformed") from exc
    if configuration.instance != anchor.instance:
        raise ConfigurationInvalid(
            f"global configuration is for instance {configuration.instance!r}, "
            f"not {anchor.instance!r}"
        )
    if configuration.generated_at > at + skew:
        raise ConfigurationInvalid("global configuration was generated in the future")
    if configuration.expires_at <= at:
        raise ConfigurationExpired(
            f"global configuration version {configuration.version} expired at "
            f"{configuration.expires_at.isoformat()}"
        )
    return configuration


def verify_archived(document: bytes, anchor: TrustAnchor) -> GlobalConfiguration:
    """Verify a configuration as of its own generation time: for auditing after it expired."""
    try:
        generated = json.loads(
            jwt.api_jws.decode_complete(document, options={"verify_signature": False})["payload"]
        )
        at = datetime.fromisoformat(generated["generated_at"])
    except (jwt.PyJWTError, ValueError, KeyError, TypeError) as exc:
        raise ConfigurationInvalid("global configuration is not a signed document") from exc
    return verify(document, anchor, at=at)


def anchor_for(
    *, instance: str, configuration_url: str, certificates: list[x509.Certificate]
) -> TrustAnchor:
    return TrustAnchor(
        instance=instance,
        configuration_url=configuration_url,
        signing_certificates=[certificate_pem(c) for c in certificates],
    )
