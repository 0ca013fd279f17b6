"""Check a whole audit chain: records, hash chain, tree heads, their signatures and timestamps.

Needs only the records, the heads and the trust material (instance CA, the member's signing
certificates, the TSA certificates), all of which an export bundle carries, plus the trust
anchor that vouches for them. It names the first bad position:

- a changed record breaks the hash the next record carries (reported at the changed record);
  the last record, which no later record pins, is caught by the signed head covering it;
- a deleted, inserted or moved record breaks the sequence numbers at that position;
- a truncated log is shorter than a signed head says it was;
- a head whose signature, root or timestamp does not verify is reported at its size.

A history rewritten from some record on and signed anew holds together on its own. Heads kept
outside the log (:class:`Kept`: by a citizen, an auditor, a peer; see :mod:`audit.kept`) catch
it: each pins the root of the log's first records, a receipt also its record and (through its
proof) the root of the records before it. The first record where the log departs from them is
named exactly when what was kept pins it, and otherwise as the range it lies in: one root alone
cannot say which of the records under it changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

import orjson
from cryptography import x509

from audit import merkle, timestamp
from audit.heads import HEAD_TYPE
from audit.log import GENESIS, TREE_HEIGHT, listed, released
from audit.witness import witnesses_of
from exchange.errors import Error, InternalError, InvalidSignature
from exchange.trust.keys import fingerprint, serial_hex
from exchange.trust.signed import may_sign, verify_signed


@dataclass(frozen=True)
class Head:
    chain: str
    size: int
    root: str
    signature: str
    timestamp: bytes | None
    cosignature: Mapping[str, Any] | None = None  # a witness's countersignature (audit.witness)
    # Peer gateways' countersignatures, by the witnessing gateway's id (audit.witness).
    peer_cosignatures: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Anchors:
    """What records and heads are checked against."""

    ca: x509.Certificate
    signing: Sequence[x509.Certificate]
    tsa: Sequence[x509.Certificate] = ()
    revoked: frozenset[str] = frozenset()  # serials (hex) the configuration lists as revoked

    @cached_property
    def signers(self) -> dict[str, x509.Certificate]:
        """The signing certificates by the ``kid`` that names them (their fingerprint)."""
        return {fingerprint(c): c for c in self.signing}


@dataclass(frozen=True)
class Problem:
    position: int
    message: str
    last: int | None = None  # when only a range is known: the last record it may be

    @property
    def where(self) -> str:
        if self.last is None or self.last == self.position:
            return f"at record {self.position}"
        return f"between record {self.position} and record {self.last}"


Stored = tuple[bytes, str | None, bool, bool]  # body; subject, listed and released columns


@dataclass
class Kept:
    """What heads kept outside the log say it held, each fact with the size of the kept head
    that vouches for it: the root of its first ``size`` records, and single records' leaf
    hashes. Only facts whose signatures were checked belong here (:func:`audit.kept.read`)."""

    prefixes: dict[int, list[tuple[bytes, int]]] = field(default_factory=dict)
    leaves: dict[int, list[tuple[bytes, int]]] = field(default_factory=dict)

    def pin_prefix(self, size: int, root: bytes, *, head: int) -> None:
        self.prefixes.setdefault(size, []).append((root, head))

    def pin_leaf(self, position: int, leaf: bytes, *, head: int) -> None:
        self.leaves.setdefault(position, []).append((leaf, head))

    @property
    def largest(self) -> int:
        return max(self.prefixes, default=0)


@dataclass
class _Against:
    """The log compared with what was kept, as it streams by: ``agreed`` records are known to
    be those the kept heads vouch for; the first fact that disagrees ends the comparison."""

    kept: Kept
    agreed: int = 0

    def prefix(self, tree: merkle.Tree) -> Problem | None:
        for root, head in self.kept.prefixes.get(tree.size, ()):
            if tree.root() != root:
                return self._differs(head, tree.size)
            self.agreed = max(self.agreed, tree.size)
        return None

    def leaf(self, position: int, leaf: bytes) -> Problem | None:
        for kept, head in self.kept.leaves.get(position, ()):
            if leaf != kept:
                return self._differs(head, position + 1)
            if self.agreed == position:
                self.agreed = position + 1
        return None

    def beyond(self, records: int) -> Problem | None:
        """What was kept of records the log does not have (it was cut short)."""
        heads = [h for s, pins in self.kept.prefixes.items() if s > records for _, h in pins]
        heads += [h for p, pins in self.kept.leaves.items() if p >= records for _, h in pins]
        if not heads:
            return None
        return self._differs(min(heads), records + 1, f"; it ends at {records} records")

    def _differs(self, head: int, before: int, note: str = "") -> Problem:
        """The log departs from the head kept at size ``head`` before record ``before``."""
        first, last = self.agreed, before - 1
        if first > last:  # a kept head vouches for records that another one contradicts
            return Problem(
                last,
                f"the heads kept contradict each other about the records before {before}:"
                " the member signed two histories",
            )
        where = (
            f"from record {first}"
            if first == last
            else f"from a record between record {first} and record {last} (the heads kept"
            " pin no record in between)"
        )
        return Problem(
            first, f"the log differs from the head kept at size {head} {where}{note}", last
        )


def _never_read(lo: int, hi: int) -> list[bytes]:
    raise InternalError(f"the verifier reads records once, in order (asked for {lo}-{hi})")


@dataclass
class Report:
    chain: str
    records: int = 0
    heads: int = 0
    timestamped: int = 0
    witnessed: int = 0  # heads with a valid witness countersignature
    newest_witnessed: bool = False  # whether the newest signed head is one of them
    newest_witnesses: int = 0  # the distinct witnesses (authority, members) of the newest head
    problem: Problem | None = None
    uncovered: int = 0  # records after the last signed head: chained, but not yet signed
    # Heads are checked when the log reaches their size, so only the whole tree's root is ever
    # asked for: the tree needs no leaves back and keeps 2 bytes a record, not 64.
    tree: merkle.Tree = field(
        default_factory=lambda: merkle.Tree(height=TREE_HEIGHT, read=_never_read), repr=False
    )

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify(
    chain: str,
    bodies: Iterable[bytes | Stored],
    heads: Iterable[Head],
    anchors: Anchors,
    kept: Kept | None = None,
) -> Report:
    """Check the chain record by record; each head is checked as soon as the log reaches its
    size, so damage is reported where it first shows, not behind a later break.

    Records read from a gateway's database (:func:`audit.bundle.stored`) come with the columns
    a citizen's usage view finds them by; those must say what the record says, or a record
    could be hidden from the person it is about while the chain still verifies.

    With ``kept``, the log must also be the one the kept heads signed, as far as they reach."""
    report = Report(chain=chain)
    against = None if kept is None else _Against(kept)
    signers = anchors.signers
    pending = sorted(heads, key=lambda h: h.size if type(h.size) is int else -1)
    good_size = 0

    def heads_up_to(size: int) -> Problem | None:
        nonlocal good_size
        # A head without an integer size comes first and is reported by _check_head.
        while pending and (type(pending[0].size) is not int or pending[0].size <= size):
            head = pending.pop(0)
            problem = _check_head(head, report, signers, anchors, good_size)
            if problem is not None:
                return problem
            good_size = head.size
            report.heads += 1
        return None

    previous = GENESIS
    for position, item in enumerate(bodies):
        body, columns = (item, None) if isinstance(item, bytes) else (item[0], item)
        leaf = merkle.leaf_hash(body)
        report.problem = heads_up_to(position) or _check_record(
            chain, position, body, previous, columns
        )
        if report.problem is None and against is not None:
            report.problem = against.prefix(report.tree) or against.leaf(position, leaf)
        if report.problem is not None:
            return report
        report.tree.append(leaf)
        previous = leaf.hex()
        report.records += 1
    report.problem = heads_up_to(report.records)
    if report.problem is None and pending:
        head = pending[0]
        report.problem = Problem(
            report.records,
            f"log ends at {report.records} records but a head was signed at size {head.size}"
            " (truncated)",
        )
    if report.problem is None and against is not None:
        report.problem = against.prefix(report.tree) or against.beyond(report.records)
    report.uncovered = report.records - max(good_size, against.agreed if against else 0)
    return report


def _check_record(
    chain: str, position: int, body: bytes, previous: str, columns: Stored | None
) -> Problem | None:
    try:
        record = orjson.loads(body)
    except ValueError:
        return Problem(position, "record is not valid JSON")
    if not isinstance(record, dict) or record.get("chain") != chain:
        return Problem(position, f"record does not belong to chain {chain}")
    if columns is not None:
        _, subject, shown, done = columns
        reads_listed = listed(record.get("side"), record.get("service"), subject)
        if (
            subject != record.get("subject")
            or shown != reads_listed
            or done != (reads_listed and released(record.get("status")))
        ):
            return Problem(
                position,
                f"record {position} is indexed otherwise than it reads (subject, listed or "
                "released altered: the usage view would show it wrongly)",
            )
    seq = record.get("seq")
    if seq != position:
        if isinstance(seq, int) and seq > position:
            return Problem(position, f"record {position} is missing (the next one found is {seq})")
        return Problem(position, f"record out of order: sequence {seq} at position {position}")
    if record.get("prev") != previous:
        if position == 0:
            return Problem(0, "record 0 does not start the chain")
        # The record before no longer hashes to what this one carries: one of the two changed.
        return Problem(
            position - 1, f"record {position - 1} was altered (record {position} pins another hash)"
        )
    return None


def _check_head(
    head: Head,
    report: Report,
    signers: dict[str, x509.Certificate],
    anchors: Anchors,
    good_size: int,
) -> Problem | None:
    if type(head.size) is not int or head.size < 1:
        return Problem(report.records, "a tree head has no valid size")
    where = max(head.size - 1, 0)
    wrong = head_signature_problem(head, signers, anchors)
    if wrong is not None:
        return Problem(where, wrong)
    if head.size > report.records:
        return Problem(
            report.records,
            f"log ends at {report.records} records but a head was signed at size {head.size}"
            " (truncated)",
        )
    if report.tree.root(head.size).hex() != head.root:
        if head.size == report.records:
            return Problem(
                where, f"record {where} was altered (the head signed at size {head.size} disagrees)"
            )
        return Problem(
            good_size,
            f"records from {good_size} to {where} were rewritten"
            f" (the head at size {head.size} disagrees)",
        )
    if head.timestamp is not None:
        if not head_timestamp_verifies(head, anchors):
            return Problem(where, f"timestamp of the head at size {head.size} does not verify")
        report.timestamped += 1
    try:
        witnesses = witnesses_of(
            chain=head.chain,
            size=head.size,
            root=head.root,
            head_signature=head.signature,
            cosignature=head.cosignature,
            peers=head.peer_cosignatures,
            ca=anchors.ca,
            revoked=anchors.revoked,
        )
    except InvalidSignature as exc:
        return Problem(where, f"witness cosignature of the head at size {head.size}: {exc}")
    report.newest_witnessed, report.newest_witnesses = bool(witnesses), len(witnesses)
    report.witnessed += bool(witnesses)
    return None


def head_signature_problem(
    head: Head, signers: dict[str, x509.Certificate], anchors: Anchors
) -> str | None:
    """What is wrong with a head's signature (signer, certificate, claims, time), if anything."""

    def certificate_for(kid: str) -> x509.Certificate:
        certificate = signers.get(kid)
        if certificate is None:
            raise InvalidSignature("not signed by a known key of the member")
        if not may_sign(certificate, ca=anchors.ca) or (
            serial_hex(certificate.serial_number) in anchors.revoked
        ):
            raise InvalidSignature("signed by a certificate that may not sign it")
        return certificate

    try:
        verified = verify_signed(head.signature, typ=HEAD_TYPE, certificate_for=certificate_for)
    except InvalidSignature as exc:
        return f"tree head at size {head.size} is refused: {exc.message}"
    claims, certificate = verified.claims, verified.certificate
    if (
        claims.get("chain") != head.chain
        or claims.get("size") != head.size
        or claims.get("root") != head.root
    ):
        return f"tree head at size {head.size} does not match what its signature says"
    try:
        signed_at = datetime.fromisoformat(str(claims.get("at")))
    except ValueError:
        return f"tree head at size {head.size} has no valid time"
    if signed_at.tzinfo is None:
        return f"tree head at size {head.size} has no valid time"
    if not certificate.not_valid_before_utc <= signed_at <= certificate.not_valid_after_utc:
        return f"head at size {head.size} was signed outside its certificate's validity"
    return None


def head_timestamp_verifies(head: Head, anchors: Anchors) -> bool:
    """Whether one of the anchors' TSAs stamped exactly this head's signature."""
    if head.timestamp is None:
        return False
    digest = hashlib.sha256(head.signature.encode()).digest()
    for tsa in anchors.tsa:
        try:
            timestamp.verify(head.timestamp, digest=digest, tsa=tsa, ca=anchors.ca)
        except Error:
            continue
        return True
    return False
