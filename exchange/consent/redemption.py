"""What a provider gateway asks the consent service, and what it answers: both signed.

A question is a compact JWS (``typ`` ``exchange-consent-query+jws``) signed with the provider
member's signing key: the consent, the action (``status``: is it live; ``use``: spend one use for
this message), the message and the service, with a short lifetime. The consent service answers
only the member that provides the consented service (anyone else learns nothing, not even
whether the consent exists).

The answer is a compact JWS (``typ`` ``exchange-consent-answer+jwt``) signed with the consent
service's key: the consent, the action, the message, the status and the uses, with its time. A
provider accepts only an answer signed by the consent service that issued the artefact, about
this very question, and fresh; so no one on the path between them can say "active".
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from exchange import jws
from exchange.consent.artefact import ConsentAuthority, ConsentSigner
from exchange.errors import AccessDenied, InvalidSignature, ServiceUnavailable, StaleMessage
from exchange.gateway.signing import MessageSigner, decode_signed
from exchange.gateway.trust import TrustView
from exchange.identifiers import MemberId

QUERY_TYPE = "exchange-consent-query+jws"
ANSWER_TYPE = "exchange-consent-answer+jwt"
ACTIONS = ("status", "use")
LIFETIME = 60


def sign_query(
    signer: MessageSigner,
    *,
    consent_id: str,
    action: str,
    message_id: str,
    service: str,
    at: datetime,
) -> str:
    now = int(at.timestamp())
    claims = {
        "consent": consent_id,
        "action": action,
        "message_id": message_id,
        "service": service,
        "iat": now,
        "exp": now + LIFETIME,
    }
    return signer.sign(claims, QUERY_TYPE)


def verify_query(
    token: str, *, consent_id: str, action: str, view: TrustView, at: datetime, skew: float
) -> tuple[str, dict[str, Any]]:
    """(the signing member, the claims) of a fresh question about ``consent_id``."""
    try:
        kid = str(jws.Token(token).header.get("kid", ""))
    except jws.JwsError as exc:
        raise AccessDenied("a consent question must be signed by a provider") from exc
    entry = view.signing.get(kid)
    if entry is None:
        raise AccessDenied("a consent question must be signed by a provider")
    try:
        claims = decode_signed(token, QUERY_TYPE, view, MemberId.parse(entry.member), at)
    except InvalidSignature as exc:
        raise AccessDenied("a consent question must be signed by a provider") from exc
    if claims.get("consent") != consent_id or claims.get("action") != action:
        raise AccessDenied("the question names another consent or action")
    if not isinstance(claims.get("message_id"), str) or not isinstance(claims.get("service"), str):
        raise AccessDenied("the question names no message or service")
    iat, exp = claims.get("iat"), claims.get("exp")
    now = at.timestamp()
    if not (isinstance(iat, int) and isinstance(exp, int)) or abs(iat - now) > skew or exp <= now:
        raise StaleMessage("the consent question is stale")
    return entry.member, claims


def sign_answer(
    signer: ConsentSigner, question: dict[str, Any], status: dict[str, Any], at: datetime
) -> str:
    claims = {
        "consent": question["consent"],
        "action": question["action"],
        "message_id": question["message_id"],
        **{k: status[k] for k in ("status", "uses", "max_uses")},
        "iat": int(at.timestamp()),
    }
    return signer.sign_claims(claims, ANSWER_TYPE)


def signed_by(authority: ConsentAuthority, token: str, typ: str, refusal: str) -> dict[str, Any]:
    """The claims of a JWS of type ``typ`` that ``authority`` signed; else
    :class:`ServiceUnavailable` with ``refusal`` (nothing is released on what cannot be trusted).
    """
    public_key = authority.certificate.public_key()
    try:
        signed = jws.Token(token)
        if signed.header.get("typ") != typ or not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise jws.JwsError("wrong type or key")
        return signed.claims(public_key)
    except jws.JwsError as exc:
        raise ServiceUnavailable(refusal) from exc


def verify_answer(
    token: str,
    *,
    authority: ConsentAuthority,
    consent_id: str,
    action: str,
    message_id: str,
    at: datetime,
    skew: float,
) -> dict[str, Any]:
    """The claims of the consent service's answer to exactly this question; else raise
    :class:`ServiceUnavailable` (nothing is released on an answer that cannot be trusted)."""
    claims = signed_by(
        authority, token, ANSWER_TYPE, "the consent service's answer is not signed by it"
    )
    iat = claims.get("iat")
    if (
        claims.get("consent") != consent_id
        or claims.get("action") != action
        or claims.get("message_id") != message_id
        or not isinstance(iat, int)
        or abs(iat - at.timestamp()) > skew
    ):
        raise ServiceUnavailable("the consent service's answer is not about this question")
    return claims
