"""Witness countersignatures of signed tree heads: their format, made and checked.

A witness (the central authority by default) that accepted a head, because it verified and was
consistent with the last head it saw from that chain, answers with a *cosignature*::

    {"signature": "<JWS>", "certificate": "<PEM>"}

The JWS (``typ`` ``exchange-cosignature+jws``, ES256, ``kid`` the certificate's fingerprint)
signs ``{"chain", "size", "root", "head", "at"}`` where ``head`` is the base64url SHA-256 of the
head's own JWS: the cosignature vouches for that very signed head, not only for its root. ``at``
is when the witness saw it. The certificate travels with the cosignature, so a verifier needs
nothing but the instance CA: it must be issued by that CA for signing documents, and its subject
must be the instance's witness name (organisation as the CA's, common name ending in
``audit witness``, no ``serialNumber``). The authority sets every subject it issues and gives
members' certificates their member id as ``serialNumber``, so no member key can pass for the
witness. The signature is plain ECDSA P-256 over SHA-256: ``openssl dgst -sha256 -verify`` checks
it once the JWS's raw ``r||s`` is DER-encoded.

A member's gateway may witness other members' logs too (a *peer witness*, off by default). Its
cosignature has the same form, signed with the member's own signing key: the certificate must be
issued by the instance CA for signing documents to a member (its ``serialNumber``), and that
member must not be the log's own (:func:`verify_peer_cosignature`). A head's witnesses are then
counted as distinct parties: the authority's witness, and each member
(:func:`witnesses_of`).

What a witness decides about a submitted head (:func:`contradiction`) is shared by the
authority's witness and the peer witnesses, so both refuse the same forks.

Not checked here: whether the witness saw the *newest* head of the log (only the log and later
heads can say), and the witness certificate's revocation beyond the serials passed in.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from cryptography import x509
from cryptography.x509.oid import NameOID

from audit import merkle
from exchange import jws
from exchange.errors import InvalidRequest, InvalidSignature, StaleConsistencyProof
from exchange.trust.keys import certificate_pem, fingerprint, serial_hex
from exchange.trust.signed import Signer, may_sign, verify_signed

COSIGNATURE_TYPE = "exchange-cosignature+jws"
WITNESS_NAME = "audit witness"
AUTHORITY = "authority"  # how the authority's witness is counted among a head's witnesses
MAX_PROOF = 128  # hashes; a proof of a tree of 2^64 leaves needs fewer
MAX_CHAIN = 255  # characters, as a gateway's audit log stores a chain name


def witness_subject(instance: str) -> x509.Name:
    """The subject the authority gives its witness certificate."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"exchange instance {instance}"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{instance} {WITNESS_NAME}"),
        ]
    )


def head_digest(head_signature: str) -> str:
    """What a cosignature binds of a head: the base64url SHA-256 of its JWS."""
    return jws.b64url(hashlib.sha256(head_signature.encode("ascii")).digest())


def cosign(
    signer: Signer, *, chain: str, size: int, root: str, head_signature: str, at: datetime
) -> dict[str, str]:
    claims = {
        "chain": chain,
        "size": size,
        "root": root,
        "head": head_digest(head_signature),
        "at": at.isoformat(),
    }
    return {
        "signature": signer.sign(claims, COSIGNATURE_TYPE),
        "certificate": certificate_pem(signer.certificate),
    }


def is_witness_certificate(certificate: x509.Certificate, *, ca: x509.Certificate) -> bool:
    """Issued by ``ca`` for signing documents, to the instance's witness (see module doc)."""
    if not may_sign(certificate, ca=ca):
        return False
    subject = certificate.subject
    organisation = subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    names = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return (
        not subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
        and len(names) == 1
        and str(names[0].value).endswith(f" {WITNESS_NAME}")
        and organisation == ca.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    )


def member_of_chain(chain: str) -> str:
    return "/".join(chain.split("/")[:3])


