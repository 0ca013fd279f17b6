"""Request and response signatures, without any server: what binds, what is refused."""

from __future__ import annotations

from datetime import timedelta

import pytest

from exchange.errors import InvalidSignature, StaleMessage
from exchange.gateway.signing import (
    RequestClaims,
    ResponseClaims,
    request_hash,
    sign_request,
    sign_response,
    verify_request,
    verify_response,
)
from exchange.identifiers import MemberId
from exchange.trust.keys import serial_hex
from exchange.trust.signed import Signer, body_digest
from exchange.trust.view import TrustView
from tests.conftest import NOW
from tests.factories import Instance

PORTAL = "EE/GOV/70000001"
REGISTER = "EE/GOV/70000310"
AT = NOW


@pytest.fixture
def instance() -> Instance:
    return Instance(at=AT - timedelta(days=1))


def request(**changes: object) -> RequestClaims:
    base = RequestClaims(
        method="GET",
        path="/r1/EE/GOV/70000310/population-registry/birth-certificate",
        query="person=EE38001085718",
        body=body_digest(b""),
        client=f"{PORTAL}/citizen-portal",
        service="EE/GOV/70000310/population-registry/birth-certificate",
        message_id="m-1",
        user_id="EE38001085718",
        issue=None,
        purpose="study-grant",
        consent="consent-1",
        content_type=None,
        accept="application/json",
        identity=None,
        iat=int(AT.timestamp()),
        exp=int(AT.timestamp()) + 60,
    )
    return base._replace(**changes)  # type: ignore[arg-type]


def test_request_round_trip(instance: Instance) -> None:
    key, cert = instance.signing(PORTAL)
    view = TrustView(instance.configuration({PORTAL: [cert]}))
    token = sign_request(Signer(key, cert), request())
    assert (
        verify_request(
            token, received=request(iat=0, exp=0), view=view, at=AT, skew=30, max_lifetime=60
        )
        == request()
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("method", "POST"),
        ("path", "/r1/EE/GOV/70000310/population-registry/residence-record"),
        ("query", "person=EE39107156021"),
        ("body", body_digest(b"x")),
        ("client", f"{PORTAL}/other"),
        ("service", "EE/GOV/70000310/population-registry/diploma"),
        ("message_id", "m-2"),
        ("user_id", "EE39107156021"),
        ("issue", "case-9"),
        ("purpose", "marketing"),
        ("consent", "consent-2"),
        ("content_type", "application/xml"),
        ("accept", "application/xml"),
    ],
)
def test_every_bound_field_is_checked(instance: Instance, field: str, value: str) -> None:
    key, cert = instance.signing(PORTAL)
    view = TrustView(instance.configuration({PORTAL: [cert]}))
    token = sign_request(Signer(key, cert), request())
    with pytest.raises(InvalidSignature, match=f"{field.replace('_', ' ')} differs"):
        verify_request(
            token, received=request(**{field: value}), view=view, at=AT, skew=30, max_lifetime=60
        )


def test_signer_must_own_its_certificate(instance: Instance) -> None:
    key, cert = instance.signing(REGISTER)
    view = TrustView(instance.configuration({REGISTER: [cert], PORTAL: []}))
    token = sign_request(Signer(key, cert), request())
    with pytest.raises(InvalidSignature, match=f"does not belong to member {PORTAL}"):
        verify_request(token, received=request(), view=view, at=AT, skew=30, max_lifetime=60)


def test_certificate_naming_another_member_is_not_admitted(instance: Instance) -> None:
    # Listed under the portal, but the certificate itself names the register: not trusted at all.
    key, cert = instance.signing(REGISTER)
    view = TrustView(instance.configuration({PORTAL: [cert]}))
    token = sign_request(Signer(key, cert), request())
    with pytest.raises(InvalidSignature, match="does not list"):
        verify_request(token, received=request(), view=view, at=AT, skew=30, max_lifetime=60)


def test_certificate_from_another_ca_is_not_admitted(instance: Instance) -> None:
    key, cert = Instance(at=AT - timedelta(days=1)).signing(PORTAL)
    view = TrustView(instance.configuration({PORTAL: [cert]}))
    token = sign_request(Signer(key, cert), request())
    with pytest.raises(InvalidSignature, match="does not list"):
        verify_request(token, received=request(), view=view, at=AT, skew=30, max_lifetime=60)


