"""signed catalogue publications: replay and rollback refused, and which key published what

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 23:30:00
"""

import sqlalchemy as sa
from alembic import op

import exchange.db.types

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ca_signed_publications",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("subsystem_id", sa.Integer(), nullable=False),
        sa.Column("gateway_id", sa.Integer(), nullable=False),
        sa.Column("certificate_serial", sa.String(length=64), nullable=False),
        sa.Column("issued_at", exchange.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("published_at", exchange.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["certificate_serial"],
            ["ca_certificates.serial"],
            name=op.f("fk_ca_signed_publications_certificate_serial_ca_certificates"),
        ),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["ca_gateways.id"],
            name=op.f("fk_ca_signed_publications_gateway_id_ca_gateways"),
        ),
        sa.ForeignKeyConstraint(
            ["subsystem_id"],
            ["ca_subsystems.id"],
            name=op.f("fk_ca_signed_publications_subsystem_id_ca_subsystems"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ca_signed_publications")),
        sa.UniqueConstraint("digest", name=op.f("uq_ca_signed_publications_digest")),
    )
    with op.batch_alter_table("ca_signed_publications", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ca_signed_publications_gateway_id"), ["gateway_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_ca_signed_publications_subsystem_id"), ["subsystem_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("ca_signed_publications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ca_signed_publications_subsystem_id"))
        batch_op.drop_index(batch_op.f("ix_ca_signed_publications_gateway_id"))
    op.drop_table("ca_signed_publications")
