"""Spending a use of a consent: the provider gateway's signed request to the consent service.

The request body is a compact JWS (``typ`` ``exchange-consent-use+jws``) signed with the provider
member's signing key, naming the consent, the message being answered and the service. The
consent service accepts it only from the member that provides the consented service, so no one
else can spend (or probe) a citizen's uses.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from exchange.errors import AccessDenied, InvalidSignature, StaleMessage
from exchange.gateway.signing import MessageSigner, decode_signed
from exchange.gateway.trust import TrustView
from exchange.identifiers import MemberId, ServiceId

USE_TYPE = "exchange-consent-use+jws"
LIFETIME = 60


def sign_use(
    signer: MessageSigner, *, consent_id: str, message_id: str, service: str, at: datetime
) -> str:
    now = int(at.timestamp())
    claims = {
        "consent": consent_id,
        "message_id": message_id,
        "service": service,
        "iat": now,
        "exp": now + LIFETIME,
    }
    return signer.sign(claims, USE_TYPE)


def verify_use(
    token: str,
    *,
    consent_id: str,
    consented_service: str,
    view: TrustView,
    at: datetime,
    skew: float,
) -> dict[str, Any]:
    """The claims of a use request for ``consent_id``, if the consented service's provider
    signed it recently."""
    provider: MemberId = ServiceId.parse(consented_service).subsystem.member
    try:
        claims = decode_signed(token, USE_TYPE, view, provider, at)
    except InvalidSignature as exc:
        raise AccessDenied("only the provider of the consented service may spend its uses") from exc
    if claims.get("consent") != consent_id or not isinstance(claims.get("message_id"), str):
        raise AccessDenied("use request names another consent")
    service = claims.get("service")
    if not isinstance(service, str) or "/".join(service.split("/")[:5]) != consented_service:
        raise AccessDenied("use request names another service")
    iat, exp = claims.get("iat"), claims.get("exp")
    now = at.timestamp()
    if not (isinstance(iat, int) and isinstance(exp, int)) or abs(iat - now) > skew or exp <= now:
        raise StaleMessage("use request is stale")
    return claims
