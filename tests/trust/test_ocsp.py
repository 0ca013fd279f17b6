"""OCSP answers as gateways hold them: verified, bounded, and never undone by an older one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from cryptography import x509

from exchange.central.ocsp import respond
from exchange.errors import CertificateStatusUnknown, InvalidSignature
from exchange.trust.keys import certificate_pem
from exchange.trust.ocsp import CertificateStatus, ocsp_request
from tests.conftest import Clock
from tests.factories import Instance

BOUND = timedelta(minutes=10)


@dataclass
class Row:  # what the authority's registry answers about a certificate it issued
    pem: str
    revoked_at: datetime | None = None
    revocation_reason: str | None = None


def answer(instance: Instance, certificate: x509.Certificate, row: Row, at: datetime) -> bytes:
    return respond(
        ocsp_request(certificate, instance.authority.certificate),
        authority=instance.authority,
        lookup=lambda _serial: row,
        at=at,
        validity=BOUND,
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
