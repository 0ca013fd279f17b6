"""audit records say whether the subject's usage view shows them, found by index

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 16:20:00
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

USAGE_SERVICE = "usage"
PAGE = 5000


def upgrade() -> None:
    with op.batch_alter_table("audit_records", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("listed", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.drop_index("ix_audit_records_subject")
        batch_op.create_index("ix_audit_records_listed", ["subject", "listed", "at"], unique=False)
    # Records kept before: listed as the usage view listed them, from the record itself.
    records = sa.table(
        "audit_records",
        sa.column("chain", sa.String),
        sa.column("seq", sa.BigInteger),
        sa.column("subject", sa.String),
        sa.column("listed", sa.Boolean),
        sa.column("body", sa.LargeBinary),
    )
    connection = op.get_bind()
    mark = (
        records.update()
        .where(records.c.chain == sa.bindparam("c"), records.c.seq == sa.bindparam("s"))
        .values(listed=True)
    )
    last = ("", -1)
    while True:  # a page at a time, in key order: a large log is never held in memory
        rows = connection.execute(
            sa.select(records.c.chain, records.c.seq, records.c.body)
            .where(
                records.c.subject.is_not(None),
                sa.tuple_(records.c.chain, records.c.seq) > sa.tuple_(*last),
            )
            .order_by(records.c.chain, records.c.seq)
            .limit(PAGE)
        ).all()
        if not rows:
            break
        listed = [{"c": c, "s": s} for c, s, body in rows if _listed(json.loads(body))]
        if listed:
            connection.execute(mark, listed)
        last = (rows[-1][0], rows[-1][1])


def _listed(record: dict[str, object]) -> bool:
    parts = str(record.get("service", "")).split("/")
    usage = len(parts) >= 5 and parts[4] == USAGE_SERVICE
    return record.get("side") == "provider" and not usage


def downgrade() -> None:
    with op.batch_alter_table("audit_records", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_records_listed")
        batch_op.create_index("ix_audit_records_subject", ["subject", "at"], unique=False)
        batch_op.drop_column("listed")
