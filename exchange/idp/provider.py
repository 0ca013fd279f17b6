"""The development OIDC issuer: authorization code flow, ES256 ID tokens, a JWKS.

For the demo and the tests only: anyone may log in as any listed test citizen or staff member.
A staff member's token carries a ``roles`` claim (what a gateway console maps to its roles).
Relying parties validate its tokens exactly as they would a production issuer's
(:class:`exchange.identity.tokens.TokenValidator` with its issuer URL and JWKS).

Codes are single-use, bound to the client and redirect URI they were issued for, and expire
after a minute; redirect URIs must be registered for the client exactly.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from exchange.errors import AccessDenied, InvalidRequest

CODE_LIFETIME = timedelta(minutes=1)
TOKEN_LIFETIME = timedelta(minutes=10)


@dataclass(frozen=True)
class Citizen:
    code: str  # national identity code, e.g. EE38001085718
    given_name: str
    family_name: str


@dataclass(frozen=True)
class Staff:
    """A test member of an agency's staff: signs in to a gateway's console."""

    username: str
    name: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class _Grant:
    citizen: Citizen | Staff
    client_id: str
    redirect_uri: str
    nonce: str | None
    expires: datetime


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 JWK thumbprint: the ``kid`` of our keys."""
    canonical = json.dumps(
        {k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True
    )
    return (
        base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
    )


class IdentityProvider:
    def __init__(
        self,
        *,
        issuer: str,
        key: ec.EllipticCurvePrivateKey,
        clients: Mapping[str, Sequence[str]],
        citizens: Sequence[Citizen],
        clock: Callable[[], datetime],
        staff: Sequence[Staff] = (),
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self._key = key
        public = json.loads(ECAlgorithm.to_jwk(key.public_key()))
        self.kid = thumbprint(public)
        self.jwk = {**public, "kid": self.kid, "use": "sig", "alg": "ES256"}
        self.clients = {client: list(uris) for client, uris in clients.items()}
        self.citizens = {c.code: c for c in citizens}
        self.staff = {s.username: s for s in staff}
        self._clock = clock
        self._grants: dict[str, _Grant] = {}
        self._lock = threading.Lock()

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "scopes_supported": ["openid"],
            "claims_supported": ["sub", "given_name", "family_name", "name", "roles"],
        }

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.jwk]}

    def check_client(self, client_id: str, redirect_uri: str) -> None:
        if redirect_uri not in self.clients.get(client_id, []):
            raise InvalidRequest(
                "unknown client or unregistered redirect_uri", detail="redirect_uri"
            )

    def authorize(
        self,
        *,
        client_id: str,
        redirect_uri: str,
        citizen: str = "",
        nonce: str | None,
        staff: str = "",
    ) -> str:
        """A single-use code for ``citizen`` (or the ``staff`` member), after the login page's
        choice."""
        self.check_client(client_id, redirect_uri)
        person: Citizen | Staff | None = (
            self.staff.get(staff) if staff else self.citizens.get(citizen)
        )
        if person is None:
            raise InvalidRequest("no such test citizen or staff member", detail="citizen")
        code = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            for stale in [c for c, g in self._grants.items() if g.expires <= now]:
                del self._grants[stale]  # unused codes do not pile up
            self._grants[code] = _Grant(
                person, client_id, redirect_uri, nonce, self._clock() + CODE_LIFETIME
            )
        return code

    def token(self, *, code: str, client_id: str, redirect_uri: str) -> dict[str, Any]:
        with self._lock:
            grant = self._grants.pop(code, None)
        now = self._clock()
        if grant is None or grant.expires <= now:
            raise AccessDenied("code is unknown, used or expired")
        if grant.client_id != client_id or grant.redirect_uri != redirect_uri:
            raise AccessDenied("code was issued to another client or redirect_uri")
        return {
            "id_token": self.id_token(grant.citizen, audience=client_id, nonce=grant.nonce),
            "token_type": "Bearer",
            "expires_in": int(TOKEN_LIFETIME.total_seconds()),
        }

    def id_token(self, citizen: Citizen | Staff, *, audience: str, nonce: str | None = None) -> str:
        now = self._clock()
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": audience,
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int((now + TOKEN_LIFETIME).timestamp()),
            "auth_time": int(now.timestamp()),
        }
        if isinstance(citizen, Staff):
            claims.update(sub=citizen.username, name=citizen.name, roles=list(citizen.roles))
        else:
            claims.update(
                sub=citizen.code,
                given_name=citizen.given_name,
                family_name=citizen.family_name,
                name=f"{citizen.given_name} {citizen.family_name}",
            )
        if nonce is not None:
            claims["nonce"] = nonce
        return jwt.encode(
            claims, self._key, algorithm="ES256", headers={"kid": self.kid, "typ": "JWT"}
        )