def peer_member(certificate: x509.Certificate, *, ca: x509.Certificate) -> str | None:
    """The member a signing certificate from ``ca`` was issued to, if it is a member's."""
    if not may_sign(certificate, ca=ca):
        return None
    owner = certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    return str(owner[0].value) if len(owner) == 1 else None


def verify_cosignature(
    cosignature: Mapping[str, Any],
    *,
    chain: str,
    size: int,
    root: str,
    head_signature: str,
    ca: x509.Certificate,
    revoked: Collection[str] = (),
) -> datetime:
    """When the witness saw the head, once ``cosignature`` is a valid witness countersignature
    of exactly this head; else :class:`InvalidSignature` saying what is wrong."""
    certificate = _certificate(cosignature)
    if not is_witness_certificate(certificate, ca=ca):
        raise InvalidSignature("the cosignature is not by the instance's witness")
    return _verified(cosignature, certificate, chain, size, root, head_signature, revoked)


def verify_peer_cosignature(
    cosignature: Mapping[str, Any],
    *,
    chain: str,
    size: int,
    root: str,
    head_signature: str,
    ca: x509.Certificate,
    revoked: Collection[str] = (),
) -> str:
    """The member whose gateway witnessed the head, once ``cosignature`` is its valid
    countersignature of exactly this head and that member is not the log's own."""
    certificate = _certificate(cosignature)
    member = peer_member(certificate, ca=ca)
    if member is None:
        raise InvalidSignature("the peer cosignature is not by a member's signing key")
    if member == member_of_chain(chain):
        raise InvalidSignature("a member cannot witness its own log")
    _verified(cosignature, certificate, chain, size, root, head_signature, revoked)
    return member


def witnesses_of(
    *,
    chain: str,
    size: int,
    root: str,
    head_signature: str,
    cosignature: Mapping[str, Any] | None,
    peers: Mapping[str, Any] | None,
    ca: x509.Certificate,
    revoked: Collection[str] = (),
) -> set[str]:
    """The distinct parties that countersigned a head (:data:`AUTHORITY`, member ids); any
    countersignature that does not verify raises :class:`InvalidSignature`."""
    found: set[str] = set()
    if cosignature is not None:
        verify_cosignature(
            cosignature,
            chain=chain,
            size=size,
            root=root,
            head_signature=head_signature,
            ca=ca,
            revoked=revoked,
        )
        found.add(AUTHORITY)
    if peers is not None and not isinstance(peers, Mapping):
        raise InvalidSignature("the peer cosignatures are malformed")
    for peer, signed in (peers or {}).items():
        if not isinstance(signed, Mapping):
            raise InvalidSignature("a peer cosignature is malformed")
        member = verify_peer_cosignature(
            signed,
            chain=chain,
            size=size,
            root=root,
            head_signature=head_signature,
            ca=ca,
            revoked=revoked,
        )
        if not str(peer).startswith(f"{member}/"):  # keyed by the witnessing gateway's id
            raise InvalidSignature("a peer cosignature is filed under another gateway")
        found.add(member)
    return found


def _certificate(cosignature: Mapping[str, Any]) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(str(cosignature["certificate"]).encode())
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidSignature("the witness cosignature is malformed") from exc


def _verified(
    cosignature: Mapping[str, Any],
    certificate: x509.Certificate,
    chain: str,
    size: int,
    root: str,
    head_signature: str,
    revoked: Collection[str],
) -> datetime:
    try:
        token = str(cosignature["signature"])
    except (KeyError, TypeError) as exc:
        raise InvalidSignature("the witness cosignature is malformed") from exc
    if serial_hex(certificate.serial_number) in revoked:
        raise InvalidSignature("the witness certificate is revoked")

    def certificate_for(kid: str) -> x509.Certificate:
        if kid != fingerprint(certificate):
            raise InvalidSignature("the cosignature names another certificate")
        return certificate

    claims = verify_signed(token, typ=COSIGNATURE_TYPE, certificate_for=certificate_for).claims
    if (
        claims.get("chain") != chain
        or claims.get("size") != size
        or claims.get("root") != root
        or claims.get("head") != head_digest(head_signature)
    ):
        raise InvalidSignature("the cosignature is for another head")
    try:
        at = datetime.fromisoformat(str(claims.get("at")))
    except ValueError as exc:
        raise InvalidSignature("the cosignature has no valid time") from exc
    if at.tzinfo is None or not (
        certificate.not_valid_before_utc <= at <= certificate.not_valid_after_utc
    ):
        raise InvalidSignature("the cosignature was made outside its certificate's validity")
    return at


