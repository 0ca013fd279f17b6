"""An applicant's receipt: the one secret that lets an agency read its gateway's enrolment code
on the authority's pages, without the authority keeping anything that reveals the code.

At submission the authority makes a random receipt, shows it once (in a private link) and keeps
only the X25519 public key derived from it. When it issues an enrolment code for a gateway of
the member the application made, it seals the code to that key (ephemeral X25519, HKDF-SHA256,
AES-GCM bound to the gateway's id); only the receipt derives the private key that opens it. The
database holds the code's hash and this sealed copy: neither gives the code without the receipt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_INFO = b"exchange enrolment code sealed to an applicant's receipt"


def new_receipt() -> str:
    return secrets.token_urlsafe(32)


def _raw(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _private(receipt: str) -> X25519PrivateKey:
    seed = hashlib.sha256(b"exchange application receipt\0" + receipt.encode()).digest()
    return X25519PrivateKey.from_private_bytes(seed)


def public_key(receipt: str) -> str:
    """What is stored of a receipt (hex)."""
    return _raw(_private(receipt).public_key()).hex()


def matches(receipt: str, stored: str | None) -> bool:
    # Derived even when nothing is stored: a number that was never given costs what a wrong
    # receipt does, so the time taken does not tell which numbers exist.
    derived = public_key(receipt)
    return stored is not None and hmac.compare_digest(derived, stored)


def _key(shared: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(shared)


def seal(code: str, *, to: str, bound: str) -> str:
    """``code`` sealed to the stored public key ``to``, bound to ``bound`` (the gateway)."""
    ephemeral = X25519PrivateKey.generate()
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(bytes.fromhex(to)))
    nonce = os.urandom(12)
    sealed = AESGCM(_key(shared)).encrypt(nonce, code.encode(), bound.encode())
    return base64.b64encode(_raw(ephemeral.public_key()) + nonce + sealed).decode()


def unseal(sealed: str, *, receipt: str, bound: str) -> str | None:
    """The code, or ``None`` if ``receipt`` does not open it."""
    raw = base64.b64decode(sealed)
    peer, nonce, body = raw[:32], raw[32:44], raw[44:]
    shared = _private(receipt).exchange(X25519PublicKey.from_public_bytes(peer))
    try:
        return AESGCM(_key(shared)).decrypt(nonce, body, bound.encode()).decode()
    except InvalidTag:
        return None
