"""Compact JWS (RFC 7515) with ES256 (RFC 7518 section 3.4) for the messages signed and verified
on every exchange: request and response signatures, consent artefacts, the provider's questions
to the consent service and its answers and revocation pages.

PyJWT does the same, but checks each base64url segment one character at a time in Python: at 50
clients that check alone held the provider's interpreter lock 18% of the time. Here the whole
token's characters are checked by one table lookup in C and each segment decoded in C;
everything else a verifier must do is done the same way: exactly three segments, each in its
one canonical base64url spelling, a JSON object header with ``alg`` ``ES256`` and no ``crit``
extension, a P-256 key, a 64-byte ``r || s`` signature verified over the first two segments, and
a JSON object payload. ID tokens (several algorithms, keys from a JWKS) and the global
configuration still go through PyJWT.

Tokens are interchangeable with PyJWT's (tested both ways).
"""

from __future__ import annotations

import binascii
import functools
import string
from typing import Any, TypeGuard

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

ALGORITHM = "ES256"
_SIGNATURE = ec.ECDSA(hashes.SHA256())
_SIZE = 32  # bytes of r and of s on P-256
_URLSAFE = (string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_").encode()
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
# A segment of 4n+2 (4n+3) characters ends in a character whose low 4 (2) bits are unused; in
# the one spelling of its bytes they are zero, i.e. the character's index is a multiple of 16
# (of 4). Any other last character spells the same bytes a second way.
_LAST = {2: frozenset(_URLSAFE[::16]), 3: frozenset(_URLSAFE[::4])}
_PADDING = (b"", b"", b"==", b"=")


# Concrete classes already found to be EllipticCurvePublicKey: isinstance on that ABC runs
# Python-level ABCMeta code on every call, and a class never stops being its subclass.
_EC_PUBLIC_KEY_CLASSES: set[type] = set()


def is_ec_public_key(key: object) -> TypeGuard[ec.EllipticCurvePublicKey]:
    """``isinstance(key, ec.EllipticCurvePublicKey)``, remembering the classes that passed."""
    if type(key) in _EC_PUBLIC_KEY_CLASSES:
        return True
    if isinstance(key, ec.EllipticCurvePublicKey):
        _EC_PUBLIC_KEY_CLASSES.add(type(key))
        return True
    return False


class JwsError(ValueError):
    """Not a well-formed ES256 compact JWS, or its signature does not verify."""


def b64url(data: bytes) -> str:
    return _b64url(data).decode("ascii")


def _b64url(data: bytes) -> bytes:
    # One C call each to encode, to switch to the URL-safe alphabet and to drop the padding.
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE, b"=")


def _decoded(raw: bytes) -> bytes:
    """The bytes of one base64url segment whose characters were checked already, if it is
    their one spelling."""
    tail = len(raw) % 4  # 2 or 3 characters spell the last 1 or 2 bytes, 1 spells nothing
    if tail == 1:
        raise JwsError("a segment is not base64url")
    if tail and raw[-1] not in _LAST[tail]:
        # Unused low bits set: another spelling of the same bytes. One token, one spelling.
        raise JwsError("a segment is not in canonical base64url")
    try:
        return binascii.a2b_base64(raw.translate(_TO_STANDARD) + _PADDING[tail])
    except binascii.Error as exc:  # not expected once the characters and length are right
        raise JwsError("a segment is not base64url") from exc


def _object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(_decoded(raw))
    except orjson.JSONDecodeError as exc:
        raise JwsError(f"the {what} is not JSON") from exc
    if not isinstance(value, dict):
        raise JwsError(f"the {what} is not a JSON object")
    return value


@functools.lru_cache(maxsize=64)
def _encoded_header(fields: tuple[tuple[str, str], ...]) -> bytes:
    # A signer's header is the same on every message of a kind: encoded once per exact set of
    # fields (bounded: the kinds of message times the keys in use).
    return _b64url(orjson.dumps({"alg": ALGORITHM, **dict(fields)}))


def sign(claims: dict[str, Any], key: ec.EllipticCurvePrivateKey, **header: str) -> str:
    """``claims`` signed with ``key``; ``header`` adds fields such as ``typ`` and ``kid``."""
    signing_input = _encoded_header(tuple(header.items())) + b"." + _b64url(orjson.dumps(claims))
    r, s = decode_dss_signature(key.sign(signing_input, _SIGNATURE))
    signature = _b64url(r.to_bytes(_SIZE, "big") + s.to_bytes(_SIZE, "big"))
    return (signing_input + b"." + signature).decode("ascii")


@functools.lru_cache(maxsize=256)
def _header(raw: bytes) -> dict[str, Any]:
    """The header segment ``raw`` read and checked. Its checks depend on its bytes alone, and
    each signer's header repeats on every message it signs: kept per exact segment (bounded;
    a header refused is never kept, so it is read and refused each time)."""
    header = _object(raw, "header")
    if header.get("alg") != ALGORITHM:
        raise JwsError(f"the algorithm must be {ALGORITHM}")
    if "crit" in header:
        raise JwsError("no critical header extension is understood")
    return header


class Token:
    """A compact JWS taken apart, its header read and nothing yet trusted."""

    __slots__ = ("_payload", "_signature", "_signing_input", "header")

    def __init__(self, token: str) -> None:
        try:
            raw = token.encode("ascii")
        except UnicodeEncodeError as exc:
            raise JwsError("a segment is not base64url") from exc
        parts = raw.split(b".")
        if len(parts) != 3:
            raise JwsError("a compact JWS has three segments")
        if raw.translate(None, _URLSAFE) != b"..":  # every character of every segment at once
            raise JwsError("a segment is not base64url")
        self.header = dict(_header(parts[0]))  # a copy: the kept one is never changed
        self._signing_input = raw[: len(parts[0]) + 1 + len(parts[1])]
        self._payload = parts[1]
        self._signature = _decoded(parts[2])

    def claims(self, key: ec.EllipticCurvePublicKey) -> dict[str, Any]:
        """The payload, once the signature verifies with ``key``."""
        if not is_ec_public_key(key) or key.curve.name != "secp256r1":
            raise JwsError("ES256 needs a P-256 key")
        if len(self._signature) != 2 * _SIZE:
            raise JwsError("an ES256 signature is 64 bytes")
        r = int.from_bytes(self._signature[:_SIZE], "big")
        s = int.from_bytes(self._signature[_SIZE:], "big")
        try:
            key.verify(encode_dss_signature(r, s), self._signing_input, _SIGNATURE)
        except InvalidSignature as exc:
            raise JwsError("the signature does not verify") from exc
        return _object(self._payload, "payload")
