"""RFC 3161 time-stamp responses, built with asn1crypto and signed with cryptography.

A token is CMS SignedData over a TSTInfo (eContentType id-ct-TSTInfo) with the signed
attributes OpenSSL and other verifiers require: content type, message digest and the ESS
signing-certificate-v2 attribute naming the TSA certificate by its SHA-256. The TSA
certificate carries the critical timeStamping extended key usage (see ``exchange.trust.ca``).

Refused requests get a ``rejection`` status with a failure reason, never an exception:
``badAlg`` (hash not SHA-256/384/512 or imprint of the wrong length), ``badDataFormat``
(not a TimeStampReq), ``unacceptedPolicy`` (a policy other than ours).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from exchange.trust.keys import PrivateKey
from exchange.trust.tsp import TimeStampResp

HASH_LENGTHS = {"sha256": 32, "sha384": 48, "sha512": 64}


MAX_REQUEST_BYTES = 4096


@dataclass(frozen=True)
class Authority:
    key: PrivateKey
    certificate: x509.Certificate
    policy: str  # the TSA policy OID, dotted

    def respond(self, request_der: bytes, *, at: datetime) -> bytes:
        """A DER TimeStampResp for ``request_der``: granted, or rejected with a reason."""
        if len(request_der) > MAX_REQUEST_BYTES:
            return _rejection("bad_data_format", "request too large")
        try:
            request = tsp.TimeStampReq.load(request_der, strict=True)
            imprint = request["message_imprint"]
            algorithm = imprint["hash_algorithm"]["algorithm"].native
            digest = imprint["hashed_message"].native
            policy = (
                request["req_policy"].dotted if request["req_policy"].native is not None else None
            )
            nonce = request["nonce"].native
            include_certificate = bool(request["cert_req"].native)
        except (ValueError, TypeError, KeyError) as exc:
            return _rejection("bad_data_format", f"not a TimeStampReq: {type(exc).__name__}")
        if HASH_LENGTHS.get(algorithm) != len(digest):
            return _rejection("bad_alg", "message imprint must be SHA-256, SHA-384 or SHA-512")
        if policy is not None and policy != self.policy:
            return _rejection("unaccepted_policy", "unknown TSA policy")
        info = tsp.TSTInfo(
            {
                "version": "v1",
                "policy": self.policy,
                "message_imprint": {
                    "hash_algorithm": {"algorithm": algorithm},
                    "hashed_message": digest,
                },
                "serial_number": secrets.randbits(63),
                "gen_time": at,
                "accuracy": {"seconds": 1},
                "ordering": False,
                "nonce": nonce,
            }
        )
        token = self._sign(info, include_certificate, at)
        return bytes(
            TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": token}).dump()
        )

    def _sign(self, info: tsp.TSTInfo, include_certificate: bool, at: datetime) -> cms.ContentInfo:
        content = info.dump()
        certificate_der = self.certificate.public_bytes(serialization.Encoding.DER)
        certificate = asn1_x509.Certificate.load(certificate_der)
        signed_attributes = cms.CMSAttributes(
            [
                cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}),
                cms.CMSAttribute({"type": "signing_time", "values": [cms.Time({"utc_time": at})]}),
                cms.CMSAttribute(
                    {"type": "message_digest", "values": [hashlib.sha256(content).digest()]}
                ),
                cms.CMSAttribute(
                    {
                        "type": "signing_certificate_v2",
                        "values": [
                            {
                                "certs": [
                                    {
                                        "hash_algorithm": {"algorithm": "sha256"},
                                        "cert_hash": hashlib.sha256(certificate_der).digest(),
                                    }
                                ]
                            }
                        ],
                    }
                ),
            ]
        )
        signature, signature_algorithm = self._signature(signed_attributes.dump())
        signer = cms.SignerInfo(
            {
                "version": "v1",
                "sid": cms.SignerIdentifier(
                    {
                        "issuer_and_serial_number": {
                            "issuer": certificate.issuer,
                            "serial_number": certificate.serial_number,
                        }
                    }
                ),
                "digest_algorithm": {"algorithm": "sha256"},
                "signed_attrs": signed_attributes,
                "signature_algorithm": signature_algorithm,
                "signature": signature,
            }
        )
        signed_data = cms.SignedData(
            {
                "version": "v3",
                "digest_algorithms": [{"algorithm": "sha256"}],
                "encap_content_info": {
                    "content_type": "tst_info",
                    "content": core.ParsableOctetString(content),
                },
                "certificates": [certificate] if include_certificate else None,
                "signer_infos": [signer],
            }
        )
        return cms.ContentInfo({"content_type": "signed_data", "content": signed_data})

    def _signature(self, data: bytes) -> tuple[bytes, algos.SignedDigestAlgorithm]:
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            return (
                self.key.sign(data, ec.ECDSA(hashes.SHA256())),
                algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"}),
            )
        if isinstance(self.key, rsa.RSAPrivateKey):
            return (
                self.key.sign(data, padding.PKCS1v15(), hashes.SHA256()),
                algos.SignedDigestAlgorithm({"algorithm": "sha256_rsa"}),
            )
        raise TypeError("a TSA key must be EC or RSA")


def _rejection(reason: str, text: str) -> bytes:
    failure = tsp.PKIFailureInfo({reason})
    status = {"status": "rejection", "status_string": [text], "fail_info": failure}
    return bytes(TimeStampResp({"status": status}).dump())
