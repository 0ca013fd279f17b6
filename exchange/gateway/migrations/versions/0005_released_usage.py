"""audit records say whether they released data; refused attempts are indexed apart

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 17:20:00
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

PAGE = 5000


def upgrade() -> None:
    with op.batch_alter_table("audit_records", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("released", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.drop_index("ix_audit_records_listed")
        batch_op.create_index(
            "ix_audit_records_usage", ["subject", "listed", "released", "at"], unique=False
        )
    # Records kept before: released when the record itself says the answer was a success.
    records = sa.table(
        "audit_records",
        sa.column("chain", sa.String),
        sa.column("seq", sa.BigInteger),
        sa.column("listed", sa.Boolean),
        sa.column("released", sa.Boolean),
        sa.column("body", sa.LargeBinary),
    )
    connection = op.get_bind()
    mark = (
        records.update()
        .where(records.c.chain == sa.bindparam("c"), records.c.seq == sa.bindparam("s"))
        .values(released=True)
    )
    last = ("", -1)
    while True:  # a page at a time, in key order: a large log is never held in memory
        rows = connection.execute(
            sa.select(records.c.chain, records.c.seq, records.c.body)
            .where(
                records.c.listed.is_(True),
                sa.tuple_(records.c.chain, records.c.seq) > sa.tuple_(*last),
            )
            .order_by(records.c.chain, records.c.seq)
            .limit(PAGE)
        ).all()
        if not rows:
            break
        done = [{"c": c, "s": s} for c, s, body in rows if _released(json.loads(body))]
        if done:
            connection.execute(mark, done)
        last = (rows[-1][0], rows[-1][1])


def _released(record: dict[str, object]) -> bool:
    status = record.get("status")
    return isinstance(status, int) and 200 <= status < 300


def downgrade() -> None:
    with op.batch_alter_table("audit_records", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_records_usage")
        batch_op.create_index("ix_audit_records_listed", ["subject", "listed", "at"], unique=False)
        batch_op.drop_column("released")
