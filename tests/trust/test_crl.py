"""The instance CRL as relying parties take it: verified against the CA, refused when stale."""

from __future__ import annotations

import ssl
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from exchange.errors import CertificateStatusUnknown
from exchange.trust.ca import Revocation
from exchange.trust.crl import RevocationList, verify_crl
from tests.conftest import Clock
from tests.factories import Instance


def crl_der(instance: Instance, clock: Clock, *, number: int = 1, revoked: int = 0) -> bytes:
    revocations = [Revocation(serial=revoked, revoked_at=clock())] if revoked else []
    crl = instance.authority.crl(
        revocations, at=clock(), validity=timedelta(hours=1), number=number
    )
    return crl.public_bytes(serialization.Encoding.DER)


def test_a_current_crl_of_the_instance_ca_is_accepted(clock: Clock) -> None:
    instance = Instance(clock())
    crl = verify_crl(crl_der(instance, clock), ca=instance.authority.certificate, at=clock())
    assert len(crl) == 0


def test_a_crl_of_another_ca_is_refused(clock: Clock) -> None:
    mine, other = Instance(clock()), Instance(clock())
    with pytest.raises(CertificateStatusUnknown, match=r"does not verify|another authority"):
        verify_crl(crl_der(other, clock), ca=mine.authority.certificate, at=clock())


def test_a_crl_past_its_next_update_is_refused(clock: Clock) -> None:
    instance = Instance(clock())
    der = crl_der(instance, clock)
    clock.advance(timedelta(hours=1, seconds=1))
    with pytest.raises(CertificateStatusUnknown, match="stale"):
        verify_crl(der, ca=instance.authority.certificate, at=clock())


def test_garbage_is_refused(clock: Clock) -> None:
    with pytest.raises(CertificateStatusUnknown, match="cannot be read"):
        verify_crl(b"not a crl", ca=Instance(clock()).authority.certificate, at=clock())


def test_a_newer_crl_replaces_the_held_one_and_an_older_does_not(
    clock: Clock, tmp_path: Path
) -> None:
    instance = Instance(clock())
    served = {"der": crl_der(instance, clock, number=2, revoked=7)}
    crls = RevocationList(path=tmp_path / "crl.pem", fetch=lambda _: served["der"], clock=clock)
    context = crls.protect(ssl.create_default_context())
    assert context.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF
    crls.refresh(url="http://authority/crl", ca=instance.authority.certificate)
    assert crls.crl is not None
    assert len(crls.crl) == 1
    served["der"] = crl_der(instance, clock, number=1)
    crls.refresh(url="http://authority/crl", ca=instance.authority.certificate)
    assert len(crls.crl) == 1
    # Kept on disk: a restart without the authority starts from it while it is current.
    again = RevocationList(path=tmp_path / "crl.pem", fetch=lambda _: b"", clock=clock)
    assert again.load_cached(instance.authority.certificate)
    clock.advance(timedelta(hours=2))
    assert not RevocationList(
        path=tmp_path / "crl.pem", fetch=lambda _: b"", clock=clock
    ).load_cached(instance.authority.certificate)


def test_an_unreachable_authority_is_an_unknown_status(clock: Clock, tmp_path: Path) -> None:
    def down(_: str) -> bytes:
        raise OSError("refused")

    crls = RevocationList(path=tmp_path / "crl.pem", fetch=down, clock=clock)
    with pytest.raises(CertificateStatusUnknown, match="cannot be fetched"):
        crls.refresh(url="http://authority/crl", ca=Instance(clock()).authority.certificate)
