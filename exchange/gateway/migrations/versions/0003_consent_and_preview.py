"""legal basis on access rights; previews held for citizens

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 12:20:00
"""

import sqlalchemy as sa
from alembic import op

import exchange.db.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gw_access_rights", schema=None) as batch_op:
        batch_op.add_column(sa.Column("legal_basis", sa.String(length=500), nullable=True))
    op.create_table(
        "gw_previews",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("consent_id", sa.String(length=255), nullable=False),
        sa.Column("client", sa.String(length=1100), nullable=False),
        sa.Column("service", sa.String(length=1100), nullable=False),
        sa.Column("query", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("created_at", exchange.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", exchange.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=True),
        sa.Column("decided_at", exchange.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gw_previews")),
    )
    op.create_index(
        "ix_gw_previews_request",
        "gw_previews",
        ["consent_id", "client", "service", "query"],
        unique=False,
    )
    op.create_index("ix_gw_previews_expires_at", "gw_previews", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_gw_previews_expires_at", table_name="gw_previews")
    op.drop_index("ix_gw_previews_request", table_name="gw_previews")
    op.drop_table("gw_previews")
    with op.batch_alter_table("gw_access_rights", schema=None) as batch_op:
        batch_op.drop_column("legal_basis")