def test_revoked_and_expired_certificates(instance: Instance) -> None:
    key, cert = instance.signing(PORTAL)
    revoked = TrustView(
        instance.configuration({PORTAL: [cert]}, revoked=[serial_hex(cert.serial_number)])
    )
    token = sign_request(Signer(key, cert), request())
    with pytest.raises(InvalidSignature, match="revoked"):
        verify_request(token, received=request(), view=revoked, at=AT, skew=30, max_lifetime=60)
    short_key, short = instance.signing(PORTAL, validity=timedelta(hours=1))
    view = TrustView(instance.configuration({PORTAL: [short]}))
    token = sign_request(Signer(short_key, short), request())
    with pytest.raises(InvalidSignature, match="not valid at this time"):
        verify_request(token, received=request(), view=view, at=AT, skew=30, max_lifetime=60)


@pytest.mark.parametrize(("iat_shift", "exp_shift"), [(-120, -60), (120, 180), (-10, -45)])
def test_time_window(instance: Instance, iat_shift: int, exp_shift: int) -> None:
    key, cert = instance.signing(PORTAL)
    view = TrustView(instance.configuration({PORTAL: [cert]}))
    now = int(AT.timestamp())
    signed = request(iat=now + iat_shift, exp=now + exp_shift)
    token = sign_request(Signer(key, cert), signed)
    with pytest.raises(StaleMessage):
        verify_request(token, received=request(), view=view, at=AT, skew=30, max_lifetime=60)


def test_response_is_bound_to_its_request(instance: Instance) -> None:
    key, cert = instance.signing(REGISTER)
    view = TrustView(instance.configuration({REGISTER: [cert]}))
    claims = _response()
    token = sign_response(Signer(key, cert), claims)
    provider = MemberId.parse(REGISTER)
    assert verify_response(token, received=claims, provider=provider, view=view, at=AT) == claims
    for changed in (
        claims._replace(request_hash=request_hash("another request")),
        claims._replace(status=500),
        claims._replace(body=body_digest(b"[]")),
        claims._replace(content_type="application/xml"),
    ):
        with pytest.raises(InvalidSignature, match="response does not match"):
            verify_response(token, received=changed, provider=provider, view=view, at=AT)
    with pytest.raises(InvalidSignature):
        verify_response(token, received=claims, provider=MemberId.parse(PORTAL), view=view, at=AT)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"iat": 1.0e9}, "iat is not an integer"),
        ({"iat": float("nan")}, "does not verify"),  # NaN is not JSON: refused when parsed
        ({"exp": True}, "exp is not an integer"),
        ({"method": 7}, "method is not text"),
    ],
)
def test_claim_types_are_checked_before_any_comparison(
    instance: Instance, changes: dict[str, object], message: str
) -> None:
    import jwt

    key, cert = instance.signing(PORTAL)
    view = TrustView(instance.configuration({PORTAL: [cert]}))
    signer = Signer(key, cert)
    claims = {**request()._asdict(), **changes}
    token = jwt.encode(
        claims, key, algorithm="ES256", headers={"typ": "exchange-request+jws", "kid": signer.kid}
    )
    with pytest.raises(InvalidSignature, match=message):
        verify_request(token, received=request(), view=view, at=AT, skew=30, max_lifetime=60)


def test_signature_lifetime_is_bounded(instance: Instance) -> None:
    key, cert = instance.signing(PORTAL)
    view = TrustView(instance.configuration({PORTAL: [cert]}))
    now = int(AT.timestamp())
    token = sign_request(Signer(key, cert), request(iat=now, exp=now + 86400 * 365))
    with pytest.raises(StaleMessage, match="at most 60 s"):
        verify_request(token, received=request(), view=view, at=AT, skew=30, max_lifetime=60)


