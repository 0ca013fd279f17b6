"""Strict validation of signed tokens (OIDC ID tokens and our own JWT kinds).

:class:`TokenValidator` accepts a token only if all of these hold:

- the header's ``alg`` is on the validator's allow-list (never ``none``, never HMAC: keys here
  are public keys, and an HMAC "signed" with a public key is the classic forgery);
- ``typ`` is the one expected for this kind of token, so a token of one kind (a consent
  artefact, say) cannot be presented as another (an ID token);
- ``kid`` names a key already held (from the issuer's JWKS); ``jku``, ``x5u`` and embedded
  ``jwk``/``x5c`` headers are ignored: a token never chooses the key it is checked with;
- the signature verifies with that key;
- ``iss`` and ``aud`` are the expected ones; ``exp``, ``iat`` and ``sub`` are present;
- ``exp`` has not passed, ``nbf`` (if present) has, ``iat`` is not in the future, each with at
  most ``leeway`` seconds of tolerance, and the token's lifetime is bounded.

Time is a parameter (``at``) of every check.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import jwt
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from exchange.errors import InvalidToken, ServiceFailed
from exchange.faults import mapped

ASYMMETRIC = frozenset({"ES256", "ES384", "RS256", "PS256"})


PublicKey = Any  # cryptography public key objects, as PyJWT takes them


def keys_from_jwks(document: Mapping[str, Any]) -> dict[str, PublicKey]:
    """Public keys of a JWKS by ``kid``; keys without ``kid`` or of other types are skipped."""
    keys: dict[str, PublicKey] = {}
    for entry in document.get("keys", []):
        kid, kty = entry.get("kid"), entry.get("kty")
        if not isinstance(kid, str) or entry.get("use", "sig") != "sig":
            continue
        text = json.dumps(entry)
        if kty == "EC":
            keys[kid] = ECAlgorithm.from_jwk(text)
        elif kty == "RSA":
            keys[kid] = RSAAlgorithm.from_jwk(text)
    return keys


class KeySet:
    """An issuer's signing keys, from its JWKS URL, refreshed at most every ``min_refresh`` s.

    An unknown ``kid`` triggers one refresh (keys rotate), never a fetch from anywhere a token
    names.
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        keys: Mapping[str, PublicKey] | None = None,
        min_refresh: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._url = url
        self._keys: dict[str, PublicKey] = dict(keys or {})
        self._min_refresh = min_refresh
        self._transport = transport
        self._fetched_at = -1e9
        self._lock = threading.Lock()

    def get(self, kid: str) -> PublicKey | None:
        key = self._keys.get(kid)
        if key is None and self._url is not None:
            self._refresh()
            key = self._keys.get(kid)
        return key

    def _refresh(self) -> None:
        with self._lock:
            if time.monotonic() - self._fetched_at < self._min_refresh:
                return
            self._fetched_at = time.monotonic()
            client = httpx.Client(timeout=5, transport=self._transport, follow_redirects=False)
            with mapped("the identity provider"), client:
                response = client.get(str(self._url)).raise_for_status()
            try:
                self._keys = keys_from_jwks(response.json())
            except ValueError as exc:
                raise ServiceFailed("the identity provider's keys cannot be read") from exc


@dataclass(frozen=True)
class TokenValidator:
    issuer: str
    audience: str | tuple[str, ...]  # any one of these
    keys: KeySet
    typ: str | None = "JWT"
    algorithms: frozenset[str] = frozenset({"ES256", "RS256"})
    leeway: float = 30.0
    max_lifetime: float = 24 * 3600.0
    required: tuple[str, ...] = ("exp", "iat", "iss", "aud", "sub")

    def __post_init__(self) -> None:
        if not self.algorithms <= ASYMMETRIC:
            raise ValueError(
                "only asymmetric algorithms may be allowed, not "
                f"{sorted(self.algorithms - ASYMMETRIC)}"
            )

    def validate(self, token: str, *, at: datetime) -> dict[str, Any]:
        """The token's claims, if it passes every check in the module docstring; else raise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("token is not a JWS") from exc
        algorithm = header.get("alg")
        if algorithm not in self.algorithms:
            raise InvalidToken(f"token algorithm {algorithm!r} is not accepted")
        if header.get("typ") != self.typ:
            raise InvalidToken("token is of another kind (typ)")
        kid = header.get("kid")
        key = self.keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken("token is signed with an unknown key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "require": list(self.required),
                    # times are checked below against ``at``, not the wall clock
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"token rejected: {_reason(exc)}") from exc
        except (TypeError, ValueError) as exc:  # e.g. an EC key named for an RSA algorithm
            raise InvalidToken("token's key does not fit its algorithm") from exc
        self._check_times(claims, at.timestamp())
        return claims

    def _check_times(self, claims: Mapping[str, Any], now: float) -> None:
        for name in ("exp", "iat", "nbf"):
            value = claims.get(name)
            if value is not None and (
                not isinstance(value, int | float) or isinstance(value, bool)
            ):
                raise InvalidToken(f"token claim {name} is not a number")
        exp, iat = float(claims["exp"]), float(claims["iat"])
        if exp <= now - self.leeway:
            raise InvalidToken("token has expired")
        if iat > now + self.leeway:
            raise InvalidToken("token was issued in the future")
        nbf = claims.get("nbf")
        if nbf is not None and float(nbf) > now + self.leeway:
            raise InvalidToken("token is not valid yet")
        if exp - iat > self.max_lifetime:
            raise InvalidToken("token lives longer than allowed")


def _reason(exc: jwt.PyJWTError) -> str:
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"claim {exc.claim} is missing"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "wrong audience"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "wrong issuer"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "signature does not verify"
    return type(exc).__name__
