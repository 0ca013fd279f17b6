"""Tables of the citizen portal (prefix ``portal_``): what citizens said of a procedure, and
whom to tell of each release of their data.

Nothing here names a person or a moment. A rating is not stored as a row of its own but added
to a tally (procedure, month, answers) -> count, so there is no row, order or time to join
with an audit record. What makes a rating count once is a ticket issued when a procedure
ends, stored as the SHA-256 of a random token the citizen's session holds, and deleted when
it is spent (:mod:`exchange.portal.ratings`).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
)

from exchange.db.types import NAMING, UTCDateTime

metadata = MetaData(naming_convention=NAMING)

tickets = Table(
    "portal_rating_tickets",
    metadata,
    Column("ticket", String(64), primary_key=True),  # SHA-256 of the session's token, hex
    Column("month", String(7), nullable=False, index=True),  # issued, YYYY-MM; for pruning
)

ratings = Table(
    "portal_ratings",
    metadata,
    Column("procedure", String(255), primary_key=True),
    Column("month", String(7), primary_key=True),  # YYYY-MM, UTC
    Column("score", SmallInteger, primary_key=True),  # 1 (very hard) to 5 (very easy)
    Column("brought", String(3), primary_key=True),  # "yes" or "no"
    Column("document", String(255), primary_key=True),  # which, from a fixed list; "" unsaid
    Column("count", Integer, nullable=False),
)

# Notifications (:mod:`exchange.portal.notices`, docs/notifications.md). A citizen is named by
# the keyed hash of their person code (the portal's ``notices.key``); the code itself is kept
# nowhere here, and no message carries it.

subscriptions = Table(
    "portal_subscriptions",
    metadata,
    Column("citizen", String(64), primary_key=True),  # keyed hash of the person code
    Column("address", String(320), nullable=False),  # e-mail address, as the citizen gave it
    Column("language", String(8), nullable=False),
    Column("mode", String(8), nullable=False),  # "each" or "daily"
    Column("created_at", UTCDateTime, nullable=False),
    Column("digest_due", UTCDateTime, nullable=True),  # the next daily digest
    # Nothing is sent to an address until its owner opened the link sent to it: a mistyped
    # address must not receive news of someone's data.
    Column("confirmed_at", UTCDateTime, nullable=True),
    Column("confirm_digest", String(64), nullable=True),  # SHA-256 of the link's token, hex
    Column("confirm_sent_at", UTCDateTime, nullable=True),
)

watches = Table(  # one per citizen and register: the opaque id the register knows them by
    "portal_watches",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("provider", String(1100), nullable=False, index=True),
    # NULL once the citizen opted out: still to be cancelled at the register
    Column("citizen", String(64), nullable=True, index=True),
)

cursors = Table(  # how far each register's events have been read
    "portal_cursors",
    metadata,
    Column("provider", String(1100), primary_key=True),
    Column("cursor", Text, nullable=False),
)

notices = Table(  # the outbox: one row per release, kept once sent so a repeat is known
    "portal_notices",
    metadata,
    Column("provider", String(1100), primary_key=True),
    Column("chain", String(255), primary_key=True),
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column(
        "citizen",
        String(64),
        ForeignKey("portal_subscriptions.citizen", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("event", Text, nullable=False),  # JSON: who, what, why, when; no person code
    Column("received_at", UTCDateTime, nullable=False),
    Column("due_at", UTCDateTime, nullable=False, index=True),
    Column("next_try", UTCDateTime, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("sent_at", UTCDateTime, nullable=True, index=True),
)
