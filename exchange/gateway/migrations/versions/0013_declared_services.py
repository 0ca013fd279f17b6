"""declared services: services declared from the console, beside the settings file's

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 22:40:00
"""

import sqlalchemy as sa
from alembic import op

import exchange.db.types

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gw_declared_services",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("subsystem", sa.String(length=255), nullable=False),
        sa.Column("code", sa.String(length=255), nullable=False),
        sa.Column("declaration", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("changed_at", exchange.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("changed_by", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gw_declared_services")),
        sa.UniqueConstraint("subsystem", "code", name=op.f("uq_gw_declared_services_subsystem")),
    )


def downgrade() -> None:
    op.drop_table("gw_declared_services")
