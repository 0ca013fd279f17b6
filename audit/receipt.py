"""Receipts: one audit record, its inclusion proof and the signed tree head, made and checked.

A receipt (:func:`make_receipt`; the usage service's ``/v1/records`` and the gateway's
``/audit/records/{seq}/proof`` both hand out this one format) holds the record's exact bytes
(base64), its chain and position, an RFC 9162 inclusion proof, and the tree head it is proven
against (:func:`head_document`): root, signature of the provider member, RFC 3161 timestamp and,
once a witness accepted the head, its countersignature. ``witness`` says which: ``countersigned``
or ``pending`` (the gateway picks the newest witnessed head that covers the record,
:class:`audit.heads.ReceiptHeads`; a record newer than it is proven against an unwitnessed head,
and fetching the receipt again after the next round of witnessing gives a witnessed one). The
field is a hint for people: :func:`verify_receipt` goes by the countersignature itself.
:func:`verify_receipt` checks one. It verifies if the record hashes into that
root at that position and the head is signed (and, when stamped, timestamped) by keys the trust
anchors vouch for. Then the provider can no longer deny or rewrite that access without the
change showing in every later head.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from audit import merkle
from audit.models import TreeHead
from audit.verify import Anchors, Head, head_signature_problem, head_timestamp_verifies
from audit.witness import witnesses_of
from exchange.errors import InvalidSignature


def head_document(head: TreeHead) -> dict[str, Any]:
    """A signed tree head as it is published and carried in receipts."""
    return {
        "chain": head.chain,
        "size": head.size,
        "root": head.root,
        "at": head.at.isoformat(),
        "signature": head.signature,
        "timestamp": base64.b64encode(head.timestamp).decode() if head.timestamp else None,
        "tsa": head.tsa,
        "cosignature": json.loads(head.cosignature) if head.cosignature else None,
        "peer_cosignatures": json.loads(head.peer_cosignatures) if head.peer_cosignatures else {},
    }


def make_receipt(
    *, chain: str, seq: int, body: bytes, proof: list[bytes], head: TreeHead
) -> dict[str, Any]:
    """The receipt of record ``seq`` of ``chain`` (its exact ``body``), proven by ``proof``
    against ``head``."""
    return {
        "chain": chain,
        "seq": seq,
        "record": base64.b64encode(body).decode(),
        "size": head.size,
        "proof": [p.hex() for p in proof],
        "head": head_document(head),
        "witness": "countersigned" if head.cosignature else "pending",
    }


@dataclass(frozen=True, slots=True)
class ReceiptCheck:
    ok: bool
    message: str
    size: int | None = None
    timestamped: bool = False
    witnessed: bool = False
    witnesses: int = 0  # distinct parties that countersigned the head (authority, members)


def verify_receipt(receipt: Mapping[str, Any], *, anchors: Anchors) -> ReceiptCheck:
    try:
        body = base64.b64decode(str(receipt["record"]), validate=True)
        chain, seq, size = str(receipt["chain"]), receipt["seq"], receipt["size"]
        proof = [bytes.fromhex(str(p)) for p in receipt["proof"]]
        raw_head = receipt["head"]
        head = Head(
            chain=chain,
            size=size,
            root=str(raw_head["root"]),
            signature=str(raw_head["signature"]),
            timestamp=base64.b64decode(raw_head["timestamp"]) if raw_head["timestamp"] else None,
            # Receipts from before witnessing carry none.
            cosignature=raw_head.get("cosignature"),
            peer_cosignatures=raw_head.get("peer_cosignatures"),
        )
        root = bytes.fromhex(head.root)
        record = json.loads(body)
    except (KeyError, TypeError, ValueError, binascii.Error):
        return ReceiptCheck(False, "the receipt is malformed")
    if type(seq) is not int or type(size) is not int:
        return ReceiptCheck(False, "the receipt is malformed")
    if not isinstance(record, dict) or record.get("chain") != chain or record.get("seq") != seq:
        return ReceiptCheck(False, "the record does not sit where the receipt says")
    if not merkle.verify_inclusion(seq, size, merkle.leaf_hash(body), proof, root):
        return ReceiptCheck(False, "the record is not in the tree that the head signs")
    wrong = head_signature_problem(head, anchors.signers, anchors)
    if wrong is not None:
        return ReceiptCheck(False, wrong)
    stamped = head.timestamp is not None
    if stamped and not head_timestamp_verifies(head, anchors):
        return ReceiptCheck(False, "the head's timestamp does not verify")
    try:
        witnesses = witnesses_of(
            chain=chain,
            size=size,
            root=head.root,
            head_signature=head.signature,
            cosignature=head.cosignature,
            peers=head.peer_cosignatures,
            ca=anchors.ca,
            revoked=anchors.revoked,
        )
    except InvalidSignature:
        return ReceiptCheck(False, "the head's witness countersignature does not verify")
    return ReceiptCheck(
        True,
        f"record {seq} is in the log of {chain}, as the head signed at size {size} proves"
        + (" (timestamped)" if stamped else "")
        + (f" (witnessed by {len(witnesses)})" if witnesses else ""),
        size=size,
        timestamped=stamped,
        witnessed=bool(witnesses),
        witnesses=len(witnesses),
    )
