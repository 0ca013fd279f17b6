"""Check a whole audit chain: records, hash chain, tree heads, their signatures and timestamps.

Needs only the records, the heads and the trust material (instance CA, the member's signing
certificates, the TSA certificates), all of which an export bundle carries, plus the trust
anchor that vouches for them. It names the first bad position:

- a changed record breaks the hash the next record carries (reported at the changed record);
  the last record, which no later record pins, is caught by the signed head covering it;
- a deleted, inserted or moved record breaks the sequence numbers at that position;
- a truncated log is shorter than a signed head says it was;
- a head whose signature, root or timestamp does not verify is reported at its size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from cryptography import x509

from audit import merkle, timestamp
from audit.heads import HEAD_TYPE
from audit.log import GENESIS, TREE_HEIGHT, listed, released
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


@dataclass(frozen=True)
class Anchors:
    """What records and heads are checked against."""

    ca: x509.Certificate
    signing: Sequence[x509.Certificate]
    tsa: Sequence[x509.Certificate] = ()
    revoked: frozenset[str] = frozenset()  # serials (hex) the configuration lists as revoked


@dataclass(frozen=True)
class Problem:
    position: int
    message: str


Stored = tuple[bytes, str | None, bool, bool]  # body; subject, listed and released columns


def _never_read(lo: int, hi: int) -> list[bytes]:
    raise InternalError(f"the verifier reads records once, in order (asked for {lo}-{hi})")


@dataclass
class Report:
    chain: str
    records: int = 0
    heads: int = 0
    timestamped: int = 0
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
    chain: str, bodies: Iterable[bytes | Stored], heads: Iterable[Head], anchors: Anchors
) -> Report:
    """Check the chain record by record; each head is checked as soon as the log reaches its
    size, so damage is reported where it first shows, not behind a later break.

    Records read from a gateway's database (:func:`audit.bundle.stored`) come with the columns
    a citizen's usage view finds them by; those must say what the record says, or a record
    could be hidden from the person it is about while the chain still verifies."""
    report = Report(chain=chain)
    signers = {fingerprint(c): c for c in anchors.signing}
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
        report.problem = heads_up_to(position) or _check_record(
            chain, position, body, previous, columns
        )
        if report.problem is not None:
            return report
        leaf = merkle.leaf_hash(body)
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
    report.uncovered = report.records - good_size
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
