"""peer witness: other gateways' countersignatures of this log's heads, and, as a peer
witness, the latest head accepted from other gateways' logs and the forks refused

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 23:00:00
"""

import sqlalchemy as sa
from alembic import op

import exchange.db.types

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

SIZE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("audit_tree_heads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("peer_cosignatures", sa.Text(), nullable=True))
    op.create_table(
        "gw_peer_witnessed_heads",
        sa.Column("chain", sa.String(length=255), nullable=False),
        sa.Column("size", SIZE, nullable=False),
        sa.Column("root", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("cosignature", sa.Text(), nullable=False),
        sa.Column("witnessed_at", exchange.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("chain", name=op.f("pk_gw_peer_witnessed_heads")),
    )
    op.create_table(
        "gw_peer_witness_forks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("chain", sa.String(length=255), nullable=False),
        sa.Column("at", exchange.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=False),
        sa.Column("known_size", SIZE, nullable=False),
        sa.Column("known_root", sa.String(length=64), nullable=False),
        sa.Column("known_signature", sa.Text(), nullable=False),
        sa.Column("size", SIZE, nullable=False),
        sa.Column("root", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gw_peer_witness_forks")),
    )
    with op.batch_alter_table("gw_peer_witness_forks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_gw_peer_witness_forks_evidence", ["chain", "signature"], unique=True
        )


def downgrade() -> None:
    with op.batch_alter_table("gw_peer_witness_forks", schema=None) as batch_op:
        batch_op.drop_index("ix_gw_peer_witness_forks_evidence")
    op.drop_table("gw_peer_witness_forks")
    op.drop_table("gw_peer_witnessed_heads")
    with op.batch_alter_table("audit_tree_heads", schema=None) as batch_op:
        batch_op.drop_column("peer_cosignatures")
