"""Compact JWS (RFC 7515) with ES256 (RFC 7518 section 3.4) for the messages signed and verified
on every exchange: request and response signatures, consent artefacts, the provider's questions
to the consent service and its answers and revocation pages.

PyJWT does the same, but checks each base64url segment one character at a time in Python: at 50
clients that check alone held the provider's interpreter lock 18% of the time. Here a segment is
checked by one compiled regular expression and decoded in C; everything else a verifier must do
is done the same way: exactly three segments, a JSON object header with ``alg`` ``ES256`` and
no ``crit`` extension, a P-256 key, a 64-byte ``r || s`` signature verified over the first two
segments, and a JSON object payload. ID tokens (several algorithms, keys from a JWKS) and the
global configuration still go through PyJWT.

Tokens are interchangeable with PyJWT's (tested both ways).
"""

from __future__ import annotations

import base64
import re
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

ALGORITHM = "ES256"
_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")
_SIGNATURE = ec.ECDSA(hashes.SHA256())
_SIZE = 32  # bytes of r and of s on P-256


class JwsError(ValueError):
    """Not a well-formed ES256 compact JWS, or its signature does not verify."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _decode(segment: str) -> bytes:
    if len(segment) % 4 == 1 or not _SEGMENT.fullmatch(segment):
        raise JwsError("a segment is not base64url")
    data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    tail = len(segment) % 4  # 2 or 3 characters spell the last 1 or 2 bytes, or none
    if tail and b64url(data[-(tail - 1) :]) != segment[-tail:]:
        # Unused low bits set: another spelling of the same bytes. One token, one spelling.
        # (Only the last group can differ: re-encoding the whole segment cost more than its
        # decoding.)
        raise JwsError("a segment is not in canonical base64url")
    return data


def _object(segment: str, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(_decode(segment))
    except orjson.JSONDecodeError as exc:
        raise JwsError(f"the {what} is not JSON") from exc
    if not isinstance(value, dict):
        raise JwsError(f"the {what} is not a JSON object")
    return value


def sign(claims: dict[str, Any], key: ec.EllipticCurvePrivateKey, **header: str) -> str:
    """``claims`` signed with ``key``; ``header`` adds fields such as ``typ`` and ``kid``."""
    signing_input = (
        f"{b64url(orjson.dumps({'alg': ALGORITHM, **header}))}.{b64url(orjson.dumps(claims))}"
    )
    r, s = decode_dss_signature(key.sign(signing_input.encode("ascii"), _SIGNATURE))
    return f"{signing_input}.{b64url(r.to_bytes(_SIZE, 'big') + s.to_bytes(_SIZE, 'big'))}"


class Token:
    """A compact JWS taken apart, its header read and nothing yet trusted."""

    __slots__ = ("_payload", "_signature", "_signing_input", "header")

    def __init__(self, token: str) -> None:
        parts = token.split(".")
        if len(parts) != 3:
            raise JwsError("a compact JWS has three segments")
        self.header = _object(parts[0], "header")
        if self.header.get("alg") != ALGORITHM:
            raise JwsError(f"the algorithm must be {ALGORITHM}")
        if "crit" in self.header:
            raise JwsError("no critical header extension is understood")
        if not _SEGMENT.fullmatch(parts[1]):
            raise JwsError("a segment is not base64url")
        self._signing_input = f"{parts[0]}.{parts[1]}".encode("ascii")
        self._payload = parts[1]
        self._signature = _decode(parts[2])

    def claims(self, key: ec.EllipticCurvePublicKey) -> dict[str, Any]:
        """The payload, once the signature verifies with ``key``."""
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
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