@dataclass(frozen=True, slots=True)
class Submitted:
    """A signed tree head as a gateway submits it to a witness."""

    chain: str
    size: int
    root: str
    signature: str


class Held(Protocol):
    """The latest head a witness accepted from a chain, as it keeps it."""

    size: int
    root: str
    signature: str


def parse_head(raw: Mapping[str, Any]) -> Submitted:
    try:
        head = Submitted(
            chain=str(raw["chain"]),
            size=raw["size"],
            root=str(raw["root"]),
            signature=str(raw["signature"]),
        )
        bytes.fromhex(head.root)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidRequest("the tree head is malformed") from exc
    if (
        type(head.size) is not int
        or head.size < 1
        or len(head.root) != 64
        or len(head.chain) > MAX_CHAIN
    ):
        raise InvalidRequest("the tree head is malformed")
    return head


def parse_proof(proof: Sequence[Any]) -> list[bytes]:
    try:
        nodes = [bytes.fromhex(str(p)) for p in proof]
    except (TypeError, ValueError) as exc:
        raise InvalidRequest("the consistency proof is malformed") from exc
    if len(nodes) > MAX_PROOF:
        raise InvalidRequest("the consistency proof is too long")
    return nodes


def signed_at(signature: str) -> datetime:
    """The ``at`` claim of a head JWS whose signature was verified already (the submitted one
    before any decision, the held one when it was accepted)."""
    try:
        payload = signature.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        at = datetime.fromisoformat(str(claims["at"]))
    except (IndexError, KeyError, TypeError, ValueError) as exc:
        raise InvalidSignature("the tree head has no valid time") from exc
    if at.tzinfo is None:
        raise InvalidSignature("the tree head has no valid time")
    return at


def contradiction(
    latest: Held,
    head: Submitted,
    from_size: int | None,
    proof: Sequence[bytes],
    *,
    stale: Callable[[], None] = lambda: None,
) -> str | None:
    """Why ``head`` cannot follow ``latest``, the head held of its chain, if it cannot (a
    fork). A head older than the held one and signed no later, or a proof from another size,
    raises :class:`StaleConsistencyProof` (``stale`` counts the former): old heads are public,
    so sending one again is no evidence of anything."""
    if head.size == latest.size and head.root != latest.root:
        return "another root at a witnessed size"
    if head.size == latest.size and signed_at(head.signature) > signed_at(latest.signature):
        return None  # the same tree signed again later (a restarted gateway): countersigned
    if head.size <= latest.size:
        # An older head (they are public) or the held one signed anew: evidence of a
        # rollback only if the member signed it after the head held.
        if head.size < latest.size and signed_at(head.signature) > signed_at(latest.signature):
            return "smaller than a head witnessed before and signed after it (rolled back)"
        stale()
        raise StaleConsistencyProof(
            "the witness holds a newer head of this chain", detail=str(latest.size)
        )
    if from_size != latest.size:
        raise StaleConsistencyProof(
            "the proof is not from the witness's latest head", detail=str(latest.size)
        )
    old_root = bytes.fromhex(latest.root)
    if merkle.verify_consistency(latest.size, head.size, old_root, bytes.fromhex(head.root), proof):
        return None
    return "not consistent with the last witnessed head"
