"""Heads kept outside a log, read from a file and checked, for ``exchange audit verify --heads``.

A citizen keeps receipts (the usage service's ``/v1/records``), an auditor or a peer keeps the
signed heads a gateway published (``GET /audit/heads``, ``/audit/consistency``). Any of those
answers may be kept as it came, one JSON document in the file or one per line: every signed
head and every receipt found in it is used, wherever it sits. A head is used only once its
signature (and its timestamp, if it has one) verifies against the trust anchors, exactly as the
log's own heads are; a receipt only once its record is proven in its head. A witness's
countersignature, where one is carried, must verify too. What they say of the log is then a
:class:`audit.verify.Kept`; which of them no witness countersigned is said beside it
(``--require-witness`` refuses those: a receipt fetched while witnessing was pending is fetched
again).

Not checked here: whether the log agrees (that is :func:`audit.verify.verify`), and heads of
other chains, which are counted and left out.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit import merkle
from audit.receipt import verify_receipt
from audit.verify import Anchors, Head, Kept, head_signature_problem, head_timestamp_verifies
from audit.witness import witnesses_of
from exchange.errors import InvalidRequest, InvalidSignature

_HEAD = frozenset({"chain", "size", "root", "signature"})
_RECEIPT = frozenset({"chain", "seq", "record", "size", "proof", "head"})


@dataclass(frozen=True)
class Read:
    kept: Kept
    heads: int  # kept heads (and receipts) of the chain
    others: int  # of other chains, left out
    # How many distinct witnesses countersigned each: "record <seq>" of a receipt, "the head
    # at size <n>".
    witnesses: tuple[tuple[str, int], ...] = ()

    def short_of(self, required: int) -> list[str]:
        """What fewer than ``required`` witnesses countersigned."""
        return [what for what, count in self.witnesses if count < required]


def read(path: Path, *, chain: str, anchors: Anchors) -> Read:
    """What the heads and receipts kept in ``path`` say of ``chain``; a kept head that does not
    verify is refused (it proves nothing, and the one who kept it should know)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"{path} cannot be read") from exc
    kept, heads, others, witnessed = Kept(), 0, 0, []
    for item in _found(_documents(path, text)):
        if item.get("chain") != chain:
            others += 1
            continue
        heads += 1
        if item.keys() >= _RECEIPT:
            witnessed.append((f"record {item['seq']}", _receipt(item, kept, anchors)))
        else:
            witnessed.append((f"the head at size {item['size']}", _head(item, kept, anchors)))
    if not heads:
        raise InvalidRequest(f"{path} holds no signed head of chain {chain}")
    return Read(kept, heads, others, tuple(witnessed))


def _documents(path: Path, text: str) -> list[Any]:
    """The file's JSON: one document, or one per line."""
    try:
        return [json.loads(text)]
    except ValueError:
        pass
    try:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError as exc:
        raise InvalidRequest(
            f"{path} is neither JSON nor JSON lines of kept heads or receipts"
        ) from exc


def _found(value: Any) -> Iterator[dict[str, Any]]:
    """Every receipt and signed head in ``value``, however the answer that held it nests them."""
    if isinstance(value, dict):
        if value.keys() >= _RECEIPT or value.keys() >= _HEAD:
            yield value
            return
        value = list(value.values())
    if isinstance(value, list):
        for inner in value:
            yield from _found(inner)


def _head(item: dict[str, Any], kept: Kept, anchors: Anchors) -> int:
    """Pin what the kept head says; how many distinct witnesses countersigned it."""
    size, root = item["size"], item["root"]
    try:
        token = item.get("timestamp")
        head = Head(
            chain=str(item["chain"]),
            size=size,
            root=str(root),
            signature=str(item["signature"]),
            timestamp=base64.b64decode(token, validate=True) if token else None,
        )
        pinned = bytes.fromhex(head.root)
    except (TypeError, ValueError, binascii.Error) as exc:
        raise InvalidRequest(f"a kept head at size {size!r} is malformed") from exc
    if type(size) is not int or size < 1 or len(pinned) != merkle.HASH_SIZE:
        raise InvalidRequest(f"a kept head at size {size!r} is malformed")
    wrong = head_signature_problem(head, anchors.signers, anchors)
    if wrong is None and head.timestamp is not None and not head_timestamp_verifies(head, anchors):
        wrong = "its timestamp does not verify"
    witnesses: set[str] = set()
    if wrong is None:
        try:
            witnesses = witnesses_of(
                chain=head.chain,
                size=size,
                root=head.root,
                head_signature=head.signature,
                cosignature=item.get("cosignature"),
                peers=item.get("peer_cosignatures"),
                ca=anchors.ca,
                revoked=anchors.revoked,
            )
        except InvalidSignature as exc:
            wrong = f"its witness countersignature does not verify ({exc.message})"
    if wrong is not None:
        raise InvalidRequest(f"the head kept at size {size} is refused: {wrong}")
    kept.pin_prefix(size, pinned, head=size)
    return len(witnesses)


def _receipt(item: dict[str, Any], kept: Kept, anchors: Anchors) -> int:
    """Pin what the kept receipt proves; how many distinct witnesses countersigned its head."""
    checked = verify_receipt(item, anchors=anchors)
    if not checked.ok or checked.size is None:
        raise InvalidRequest(
            f"a kept receipt of record {item['seq']!r} is refused: {checked.message}"
        )
    # Proven by the checks above: the record, the head's root, and so the path's nodes.
    seq, size = int(item["seq"]), checked.size
    proof = [bytes.fromhex(str(p)) for p in item["proof"]]
    kept.pin_prefix(size, bytes.fromhex(str(item["head"]["root"])), head=size)
    kept.pin_leaf(seq, merkle.leaf_hash(base64.b64decode(str(item["record"]))), head=size)
    before = merkle.prefix_root(seq, size, proof)
    if before is not None:
        kept.pin_prefix(seq, before, head=size)
    return checked.witnesses
