"""The instance certificate authority: a root, the certificates it issues, and its CRL.

Pure functions over keys and times; persistence lives with the central authority. Every
validity computation takes ``at`` so that tests choose the clock.

Profiles (key usages the relying parties check):

- ``SIGNING``: a member's message-signing key; digitalSignature + nonRepudiation, and the
  documentSigning key purpose (RFC 9336) so that TLS stacks refuse it as a TLS certificate.
- ``TLS``: a gateway's TLS key; digitalSignature (+ keyEncipherment for RSA), serverAuth and
  clientAuth, subjectAltName from the gateway's address.
- ``CONFIGURATION_SIGNING``: the key that signs the global configuration.
- ``TIMESTAMPING``: a timestamping authority; critical extendedKeyUsage timeStamping (RFC 3161).
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exchange.errors import InvalidCertificateRequest
from exchange.trust.keys import PrivateKey

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
ALLOWED_CURVES = (ec.SECP256R1, ec.SECP384R1)
MIN_RSA_BITS = 2048
MAX_CSR_BYTES = 16 * 1024
DOCUMENT_SIGNING = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")  # id-kp-documentSigning, RFC 9336


class Profile(enum.Enum):
    SIGNING = "signing"
    TLS = "tls"
    CONFIGURATION_SIGNING = "configuration-signing"
    TIMESTAMPING = "timestamping"
    OCSP_SIGNING = "ocsp-signing"


@dataclass(frozen=True, slots=True)
class Revocation:
    serial: int
    revoked_at: datetime
    reason: x509.ReasonFlags = x509.ReasonFlags.unspecified


def _signature_hash(key: PrivateKey) -> hashes.SHA256 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def create_root(
    key: PrivateKey, *, instance: str, at: datetime, validity: timedelta
) -> x509.Certificate:
    """A self-signed root CA certificate for ``instance``; it may only sign end entities."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"exchange instance {instance}"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{instance} Exchange Root CA"),
        ]
    )
    public_key = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(at - timedelta(minutes=5))
        .not_valid_after(at + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    return builder.sign(key, _signature_hash(key))


def public_key_from_csr(pem: str | bytes) -> PublicKey:
    """Check a CSR (well-formed, self-signature valid, acceptable key) and return its key.

    The subject and any requested extensions are *not* used: the authority decides them.
    """
    data = pem.encode() if isinstance(pem, str) else pem
    if len(data) > MAX_CSR_BYTES:
        raise InvalidCertificateRequest(f"CSR is larger than {MAX_CSR_BYTES} bytes")
    try:
        csr = x509.load_pem_x509_csr(data)
    except ValueError as exc:
        raise InvalidCertificateRequest("CSR is not a PEM-encoded PKCS#10 request") from exc
    try:
        valid = csr.is_signature_valid
        key = csr.public_key()
    except (UnsupportedAlgorithm, ValueError) as exc:
        raise InvalidCertificateRequest("CSR uses an unsupported algorithm") from exc
    if not valid:
        raise InvalidCertificateRequest("CSR signature does not verify")
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ALLOWED_CURVES):
            raise InvalidCertificateRequest(
                f"EC curve {key.curve.name} is not allowed; use P-256 or P-384"
            )
        return key
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise InvalidCertificateRequest(
                f"RSA key of {key.key_size} bits is too short; at least {MIN_RSA_BITS} required"
            )
        return key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    raise InvalidCertificateRequest(f"key type {type(key).__name__} is not allowed")


def _key_usage(
    *,
    digital_signature: bool = False,
    content_commitment: bool = False,
    key_encipherment: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=content_commitment,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _subject_alt_names(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


@dataclass(frozen=True)
class CertificateAuthority:
    """The root key and certificate of one instance."""

    key: PrivateKey
    certificate: x509.Certificate

    def issue(
        self,
        *,
        public_key: PublicKey,
        subject: x509.Name,
        profile: Profile,
        at: datetime,
        validity: timedelta,
        hosts: Sequence[str] = (),
        crl_url: str | None = None,
    ) -> x509.Certificate:
        ca_public = self.certificate.public_key()
        if not isinstance(ca_public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise TypeError("the CA key must be EC or RSA")
        not_after = min(at + validity, self.certificate.not_valid_after_utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(at - timedelta(minutes=5))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False
            )
        )
        for extension, critical in _profile_extensions(profile, public_key, hosts):
            builder = builder.add_extension(extension, critical=critical)
        if crl_url is not None:
            point = x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(crl_url)],
                relative_name=None,
                reasons=None,
                crl_issuer=None,
            )
            builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
        return builder.sign(self.key, _signature_hash(self.key))

    def crl(
        self, revocations: Iterable[Revocation], *, at: datetime, validity: timedelta, number: int
    ) -> x509.CertificateRevocationList:
        ca_public = self.certificate.public_key()
        if not isinstance(ca_public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise TypeError("the CA key must be EC or RSA")
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(at)
            .next_update(at + validity)
            .add_extension(x509.CRLNumber(number), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False
            )
        )
        for revocation in revocations:
            entry = (
                x509.RevokedCertificateBuilder()
                .serial_number(revocation.serial)
                .revocation_date(revocation.revoked_at)
                .add_extension(x509.CRLReason(revocation.reason), critical=False)
                .build()
            )
            builder = builder.add_revoked_certificate(entry)
        return builder.sign(self.key, _signature_hash(self.key))


def _profile_extensions(
    profile: Profile, public_key: PublicKey, hosts: Sequence[str]
) -> list[tuple[x509.ExtensionType, bool]]:
    if profile is Profile.SIGNING or profile is Profile.CONFIGURATION_SIGNING:
        usage = _key_usage(digital_signature=True, content_commitment=True)
        return [(usage, True), (x509.ExtendedKeyUsage([DOCUMENT_SIGNING]), False)]
    if profile is Profile.TLS:
        if not hosts:
            raise InvalidCertificateRequest("a TLS certificate needs at least one host name")
        usage = _key_usage(
            digital_signature=True, key_encipherment=isinstance(public_key, rsa.RSAPublicKey)
        )
        eku = x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        )
        return [(usage, True), (eku, False), (_subject_alt_names(hosts), False)]
    if profile is Profile.OCSP_SIGNING:
        # RFC 6960 4.2.2.2: a delegated responder is named by id-kp-OCSPSigning; with
        # id-pkix-ocsp-nocheck its own status is not asked (it lives briefly instead).
        eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING])
        return [
            (_key_usage(digital_signature=True), True),
            (eku, False),
            (x509.OCSPNoCheck(), False),
        ]
    # RFC 3161 section 2.3: the timeStamping key purpose must be the only one, and critical.
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING])
    return [(_key_usage(digital_signature=True, content_commitment=True), True), (eku, True)]
