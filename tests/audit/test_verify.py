"""Checks of signed tree heads that need no audit log (audit.verify)."""

from __future__ import annotations

from datetime import timedelta

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from audit.heads import HEAD_TYPE
from audit.verify import Anchors, Head, head_signature_problem
from exchange.trust import ca
from tests.conftest import NOW
from tests.factories import Instance


def test_a_head_signed_with_a_key_that_cannot_sign_es256_is_a_problem() -> None:
    instance = Instance(at=NOW)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    certificate = instance.authority.issue(
        public_key=key.public_key(),
        subject=x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, "EE/GOV/70000310")]),
        profile=ca.Profile.SIGNING,
        at=NOW,
        validity=timedelta(days=1),
    )
    signature = jwt.encode(
        {"chain": "c", "size": 1, "root": "00"},
        key,
        algorithm="RS256",
        headers={"typ": HEAD_TYPE, "kid": "k"},
    )
    head = Head(chain="c", size=1, root="00", signature=signature, timestamp=None)
    anchors = Anchors(ca=instance.authority.certificate, signing=[certificate])
    problem = head_signature_problem(head, {"k": certificate}, anchors)
    assert problem is not None
    assert problem.startswith("tree head at size 1 is refused")
    assert "ES256" in problem
