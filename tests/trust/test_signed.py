"""One verifier for every signed artefact: the same bad signatures, refused by each of its callers.

Each kind of signed message (gateway request and response, consent artefact, consent question,
consent answer, revocation page, audit tree head) is made here as its real signer would make
it, then spoiled one way at a time: forged, signed by an expired, unknown or revoked
certificate, or of the wrong type. Every caller must refuse each of them with its own error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from audit.heads import HEAD_TYPE
from audit.verify import Anchors, Head, head_signature_problem
from exchange.consent import artefact, messages
from exchange.errors import (
    AccessDenied,
    ConsentDenied,
    Error,
    InvalidSignature,
    ServiceUnavailable,
)
from exchange.gateway.signing import (
    REQUEST_FIELDS,
    REQUEST_TYPE,
    RESPONSE_FIELDS,
    RESPONSE_TYPE,
    RequestClaims,
    ResponseClaims,
    verify_request,
    verify_response,
)
from exchange.identifiers import MemberId
from exchange.trust.keys import certificate_pem, generate_key, serial_hex
from exchange.trust.signed import Signer, body_digest
from exchange.trust.view import TrustView
from tests.conftest import NOW
from tests.factories import Instance

PORTAL = "EE/GOV/70000001"
AUTHORITY = "EE/GOV/70000000"
CONSENT_SERVICE = "consent"
# Listed too, each with a good certificate: a party that may sign, but not this message.
OTHER_MEMBER = "EE/GOV/70000310"
OTHER_AUTHORITY = "EE/GOV/70000002"
OTHER_CONSENT_SERVICE = "other-consent"
SERVICE = "EE/GOV/70000310/population-registry/birth-certificate"


@dataclass
class Pki:
    """An instance listing, for a member and for a consent service, a good, a short-lived and a
    revoked certificate; plus a certificate the CA issued but no configuration lists."""

    view: TrustView
    anchors: Anchors
    signers: dict[str, dict[str, tuple[ec.EllipticCurvePrivateKey, x509.Certificate]]]


@pytest.fixture(scope="module")
def pki() -> Pki:
    instance = Instance(at=NOW - timedelta(days=1))
    signers: dict[str, dict[str, tuple[ec.EllipticCurvePrivateKey, x509.Certificate]]] = {}
    for party in (PORTAL, AUTHORITY):
        signers[party] = {
            "good": instance.signing(party),
            "short-lived": instance.signing(party, validity=timedelta(hours=1)),
            "revoked": instance.signing(party),
            "unlisted": instance.signing(party),
        }
    listed = {p: [signers[p][k][1] for k in ("good", "short-lived", "revoked")] for p in signers}
    revoked = [serial_hex(signers[p]["revoked"][1].serial_number) for p in signers]
    for other in (OTHER_MEMBER, OTHER_AUTHORITY):
        signers[other] = {"good": instance.signing(other)}
    configuration = instance.configuration(
        {PORTAL: listed[PORTAL], OTHER_MEMBER: [signers[OTHER_MEMBER]["good"][1]]},
        revoked=revoked,
    )
    configuration = configuration.model_copy(
        update={
            "consent_services": [
                {
                    "name": CONSENT_SERVICE,
                    "member": AUTHORITY,
                    "url": "http://127.0.0.1:1",
                    "certificate": certificate_pem(certificate),
                }
                for certificate in listed[AUTHORITY]
            ]
            + [
                {
                    "name": OTHER_CONSENT_SERVICE,
                    "member": OTHER_AUTHORITY,
                    "url": "http://127.0.0.1:2",
                    "certificate": certificate_pem(signers[OTHER_AUTHORITY]["good"][1]),
                }
            ]
        }
    )
    view = TrustView(configuration)
    anchors = Anchors(
        ca=instance.authority.certificate, signing=listed[PORTAL], revoked=frozenset(revoked)
    )
    return Pki(view=view, anchors=anchors, signers=signers)


@dataclass(frozen=True)
class Kind:
    """One kind of signed message: who signs it, its type and claims, and how it is checked."""

    party: str
    other: str | None  # another listed party that may not sign this; None: any member may
    typ: str
    claims: Callable[[datetime], dict[str, Any]]
    check: Callable[[str, Pki, datetime], object]
    refusal: type[Error]


def seconds(at: datetime) -> int:
    return int(at.timestamp())


def request_claims(at: datetime) -> RequestClaims:
    return RequestClaims(
        method="GET",
        path=f"/r1/{SERVICE}",
        query="person=EE38001085718",
        body=body_digest(b""),
        client=f"{PORTAL}/citizen-portal",
        service=SERVICE,
        message_id="m-1",
        user_id="EE38001085718",
        issue=None,
        purpose="study-grant",
        consent=None,
        content_type=None,
        accept="application/json",
        identity=None,
        iat=seconds(at),
        exp=seconds(at) + 60,
    )


def response_claims(at: datetime) -> ResponseClaims:
    return ResponseClaims(
        status=200,
        content_type="application/json",
        body=body_digest(b"{}"),
        client=f"{PORTAL}/citizen-portal",
        service=SERVICE,
        message_id="m-1",
        request_hash="h",
        iat=seconds(at),
    )


def consent_claims(at: datetime) -> dict[str, Any]:
    return artefact.Consent(
        jti="c-1",
        iss=CONSENT_SERVICE,
        sub="EE38001085718",
        consumer=f"{PORTAL}/citizen-portal",
        consumer_name="State Portal",
        service=SERVICE,
        evidence_type="birth-certificate",
        purpose=artefact.Purpose(code="study-grant", text="Study grant"),
        iat=seconds(at),
        nbf=seconds(at),
        exp=seconds(at) + 3600,
        max_uses=None,
        preview=False,
        notice="I agree",
        status_url="http://127.0.0.1:1",
    ).claims()


def head_problem(token: str, pki: Pki, at: datetime) -> None:
    signers = {Signer(generate_key(), c).kid: c for c in pki.anchors.signing}
    head = Head(chain="EE/GOV/70000001/gw1/1", size=1, root="00", signature=token, timestamp=None)
    problem = head_signature_problem(head, signers, pki.anchors)
    if problem is not None:
        raise InvalidSignature(problem)


KINDS = {
    "request": Kind(
        PORTAL,
        OTHER_MEMBER,
        REQUEST_TYPE,
        lambda at: {n: getattr(request_claims(at), n) for n in REQUEST_FIELDS},
        lambda token, pki, at: verify_request(
            token, received=request_claims(at), view=pki.view, at=at, skew=30, max_lifetime=300
        ),
        InvalidSignature,
    ),
    "response": Kind(
        PORTAL,
        OTHER_MEMBER,
        RESPONSE_TYPE,
        lambda at: {n: getattr(response_claims(at), n) for n in RESPONSE_FIELDS},
        lambda token, pki, at: verify_response(
            token,
            received=response_claims(at),
            provider=MemberId.parse(PORTAL),
            view=pki.view,
            at=at,
        ),
        InvalidSignature,
    ),
    "consent artefact": Kind(
        AUTHORITY,
        OTHER_AUTHORITY,
        artefact.JWS_TYPE,
        consent_claims,
        lambda token, pki, at: artefact.verify(token, view=pki.view, at=at),
        ConsentDenied,
    ),
    "consent artefact, as a provider remembers it": Kind(
        AUTHORITY,
        OTHER_AUTHORITY,
        artefact.JWS_TYPE,
        consent_claims,
        lambda token, pki, at: artefact.Remembered().verify(token, view=pki.view, at=at),
        ConsentDenied,
    ),
    "consent question": Kind(
        PORTAL,
        None,  # any member may ask; the consent service answers only the consented provider
        messages.QUERY_TYPE,
        lambda at: {
            "consent": "c-1",
            "action": "status",
            "message_id": "m-1",
            "service": SERVICE,
            "iat": seconds(at),
            "exp": seconds(at) + 60,
        },
        lambda token, pki, at: messages.verify_query(
            token, consent_id="c-1", action="status", view=pki.view, at=at, skew=30
        ),
        AccessDenied,
    ),
    "consent answer": Kind(
        AUTHORITY,
        OTHER_AUTHORITY,
        messages.ANSWER_TYPE,
        lambda at: {
            "consent": "c-1",
            "action": "status",
            "message_id": "m-1",
            "status": "active",
            "uses": 0,
            "max_uses": None,
            "iat": seconds(at),
        },
        lambda token, pki, at: messages.verify_answer(
            token,
            view=pki.view,
            issuer=CONSENT_SERVICE,
            consent_id="c-1",
            action="status",
            message_id="m-1",
            at=at,
            skew=30,
        ),
        ServiceUnavailable,
    ),
    "revocation page": Kind(
        AUTHORITY,
        OTHER_AUTHORITY,
        messages.PAGE_TYPE,
        lambda at: {
            "iss": CONSENT_SERVICE,
            "nonce": "n-1",
            "after": 0,
            "last": 0,
            "revoked": [],
            "complete": True,
            "iat": seconds(at),
        },
        lambda token, pki, at: messages.verify_page(
            token, view=pki.view, issuer=CONSENT_SERVICE, nonce="n-1", at=at, skew=30
        ),
        ServiceUnavailable,
    ),
    "audit head": Kind(
        PORTAL,
        OTHER_MEMBER,
        HEAD_TYPE,
        lambda at: {
            "chain": "EE/GOV/70000001/gw1/1",
            "size": 1,
            "root": "00",
            "at": at.isoformat(),
        },
        head_problem,
        InvalidSignature,
    ),
}

# How each case spoils a good message: (which certificate, sign with another key, which type)
CASES = {
    "forged": ("good", True, None),
    "expired certificate": ("short-lived", False, None),
    "wrong type": ("good", False, "exchange-other+jws"),
    "unknown kid": ("unlisted", False, None),
    "revoked certificate": ("revoked", False, None),
}


def token_for(
    kind: Kind, pki: Pki, *, certificate: str, forged: bool, typ: str | None, party: str = ""
) -> str:
    key, cert = pki.signers[party or kind.party][certificate]
    signer = Signer(generate_key() if forged else key, cert)
    return signer.sign(kind.claims(NOW), typ or kind.typ)


@pytest.mark.parametrize("kind", KINDS.values(), ids=KINDS.keys())
def test_a_good_message_is_accepted(kind: Kind, pki: Pki) -> None:
    kind.check(token_for(kind, pki, certificate="good", forged=False, typ=None), pki, NOW)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("kind", KINDS.values(), ids=KINDS.keys())
def test_every_caller_refuses_a_bad_signature(
    kind: Kind, case: tuple[str, bool, str | None], pki: Pki
) -> None:
    certificate, forged, typ = case
    token = token_for(kind, pki, certificate=certificate, forged=forged, typ=typ)
    with pytest.raises(kind.refusal):
        kind.check(token, pki, NOW)


@pytest.mark.parametrize("kind", KINDS.values(), ids=KINDS.keys())
def test_every_caller_refuses_what_is_not_a_jws(kind: Kind, pki: Pki) -> None:
    with pytest.raises(kind.refusal):
        kind.check("not.a.jws", pki, NOW)


@pytest.mark.parametrize(
    "kind", [k for k in KINDS.values() if k.other], ids=[n for n, k in KINDS.items() if k.other]
)
def test_every_caller_refuses_another_listed_partys_signature(kind: Kind, pki: Pki) -> None:
    """Genuine, listed, valid, unrevoked: and still not the party that must sign this."""
    assert kind.other is not None
    token = token_for(kind, pki, certificate="good", forged=False, typ=None, party=kind.other)
    with pytest.raises(kind.refusal):
        kind.check(token, pki, NOW)


def test_a_remembered_artefact_is_checked_again_at_each_use(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A provider checks an artefact's signature once per trust view; its signer's certificate
    is checked at every use, and a view that revokes it forgets the artefact."""
    kind = KINDS["consent artefact"]
    issued = NOW - timedelta(days=1) + timedelta(minutes=30)  # the short-lived one is valid
    remembered = artefact.Remembered()
    token = token_for(kind, pki, certificate="short-lived", forged=False, typ=None)
    assert remembered.verify(token, view=pki.view, at=issued).jti == "c-1"
    with monkeypatch.context() as patched:  # a second use does not verify the signature again
        patched.setattr(artefact, "verify_signed", None)
        assert remembered.verify(token, view=pki.view, at=issued).jti == "c-1"
        with pytest.raises(ConsentDenied, match="not valid at this time"):
            remembered.verify(token, view=pki.view, at=NOW)  # the certificate has expired
    good = token_for(kind, pki, certificate="good", forged=False, typ=None)
    remembered.verify(good, view=pki.view, at=NOW)
    serial = serial_hex(pki.signers[AUTHORITY]["good"][1].serial_number)
    revoking = pki.view.configuration.model_copy(
        update={"revoked_serials": [*pki.view.configuration.revoked_serials, serial]}
    )
    with pytest.raises(ConsentDenied, match="revoked"):
        remembered.verify(good, view=TrustView(revoking), at=NOW)
