"""OCSP answers as gateways hold them: verified, bounded, and never undone by an older one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from exchange import keyfolder
from exchange.central.ocsp import Responder, Responders, load_responder, respond
from exchange.errors import CertificateStatusUnknown, InvalidSignature
from exchange.trust.keys import certificate_pem, generate_key
from exchange.trust.ocsp import CertificateStatus, ocsp_request
from tests.conftest import Clock
from tests.factories import Instance

BOUND = timedelta(minutes=10)


@dataclass
class Row:  # what the authority's registry answers about a certificate it issued
    pem: str
    revoked_at: datetime | None = None
    revocation_reason: str | None = None


def answer(
    instance: Instance,
    certificate: x509.Certificate,
    row: Row,
    at: datetime,
    responder: Responder | None = None,
) -> bytes:
    return respond(
        ocsp_request(certificate, instance.authority.certificate),
        authority=instance.authority,
        lookup=lambda _serial: row,
        at=at,
        validity=BOUND,
        responder=responder,
    )


def test_a_replayed_older_good_answer_does_not_undo_a_revocation(clock: Clock) -> None:
    instance = Instance(clock())
    _, certificate = instance.signing("EE/GOV/70000310")
    good_then = answer(instance, certificate, Row(certificate_pem(certificate)), clock())
    clock.advance(timedelta(minutes=1))
    revoked = Row(certificate_pem(certificate), clock(), "keyCompromise")
    revoked_now = answer(instance, certificate, revoked, clock())
    replies = [revoked_now, good_then]  # the second fetch is a replay of an older answer
    status = CertificateStatus(post=lambda _url, _body: replies.pop(0), clock=clock, max_age=BOUND)
    ca = instance.authority.certificate
    for _ in range(2):
        status.prefetch(url="http://ca.invalid/ocsp", ca=ca, certificates=[certificate])
    with pytest.raises(InvalidSignature, match="revoked"):
        status.require(certificate, clock())


def test_a_newer_answer_replaces_an_older_one_and_answers_expire(clock: Clock) -> None:
    instance = Instance(clock())
    _, certificate = instance.signing("EE/GOV/70000310")
    row = Row(certificate_pem(certificate))
    first = answer(instance, certificate, row, clock())
    clock.advance(timedelta(minutes=5))
    second = answer(instance, certificate, row, clock())
    replies = [second, first]
    status = CertificateStatus(post=lambda _url, _body: replies.pop(0), clock=clock, max_age=BOUND)
    ca = instance.authority.certificate
    for _ in range(2):
        status.prefetch(url="http://ca.invalid/ocsp", ca=ca, certificates=[certificate])
    clock.advance(timedelta(minutes=9))  # past the first answer's bound, within the second's
    status.require(certificate, clock())
    clock.advance(timedelta(minutes=2))
    with pytest.raises(CertificateStatusUnknown):
        status.require(certificate, clock())


def status_from(clock: Clock, der: bytes) -> CertificateStatus:
    return CertificateStatus(post=lambda _url, _body: der, clock=clock, max_age=BOUND)


def test_answers_of_a_delegated_responder_issued_by_the_ca_with_the_purpose_are_taken(
    clock: Clock, tmp_path: Path
) -> None:
    instance = Instance(clock())
    _, certificate = instance.signing("EE/GOV/70000310")
    ca = instance.authority.certificate
    delegated = load_responder(
        tmp_path, instance.authority, instance="EE", at=clock(), validity=timedelta(days=30)
    )
    good = answer(instance, certificate, Row(certificate_pem(certificate)), clock(), delegated)
    status = status_from(clock, good)
    assert status.prefetch(url="http://ca.invalid/ocsp", ca=ca, certificates=[certificate]) == 0
    status.require(certificate, clock())
    revoked = Row(certificate_pem(certificate), clock(), "keyCompromise")
    status = status_from(clock, answer(instance, certificate, revoked, clock(), delegated))
    status.prefetch(url="http://ca.invalid/ocsp", ca=ca, certificates=[certificate])
    with pytest.raises(InvalidSignature, match="revoked"):
        status.require(certificate, clock())
    # Past the responder certificate's validity its answers are not taken.
    later = clock() + timedelta(days=31)
    stale = answer(instance, certificate, Row(certificate_pem(certificate)), later, delegated)
    clock.advance(timedelta(days=31))
    status = status_from(clock, stale)
    assert status.prefetch(url="http://ca.invalid/ocsp", ca=ca, certificates=[certificate]) == 1


def test_answers_signed_by_a_certificate_without_the_purpose_or_from_another_ca_are_refused(
    clock: Clock, tmp_path: Path
) -> None:
    instance = Instance(clock())
    _, certificate = instance.signing("EE/GOV/70000310")
    ca = instance.authority.certificate
    row = Row(certificate_pem(certificate))
    # A member's signing key, issued by the CA but not for OCSP signing.
    member_key, member_certificate = instance.signing("EE/GOV/70000001")
    impostors = [Responder(member_key, member_certificate)]
    # A responder with the purpose, but certified by another CA.
    other = Instance(clock(), name="XX")
    impostors.append(
        load_responder(
            tmp_path, other.authority, instance="XX", at=clock(), validity=timedelta(days=30)
        )
    )
    for impostor in impostors:
        status = status_from(clock, answer(instance, certificate, row, clock(), impostor))
        assert status.prefetch(url="http://ca.invalid/ocsp", ca=ca, certificates=[certificate]) == 1
        with pytest.raises(CertificateStatusUnknown):
            status.require(certificate, clock())


def test_the_delegated_responder_is_renewed_before_it_ends(clock: Clock, tmp_path: Path) -> None:
    instance = Instance(clock())
    responders = Responders(
        tmp_path, instance.authority, instance="EE", validity=timedelta(days=30), at=clock()
    )
    first = responders.current(clock())
    assert responders.current(clock() + timedelta(days=28)) == first
    renewed = responders.current(clock() + timedelta(days=29, hours=1))
    assert renewed.certificate.serial_number != first.certificate.serial_number
    assert renewed.certificate.not_valid_after_utc > first.certificate.not_valid_after_utc
    # Kept in the folder: a restart takes the renewed one.
    again = load_responder(
        tmp_path, instance.authority, instance="EE", at=clock(), validity=timedelta(days=30)
    )
    assert again.certificate == renewed.certificate


def test_a_responder_pair_left_half_replaced_is_made_anew(clock: Clock, tmp_path: Path) -> None:
    """A stop between the two renames leaves a new key beside the old certificate: the next
    load does not sign with a key its certificate does not certify."""
    instance = Instance(clock())
    first = load_responder(
        tmp_path, instance.authority, instance="EE", at=clock(), validity=timedelta(days=30)
    )
    keyfolder.write_key(tmp_path / "ocsp.key.new", generate_key())
    (tmp_path / "ocsp.key.new").replace(tmp_path / "ocsp.key")
    again = load_responder(
        tmp_path, instance.authority, instance="EE", at=clock(), validity=timedelta(days=30)
    )
    assert again.certificate.serial_number != first.certificate.serial_number
    assert again.certificate.public_key() == again.key.public_key()
