"""one-time enrolment codes of gateways

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 23:00:00
"""

import sqlalchemy as sa
from alembic import op

import exchange.db.types

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ca_enrolment_codes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("gateway_id", sa.Integer(), nullable=False),
        sa.Column("issued_at", exchange.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("issued_by", sa.String(length=255), nullable=False),
        sa.Column("expires_at", exchange.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", exchange.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("withdrawn_at", exchange.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["ca_gateways.id"],
            name=op.f("fk_ca_enrolment_codes_gateway_id_ca_gateways"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ca_enrolment_codes")),
        sa.UniqueConstraint("digest", name=op.f("uq_ca_enrolment_codes_digest")),
    )
    with op.batch_alter_table("ca_enrolment_codes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ca_enrolment_codes_gateway_id"), ["gateway_id"])


def downgrade() -> None:
    with op.batch_alter_table("ca_enrolment_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ca_enrolment_codes_gateway_id"))
    op.drop_table("ca_enrolment_codes")