def _response(**changes: object) -> ResponseClaims:
    return ResponseClaims(
        status=200,
        content_type="application/json",
        body=body_digest(b"{}"),
        client=f"{PORTAL}/citizen-portal",
        service="EE/GOV/70000310/population-registry/birth-certificate",
        message_id="m-1",
        request_hash=request_hash("the request signature"),
        iat=int(AT.timestamp()),
    )._replace(**changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("claimed", "received", "message"),
    [
        # Each equals what arrived (200.0 == 200, true == 1), and is still not an integer.
        (200.0, 200, "status is not an integer"),
        (True, 1, "status is not an integer"),
    ],
)
def test_a_response_status_is_an_integer_not_merely_equal(
    instance: Instance, claimed: object, received: object, message: str
) -> None:
    import jwt

    key, cert = instance.signing(REGISTER)
    view = TrustView(instance.configuration({REGISTER: [cert]}))
    claims = {**_response()._asdict(), "status": claimed}
    del claims["parts"]
    token = jwt.encode(
        claims,
        key,
        algorithm="ES256",
        headers={"typ": "exchange-response+jws", "kid": Signer(key, cert).kid},
    )
    with pytest.raises(InvalidSignature, match=message):
        verify_response(
            token,
            received=_response(status=received),
            provider=MemberId.parse(REGISTER),
            view=view,
            at=AT,
        )


@pytest.mark.parametrize(
    "changes",
    [{"extra": "x"}, {"message_id": None}, {"idempotency_key": "k", "extra": None}],
    ids=["unexpected", "missing", "both"],
)
def test_exactly_the_request_claims(instance: Instance, changes: dict[str, object]) -> None:
    import jwt

    key, cert = instance.signing(PORTAL)
    view = TrustView(instance.configuration({PORTAL: [cert]}))
    claims = {**request()._asdict(), **changes}
    claims = {name: value for name, value in claims.items() if value is not None}
    token = jwt.encode(
        claims,
        key,
        algorithm="ES256",
        headers={"typ": "exchange-request+jws", "kid": Signer(key, cert).kid},
    )
    with pytest.raises(InvalidSignature, match="missing or unexpected claims"):
        verify_request(token, received=request(), view=view, at=AT, skew=30, max_lifetime=60)


def test_a_streamed_response_binds_all_but_its_body(instance: Instance) -> None:
    key, cert = instance.signing(REGISTER)
    view = TrustView(instance.configuration({REGISTER: [cert]}))
    token = sign_response(Signer(key, cert), _response(parts="0-10:abc"))
    provider = MemberId.parse(REGISTER)
    unread = _response(parts="0-10:abc", body=body_digest(b""))
    signed = verify_response(
        token, received=unread, provider=provider, view=view, at=AT, streamed=True
    )
    assert signed.body == body_digest(b"{}")  # returned for the reader to check
    for changed in (unread._replace(parts="0-10:abd"), unread._replace(status=201)):
        with pytest.raises(InvalidSignature, match="response does not match"):
            verify_response(
                token, received=changed, provider=provider, view=view, at=AT, streamed=True
            )
    with pytest.raises(InvalidSignature, match="body differs"):
        verify_response(token, received=unread, provider=provider, view=view, at=AT)


def test_validity_and_revocation_are_those_of_each_call(instance: Instance) -> None:
    """What a trust view reads of a certificate once (serial, validity) is compared with the
    time and the revocation list of every call, never of an earlier one."""
    key, short = instance.signing(PORTAL, validity=timedelta(days=2))
    listed = instance.configuration({PORTAL: [short]})
    view = TrustView(listed)
    revoked = TrustView(
        instance.configuration({PORTAL: [short]}, revoked=[serial_hex(short.serial_number)])
    )
    token = sign_request(Signer(key, short), request())
    later = AT + timedelta(days=2)
    for _ in range(2):
        assert (
            verify_request(token, received=request(), view=view, at=AT, skew=30, max_lifetime=60)
            == request()
        )
        with pytest.raises(InvalidSignature, match="revoked"):
            verify_request(token, received=request(), view=revoked, at=AT, skew=30, max_lifetime=60)
        with pytest.raises(InvalidSignature, match="not valid at this time"):
            verify_request(token, received=request(), view=view, at=later, skew=30, max_lifetime=60)
