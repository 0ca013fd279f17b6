"""Ask a timestamping authority to stamp a digest, and check stamps without trusting anyone.

:func:`verify` checks a token exactly as an outside auditor's ``openssl ts -verify`` would, in
pure Python: the TSTInfo's message imprint is the SHA-256 digest given; the signed attributes
carry that TSTInfo's digest, the right content type and the ESS signing-certificate-v2 hash of
the TSA certificate; the signature over them verifies with that certificate's key; the
certificate was issued by the instance CA, carries the critical timeStamping key purpose and was
valid at the stamped time. It returns the stamped time.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

import httpx
from asn1crypto import cms, tsp
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from exchange.errors import Error, ServiceFailed
from exchange.faults import mapped
from exchange.trust.tsp import TimeStampResp

MAX_RESPONSE_BYTES = 64 * 1024


class TimestampInvalid(Error):
    status = 502
    code = "TimestampingFailed"


def query(digest: bytes, nonce: int) -> bytes:
    return bytes(
        tsp.TimeStampReq(
            {
                "version": "v1",
                "message_imprint": {
                    "hash_algorithm": {"algorithm": "sha256"},
                    "hashed_message": digest,
                },
                "nonce": nonce,
                "cert_req": True,
            }
        ).dump()
    )


def stamp(
    url: str, digest: bytes, *, timeout: float = 10.0, transport: httpx.BaseTransport | None = None
) -> bytes:
    """The DER token (a CMS ContentInfo) for ``digest`` from the authority at ``url``."""
    nonce = secrets.randbits(63)
    with (
        mapped("the timestamping authority"),
        httpx.Client(timeout=timeout, transport=transport, follow_redirects=False) as client,
    ):
        response = client.post(
            url,
            content=query(digest, nonce),
            headers={"Content-Type": "application/timestamp-query"},
        )
    if response.status_code != 200 or len(response.content) > MAX_RESPONSE_BYTES:
        raise ServiceFailed(f"timestamping authority answered HTTP {response.status_code}")
    try:
        reply = TimeStampResp.load(response.content, strict=True)
        status = reply["status"]["status"].native
        token = reply["time_stamp_token"]
        info = token["content"]["encap_content_info"]["content"].parsed
        nonce_back = info["nonce"].native
    except (ValueError, TypeError, KeyError) as exc:
        raise TimestampInvalid("timestamping authority sent an unreadable reply") from exc
    if status not in ("granted", "granted_with_mods"):
        raise TimestampInvalid(f"timestamping authority refused: {status}")
    if nonce_back != nonce:
        raise TimestampInvalid("timestamp reply does not answer this request (nonce)")
    return bytes(token.dump())


def verify(
    token_der: bytes, *, digest: bytes, tsa: x509.Certificate, ca: x509.Certificate
) -> datetime:
    """Check ``token_der`` stamps ``digest``; return the stamped time. See the module docstring."""
    try:
        token = cms.ContentInfo.load(token_der, strict=True)
        signed = token["content"]
        encapsulated = signed["encap_content_info"]
        content = encapsulated["content"].contents
        info = tsp.TSTInfo.load(content)
        signer = signed["signer_infos"][0]
        attributes = {a["type"].native: a["values"][0] for a in signer["signed_attrs"]}
        signed_bytes = b"\x31" + signer["signed_attrs"].dump()[1:]  # signed as a SET OF, not [0]
        signature = signer["signature"].native
        algorithm = signer["signature_algorithm"]["algorithm"].native
        imprint = info["message_imprint"]
        gen_time: datetime = info["gen_time"].native
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise TimestampInvalid("timestamp token is unreadable") from exc
    if encapsulated["content_type"].native != "tst_info" or attributes.get("content_type") is None:
        raise TimestampInvalid("timestamp token does not hold a TSTInfo")
    if (
        imprint["hash_algorithm"]["algorithm"].native != "sha256"
        or imprint["hashed_message"].native != digest
    ):
        raise TimestampInvalid("timestamp is for other data (message imprint mismatch)")
    if attributes["message_digest"].native != hashlib.sha256(content).digest():
        raise TimestampInvalid("timestamp token's signed digest does not match its content")
    tsa_der = tsa.public_bytes(serialization.Encoding.DER)
    ess = attributes.get("signing_certificate_v2")
    if ess is None or ess["certs"][0]["cert_hash"].native != hashlib.sha256(tsa_der).digest():
        raise TimestampInvalid("timestamp token names another TSA certificate")
    _check_signature(tsa, signed_bytes, signature, algorithm)
    _check_certificate(tsa, ca, gen_time)
    return gen_time


def _check_signature(tsa: x509.Certificate, data: bytes, signature: bytes, algorithm: str) -> None:
    key = tsa.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey) and algorithm in ("sha256_ecdsa", "ecdsa"):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey) and algorithm in ("sha256_rsa", "rsassa_pkcs1v15"):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            raise TimestampInvalid(f"timestamp signature algorithm {algorithm} is not accepted")
    except InvalidSignature as exc:
        raise TimestampInvalid("timestamp signature does not verify") from exc


def _check_certificate(tsa: x509.Certificate, ca: x509.Certificate, at: datetime) -> None:
    try:
        tsa.verify_directly_issued_by(ca)
        usage = tsa.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound) as exc:
        raise TimestampInvalid(
            "TSA certificate is not a timestamping certificate of the instance CA"
        ) from exc
    if not usage.critical or list(usage.value) != [ExtendedKeyUsageOID.TIME_STAMPING]:
        raise TimestampInvalid("TSA certificate lacks the critical timeStamping key purpose")
    if not tsa.not_valid_before_utc <= at <= tsa.not_valid_after_utc:
        raise TimestampInvalid("TSA certificate was not valid at the stamped time")
