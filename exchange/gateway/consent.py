"""Consent enforcement at the provider gateway, for services with the ``consent`` policy.

In order, each failing closed with a precise denial before the registry is asked anything:

1. ``X-Exchange-Consent`` carries an artefact (:class:`~exchange.errors.ConsentRequired` if not);
2. its signature verifies with the certificate of a consent service listed in the global
   configuration, not revoked and valid now;
3. it covers this request (:meth:`~exchange.consent.artefact.Consent.check`): validity window,
   consumer = ``X-Road-Client``, service or evidence type, purpose = ``X-Exchange-Purpose``,
   subject = the person queried = ``X-Road-UserId``;
4. it is live: a consent with a use limit spends one use, in an answer the consent service
   signed to this gateway's signed question (:mod:`exchange.consent.messages`; atomic, never
   cached), and gives it back the same way if the registry then fails (nothing released); one
   without is looked up in this gateway's copy of the consent service's revocation feed
   (:mod:`exchange.gateway.revocations`) while that copy is fresh, and otherwise its status is
   asked the same way as a use. The consent service unreachable, or an answer that does not
   verify, means no release.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import structlog

from exchange.consent.artefact import Consent, Remembered
from exchange.consent.messages import sign_query, verify_answer
from exchange.errors import (
    ConsentDenied,
    ConsentRequired,
    PayloadTooLarge,
    ServiceFailed,
    ServiceUnavailable,
)
from exchange.gateway.node import Gateway
from exchange.identifiers import unversioned
from exchange.trust.view import TrustView

log = structlog.get_logger(__name__)
MAX_ANSWER = 64 * 1024
PATHS = {"status": "status", "use": "uses", "return": "returns"}
RETURN_WITHIN = 2.0  # the consumer waits for its error meanwhile


class ConsentCheck:
    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._artefacts = Remembered()

    def verify(
        self,
        artefact: str | None,
        *,
        view: TrustView,
        client: str,
        service: str,
        evidence_type: str,
        purpose: str | None,
        subject: str | None,
        user_id: str | None,
    ) -> Consent:
        """Steps 1-3: the consent, if its artefact is genuine and covers this request."""
        if not artefact:
            raise ConsentRequired(
                "this service releases personal data only with the person's consent "
                "(X-Exchange-Consent)"
            )
        if artefact.count(".") != 2:
            raise ConsentDenied(
                "X-Exchange-Consent must carry the consent artefact itself",
                detail="invalid-artefact",
            )
        consent = self._artefacts.verify(artefact, view=view, at=self._gateway.clock())
        consent.check(
            at=self._gateway.clock(),
            consumer=client,
            service=unversioned(service),
            evidence_type=evidence_type,
            purpose=purpose,
            subject=subject,
            user_id=user_id,
        )
        return consent

    async def spend(
        self, consent: Consent, *, view: TrustView, message_id: str, service: str
    ) -> None:
        """Step 4 for a release: one use spent, or the consent shown live."""
        if consent.max_uses is None:
            await self.ensure_live(consent, view=view, message_id=message_id, service=service)
            return
        answer = await self._ask(consent, "use", view=view, message_id=message_id, service=service)
        _require_active(answer)

    async def give_back(
        self, consent: Consent, *, view: TrustView, message_id: str, service: str
    ) -> None:
        """The use spent for ``message_id`` given back: its registry failed, nothing was
        released. Best effort: if the consent service cannot take it back now, the use stays
        spent (logged), as before this existed."""
        if consent.max_uses is None:
            return
        try:
            await self._ask(
                consent,
                "return",
                view=view,
                message_id=message_id,
                service=service,
                timeout=RETURN_WITHIN,
            )
        except Exception as exc:  # the registry's fault is the answer, whatever happens here
            log.warning(
                "consent.use_not_given_back",
                consent=consent.jti,
                message_id=message_id,
                cause=type(exc).__name__,
            )

    async def ensure_live(
        self, consent: Consent, *, view: TrustView, message_id: str, service: str
    ) -> None:
        """Step 4 without spending: not revoked, from the feed while fresh, else asked.

        The feed knows revocations only: a consent with a use limit is always asked (it may be
        used up)."""
        feed = None if consent.max_uses is not None else self._gateway.revocations.of(consent.iss)
        if feed is not None and feed.fresh():
            if feed.revoked(consent.jti):
                raise ConsentDenied("consent is revoked", detail="revoked")
            return
        answer = await self._ask(
            consent, "status", view=view, message_id=message_id, service=service
        )
        _require_active(answer)

    async def _ask(
        self,
        consent: Consent,
        action: str,
        *,
        view: TrustView,
        message_id: str,
        service: str,
        timeout: float = 5,
    ) -> dict[str, Any]:
        """A signed question to the consent service that issued ``consent``; its signed answer."""
        authority = view.consent_service(consent.iss)
        gateway = self._gateway
        question = sign_query(
            gateway.signer,
            consent_id=consent.jti,
            action=action,
            message_id=message_id,
            service=service,
            at=gateway.clock(),
        )
        path = PATHS[action]
        # Unreachable, slow or broken, it is a refusal: nothing is released without its word.
        try:
            reply = await gateway.transport.request(
                "POST",
                f"{authority.url}/api/v1/consents/{quote(consent.jti, safe='')}/{path}",
                what=f"consent service {consent.iss}",
                headers={"Content-Type": "application/jose"},
                body=question.encode("ascii"),
                timeout=timeout,
                max_bytes=MAX_ANSWER,
            )
        except PayloadTooLarge as exc:
            raise ServiceFailed("the consent service sent an oversized answer") from exc
        status, body = reply.status, reply.body
        if status == 404:
            raise ConsentDenied("the consent service does not know this consent", detail="unknown")
        if status != 200 or not body.isascii():
            raise ServiceUnavailable(
                f"the consent service refused the check (HTTP {status}); nothing is released"
            )
        return verify_answer(
            body.decode("ascii"),
            view=view,
            issuer=consent.iss,
            consent_id=consent.jti,
            action=action,
            message_id=message_id,
            at=gateway.clock(),
            skew=gateway.settings.clock_skew,
        )


def _require_active(answer: dict[str, Any]) -> None:
    status = answer.get("status")
    if status != "active":
        reason = status if isinstance(status, str) else "unknown"
        raise ConsentDenied(f"consent is {reason.replace('-', ' ')}", detail=reason)
