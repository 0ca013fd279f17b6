"""Signing citizens in to a web page through an OIDC issuer (authorization code flow).

Used by every page that needs to know who the citizen is: the portal, the consent service and
the preview pages of provider gateways. The issuer's endpoints come from its discovery document,
fetched once; the ID token is checked by :class:`~exchange.identity.tokens.TokenValidator` with
this page's client id as audience, and its ``nonce`` must be the one this session sent. ``state``
ties the answer to the session that asked, so a code cannot be injected into someone else's.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import httpx

from exchange.errors import (
    AccessDenied,
    InternalError,
    InvalidToken,
    ServiceFailed,
    ServiceUnavailable,
)
from exchange.faults import mapped
from exchange.identity.tokens import KeySet, TokenValidator

SESSION_KEY = "oidc"


@dataclass(frozen=True, slots=True)
class SignedIn:
    subject: str  # national identity code
    name: str
    id_token: str
    expires: int
    # The ID token's claims, as validated at sign-in (not kept in a session).
    claims: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass
class OidcLogin:
    issuer: str
    client_id: str
    redirect_uri: str
    client_secret: str | None = None
    timeout: float = 5.0
    # How the issuer is reached: the network unless transports are injected (tests).
    transport: httpx.AsyncBaseTransport | None = None
    keys_transport: httpx.BaseTransport | None = None
    _endpoints: dict[str, str] = field(default_factory=dict)
    _validator: TokenValidator | None = None

    async def _discover(self) -> dict[str, str]:
        if not self._endpoints:
            url = f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"
            with mapped("the identity provider"):
                async with httpx.AsyncClient(
                    timeout=self.timeout, transport=self.transport
                ) as client:
                    response = (await client.get(url)).raise_for_status()
            document = _document(response)
            if document.get("issuer") != self.issuer.rstrip("/"):
                raise ServiceUnavailable("the identity provider names another issuer")
            self._endpoints = {
                k: str(document[k])
                for k in ("authorization_endpoint", "token_endpoint", "jwks_uri")
            }
            self._validator = TokenValidator(
                issuer=self.issuer.rstrip("/"),
                audience=self.client_id,
                keys=KeySet(url=self._endpoints["jwks_uri"], transport=self.keys_transport),
            )
        return self._endpoints

    async def start(self, session: dict[str, Any], *, then: str) -> str:
        """The issuer's login URL; remembers ``state``, ``nonce`` and where to go after."""
        endpoints = await self._discover()
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        session[SESSION_KEY] = {"state": state, "nonce": nonce, "then": then}
        query = urlencode(
            {
                "response_type": "code",
                "scope": "openid",
                "client_id": self.client_id,
                "redirect_uri": self.redirect_uri,
                "state": state,
                "nonce": nonce,
            }
        )
        return f"{endpoints['authorization_endpoint']}?{query}"

    async def finish(
        self, session: dict[str, Any], *, code: str, state: str, at: datetime
    ) -> tuple[SignedIn, str]:
        """The signed-in citizen and where to send them, from the issuer's redirect."""
        pending = session.pop(SESSION_KEY, None)
        if not isinstance(pending, dict) or not hmac.compare_digest(
            str(pending.get("state", "")), state
        ):
            raise AccessDenied("sign-in answer does not belong to this session; sign in again")
        endpoints = await self._discover()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "client_id": self.client_id,
        }
        if self.client_secret:
            form["client_secret"] = self.client_secret
        with mapped("the identity provider"):
            async with httpx.AsyncClient(timeout=self.timeout, transport=self.transport) as client:
                response = await client.post(endpoints["token_endpoint"], data=form)
        answer = _document(response)
        token = answer.get("id_token") if response.status_code == 200 else None
        if not isinstance(token, str):
            raise AccessDenied("the identity provider did not sign you in")
        if self._validator is None:  # set by _discover, above
            raise InternalError("the identity provider's token validator is missing")
        claims = await asyncio.to_thread(self._validator.validate, token, at=at)
        if not hmac.compare_digest(str(claims.get("nonce", "")), str(pending.get("nonce"))):
            raise InvalidToken("ID token was not issued for this sign-in (nonce)")
        citizen = SignedIn(
            subject=str(claims["sub"]),
            name=str(claims.get("name") or claims["sub"]),
            id_token=token,
            expires=int(claims["exp"]),
            claims=claims,
        )
        return citizen, str(pending.get("then") or "/")


def _document(response: httpx.Response) -> dict[str, Any]:
    """The JSON object the identity provider answered."""
    try:
        document = response.json()
    except ValueError as exc:
        raise ServiceFailed("the identity provider's answer is not JSON") from exc
    if not isinstance(document, dict):
        raise ServiceFailed("the identity provider's answer is not a JSON object")
    return document


def remember(session: dict[str, Any], citizen: SignedIn) -> None:
    session["citizen"] = {
        "sub": citizen.subject,
        "name": citizen.name,
        "id_token": citizen.id_token,
        "exp": citizen.expires,
    }


def signed_in(session: dict[str, Any], *, at: datetime) -> SignedIn | None:
    """The citizen of this session, while their ID token lives."""
    raw = session.get("citizen")
    if not isinstance(raw, dict) or int(raw.get("exp", 0)) <= at.timestamp():
        session.pop("citizen", None)
        return None
    return SignedIn(raw["sub"], raw["name"], raw["id_token"], int(raw["exp"]))
