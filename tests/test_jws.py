"""ES256 compact JWS: interchangeable with PyJWT both ways, and every malformed or forged token
refused."""

from __future__ import annotations

import base64
import hashlib
import json
import string

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from exchange import jws

KEY = ec.generate_private_key(ec.SECP256R1())
CLAIMS = {"sub": "EE38001085718", "n": 1, "text": "õun", "none": None}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_pyjwt_reads_ours_and_we_read_pyjwts() -> None:
    ours = jws.sign(CLAIMS, KEY, typ="t+jws", kid="k1")
    assert jwt.get_unverified_header(ours) == {"alg": "ES256", "typ": "t+jws", "kid": "k1"}
    assert jwt.decode(ours, KEY.public_key(), algorithms=["ES256"]) == CLAIMS
    theirs = jwt.encode(CLAIMS, KEY, algorithm="ES256", headers={"typ": "t+jws"})
    token = jws.Token(theirs)
    assert token.header["typ"] == "t+jws"
    assert token.claims(KEY.public_key()) == CLAIMS


def forge_header(header: dict[str, object]) -> str:
    """A token with ``header``, genuinely signed by KEY: refused for the header alone."""
    return signed_raw(json.dumps(header).encode(), json.dumps(CLAIMS).encode())


def signed_raw(header: bytes, payload: bytes) -> str:
    """A genuine ES256 signature over ``header`` and ``payload`` given byte for byte."""
    signing_input = f"{b64(header)}.{b64(payload)}"
    r, s = decode_dss_signature(KEY.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


@pytest.mark.parametrize(
    "token",
    [
        "a.b",
        "a.b.c.d",
        "!!!!.e30.AAAA",
        forge_header({"alg": "none"}),
        forge_header({"alg": "HS256"}),
        forge_header({"alg": "ES384"}),
        forge_header({"alg": "ES256", "crit": ["b64"], "b64": False}),
        f"{b64(b'[1]')}.e30.AAAA",
        f"{b64(b'not json')}.e30.AAAA",
        jws.sign(CLAIMS, KEY).replace(".", "=.", 1),
        jws.sign(CLAIMS, KEY).replace(".", ".õ", 1),
        jws.sign(CLAIMS, KEY) + "A",  # a segment of 4n+1 characters
    ],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(jws.JwsError):
        jws.Token(token).claims(KEY.public_key())


def test_a_genuine_header_and_payload_verify_only_as_es256() -> None:
    assert jws.Token(forge_header({"alg": "ES256"})).claims(KEY.public_key()) == CLAIMS


def test_another_spelling_of_the_same_signature_is_refused() -> None:
    token = jws.sign(CLAIMS, KEY)
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    # 64 bytes take 86 characters whose last 4 bits are unused: this spells the same bytes.
    other = alphabet[alphabet.index(token[-1]) ^ 1]
    assert base64.urlsafe_b64decode(token.split(".")[2] + "==") == base64.urlsafe_b64decode(
        token.split(".")[2][:-1] + other + "=="
    )
    with pytest.raises(jws.JwsError):
        jws.Token(token[:-1] + other).claims(KEY.public_key())


def test_a_forged_or_altered_token_does_not_verify() -> None:
    header, payload, signature = jws.sign(CLAIMS, KEY).split(".")
    other = ec.generate_private_key(ec.SECP256R1())
    altered = b64(json.dumps({**CLAIMS, "sub": "EE39107156021"}).encode())
    raw = base64.urlsafe_b64decode(signature + "==")
    for token, key in [
        (f"{header}.{payload}.{signature}", other.public_key()),
        (f"{header}.{altered}.{signature}", KEY.public_key()),
        (f"{header}.{payload}.{b64(raw[:63])}", KEY.public_key()),
        (f"{header}.{payload}.{b64(bytes(64))}", KEY.public_key()),
        (f"{header}.{payload}.{b64(raw[32:] + raw[:32])}", KEY.public_key()),
    ]:
        with pytest.raises(jws.JwsError):
            jws.Token(token).claims(key)


def test_only_a_p256_key_verifies_es256() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(jws.JwsError):
        jws.Token(jws.sign(CLAIMS, KEY)).claims(p384.public_key())


def test_a_payload_must_be_a_json_object() -> None:
    assert jws.Token(signed_raw(b'{"alg":"ES256"}', b'{"a": 1}')).claims(KEY.public_key()) == {
        "a": 1
    }
    for payload in (b"[1, 2]", b'"text"', b"{bad", b'{"a": NaN}'):
        with pytest.raises(jws.JwsError):
            jws.Token(signed_raw(b'{"alg":"ES256"}', payload)).claims(KEY.public_key())


@pytest.mark.parametrize("size", range(1, 13))
def test_every_segment_has_one_spelling(size: int) -> None:
    """Whatever a segment's length, its bytes decode, and any other spelling of them (unused low
    bits of the last character set) is refused; a header so spelled is refused on sight."""
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    data = bytes(range(200, 200 + size))
    segment = jws.b64url(data)
    assert jws._decoded(segment.encode()) == data
    unused = {1: 4, 2: 2, 0: 0}[size % 3]  # bits of the last character that carry nothing
    index = alphabet.index(segment[-1])
    for flip in range(1, 2**unused):
        other = segment[:-1] + alphabet[index ^ flip]
        assert base64.urlsafe_b64decode(other + "=" * (-len(other) % 4)) == data
        with pytest.raises(jws.JwsError):
            jws._decoded(other.encode())
    header = jws.b64url(b'{"alg":"ES256","kid":"' + b"k" * size + b'"}')
    token = jws.sign(CLAIMS, KEY).split(".", 1)[1]
    index = alphabet.index(header[-1])
    if len(header) % 4:
        with pytest.raises(jws.JwsError):
            jws.Token(f"{header[:-1]}{alphabet[index ^ 1]}.{token}")


@pytest.mark.parametrize("segment", [0, 1, 2])
@pytest.mark.parametrize("character", ["+", "/", "=", " ", "\n", "õ", "\x00"])
def test_a_character_outside_base64url_is_refused_in_any_segment(
    segment: int, character: str
) -> None:
    """The whole token's characters are checked at once: whichever segment holds the stray one
    (the standard alphabet's ``+`` and ``/``, padding, space, non-ASCII), it is refused."""
    parts = jws.sign(CLAIMS, KEY, typ="t+jws").split(".")
    parts[segment] = parts[segment][:8] + character + parts[segment][9:]
    with pytest.raises(jws.JwsError):
        jws.Token(".".join(parts)).claims(KEY.public_key())


def test_each_signature_carries_its_own_header() -> None:
    """Headers are encoded once per exact set of fields: another kid or typ, or the same in
    another order, is another header."""
    tokens = [
        jws.sign(CLAIMS, KEY, typ="a+jws", kid="k1"),
        jws.sign(CLAIMS, KEY, typ="a+jws", kid="k2"),
        jws.sign(CLAIMS, KEY, typ="b+jws", kid="k1"),
        jws.sign(CLAIMS, KEY, kid="k1", typ="a+jws"),
        jws.sign(CLAIMS, KEY, typ="a+jws", kid="k1"),
    ]
    assert [jwt.get_unverified_header(token) for token in tokens] == [
        {"alg": "ES256", "typ": "a+jws", "kid": "k1"},
        {"alg": "ES256", "typ": "a+jws", "kid": "k2"},
        {"alg": "ES256", "typ": "b+jws", "kid": "k1"},
        {"alg": "ES256", "kid": "k1", "typ": "a+jws"},
        {"alg": "ES256", "typ": "a+jws", "kid": "k1"},
    ]
    for token in tokens:
        assert jws.Token(token).claims(KEY.public_key()) == CLAIMS


def test_a_refused_header_is_refused_every_time_and_a_read_one_is_never_shared() -> None:
    for _ in range(3):
        with pytest.raises(jws.JwsError):
            jws.Token(forge_header({"alg": "none"}))
    token = jws.sign(CLAIMS, KEY, typ="t+jws", kid="k1")
    first = jws.Token(token)
    first.header["kid"] = "changed by a caller"
    assert jws.Token(token).header == {"alg": "ES256", "typ": "t+jws", "kid": "k1"}


def test_only_an_ec_key_of_p256_verifies_before_and_after_one_did() -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    token = jws.Token(jws.sign(CLAIMS, KEY))
    others = [
        ed25519.Ed25519PrivateKey.generate().public_key(),
        rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key(),
        ec.generate_private_key(ec.SECP384R1()).public_key(),
        "not a key",
    ]
    for _ in range(2):
        assert token.claims(KEY.public_key()) == CLAIMS
        for other in others:
            with pytest.raises(jws.JwsError):
                token.claims(other)  # type: ignore[arg-type]


def test_the_digest_of_an_empty_body_is_that_of_nothing() -> None:
    from exchange.trust.signed import body_digest

    assert body_digest(b"") == b64(hashlib.sha256(b"").digest())
    assert body_digest(b"x") == b64(hashlib.sha256(b"x").digest())
