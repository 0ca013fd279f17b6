"""witness: the latest witnessed tree head per audit chain, and refused forks

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 20:45:00
"""

import sqlalchemy as sa
from alembic import op

import exchange.db.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SIZE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ca_witnessed_heads",
        sa.Column("chain", sa.String(length=1400), nullable=False),
        sa.Column("size", SIZE, nullable=False),
        sa.Column("root", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("cosignature", sa.Text(), nullable=False),
        sa.Column("witnessed_at", exchange.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("chain", name=op.f("pk_ca_witnessed_heads")),
    )
    op.create_table(
        "ca_witness_forks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("chain", sa.String(length=1400), nullable=False),
        sa.Column("at", exchange.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=False),
        sa.Column("known_size", SIZE, nullable=False),
        sa.Column("known_root", sa.String(length=64), nullable=False),
        sa.Column("known_signature", sa.Text(), nullable=False),
        sa.Column("size", SIZE, nullable=False),
        sa.Column("root", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ca_witness_forks")),
    )
    with op.batch_alter_table("ca_witness_forks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ca_witness_forks_chain"), ["chain"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ca_witness_forks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ca_witness_forks_chain"))
    op.drop_table("ca_witness_forks")
    op.drop_table("ca_witnessed_heads")
