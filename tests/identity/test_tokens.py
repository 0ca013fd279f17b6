"""ID tokens: the development issuer's flow, and every forgery a relying party must refuse."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from exchange.errors import InvalidToken
from exchange.identity.tokens import KeySet, TokenValidator, keys_from_jwks
from exchange.idp.app import create_app
from exchange.idp.provider import Citizen, IdentityProvider
from exchange.trust.keys import generate_key
from tests.conftest import Clock

ISSUER = "http://127.0.0.1:4440"
PORTAL = "citizen-portal"
CALLBACK = "http://127.0.0.1:4450/callback"
MARI = Citizen("EE38001085718", "Mari", "Tamm")


@pytest.fixture
def provider(clock: Clock) -> IdentityProvider:
    return IdentityProvider(
        issuer=ISSUER,
        key=generate_key(),
        clients={PORTAL: [CALLBACK]},
        citizens=[MARI],
        clock=clock,
    )


@pytest.fixture
def validator(provider: IdentityProvider) -> TokenValidator:
    return TokenValidator(
        issuer=ISSUER, audience=PORTAL, keys=KeySet(keys=keys_from_jwks(provider.jwks()))
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(
    provider: IdentityProvider,
    clock: Clock,
    *,
    header: dict[str, Any] | None = None,
    drop: tuple[str, ...] = (),
    **changes: Any,
) -> str:
    """A token signed with the provider's real key but with chosen claims and header."""
    now = int(clock().timestamp())
    claims = {
        "iss": ISSUER,
        "sub": MARI.code,
        "aud": PORTAL,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        **changes,
    }
    for name in drop:
        claims.pop(name)
    return jwt.encode(
        claims,
        provider._key,
        algorithm="ES256",
        headers={"kid": provider.kid, "typ": "JWT", **(header or {})},
    )


async def test_code_flow_gives_a_token_the_validator_accepts(
    provider: IdentityProvider, validator: TokenValidator, clock: Clock
) -> None:
    transport = httpx.ASGITransport(app=create_app(provider))
    client = httpx.AsyncClient(transport=transport, base_url=ISSUER)
    discovery = (await client.get("/.well-known/openid-configuration")).json()
    assert discovery["issuer"] == ISSUER
    assert discovery["id_token_signing_alg_values_supported"] == ["ES256"]
    page = await client.get(
        "/authorize",
        params={
            "client_id": PORTAL,
            "redirect_uri": CALLBACK,
            "response_type": "code",
            "scope": "openid",
            "state": "s1",
            "nonce": "n1",
        },
    )
    assert page.status_code == 200
    assert "Mari Tamm" in page.text
    chosen = await client.post(
        "/authorize",
        data={
            "client_id": PORTAL,
            "redirect_uri": CALLBACK,
            "state": "s1",
            "nonce": "n1",
            "citizen": MARI.code,
        },
        follow_redirects=False,
    )
    assert chosen.status_code == 303
    location = chosen.headers["location"]
    assert location.startswith(CALLBACK + "?code=")
    assert "state=s1" in location
    code = location.split("code=")[1].split("&")[0]
    token_form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": PORTAL,
        "redirect_uri": CALLBACK,
    }
    answer = (await client.post("/token", data=token_form)).json()
    claims = validator.validate(answer["id_token"], at=clock())
    assert claims["sub"] == MARI.code
    assert claims["nonce"] == "n1"
    again = await client.post("/token", data=token_form)
    assert again.status_code == 403  # codes are single-use
    wrong = await client.get(
        "/authorize",
        params={
            "client_id": PORTAL,
            "redirect_uri": "http://evil.example/cb",
            "response_type": "code",
            "scope": "openid",
        },
    )
    assert wrong.status_code == 400


def test_alg_none_is_refused(
    provider: IdentityProvider, validator: TokenValidator, clock: Clock
) -> None:
    now = int(clock().timestamp())
    header = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": provider.kid}).encode())
    payload = b64(
        json.dumps(
            {"iss": ISSUER, "sub": MARI.code, "aud": PORTAL, "iat": now, "exp": now + 60}
        ).encode()
    )
    with pytest.raises(InvalidToken, match="algorithm 'none'"):
        validator.validate(f"{header}.{payload}.", at=clock())


