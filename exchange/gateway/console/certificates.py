"""The gateway's certificates: what each is for, whether it is good now, and when it ends.

Keys are generated and certificates enrolled on the same page
(:mod:`~exchange.gateway.console.enrolling`) or with ``exchange gateway init`` and ``enrol``. A
certificate is *expiring* within :data:`WARN_AHEAD` of its end, so staff have a
month to enrol a new one; *revoked* when the global configuration lists its serial; and
*not listed* when the configuration no longer names it for this member or gateway (peers would
refuse it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509

from exchange.trust.globalconf import GlobalConfiguration
from exchange.trust.keys import fingerprint, serial_hex
from exchange.web.languages import N_

WARN_AHEAD = timedelta(days=30)
# What pages call each purpose and status.
WORDS = {
    "signing": N_("message signing"),
    "tls": N_("TLS between gateways"),
    "ca": N_("instance CA"),
    "valid": N_("valid"),
    "expiring": N_("expiring"),
    "expired": N_("expired"),
    "not-yet-valid": N_("not yet valid"),
    "revoked": N_("revoked"),
    "not-listed": N_("not in the global configuration"),
}

PURPOSES = (("signing", WORDS["signing"]), ("tls", WORDS["tls"]))  # the keys this gateway holds


@dataclass(frozen=True, slots=True)
class Shown:
    purpose: str  # signing | tls | ca
    file: str
    subject: str
    issuer: str
    serial: str
    fingerprint: str
    not_before: datetime
    not_after: datetime
    status: str  # valid | expiring | expired | not-yet-valid | revoked | not-listed
    days_left: int

    @property
    def warning(self) -> bool:
        return self.status != "valid"

    @property
    def purpose_words(self) -> str:
        return WORDS[self.purpose]

    @property
    def status_words(self) -> str:
        return WORDS[self.status]


def _fingerprint(pem: str) -> str:
    return fingerprint(x509.load_pem_x509_certificate(pem.encode()))


def _status(certificate: x509.Certificate, *, at: datetime, revoked: set[str], listed: bool) -> str:
    if serial_hex(certificate.serial_number) in revoked:
        return "revoked"
    if at < certificate.not_valid_before_utc:
        return "not-yet-valid"
    if at >= certificate.not_valid_after_utc:
        return "expired"
    if not listed:
        return "not-listed"
    if certificate.not_valid_after_utc - at <= WARN_AHEAD:
        return "expiring"
    return "valid"


def shown(
    data_dir: Path, *, gateway: str, member: str, configuration: GlobalConfiguration, at: datetime
) -> list[Shown]:
    """The member's signing certificate, this gateway's TLS certificate and the instance CA."""
    revoked = set(configuration.revoked_serials)
    listed_member = configuration.member(member)
    listed_gateway = configuration.gateway(gateway)
    entries: list[tuple[str, str, x509.Certificate, bool]] = []
    for purpose, name in (("signing", "signing.pem"), ("tls", "tls.pem")):
        path = data_dir / name
        if not path.exists():
            continue
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
        if purpose == "signing":
            pems = listed_member.signing_certificates if listed_member else []
        else:
            pems = listed_gateway.tls_certificates if listed_gateway else []
        listed = fingerprint(certificate) in {_fingerprint(p) for p in pems}
        entries.append((purpose, name, certificate, listed))
    for pem in configuration.ca_certificates:
        entries.append(("ca", "globalconf", x509.load_pem_x509_certificate(pem.encode()), True))
    return [
        Shown(
            purpose=purpose,
            file=name,
            subject=certificate.subject.rfc4514_string(),
            issuer=certificate.issuer.rfc4514_string(),
            serial=serial_hex(certificate.serial_number),
            fingerprint=fingerprint(certificate),
            not_before=certificate.not_valid_before_utc,
            not_after=certificate.not_valid_after_utc,
            status=_status(certificate, at=at, revoked=revoked, listed=listed),
            days_left=(certificate.not_valid_after_utc - at).days,
        )
        for purpose, name, certificate, listed in entries
    ]
