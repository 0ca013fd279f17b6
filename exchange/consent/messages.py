"""What a provider gateway and a consent service say to each other: every message signed.

This is the consent role's protocol, shared by both ends (the consent service's server modules
and the gateway's client of it import it; neither imports the other).

**Questions and answers.** A question is a compact JWS (``typ`` ``exchange-consent-query+jws``)
signed with the provider member's signing key: the consent, the action (``status``: is it live;
``use``: spend one use for this message; ``return``: give back the use spent for this message,
whose registry failed), the message and the service, with a short lifetime.
The consent service answers only the member that provides the consented service (anyone else
learns nothing, not even whether the consent exists). The answer (``typ``
``exchange-consent-answer+jwt``) is signed with the consent service's key: the consent, the
action, the message, the status and the uses, with its time. A provider accepts only an answer
signed by the consent service that issued the artefact, about this very question, and fresh; so
no one on the path between them can say "active".

**Revocation pages.** A page of the revocation feed (``typ``
``exchange-consent-revocations+jwt``), much like a CRL: the consent ids revoked after number
``after`` (each with the consent's end), the number to ask after next, whether the page holds
everything up to now, and the nonce of the poll it answers (a page replayed from an earlier poll
names another nonce). See :mod:`exchange.consent.revocations` for the feed itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeGuard

from exchange.errors import AccessDenied, InvalidSignature, ServiceUnavailable, StaleMessage
from exchange.trust.signed import Signer, verify_signed
from exchange.trust.view import TrustView

QUERY_TYPE = "exchange-consent-query+jws"
ANSWER_TYPE = "exchange-consent-answer+jwt"
PAGE_TYPE = "exchange-consent-revocations+jwt"
ACTIONS = ("status", "use", "return")
LIFETIME = 60


@dataclass(frozen=True, slots=True)
class Revocations:
    """One page of the revocation feed: consent id -> the consent's end (seconds since epoch).

    ``last`` is the number to ask after next; ``complete`` says nothing newer was left out.
    """

    after: int
    last: int
    revoked: dict[str, int]
    complete: bool


def sign_query(
    signer: Signer,
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
        verified = verify_signed(
            token, typ=QUERY_TYPE, certificate_for=view.member_signer(None, at=at)
        )
    except InvalidSignature as exc:
        raise AccessDenied("a consent question must be signed by a provider") from exc
    claims = verified.claims
    if claims.get("consent") != consent_id or claims.get("action") != action:
        raise AccessDenied("the question names another consent or action")
    if not isinstance(claims.get("message_id"), str) or not isinstance(claims.get("service"), str):
        raise AccessDenied("the question names no message or service")
    iat, exp = claims.get("iat"), claims.get("exp")
    now = at.timestamp()
    if not (isinstance(iat, int) and isinstance(exp, int)) or abs(iat - now) > skew or exp <= now:
        raise StaleMessage("the consent question is stale")
    return view.signing[verified.kid].member, claims


def sign_answer(
    signer: Signer, question: dict[str, Any], status: dict[str, Any], at: datetime
) -> str:
    claims = {
        "consent": question["consent"],
        "action": question["action"],
        "message_id": question["message_id"],
        **{k: status[k] for k in ("status", "uses", "max_uses")},
        "iat": int(at.timestamp()),
    }
    return signer.sign(claims, ANSWER_TYPE)


def _signed_by(
    issuer: str, token: str, typ: str, *, view: TrustView, at: datetime, refusal: str
) -> dict[str, Any]:
    """The claims of a JWS of type ``typ`` that consent service ``issuer`` signed; else
    :class:`ServiceUnavailable` with ``refusal`` (nothing is released on what cannot be trusted).
    """
    try:
        return verify_signed(
            token, typ=typ, certificate_for=view.consent_signer(at=at, name=issuer)
        ).claims
    except InvalidSignature as exc:
        raise ServiceUnavailable(refusal) from exc


def verify_answer(
    token: str,
    *,
    view: TrustView,
    issuer: str,
    consent_id: str,
    action: str,
    message_id: str,
    at: datetime,
    skew: float,
) -> dict[str, Any]:
    """The claims of the consent service's answer to exactly this question; else raise
    :class:`ServiceUnavailable` (nothing is released on an answer that cannot be trusted)."""
    claims = _signed_by(
        issuer,
        token,
        ANSWER_TYPE,
        view=view,
        at=at,
        refusal="the consent service's answer is not signed by it",
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


def sign_page(
    signer: Signer, issuer: str, page: Revocations, nonce: str | None, at: datetime
) -> str:
    claims = {
        "iss": issuer,
        "nonce": nonce,
        "after": page.after,
        "last": page.last,
        "revoked": [[consent_id, until] for consent_id, until in page.revoked.items()],
        "complete": page.complete,
        "iat": int(at.timestamp()),
    }
    return signer.sign(claims, PAGE_TYPE)


def verify_page(
    token: str, *, view: TrustView, issuer: str, nonce: str | None, at: datetime, skew: float
) -> Revocations:
    """The page, if consent service ``issuer`` signed it in answer to the poll that sent
    ``nonce``; else :class:`ServiceUnavailable`. (A page replayed from an earlier poll names
    another nonce.)"""
    claims = _signed_by(
        issuer,
        token,
        PAGE_TYPE,
        view=view,
        at=at,
        refusal="the revocation feed is not signed by its consent service",
    )
    after, last, iat = claims.get("after"), claims.get("last"), claims.get("iat")
    revoked, complete = claims.get("revoked"), claims.get("complete")
    if not (
        claims.get("iss") == issuer
        and claims.get("nonce") == nonce
        and _whole(after)
        and _whole(last)
        and _whole(iat)
        and isinstance(revoked, list)
        and all(_entry(item) for item in revoked)
        and isinstance(complete, bool)
    ):
        raise ServiceUnavailable("the revocation feed's page is malformed")
    if abs(iat - at.timestamp()) > skew:
        raise ServiceUnavailable("the revocation feed's page is stale")
    return Revocations(after=after, last=last, revoked=dict(revoked), complete=complete)


def _whole(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _entry(item: object) -> bool:
    return (
        isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) and _whole(item[1])
    )