def test_hs256_signed_with_the_public_key_is_refused(
    provider: IdentityProvider, validator: TokenValidator, clock: Clock
) -> None:
    now = int(clock().timestamp())
    public_pem = provider._key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": provider.kid}).encode())
    payload = b64(
        json.dumps(
            {"iss": ISSUER, "sub": MARI.code, "aud": PORTAL, "iat": now, "exp": now + 60}
        ).encode()
    )
    signature = b64(hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    with pytest.raises(InvalidToken, match="algorithm 'HS256'"):
        validator.validate(f"{header}.{payload}.{signature}", at=clock())
    with pytest.raises(ValueError, match="asymmetric"):
        TokenValidator(
            issuer=ISSUER, audience=PORTAL, keys=validator.keys, algorithms=frozenset({"HS256"})
        )


@pytest.mark.parametrize(
    ("changes", "drop", "message"),
    [
        ({}, ("exp",), "claim exp is missing"),
        ({}, ("aud",), "claim aud is missing"),
        ({}, ("sub",), "claim sub is missing"),
        ({"iss": "http://127.0.0.1:9999"}, (), "wrong issuer"),
        ({"aud": "another-client"}, (), "wrong audience"),
    ],
)
def test_missing_or_wrong_claims(
    provider: IdentityProvider,
    validator: TokenValidator,
    clock: Clock,
    changes: dict[str, Any],
    drop: tuple[str, ...],
    message: str,
) -> None:
    with pytest.raises(InvalidToken, match=message):
        validator.validate(forge(provider, clock, drop=drop, **changes), at=clock())


def test_time_checks(provider: IdentityProvider, validator: TokenValidator, clock: Clock) -> None:
    token = forge(provider, clock)
    validator.validate(token, at=clock())
    with pytest.raises(InvalidToken, match="expired"):
        validator.validate(token, at=clock() + timedelta(minutes=11))
    now = int(clock().timestamp())
    with pytest.raises(InvalidToken, match="not valid yet"):
        validator.validate(forge(provider, clock, nbf=now + 300), at=clock())
    with pytest.raises(InvalidToken, match="issued in the future"):
        validator.validate(forge(provider, clock, iat=now + 300, nbf=now), at=clock())
    with pytest.raises(InvalidToken, match="lives longer"):
        validator.validate(forge(provider, clock, exp=now + 7 * 86400), at=clock())
    with pytest.raises(InvalidToken, match="not a number"):
        validator.validate(forge(provider, clock, exp="soon"), at=clock())


def test_token_of_another_kind_is_refused(
    provider: IdentityProvider, validator: TokenValidator, clock: Clock
) -> None:
    consent_like = forge(provider, clock, header={"typ": "exchange-consent+jwt"})
    with pytest.raises(InvalidToken, match="another kind"):
        validator.validate(consent_like, at=clock())


def test_kid_only_selects_known_keys_and_jku_is_ignored(
    provider: IdentityProvider, validator: TokenValidator, clock: Clock
) -> None:
    attacker = generate_key()
    now = int(clock().timestamp())
    claims = {"iss": ISSUER, "sub": MARI.code, "aud": PORTAL, "iat": now, "exp": now + 60}
    unknown = jwt.encode(
        claims,
        attacker,
        algorithm="ES256",
        headers={"kid": "attacker", "typ": "JWT", "jku": "http://evil.example/jwks"},
    )
    with pytest.raises(InvalidToken, match="unknown key"):
        validator.validate(unknown, at=clock())
    borrowed = jwt.encode(
        claims,
        attacker,
        algorithm="ES256",
        headers={"kid": provider.kid, "typ": "JWT", "jku": "http://evil.example/jwks"},
    )
    with pytest.raises(InvalidToken, match="signature does not verify"):
        validator.validate(borrowed, at=clock())
