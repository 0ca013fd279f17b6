"""membership and subsystem applications

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 20:45:00.000000
"""

import sqlalchemy as sa
from alembic import op

import exchange.db.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ca_applications",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("identifier", sa.String(length=1100), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("contact", sa.String(length=255), nullable=False),
        sa.Column("submitted_at", exchange.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("decided_at", exchange.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=255), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ca_applications")),
    )
    with op.batch_alter_table("ca_applications", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ca_applications_identifier"), ["identifier"])
        batch_op.create_index(batch_op.f("ix_ca_applications_status"), ["status"])


def downgrade() -> None:
    with op.batch_alter_table("ca_applications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ca_applications_status"))
        batch_op.drop_index(batch_op.f("ix_ca_applications_identifier"))
    op.drop_table("ca_applications")
