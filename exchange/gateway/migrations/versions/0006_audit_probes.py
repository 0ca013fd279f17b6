"""a probe table for health checks, apart from the audit records

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 17:40:00
"""

import sqlalchemy as sa
from alembic import op

import exchange.db.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_probes",
        sa.Column("chain", sa.String(length=255), nullable=False),
        sa.Column("at", exchange.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("chain", name=op.f("pk_audit_probes")),
    )


def downgrade() -> None:
    op.drop_table("audit_probes")
