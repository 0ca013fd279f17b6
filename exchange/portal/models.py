"""Tables of the citizen portal (prefix ``portal_``): what citizens said of a procedure.

Nothing here names a person or a moment. A rating is not stored as a row of its own but added
to a tally (procedure, month, answers) -> count, so there is no row, order or time to join
with an audit record. What makes a rating count once is a ticket issued when a procedure
ends, stored as the SHA-256 of a random token the citizen's session holds, and deleted when
it is spent (:mod:`exchange.portal.ratings`).
"""

from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, SmallInteger, String, Table

from exchange.db.types import NAMING

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
